"""Pretraining end to end on a tiny model: learning, outputs, resume, bad inputs."""

import shutil
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from conftest import QUIET, TINY_MODEL_FLAGS, metrics, run_cli



def test_pretraining_learns_and_saves_a_loadable_model(tiny_pretrained):
    m = metrics(tiny_pretrained)
    # ln(1024) ~ 6.9 at the start; 60 steps on the built-in corpus must cut it by well over a nat.
    assert m["initial_eval_loss"] > 6.0
    assert m["eval_loss"] < m["initial_eval_loss"] - 2.0
    assert m["perplexity"] < m["initial_perplexity"] / 7
    folder = Path(tiny_pretrained)
    for name in ["model.safetensors", "config.json", "tokenizer.json", "generation_config.json", "loss.png"]:
        assert (folder / name).is_file(), name
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.generation_config.eos_token_id == 2 and model.generation_config.pad_token_id == 0


def _pretrain(tokenizer, out, *extra):
    return run_cli("pretrain", "--tokenizer_name_or_path", tokenizer, *TINY_MODEL_FLAGS, "--max_train_samples", "600",
                   "--max_steps", "12", "--per_device_train_batch_size", "4", "--learning_rate", "2e-3",
                   "--save_steps", "6", "--eval_steps", "6", "--seed", "7", "--output_dir", out, *QUIET, *extra)


def test_resume_from_checkpoint_reaches_the_same_loss(tiny_tokenizer, tmp_path, capsys):
    assert _pretrain(tiny_tokenizer, tmp_path / "full") == 0
    full = metrics(tmp_path / "full")

    # Simulate a run killed after its step-6 checkpoint: only checkpoint-6 (and the run's marker) is left.
    assert _pretrain(tiny_tokenizer, tmp_path / "cut") == 0
    cut = tmp_path / "cut"
    for item in cut.iterdir():
        if item.name not in ("checkpoint-6", "hfllm_run.json"):
            shutil.rmtree(item) if item.is_dir() else item.unlink()
    capsys.readouterr()
    assert _pretrain(tiny_tokenizer, cut) == 0
    assert "resuming the interrupted run from" in capsys.readouterr().out
    resumed = metrics(cut)
    assert resumed["global_step"] == 12
    assert resumed["eval_loss"] == pytest.approx(full["eval_loss"], abs=1e-3)


@pytest.mark.parametrize("model_type", ["qwen2", "gpt2"])
def test_other_architectures_pretrain(tiny_tokenizer, tmp_path, model_type):
    out = tmp_path / model_type
    assert run_cli("pretrain", "--tokenizer_name_or_path", tiny_tokenizer, "--model_type", model_type,
                   *TINY_MODEL_FLAGS, "--max_train_samples", "300", "--max_steps", "3",
                   "--per_device_train_batch_size", "2", "--output_dir", out, *QUIET) == 0
    assert metrics(out)["model_type"] == model_type


@pytest.mark.parametrize("flags,message", [
    ([], "pretrain needs a tokenizer"),
    (["--tokenizer_name_or_path", "TOK", "--block_size", "512"], "block_size 512 is longer than the model's context"),
    (["--tokenizer_name_or_path", "TOK", "--hidden_size", "62"], "not divisible by num_attention_heads"),
    (["--tokenizer_name_or_path", "TOK", "--hidden_size", "60"], "RoPE requires an even rotary dimension"),
    (["--tokenizer_name_or_path", "TOK", "--learning_rat", "1"], "did you mean 'learning_rate'"),
])
def test_bad_inputs(tiny_tokenizer, tmp_path, capsys, flags, message):
    flags = [tiny_tokenizer if f == "TOK" else f for f in flags]
    assert run_cli("pretrain", *TINY_MODEL_FLAGS, *flags, "--max_steps", "1", "--output_dir", tmp_path / "o", *QUIET) == 2
    assert message in capsys.readouterr().err


def test_preset_training_defaults_apply_where_not_set(tiny_tokenizer, tmp_path, capsys):
    import yaml

    from hfllm.model import PRESET_TRAINING

    # From scratch with --learning_rate given: the preset's warmup and schedule, the user's rate, said first.
    assert _pretrain(tiny_tokenizer, tmp_path / "p", "--max_steps", "2", "--eval_strategy", "no") == 0
    out = capsys.readouterr().out
    assert "training defaults of preset 'tiny' (set any to override): warmup_steps 0.1, lr_scheduler_type cosine" in out
    saved = yaml.safe_load((tmp_path / "p" / "hfllm_args.yaml").read_text())
    assert saved["learning_rate"] == 2e-3 and saved["lr_scheduler_type"] == "cosine" and saved["warmup_steps"] == 0.1
    # Continued pretraining keeps TrainingArguments' own values.
    assert run_cli("pretrain", "--model_name_or_path", tmp_path / "p", "--max_steps", "1", "--max_train_samples",
                   "200", "--per_device_train_batch_size", "4", "--eval_strategy", "no", "--save_strategy", "no",
                   "--output_dir", tmp_path / "q", *QUIET) == 0
    assert "training defaults of preset" not in capsys.readouterr().out
    saved = yaml.safe_load((tmp_path / "q" / "hfllm_args.yaml").read_text())
    assert saved["learning_rate"] == 5e-5 and saved["lr_scheduler_type"] == "linear"
    assert PRESET_TRAINING["tiny"]["learning_rate"] == 2e-3
