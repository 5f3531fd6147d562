"""What training prints: one aligned line per logging step (hfllm.console), no dicts, no LOAD REPORT table."""

from __future__ import annotations

import re

from conftest import QUIET, run_cli

from hfllm.console import format_line

STEP = re.compile(r"^step +(\d+)/(\d+)  loss +[\d.]+  lr +[\d.e+-]+  grad +[\d.]+ .* tok/s  ETA \d+:\d\d:\d\d$")


def test_lines_keep_their_columns_whatever_the_values():
    a = format_line("step", 5, 200, {"loss": 12.3456789, "learning_rate": 3e-4, "grad_norm": 0.5},
                    tokens_per_second=812.4, eta=3725)
    b = format_line("step", 150, 200, {"loss": 0.5, "learning_rate": 1.5e-6, "grad_norm": 123.456},
                    tokens_per_second=21334, eta=4)
    assert a == "step    5/200  loss  12.3457  lr 3.00e-04  grad      0.5        812 tok/s  ETA 1:02:05"
    assert [a.index(w) for w in (" loss ", " lr ", " grad ", " tok/s", " ETA ")] == \
        [b.index(w) for w in (" loss ", " lr ", " grad ", " tok/s", " ETA ")]
    # Keys it does not know (epoch, runtimes) stay out of the line; a non-finite value is shown as such.
    assert format_line("eval", 3, 10, {"loss": float("nan"), "runtime": 0.2, "epoch": 1.0}) == \
        "eval   3/10  loss      nan"


def test_a_stage_prints_aligned_lines_and_no_dicts(tiny_pretrained, tmp_path, capfd):
    assert run_cli("sft", "--model_name_or_path", tiny_pretrained, "--dataset_name", "builtin:sft",
                   "--eval_dataset_name", "builtin:sft_eval", "--max_length", "64", "--max_train_samples", "64",
                   "--per_device_train_batch_size", "8", "--max_steps", "4", "--logging_steps", "2",
                   "--eval_strategy", "steps", "--eval_steps", "4", "--answer_eval_samples", "0",
                   "--save_strategy", "no", "--output_dir", tmp_path / "sft", *QUIET) == 0
    out, err = capfd.readouterr()
    steps = [line for line in out.splitlines() if line.startswith("step ")]
    assert [STEP.match(line).group(1, 2) for line in steps] == [("2", "4"), ("4", "4")], out
    assert len({line.index("  lr ") for line in steps}) == 1  # aligned
    assert any(re.match(r"^eval +4/4  loss +[\d.]+  tok acc", line) for line in out.splitlines()), out
    assert re.search(r"^done +4/4  loss +[\d.]+  in 0:00:\d\d$", out, re.M), out
    assert "{'" not in out + err and "'loss'" not in out + err  # no dicts of the Trainer's printing callbacks


def test_a_new_reward_head_is_one_line_not_a_load_report(tiny_pretrained, tmp_path, capfd, monkeypatch):
    monkeypatch.setattr("hfllm.loading._new_heads", set())  # said once per process: earlier tests loaded this model
    assert run_cli("reward", "--model_name_or_path", tiny_pretrained, "--dataset_name", "builtin:preference",
                   "--max_train_samples", "32", "--per_device_train_batch_size", "8", "--max_steps", "2",
                   "--logging_steps", "1", "--max_length", "64", "--save_strategy", "no",
                   "--output_dir", tmp_path / "reward", *QUIET) == 0
    out, err = capfd.readouterr()
    heads = [line for line in out.splitlines() if "head yet" in line]
    assert heads == [f"note: model '{tiny_pretrained}' has no score head yet: it starts from random values and this "
                     "training learns it (expected for a new reward or value model)"]
    assert "LOAD REPORT" not in out + err and "MISSING" not in out + err
    assert "{'" not in out + err


def test_loading_weights_made_for_another_head_is_one_line(tmp_path, capfd, monkeypatch):
    """A reward model from a causal LM: its new head is the expected note. A causal LM from a reward model's
    folder (untied embeddings): the missing lm_head matters, and is one warning, not a table."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from hfllm.loading import load_causal_lm, load_sequence_classifier

    monkeypatch.setattr("hfllm.loading._new_heads", set())
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, tie_word_embeddings=False, pad_token_id=0)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "lm")
    capfd.readouterr()
    load_sequence_classifier(str(tmp_path / "lm"), num_labels=1, what="value model").save_pretrained(tmp_path / "rm")
    load_sequence_classifier(str(tmp_path / "lm"), num_labels=1, what="value model")  # said once
    load_causal_lm(str(tmp_path / "rm"))
    out, err = capfd.readouterr()
    assert out.splitlines() == [
        f"note: value model '{tmp_path / 'lm'}' has no score head yet: it starts from random values and this "
        "training learns it (expected for a new reward or value model)",
        f"warning: model '{tmp_path / 'rm'}': 1 weights are not in the checkpoint and start random "
        "(lm_head.weight); is it the model you meant?"]
    assert "LOAD REPORT" not in err


def test_ppo_prints_its_updates_in_the_same_format(tiny_pretrained, tmp_path, capfd):
    assert run_cli("ppo", "--model_name_or_path", tiny_pretrained, "--reward_funcs", "answer_partial",
                   "--max_steps", "2", "--per_device_train_batch_size", "4", "--response_length", "8",
                   "--num_ppo_epochs", "1", "--eval_samples", "4", "--output_dir", tmp_path / "ppo") == 0
    out, _ = capfd.readouterr()
    steps = [line for line in out.splitlines() if line.startswith("step ")]
    assert len(steps) == 2 and all(re.match(r"^step +\d/2  score +-?[\d.]+  answers ok +[\d.]+  kl +-?[\d.]+ .*"
                                            r"tok/s  ETA \d:\d\d:\d\d$", line) for line in steps), out
    assert "ppo update" not in out and "it/s]" not in out  # no bar either: disable_tqdm is hfllm's default


def test_loading_a_model_does_not_warn_about_sharding(tiny_pretrained):
    """Quieting modeling_utils' logger (for the LOAD REPORT) makes transformers check the tensor-parallel plan of
    a model that is not split, and print that its norms "were not sharded": not on hfllm's console. A fresh
    interpreter, since the test session's loggers are not a user's."""
    import subprocess
    import sys

    code = f"from hfllm.loading import load_causal_lm; load_causal_lm({str(tiny_pretrained)!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "sharded" not in done.stdout + done.stderr, done.stderr
