"""Reward model and DPO end to end on the tiny SFT model, plus the pipeline runner."""

import json
from pathlib import Path

import pytest
from transformers import AutoModelForSequenceClassification

from conftest import QUIET, run_cli


def metrics(folder):
    return json.loads((Path(folder) / "metrics.json").read_text())


def test_reward_model_is_a_one_number_head(tiny_reward):
    m = metrics(tiny_reward)
    assert m["eval_pairs"] > 0 and m["eval_accuracy"] is not None, m
    model = AutoModelForSequenceClassification.from_pretrained(tiny_reward)
    assert model.config.num_labels == 1


def test_reward_model_learns_a_preference_it_can_judge(tiny_tone_reward):
    """The tone pairs (the right answer + a friendly closing beats the plain answer or a rude reply), held-out
    facts. Measured 2026-12-03 on the locked stack, untrained head -> after one epoch: 28.8% -> 100% (seed 0),
    11.1% -> 100% (seed 1); margin -0.11 -> 8.70 and -0.26 -> 8.58. (On the fact pairs the same model starts
    at 65% and ends at 75%: telling a wrong fact from a right one is beyond it.)"""
    m = metrics(tiny_tone_reward)  # trained in conftest.py, seed 0 (PPO's test then optimises it)
    assert m["eval_accuracy_before"] < 0.6 and m["eval_accuracy"] >= 0.9, m
    assert m["eval_margin"] >= m["eval_margin_before"] + 2.0, m


def test_dpo_teaches_the_preferred_tone(tiny_tone_dpo):
    """The tone pairs differ in tone only (the right answer + a friendly closing beats the plain answer or a rude
    reply). SFT never showed the closing, so the SFT model starts out preferring the plain answer (28% of
    held-out pairs): learning is visible, not a coin flip at a ceiling (the fact pairs start at 92%).
    Measured 2026-12-03 on the locked stack: 28% -> 73.5% (seed 0) and 28% -> 77.5% (seed 1); log-prob margin
    -14.2 -> 34.7 and 35.0; held-out answer accuracy 36.1% -> 30.8% on both seeds (the price of the closing at
    this learning rate; at 2e-5 nothing flipped in 60 steps, and adding TRL's SFT loss kept fewer answers).
    The string rule of the same preference, greedy answers ending with the closing: 0% -> 56.7% (seed 0) and
    0% -> 72.1% (seed 1)."""
    m = metrics(tiny_tone_dpo)  # trained in conftest.py, seed 0 (PPO's test starts from it)
    print({k: m[k] for k in m if k.startswith(("logprob_margin", "preference_accuracy", "answer_accuracy", "check_"))})
    assert m["preference_accuracy_before"] < 0.5, m  # the starting point leaves room to learn
    assert m["preference_accuracy"] >= m["preference_accuracy_before"] + 0.3, m
    assert m["logprob_margin"] > m["logprob_margin_before"] + 20, m
    assert m["answer_accuracy"] >= m["answer_accuracy_before"] - 0.08, m  # answers kept, within what held
    assert m["check_friendly_closing"] >= m["check_friendly_closing_before"] + 0.4, m  # what DPO taught, by a rule


def test_pipeline_skips_finished_stages_and_stops_on_failure(tiny_tokenizer, tmp_path, capsys):
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(f"""
run_dir: {tmp_path / 'run'}
stages:
  - name: pretrain
    args: {{tokenizer_name_or_path: {tiny_tokenizer}, hidden_size: 64, num_hidden_layers: 2,
            intermediate_size: 128, max_position_embeddings: 128, max_train_samples: 200, max_steps: 2,
            disable_tqdm: true}}
  - name: sft
    args: {{model_name_or_path: "{{pretrain}}", max_steps: 2, max_train_samples: 32, answer_eval_samples: 4,
            eval_dataset_name: builtin:sft_eval, disable_tqdm: true}}
  - name: dpo
    args: {{model_name_or_path: "{{sft}}", dataset_name: missing.jsonl}}
""")
    assert run_cli("run", pipeline) == 2
    err = capsys.readouterr().err
    assert "stage 'dpo' failed: dataset not found: missing.jsonl" in err
    assert (tmp_path / "run" / "pretrain" / "metrics.json").is_file()
    assert (tmp_path / "run" / "sft" / "metrics.json").is_file()
    first = (tmp_path / "run" / "sft" / "metrics.json").stat().st_mtime_ns

    assert run_cli("run", pipeline, "--only", "pretrain", "sft") == 0
    out = capsys.readouterr().out
    assert "pretrain: already complete" in out and "sft: already complete" in out
    assert (tmp_path / "run" / "sft" / "metrics.json").stat().st_mtime_ns == first


def test_pipeline_file_errors(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages:\n  - name: pretrain\n    args: {x: 1}\n  - name: eval\n")
    assert run_cli("run", bad) == 2
    assert "stage 'eval' has unknown command 'eval'" in capsys.readouterr().err


def test_pipeline_cleans_data_before_the_tokenizer(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    docs = [f"Story {i}: the little cat walked to the river and saw {i} fish swimming there." for i in range(300)]
    docs += docs[:50] + ["mail me at someone@example.com about the cat and the river please"]
    corpus.write_text("\n".join(json.dumps({"text": d}) for d in docs))
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(f"""
run_dir: {tmp_path / 'run'}
stages:
  - name: clean
    args: {{dataset_name: {corpus}}}
  - name: tokenizer
    args: {{dataset_name: "{{clean}}/clean.jsonl", vocab_size: 300}}
""")
    assert run_cli("run", pipeline) == 0
    cleaned = (tmp_path / "run" / "clean" / "clean.jsonl").read_text()
    assert "someone@example.com" not in cleaned and len(cleaned.splitlines()) == 301
    assert metrics(tmp_path / "run" / "tokenizer")["vocab_size"] == 300


@pytest.mark.parametrize("lora", [False, True])
def test_same_seed_gives_the_same_reward_model_in_one_process(tiny_pretrained, tmp_path, lora):
    """The score head (and LoRA) are drawn before the trainer seeds itself: without a seed of
    their own, two runs in one process (the app, a pipeline) started from different weights."""
    import torch
    from safetensors.torch import load_file

    flags = ["reward", "--model_name_or_path", tiny_pretrained, "--max_train_samples", "32", "--eval_split_size", "0",
             "--max_steps", "1", "--max_length", "64", "--save_strategy", "no", "--seed", "3", *QUIET,
             *(["--use_peft", "--lora_r", "4"] if lora else [])]
    weights = []
    for run in ("a", "b"):
        torch.rand(7)  # whatever ran before in this process drew from the global generator
        assert run_cli(*flags, "--output_dir", tmp_path / run) == 0
        name = "adapter_model.safetensors" if lora else "model.safetensors"
        weights.append(load_file(tmp_path / run / name))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
