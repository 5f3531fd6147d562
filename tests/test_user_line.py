"""The one exception-to-line mapping (hfllm.errors.user_line) and checks that need no model: what the user
can fix is one line, whatever raised it; a bug keeps its traceback (None)."""

from __future__ import annotations

import re

import pytest

from hfllm.model_checks import check_memory
from hfllm.errors import UserError, user_line


def chained(outer: Exception, inner: BaseException) -> Exception:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except Exception as exc:  # noqa: BLE001
        return exc


def test_a_name_holding_a_newline_stays_one_line():
    assert user_line(UserError("dataset has no column 'te\nxt'")) == "dataset has no column 'te\\nxt'"


def test_the_hub_out_of_reach_is_one_line_wherever_it_is_in_the_chain():
    class OfflineModeIsEnabled(Exception):  # huggingface_hub's, by name: the mapping reads names
        pass

    class ConnectError(Exception):
        pass

    line = user_line(chained(RuntimeError("upload failed"), OfflineModeIsEnabled("offline")))
    assert line.startswith("the Hub cannot be reached: offline mode is on (HF_HUB_OFFLINE=1)")
    line = user_line(chained(ValueError("x"), ConnectError("[Errno -3] Temporary failure\nin name resolution")))
    assert line.startswith("the Hub cannot be reached (ConnectError: [Errno -3] Temporary failure") and "\n" not in line


def test_out_of_memory_is_one_line_and_a_bug_is_not():
    assert user_line(chained(RuntimeError("x"), MemoryError())).startswith("out of memory: lower")
    assert user_line(ValueError("a bug")) is None
    assert user_line(KeyError("a bug")) is None


def test_a_model_larger_than_the_machine_is_refused_before_allocating():
    with pytest.raises(UserError, match=r"^a model needs ~931322574.6 GB of memory; this machine has [0-9.]+ GB"):
        check_memory(10**18, "a model")
    check_memory(1024, "a model")  # fits: nothing said


def test_an_unresolvable_host_is_named_as_such():
    from hfllm.app.launch import check_host

    with pytest.raises(UserError, match=r"^--host 'no-such-host\.invalid' is not an address this machine can bind"):
        check_host("no-such-host.invalid")
    check_host("127.0.0.1")


def _model_larger_than_memory(folder, tokenizer_folder) -> None:
    """A model folder whose safetensors file is valid and declares twice this machine's memory (a sparse file:
    no disk is used), with a real tokenizer beside it."""
    import json
    import os
    import shutil
    import struct

    from transformers import LlamaConfig

    LlamaConfig(vocab_size=1024, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                num_attention_heads=2).save_pretrained(folder)
    for name in os.listdir(tokenizer_folder):
        if name.startswith("tokenizer") or name.endswith(".jinja") or name == "special_tokens_map.json":
            shutil.copy(os.path.join(tokenizer_folder, name), folder)
    rows = 2 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 64
    header = json.dumps({"model.embed_tokens.weight": {"dtype": "F32", "shape": [rows, 16],
                                                       "data_offsets": [0, rows * 64]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(os.path.join(folder, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + rows * 64)


def test_a_stage_given_a_model_larger_than_the_machine_says_so_before_loading(tiny_tokenizer, tmp_path, capsys):
    from conftest import run_cli

    big = tmp_path / "big"
    _model_larger_than_memory(big, tiny_tokenizer)
    for argv in (["sft", "--dataset_name", "builtin:sft", "--output_dir", tmp_path / "out"],
                 ["generate", "--prompt", "Hi"]):
        assert run_cli(*argv, "--model_name_or_path", big) == 2
        err = capsys.readouterr().err  # before the line: datasets' progress bars, as the data is read first
        assert "Traceback" not in err, err
        assert re.fullmatch(rf"hfllm {argv[0]}: error: model '{re.escape(str(big))}' needs ~[0-9.]+ GB of memory; "
                            r"this machine has [0-9.]+ GB: choose a smaller model, or a machine with more memory",
                            err.strip().splitlines()[-1]), err
    assert not (tmp_path / "out").exists()


def test_a_hub_dataset_while_offline_is_one_line_and_writes_nothing(tiny_tokenizer, tmp_path):
    """HF_HUB_OFFLINE=1 (conftest sets it; the subprocess inherits it): a Hub id cannot be looked up."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    for stage, extra in (("tokenizer", []), ("pretrain", ["--tokenizer_name_or_path", tiny_tokenizer])):
        out = tmp_path / stage
        proc = subprocess.run([sys.executable, "-m", "hfllm.cli", stage, "--dataset_name", "someone/some-corpus",
                               "--output_dir", str(out), *extra], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        err = proc.stderr.strip()
        assert err.count("\n") == 0 and "Traceback" not in err, err
        assert "dataset 'someone/some-corpus' is not a local path, and the Hub cannot be reached" in err, err
        assert not out.exists()
