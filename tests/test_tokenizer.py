"""The BPE tokenizer stage: round trip, special tokens, chat template, reload."""

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from conftest import run_cli


@pytest.fixture(scope="module")
def tok(tiny_tokenizer):
    return AutoTokenizer.from_pretrained(tiny_tokenizer)


def test_round_trip_and_vocab(tok):
    text = "Once upon a time, a little cat said: 3 + 4 = 7. Ünïcode ✓ too!"
    assert tok.decode(tok(text)["input_ids"]) == text  # byte-level: nothing is lost
    assert len(tok) == 1024


def test_special_tokens_are_single_ids_and_distinct(tok):
    assert tok.pad_token == "<|pad|>" and tok.eos_token == "<|end|>" and tok.bos_token == "<|begin|>"
    assert len({tok.pad_token_id, tok.eos_token_id, tok.bos_token_id}) == 3  # pad != eos: eos stays in labels
    for special in ["<|user|>", "<|assistant|>", "<|system|>"]:
        assert len(tok(special)["input_ids"]) == 1


def test_chat_template_marks_assistant_tokens(tok):
    messages = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."}]
    text = tok.apply_chat_template(messages, tokenize=False)
    assert text == "<|system|>\nBe kind.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello.<|end|>\n"
    out = tok.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    answer = [i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tok.decode(answer) == "Hello.<|end|>"  # the eos is learnt, so the model learns to stop
    prompt = tok.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|assistant|>\n")


def test_metrics_report_compression(tiny_tokenizer):
    metrics = json.loads((Path(tiny_tokenizer) / "metrics.json").read_text())
    assert metrics["held_out_texts"] > 0 and metrics["chars_per_token_held_out"] > 2.0


def test_folder_of_files_and_flags_only(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(3):
        (corpus / f"part{i}.txt").write_text("\n".join(f"line {j} of part {i}: the quick brown fox" for j in range(200)))
    out = tmp_path / "tok"
    assert run_cli("tokenizer", "--dataset_name", corpus, "--vocab_size", "300", "--output_dir", out) == 0
    tok = AutoTokenizer.from_pretrained(out)
    assert len(tok) == 300 and tok.decode(tok("the quick brown fox")["input_ids"]) == "the quick brown fox"


@pytest.mark.parametrize("flags,message", [
    (["--vocab_size", "100"], "vocab_size 100 is too small"),
    (["--dataset_name", "missing.txt"], "dataset not found: missing.txt"),
    (["--dataset_text_field", "body"], "has no column 'body'"),
])
def test_bad_inputs(tmp_path, capsys, flags, message):
    assert run_cli("tokenizer", "--output_dir", tmp_path / "t", "--max_train_samples", "50", *flags) == 2
    assert message in capsys.readouterr().err


def test_refuses_to_replace_a_finished_tokenizer(tiny_tokenizer, capsys):
    assert run_cli("tokenizer", "--output_dir", tiny_tokenizer) == 2
    assert "already holds a finished run; pass --overwrite" in capsys.readouterr().err


def test_plain_text_is_read_line_by_line_as_datasets_would(tmp_path):
    """The tokenizer reads .txt/.md straight (no Arrow pass): the same texts datasets' text builder makes rows of,
    with every kind of line break and blank line; a folder's files in order; anything else goes through datasets."""
    from hfllm.data.load import iter_lines, iter_texts, load_dataset, plain_text_files

    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_bytes("one\r\ntwo\n\n  \nthree\x0cfour\u2028five\rsix\n".encode())
    (folder / "b.md").write_text("# seven\n\néight ✓", encoding="utf-8")
    (tmp_path / "rows.jsonl").write_text('{"text": "x"}\n')
    for name in (folder / "a.txt", folder):
        files = plain_text_files(str(name))
        expected = list(iter_texts(load_dataset(str(name), cache_dir=str(tmp_path / "cache")), "text", str(name)))
        assert list(iter_lines(files)) == expected
    assert len(expected) == 6 and expected[2:] == ["three\x0cfour\u2028five", "six", "# seven", "éight ✓"]
    assert plain_text_files(str(tmp_path / "rows.jsonl")) is None and plain_text_files("builtin:sft") is None


def test_ctrl_c_during_training_stops_the_run(tmp_path):
    """A real SIGINT to `hfllm tokenizer` while the Rust trainer runs: exit 130 at once, one line, nothing saved
    (the folder is neither marked as this stage's nor complete)."""
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    rng = random.Random(0)
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 12))) for _ in range(150000)]
    corpus = tmp_path / "corpus.txt"  # 5 MB of many made-up words: the merges take several seconds on 2 cores
    corpus.write_text("".join(" ".join(rng.choices(words, k=20)) + "\n" for _ in range(30000)))
    out = tmp_path / "tok"
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen([sys.executable, "-m", "hfllm.cli", "tokenizer", "--dataset_name", str(corpus),
                             "--vocab_size", "20000", "--output_dir", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().startswith("training a BPE tokenizer (vocab 20000)")
    # Once the texts are read the trainer is inside Rust until it returns: where a signal used to wait.
    assert proc.stdout.readline().endswith("texts; learning the merges\n")
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    stdout, stderr = proc.communicate(timeout=120)
    stopped_after = time.monotonic() - sent
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "hfllm tokenizer: interrupted" and "Traceback" not in stderr
    assert stopped_after < 2.5 and "tokenizer saved" not in stdout  # the merges alone take ~5 s here
    assert not (out / "tokenizer.json").exists() and not (out / "metrics.json").exists()
    assert not (out / "hfllm_run.json").exists()
