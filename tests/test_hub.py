"""`hfllm push` against the in-memory Hub of tests/hub_server.py.

A tiny run folder is built once (tokenizer, a full "pretrain" model, a LoRA "sft" adapter on it).
Each push runs `python -m hfllm.cli push ...` in a subprocess pointed at the test Hub (huggingface_hub
reads HF_ENDPOINT at import time); one client process then loads every pushed repo and prints logits,
compared here with the local folders'. Errors that happen before any network call run in-process.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
import torch
import yaml

from hub_server import client_env, hub_server, run_client  # noqa: F401  (hub_server is a fixture)

from hfllm.cli import main as _main
from hfllm.run_folder import write_metrics

IDS = [[1, 5, 9, 20, 33, 7, 41, 2]]
WRONG = "hf_wrongtokenwrongtokenwrongtoken123"


def cli(argv) -> int:
    return _main([str(a) for a in argv])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """runs/demo/{tokenizer,pretrain,sft} as hfllm's stages leave them, plus training leftovers."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("hub")
    words = "the cat dog sat on a mat and ran to the big red house under blue sky".split()
    (root / "corpus.txt").write_text("\n".join(" ".join(words[(i + j) % len(words)] for j in range(9))
                                               for i in range(300)))
    run = root / "runs" / "demo"
    assert cli(["tokenizer", "--dataset_name", root / "corpus.txt", "--vocab_size", "300",
                "--output_dir", run / "tokenizer"]) == 0
    tok = AutoTokenizer.from_pretrained(run / "tokenizer")

    pre = run / "pretrain"
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, intermediate_size=64, max_position_embeddings=64))
    model.save_pretrained(pre)
    tok.save_pretrained(pre)
    (pre / "checkpoint-2").mkdir()
    (pre / "checkpoint-2" / "optimizer.pt").write_bytes(b"optimizer state")
    (pre / "training_args.bin").write_bytes(b"pickled args")
    (pre / "hfllm_args.yaml").write_text(yaml.safe_dump({
        "dataset_name": str(root / "corpus.txt"), "learning_rate": 3e-3, "max_steps": 60, "model_type": "llama",
        "per_device_train_batch_size": 16, "seed": 42, "bf16": False, "output_dir": str(pre)}))
    write_metrics(pre, {"model_type": "llama", "eval_loss": 2.5, "perplexity": 12.18, "global_step": 60,
                        "dataset_name": str(root / "corpus.txt"), "sample": "the cat sat"}, stage="pretrain")

    sft = run / "sft"
    base = LlamaForCausalLM.from_pretrained(pre)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)  # a LoRA that changes the outputs
    peft_model.save_pretrained(sft)
    tok.save_pretrained(sft)
    (sft / "hfllm_args.yaml").write_text(yaml.safe_dump({
        "model_name_or_path": str(pre), "dataset_name": "tester/chats", "use_peft": True, "lora_r": 4,
        "lora_alpha": 8, "learning_rate": 2e-4, "max_steps": 10, "num_train_epochs": 3.0}))
    write_metrics(sft, {"model_name_or_path": str(pre), "dataset_name": "tester/chats", "train_loss": 1.25,
                        "answer_accuracy": 0.375}, stage="sft")
    adapter_config = json.loads((sft / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(pre)  # a local base, as hfllm's stages write it
    return run


def _logits(model) -> list:
    with torch.no_grad():
        return model(torch.tensor(IDS)).logits[0].tolist()


def _digest(folder) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def push(hub, home, *args, token="flag", endpoint=None) -> subprocess.CompletedProcess:
    """`hfllm push ...` in its own process; token="flag" passes it as --token with no HF_TOKEN set."""
    env = client_env(hub, home, token=None if token in ("flag", None) else token)
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    argv = [sys.executable, "-m", "hfllm.cli", "push", *map(str, args)]
    argv += ["--token", hub.token] if token == "flag" else []
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # peft on transformers 5
def test_push_round_trips(hub_server, run_dir, tmp_path):  # noqa: F811
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    before = _digest(run_dir)
    home = tmp_path / "home"
    procs = [
        push(hub_server, home, run_dir / "pretrain", "--repo_id", "tester/base"),
        push(hub_server, home, run_dir, "--repo-id", "tester/adapter", "--base_repo_id", "tester/base",
             token="default"),  # a run folder; the token from HF_TOKEN
        push(hub_server, home, run_dir / "sft", "--merge", "--repo_id", "tester/merged", "--private",
             "--base_repo_id", "tester/base"),
        push(hub_server, home, run_dir, "--stage", "pretrain", "--repo_id", "tester/base", "--revision", "dev",
             "--commit_message", "the dev branch"),
    ]
    for proc in procs:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "latest finished stage 'sft'" in procs[1].stdout and "merging" in procs[2].stdout
    assert "left out: checkpoint-2/, training_args.bin" in procs[0].stdout

    out = run_client(hub_server, tmp_path / "client", """
        import json, torch
        from huggingface_hub import HfApi, hf_hub_download
        from peft import AutoPeftModelForCausalLM
        from transformers import AutoModelForCausalLM
        from hfllm.hub.push import push, repo_for_stage
        from hfllm.app.models import find_models, load_model
        api = HfApi()
        names, _, _ = find_models(["tester/adapter"])  # what `hfllm chat tester/adapter` loads
        stage_url = push(%r, repo_for_stage(None, %r))  # a stage's push_to_hub with no hub_model_id
        ids = torch.tensor(%r)
        def logits(model):
            with torch.no_grad():
                return model(ids).logits[0].tolist()
        print(json.dumps({
            "base": logits(AutoModelForCausalLM.from_pretrained("tester/base")),
            "adapter": logits(AutoPeftModelForCausalLM.from_pretrained("tester/adapter")),
            "merged": logits(AutoModelForCausalLM.from_pretrained("tester/merged")),
            "dev": logits(AutoModelForCausalLM.from_pretrained("tester/base", revision="dev")),
            "files": {r: api.list_repo_files(r) for r in ("tester/base", "tester/adapter", "tester/merged")},
            "dev_title": api.list_repo_commits("tester/base", revision="dev")[0].title,
            "private": api.model_info("tester/merged").private,
            "card": open(hf_hub_download("tester/adapter", "README.md")).read(),
            "app": logits(load_model(names["tester/adapter"])[0]), "app_names": list(names),
            "stage_url": stage_url, "stage_files": api.list_repo_files("tester/demo-pretrain"),
        }))
    """ % (str(run_dir / "pretrain"), str(run_dir / "pretrain"), IDS))
    got = json.loads(out.stdout.strip().splitlines()[-1])

    base = AutoModelForCausalLM.from_pretrained(run_dir / "pretrain")
    want_base = torch.tensor(_logits(base))
    want_adapter = torch.tensor(_logits(PeftModel.from_pretrained(base, run_dir / "sft")))
    assert torch.equal(torch.tensor(got["base"]), want_base)  # (1) a full model, bit for bit
    assert torch.equal(torch.tensor(got["dev"]), want_base)  # (7) the dev branch
    assert torch.allclose(torch.tensor(got["adapter"]), want_adapter, atol=1e-6)  # (2) adapter on the Hub base
    assert not torch.allclose(want_adapter, want_base, atol=1e-3)  # the adapter does change the outputs
    assert torch.allclose(torch.tensor(got["merged"]), want_adapter, atol=1e-5)  # (3) merged == adapter on base
    assert got["app_names"] == ["tester/adapter"]  # (5) hfllm chat loads the pushed adapter on its Hub base
    assert torch.allclose(torch.tensor(got["app"]), want_adapter, atol=1e-6)
    assert got["dev_title"] == "the dev branch" and got["private"] is True
    assert got["stage_url"] == f"{hub_server.url}/tester/demo-pretrain" and "README.md" in got["stage_files"]

    files = got["files"]
    assert {"README.md", "model.safetensors", "config.json", "tokenizer.json", "metrics.json",
            "hfllm_args.yaml"} <= set(files["tester/base"])
    assert not any(f.startswith("checkpoint-") or f == "training_args.bin" for f in files["tester/base"])
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= set(files["tester/adapter"])
    assert "model.safetensors" in files["tester/merged"] and "adapter_config.json" not in files["tester/merged"]

    from huggingface_hub import ModelCard  # (4) the pushed card names the base on the Hub

    card = ModelCard(got["card"])
    assert card.data.to_dict()["base_model"] == "tester/base" and card.data.library_name == "peft"

    assert _digest(run_dir) == before  # the user's folders are untouched
    for proc in (*procs, out):  # (6) the token never shows up, in any output or file
        assert hub_server.token not in proc.stdout + proc.stderr
    for path in [*run_dir.rglob("*"), *home.rglob("*")]:
        assert not path.is_file() or hub_server.token.encode() not in path.read_bytes(), path
    for _, path, headers in hub_server.requests_log:
        assert hub_server.token not in path + json.dumps(headers)


def test_push_errors_are_one_clear_line(hub_server, run_dir, tmp_path):  # noqa: F811
    home, before = tmp_path / "home", _digest(run_dir)
    wrong = push(hub_server, home, run_dir / "pretrain", "--repo_id", "tester/never", "--token", WRONG, token=None)
    offline = push(hub_server, home, run_dir / "pretrain", "--repo_id", "tester/never",
                   endpoint="http://127.0.0.1:9")
    for proc, words in ((wrong, "rejected the token (401"), (offline, "could not reach the Hub at http://127.0.0.1:9")):
        assert proc.returncode == 2 and words in proc.stderr, proc.stderr
        assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
        assert WRONG not in proc.stdout + proc.stderr and hub_server.token not in proc.stdout + proc.stderr
    assert ("model", "tester/never") not in hub_server.repos and _digest(run_dir) == before


def test_dry_run_card(run_dir, tmp_path, capsys):
    before = _digest(run_dir)
    out = tmp_path / "preview"
    assert cli(["push", run_dir / "sft", "--repo_id", "me/tiny-sft", "--base_repo_id", "me/tiny-base",
                "--dry_run", "--output_dir", out, "--token", WRONG]) == 0
    assert _digest(run_dir) == before
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == "me/tiny-base"
    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "README.md")
    meta = card.data.to_dict()
    assert meta["base_model"] == "me/tiny-base" and meta["datasets"] == ["tester/chats"]
    assert meta["license"] == "apache-2.0" and meta["library_name"] == "peft"
    assert meta["pipeline_tag"] == "text-generation" and {"hfllm", "sft", "lora"} <= set(meta["tags"])
    assert "| answer_accuracy | 0.375 |" in card.text and "| lora_r | 4 |" in card.text  # metrics, hyperparameters
    assert "| pretrain | scratch |" in card.text and "AutoPeftModelForCausalLM" in card.text  # lineage, usage
    assert "num_train_epochs" not in card.text  # max_steps wins
    files = sorted(p.name for p in out.iterdir())
    assert WRONG not in capsys.readouterr().out and all(WRONG not in p.read_text(errors="ignore")
                                                        for p in out.iterdir())
    assert "metrics.json" in files and "hfllm_args.yaml" in files

    full = tmp_path / "full"  # a full model; the folder may come after the flags
    assert cli(["push", "--repo_id", "me/tiny", "--dry_run", run_dir / "pretrain", "--output_dir", full,
                "--license", "mit"]) == 0
    meta = ModelCard.load(full / "README.md").data.to_dict()
    assert meta["license"] == "mit" and meta["library_name"] == "transformers" and "base_model" not in meta
    assert not (full / "checkpoint-2").exists() and not (full / "training_args.bin").exists()


def test_reward_model_is_text_classification(run_dir, tmp_path):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    reward = tmp_path / "runs" / "r" / "reward"
    config = LlamaConfig(vocab_size=300, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, num_labels=1, pad_token_id=0)
    LlamaForSequenceClassification(config).save_pretrained(reward)
    write_metrics(reward, {"eval_accuracy": 0.75, "model_name_or_path": "Qwen/Qwen2.5-0.5B"}, stage="reward")
    assert cli(["push", reward, "--repo_id", "me/rm", "--dry_run", "--output_dir", tmp_path / "p"]) == 0
    from huggingface_hub import ModelCard

    meta = ModelCard.load(tmp_path / "p" / "README.md").data.to_dict()
    assert meta["pipeline_tag"] == "text-classification" and meta["base_model"] == "Qwen/Qwen2.5-0.5B"
    assert "reward" in meta["tags"]


def test_local_mistakes(run_dir, tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants

    cases = [
        (["push", run_dir / "pretrain", "--repo_id", "not a repo"], "repo_id must look like user/name"),
        (["push", run_dir / "pretrain", "--repo_id", "tester"], "repo_id must look like user/name"),
        (["push", tmp_path / "nope", "--repo_id", "tester/x"], "folder not found"),
        (["push", run_dir / "sft", "--repo_id", "tester/x"], "base model is a local folder"),
        (["push", run_dir / "pretrain", "--merge", "--repo_id", "tester/x"], "--merge needs a LoRA adapter"),
        (["push", run_dir, "--stage", "dpo", "--repo_id", "tester/x"], "stage 'dpo' does not exist"),
        (["push", run_dir / "pretrain", "a", "--repo_id", "tester/x"], "expected one folder"),
    ]
    unfinished = tmp_path / "runs" / "half" / "sft"
    (unfinished / "checkpoint-5").mkdir(parents=True)
    cases.append((["push", unfinished, "--repo_id", "tester/x"], "is not a finished stage"))
    cases.append((["push", tmp_path / "runs" / "half", "--repo_id", "tester/x"], "neither a finished stage"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    cases.append((["push", run_dir / "pretrain", "--repo_id", "tester/x"],
                  "no Hugging Face token: run `hf auth login` or set HF_TOKEN"))
    cases.append((["push", run_dir / "pretrain", "--repo_id", "tester/x", "--dry_run", "--output_dir",
                   run_dir / "preview"], "--output_dir must be outside the run folder"))
    for argv, words in cases:
        assert cli(argv) == 2, argv
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, (argv, err)
    assert cli(["push", "--help"]) == 0 and "--repo_id" in capsys.readouterr().out


def test_stage_with_push_to_hub_pushes_when_finished(hub_server, tmp_path):  # noqa: F811
    """`push_to_hub: true` in a stage config pushes the finished folder (with its card) at the end."""
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(f"the cat number {i} sat on the mat and looked at the sun" for i in range(300)))
    env = client_env(hub_server, tmp_path / "home")
    run = lambda *a: subprocess.run([sys.executable, "-m", "hfllm.cli", *map(str, a)], env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=300)
    tok = run("tokenizer", "--dataset_name", corpus, "--vocab_size", "300", "--output_dir", tmp_path / "tok")
    assert tok.returncode == 0, tok.stderr
    pre = run("pretrain", "--tokenizer_name_or_path", tmp_path / "tok", "--dataset_name", corpus,
              "--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2",
              "--intermediate_size", "64", "--max_position_embeddings", "64", "--max_steps", "2",
              "--disable_tqdm", "true", "--output_dir", tmp_path / "pre",
              "--push_to_hub", "true", "--hub_model_id", "tester/from-stage")
    assert pre.returncode == 0, pre.stderr
    assert "pushed to" in pre.stdout and hub_server.token not in pre.stdout + pre.stderr
    out = run_client(hub_server, tmp_path / "client", """
        from huggingface_hub import list_repo_files
        print(sorted(list_repo_files("tester/from-stage")))
    """)
    files = out.stdout
    assert "model.safetensors" in files and "README.md" in files and "metrics.json" in files
    assert "checkpoint" not in files
    recorded = yaml.safe_load((tmp_path / "pre" / "hfllm_args.yaml").read_text())
    assert recorded["push_to_hub"] is True and recorded["hub_model_id"] == "tester/from-stage"

    # A LoRA adapter trained on that stage and pushed by its own stage names the pushed repo as its base
    # (read from the base stage's record above), not the local folder nobody else can download.
    sft = run("sft", "--model_name_or_path", tmp_path / "pre", "--dataset_name", "builtin:sft", "--max_train_samples",
              "16", "--max_steps", "1", "--max_length", "64", "--answer_eval_samples", "0", "--use_peft",
              "--lora_r", "2", "--disable_tqdm", "true", "--output_dir", tmp_path / "sft",
              "--push_to_hub", "true", "--hub_model_id", "tester/from-stage-sft")
    assert sft.returncode == 0, sft.stderr[-3000:]
    out = run_client(hub_server, tmp_path / "client", """
        import json
        from huggingface_hub import hf_hub_download
        print(json.load(open(hf_hub_download("tester/from-stage-sft", "adapter_config.json")))["base_model_name_or_path"])
    """)
    assert out.stdout.strip().splitlines()[-1] == "tester/from-stage"


CANARY = "hf_LeakCanary" + "Q7x9Zk3W" * 4  # distinctive, and shaped like a real token
WRONG_CANARY = "hf_WrongCanary" + "m4Pq8Rt2" * 4


def test_the_token_never_leaks(run_dir, tmp_path):
    """A stage that pushes itself (the token on its command line and in HF_TOKEN), `hfllm push` of a model, a
    merged adapter and a dry run, all with verbose library logging; then rejected tokens. The token must be in
    no output, no file under the run and staged folders, the Hugging Face home, or anything the Hub received."""
    from hub_server import HubServer

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"the cat number {i} sat on the mat and looked at the sun" for i in range(200)))
    stage, preview, home = tmp_path / "runs" / "leak" / "pretrain", tmp_path / "preview", tmp_path / "home"
    with HubServer(token=CANARY) as hub:
        env = {**client_env(hub, home), "TRANSFORMERS_VERBOSITY": "debug", "HF_HUB_VERBOSITY": "debug",
               "DATASETS_VERBOSITY": "debug"}

        def run(*argv, **extra_env):
            return subprocess.run([sys.executable, "-m", "hfllm.cli", *map(str, argv)], env={**env, **extra_env},
                                  capture_output=True, text=True, timeout=300)

        ok = [
            run("pretrain", "--tokenizer_name_or_path", run_dir / "tokenizer", "--dataset_name", corpus,
                "--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2",
                "--intermediate_size", "64", "--max_position_embeddings", "64", "--max_steps", "2",
                "--save_steps", "1", "--logging_steps", "1", "--disable_tqdm", "true", "--output_dir", stage,
                "--push_to_hub", "true", "--hub_model_id", "tester/leak-stage", "--hub_token", CANARY),
            run("push", stage, "--repo_id", "tester/leak-push", "--private"),
            run("push", run_dir / "sft", "--merge", "--repo_id", "tester/leak-merged", "--base_repo_id", "tester/base"),
            run("push", stage, "--repo_id", "tester/leak-preview", "--dry_run", "--output_dir", preview),
        ]
        refused = [run("push", stage, "--repo_id", "tester/never", "--token", WRONG_CANARY),
                   run("push", stage, "--repo_id", "tester/never", HF_TOKEN=WRONG_CANARY)]
        stored = [blob.data or b"" for repo in hub.repos.values() for commit in repo.commits.values()
                  for blob in commit.files.values()] + list(hub.lfs_store.values())
        requests = [path + json.dumps(headers) for _, path, headers in hub.requests_log]

    for proc in ok:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "pushed to" in ok[0].stdout and (stage / "checkpoint-1" / "training_args.bin").is_file()
    assert {("model", "tester/leak-stage"), ("model", "tester/leak-push"), ("model", "tester/leak-merged")} <= set(hub.repos)
    for proc in refused:
        assert proc.returncode == 2 and "rejected the token (401" in proc.stderr, proc.stderr[-2000:]
    assert len(stored) > 10 and len(requests) > 20  # the checks below looked at something
    for secret in (CANARY, WRONG_CANARY):
        for proc in ok + refused:
            assert secret not in proc.stdout + proc.stderr, proc.args
        files = [p for root in (tmp_path, run_dir) for p in root.rglob("*") if p.is_file()]
        assert len(files) > 20
        for path in files:
            assert secret.encode() not in path.read_bytes(), path
        assert not any(secret.encode() in data for data in stored)
        assert not any(secret in text for text in requests)
