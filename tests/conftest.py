"""Shared fixtures: a tiny tokenizer and a tiny pretrained model, built once per session.

Everything is built from config and saved to disk, then loaded through the same
``from_pretrained`` path a Hub id takes. Sizes are chosen to keep each training
run to seconds on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach the Hub
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# A tiny Llama: ~0.2 M parameters with the 1 k test vocabulary.
TINY_MODEL_FLAGS = ["--hidden_size", "64", "--num_hidden_layers", "2", "--num_attention_heads", "4",
                    "--intermediate_size", "128", "--max_position_embeddings", "128"]
QUIET = ["--disable_tqdm", "true", "--report_to", "none"]


def metrics(folder) -> dict:
    """A stage folder's metrics.json."""
    return json.loads((Path(folder) / "metrics.json").read_text())


def run_cli(*argv) -> int:
    """Run `hfllm ...` in-process, as a user would from the shell."""
    from hfllm.cli import main

    return main([str(a) for a in argv])


@pytest.fixture
def spy(monkeypatch):
    """Records (class name, keyword arguments) of every AutoModelForCausalLM / AutoTokenizer from_pretrained."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hfllm import loading

    calls = []
    for cls in (AutoModelForCausalLM, AutoTokenizer):
        original = cls.from_pretrained.__func__

        def recording(klass, name, *args, _original=original, _cls=cls, **kwargs):
            calls.append((_cls.__name__, kwargs))
            return _original(klass, name, *args, **kwargs)
        monkeypatch.setattr(cls, "from_pretrained", classmethod(recording))
    monkeypatch.setattr(loading, "_warned_remote", set())  # warnings are once per process and repo
    return calls


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    # Generated built-in data goes to a per-session cache, never the user's home.
    os.environ["HFLLM_CACHE"] = str(tmp_path_factory.mktemp("hfllm-cache"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory, _cache_dir) -> str:
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    assert run_cli("tokenizer", "--dataset_name", "builtin:pretrain", "--vocab_size", "1024",
                   "--max_train_samples", "3000", "--output_dir", out) == 0
    return str(out)


@pytest.fixture(scope="session")
def tiny_pretrained(tmp_path_factory, tiny_tokenizer) -> str:
    """A tiny model pretrained for a few dozen steps: enough to generate words."""
    out = tmp_path_factory.mktemp("pre") / "pretrain"
    assert run_cli("pretrain", "--tokenizer_name_or_path", tiny_tokenizer, *TINY_MODEL_FLAGS,
                   "--max_train_samples", "2000", "--max_steps", "60", "--learning_rate", "3e-3",
                   "--warmup_steps", "0", "--lr_scheduler_type", "linear",  # the schedule the tests were tuned on
                   "--per_device_train_batch_size", "16", "--eval_steps", "30", "--save_steps", "1000",
                   "--output_dir", out, *QUIET) == 0
    return str(out)


@pytest.fixture(scope="session")
def learned_pretrained(tmp_path_factory, tiny_tokenizer) -> str:
    """A model pretrained long enough to know the built-in facts (~2 min): for tests of learning.

    600 updates: with 300 it completed few held-out facts and SFT could not bring them out."""
    out = tmp_path_factory.mktemp("learned") / "pretrain"
    assert run_cli("pretrain", "--tokenizer_name_or_path", tiny_tokenizer, "--hidden_size", "128",
                   "--num_hidden_layers", "3", "--num_attention_heads", "4", "--intermediate_size", "384",
                   "--max_position_embeddings", "128", "--max_steps", "600", "--learning_rate", "3e-3",
                   "--warmup_steps", "20", "--lr_scheduler_type", "cosine", "--per_device_train_batch_size", "16",
                   "--eval_steps", "1000", "--save_strategy", "no", "--seed", "0", "--output_dir", out, *QUIET) == 0
    return str(out)


# Random batches, as configs/tiny/sft.yaml has: the learning tests after SFT were tuned on that model.
SFT_FLAGS = ["--dataset_name", "builtin:sft", "--eval_dataset_name", "builtin:sft_eval", "--max_length", "96",
             "--per_device_train_batch_size", "16", "--train_sampling_strategy", "random", "--save_strategy", "no",
             "--seed", "0", *QUIET]


@pytest.fixture(scope="session")
def tiny_sft(learned_pretrained, tmp_path_factory) -> str:
    """The learned model after full SFT on the built-in conversations."""
    out = tmp_path_factory.mktemp("sft") / "sft"
    assert run_cli("sft", "--model_name_or_path", learned_pretrained, *SFT_FLAGS, "--num_train_epochs", "1",
                   "--learning_rate", "3e-4", "--output_dir", out) == 0
    return str(out)


@pytest.fixture(scope="session")
def tiny_reward(tiny_sft, tmp_path_factory) -> str:
    """A reward model trained from the tiny SFT model on the built-in preference pairs."""
    out = tmp_path_factory.mktemp("reward") / "reward"
    assert run_cli("reward", "--model_name_or_path", tiny_sft, "--dataset_name", "builtin:preference",
                   "--eval_dataset_name", "builtin:preference_eval", "--num_train_epochs", "1",
                   "--learning_rate", "5e-4", "--per_device_train_batch_size", "16", "--max_length", "96",
                   "--save_strategy", "no", "--seed", "0", "--output_dir", out, *QUIET) == 0
    return str(out)


@pytest.fixture(scope="session")
def tiny_tone_reward(tiny_sft, tmp_path_factory) -> str:
    """A reward model trained from the tiny SFT model on the tone pairs (the right answer with a friendly closing
    beats the plain answer or a rude reply): a preference it learns to judge (tests/test_reward_dpo.py)."""
    out = tmp_path_factory.mktemp("tone_reward") / "reward"
    assert run_cli("reward", "--model_name_or_path", tiny_sft, "--dataset_name", "builtin:tone",
                   "--eval_dataset_name", "builtin:tone_eval", "--num_train_epochs", "1", "--learning_rate", "5e-4",
                   "--per_device_train_batch_size", "16", "--max_length", "96", "--save_strategy", "no",
                   "--seed", "0", "--output_dir", out, *QUIET) == 0
    return str(out)


@pytest.fixture(scope="session")
def tiny_tone_dpo(tiny_sft, tmp_path_factory) -> str:
    """The tiny SFT model after DPO on the tone pairs (tests/test_reward_dpo.py), with the friendly-closing rule
    checked before and after: the closing it learned is where PPO on the tone reward model starts from."""
    out = tmp_path_factory.mktemp("tone_dpo") / "dpo"
    assert run_cli("dpo", "--model_name_or_path", tiny_sft, "--dataset_name", "builtin:tone",
                   "--eval_dataset_name", "builtin:tone_eval", "--rule_checks", "friendly_closing",
                   "--max_steps", "60", "--beta", "0.1", "--learning_rate", "1e-4", "--per_device_train_batch_size",
                   "16", "--max_length", "96", "--save_strategy", "no", "--eval_samples", "208", "--seed", "0",
                   "--output_dir", out, *QUIET) == 0
    return str(out)
