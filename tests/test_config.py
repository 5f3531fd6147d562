"""The config loader: YAML + flags into the libraries' dataclasses, with friendly errors."""

import subprocess
import sys
from dataclasses import dataclass, field

import pytest
from transformers import TrainingArguments

from hfllm.config import parse_args, save_config
from hfllm.errors import UserError


@dataclass
class Script:
    dataset_name: str = "x"
    vocab_size: int = 10
    chat_tokens: list[str] = field(default_factory=lambda: ["a"])
    overwrite: bool = False


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return str(path)


def test_yaml_and_flags_reach_library_dataclasses(tmp_path):
    cfg = write(tmp_path, "vocab_size: 20\nlearning_rate: 0.001\nchat_tokens: [p, q]\noutput_dir: o\n")
    (script, targs), explicit = parse_args([Script, TrainingArguments], ["--config", cfg, "--learning_rate", "0.5"])
    assert script.vocab_size == 20 and script.chat_tokens == ["p", "q"]
    assert targs.learning_rate == 0.5  # the command line wins over the file
    assert {"vocab_size", "learning_rate", "chat_tokens", "output_dir"} <= explicit
    assert "seed" not in explicit


def test_defaults_apply_only_to_keys_the_user_did_not_set(tmp_path):
    cfg = write(tmp_path, "logging_steps: 7\n")
    (targs,), _ = parse_args([TrainingArguments], ["--config", cfg], defaults={"logging_steps": 3, "seed": 5})
    assert targs.logging_steps == 7 and targs.seed == 5


def test_unknown_yaml_key_names_key_and_suggests(tmp_path):
    cfg = write(tmp_path, "lerning_rate: 0.1\n")
    with pytest.raises(UserError, match=r"unknown key 'lerning_rate' in .*c.yaml; did you mean 'learning_rate'\?"):
        parse_args([Script, TrainingArguments], ["--config", cfg])


def test_unknown_flag_suggests():
    with pytest.raises(UserError, match=r"unknown option '--vocab_sise'; did you mean 'vocab_size'\?"):
        parse_args([Script], ["--vocab_sise", "3"])


@pytest.mark.parametrize("text,pattern", [
    ("vocab_size: many\n", r"--vocab_size.*invalid int value: 'many'"),
    ("vocab_size: [1, 2]\n", r"'vocab_size' takes a single value"),
    ("overwrite: maybe\n", r"--overwrite: .*expected one of yes/no, true/false"),
    ("- a\n- b\n", r"must be a mapping"),
    ("vocab_size: [1\n", r"not valid YAML at line"),
])
def test_bad_values_are_one_line_errors(tmp_path, text, pattern):
    with pytest.raises(UserError, match=pattern) as info:
        parse_args([Script], ["--config", write(tmp_path, text)])
    assert "\n" not in str(info.value)


def test_missing_config_file():
    with pytest.raises(UserError, match="config file not found: nowhere.yaml"):
        parse_args([Script], ["--config", "nowhere.yaml"])


def test_library_validation_becomes_user_error():
    with pytest.raises(UserError, match="invalid TrainingArguments"):
        parse_args([TrainingArguments], ["--bf16", "true", "--fp16", "true"])


def test_saved_config_never_holds_the_hub_token(tmp_path):
    (targs,), _ = parse_args([TrainingArguments], ["--hub_token", "hf_secret_value", "--output_dir", "o"])
    save_config(tmp_path / "args.yaml", targs)
    text = (tmp_path / "args.yaml").read_text()
    assert "hf_secret_value" not in text and "learning_rate" in text


def test_cli_prints_one_line_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hfllm", "tokenizer", "--vocab_sise", "3"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("hfllm tokenizer: error: unknown option '--vocab_sise'; did you mean "
                                   "'vocab_size'? (see 'hfllm tokenizer --help')")


def test_cli_unknown_command_and_help():
    from hfllm.cli import main

    assert main(["--help"]) == 0
    assert main(["pretrian"]) == 2


def test_the_hub_token_is_kept_out_of_the_pickled_arguments(tmp_path):
    """The Trainer pickles its arguments into training_args.bin (output folder and checkpoints): the stage
    frame takes the token (and the push flag) off them and keeps them on the run, for the push at its end."""
    import torch

    from hfllm.stages._frame import Run
    from hfllm.stages.pretrain import PretrainArguments

    argv = ["--hub_token", "hf_secret_value", "--push_to_hub", "true", "--output_dir", str(tmp_path / "o")]
    run = Run.start("pretrain", argv, [PretrainArguments, TrainingArguments])
    torch.save(run.config, tmp_path / "training_args.bin")
    assert run.config.hub_token is None and b"hf_secret_value" not in (tmp_path / "training_args.bin").read_bytes()
    assert run.hub_token == "hf_secret_value" and run.push and not run.config.push_to_hub  # pushed by hfllm, once
    again = Run.start("pretrain", ["--output_dir", str(tmp_path / "o")], [PretrainArguments, TrainingArguments])
    assert again.hub_token is None and not again.push  # never carried over to the next command


@pytest.mark.parametrize("module, cls, old, new", [
    ("hfllm.generate", "GenerateArguments", "model", "model_name_or_path"),
    ("hfllm.generate", "GenerateArguments", "revision", "model_revision"),
    ("hfllm.app.launch", "ChatArguments", "reward_model", "reward_model_name_or_path"),
    ("hfllm.stages.merge", "MergeArguments", "adapter", "model_name_or_path"),
    ("hfllm.hub.push", "PushArguments", "folder", "model_name_or_path"),
    ("hfllm.data.clean", "CleanArguments", "max_samples", "max_train_samples"),
])
def test_old_spellings_still_work_with_a_one_line_note(tmp_path, capsys, module, cls, old, new):
    """Flags renamed to TRL's names: the old one, on the command line or in a config file, sets the new field."""
    import importlib

    dtype = getattr(importlib.import_module(module), cls)
    value = "7" if "samples" in new else "some/where"
    (parsed,), explicit = parse_args([dtype], [f"--{old}", value], prog="hfllm x")
    assert str(getattr(parsed, new)) == value and new in explicit
    assert capsys.readouterr().err.splitlines() == [f"hfllm x: note: --{old} is deprecated; use --{new}"]
    (tmp_path / "c.yaml").write_text(f"{old}: {value}\n")
    (parsed,), _ = parse_args([dtype], ["--config", str(tmp_path / "c.yaml")], prog="hfllm x")
    assert str(getattr(parsed, new)) == value
    assert capsys.readouterr().err.splitlines() == [f"hfllm x: note: '{old}' in {tmp_path / 'c.yaml'} is deprecated; "
                                                   f"use '{new}'"]
