"""`hfllm push` of a GGUF export: what reaches the (local, in-memory) Hub and what the card tells users.

The export is made once from the tiny run of tests/test_hub.py (f16 only, no --check: llama.cpp's
converter, a few seconds), then pushed in a subprocess pointed at tests/hub_server.py.
"""

from __future__ import annotations

import hashlib
import json
import re

import pytest
import yaml

from hub_server import hub_server, run_client  # noqa: F401  (a fixture)
from test_hub import cli, push, run_dir  # noqa: F401  (run_dir is a fixture)


@pytest.fixture(scope="module")
def ollama_export(run_dir, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("export") / "demo-ollama"
    assert cli(["export", "--model_name_or_path", run_dir / "pretrain", "--format", "ollama", "--outtype", "f16",
                "--output_dir", out]) == 0
    return out


def test_gguf_export_arrives_with_run_instructions(hub_server, ollama_export, tmp_path):  # noqa: F811
    record = json.loads((ollama_export / "export.json").read_text())
    proc = push(hub_server, tmp_path / "home", ollama_export, "--format", "gguf", "--repo_id", "tester/demo-GGUF",
                "--base_repo_id", "tester/demo")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "GGUF export (pretrain-f16.gguf)" in proc.stdout
    got = json.loads(run_client(hub_server, tmp_path / "home", """
        import hashlib, json
        from huggingface_hub import HfApi, hf_hub_download
        files = sorted(HfApi().list_repo_files("tester/demo-GGUF"))
        read = lambda f: open(hf_hub_download("tester/demo-GGUF", f), "rb").read()
        print(json.dumps({"files": files, "sha": hashlib.sha256(read("pretrain-f16.gguf")).hexdigest(),
                          **{f: read(f).decode() for f in ("README.md", "template", "params", "export.json")}}))
    """).stdout.strip().splitlines()[-1])
    assert got["files"] == [".gitattributes", "Modelfile", "README.md", "export.json", "params",
                            "pretrain-f16.gguf", "template"]
    assert got["sha"] == hashlib.sha256((ollama_export / "pretrain-f16.gguf").read_bytes()).hexdigest()

    meta = yaml.safe_load(got["README.md"].split("---")[1])
    assert meta["library_name"] == "gguf" and "gguf" in meta["tags"] and "ollama" in meta["tags"]
    assert meta["base_model"] == "tester/demo" and meta["base_model_relation"] == "quantized"
    card = got["README.md"]
    for line in ("llama-cli -hf tester/demo-GGUF:F16 --jinja", "llama-server -hf tester/demo-GGUF:F16 --jinja",
                 "ollama run hf.co/tester/demo-GGUF:F16", "lms get tester/demo-GGUF@f16"):
        assert line in card, card
    assert f"stop at `{record['stop_tokens'][0]}`" in card
    assert f"The chat template and the tokens that end an answer (`{record['stop_tokens'][0]}`)" in card

    # Ollama's Hub integration reads `template` and `params`: the Modelfile's TEMPLATE and PARAMETERs
    modelfile = (ollama_export / "Modelfile").read_text()
    assert got["template"] == re.search(r'TEMPLATE """(.*?)"""', modelfile, re.S).group(1)
    params = json.loads(got["params"])
    assert params["stop"] == record["stop_tokens"] and params["temperature"] == 0
    pushed = json.loads(got["export.json"])
    assert pushed["files"] == record["files"] and str(ollama_export.parent) not in got["export.json"]
    assert "arguments" not in pushed  # local paths stay local


def test_gguf_push_refusals(ollama_export, tmp_path, capsys):
    """Checked before any upload: a failed --check, a token in what would go up (dry runs: no network)."""
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in ollama_export.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    record = json.loads((bad / "export.json").read_text())
    good_check = {"tokens_identical": 9, "tokens_compared": 9, "template": {"in_gguf": True}, "types": {},
                  "prompts": 8}
    (bad / "export.json").write_text(json.dumps({**record, "check": {**good_check, "tokens_identical": 8}}))
    capsys.readouterr()
    assert cli(["push", bad, "--repo_id", "me/x", "--dry_run", "--output_dir", tmp_path / "p1"]) == 2
    assert "refusing to push: the export's --check found" in capsys.readouterr().err

    (bad / "export.json").write_text(json.dumps({**record, "check": good_check}))
    assert cli(["push", bad, "--repo_id", "me/x", "--dry_run", "--output_dir", tmp_path / "p2"]) == 0
    assert "hfllm export --check" in (tmp_path / "p2" / "README.md").read_text()  # the check, in the card

    token = "hf_" + "a1B2c3" * 6
    (bad / "Modelfile").write_text((bad / "Modelfile").read_text() + f"# {token}\n")
    assert cli(["push", bad, "--repo_id", "me/x", "--dry_run", "--output_dir", tmp_path / "p3"]) == 2
    err = capsys.readouterr().err
    assert "refusing to push: Modelfile line " in err and "holds what looks like a Hugging Face token" in err and token not in err
    (bad / "Modelfile").write_bytes((ollama_export / "Modelfile").read_bytes())
    with (bad / "pretrain-f16.gguf").open("ab") as f:
        f.write(token.encode())  # anywhere in the binary, not only in its text metadata
    assert cli(["push", bad, "--repo_id", "me/x", "--dry_run", "--output_dir", tmp_path / "p4"]) == 2
    assert "pretrain-f16.gguf line " in capsys.readouterr().err
    assert not any((tmp_path / p).exists() for p in ("p1", "p3", "p4"))
