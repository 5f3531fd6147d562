"""Every YAML file shipped under configs/ parses against its command's own arguments: an unknown or
misspelt key, a value of the wrong type or a renamed option fails here, not in a user's first run.
(configs/accelerate/ is accelerate's: tests/test_scale.py reads those with accelerate's own loader.)"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from hfllm.config import parse_args
from hfllm.model import training_defaults
from hfllm.pipeline import read_pipeline
from hfllm.stages import STAGES

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
SHIPPED = sorted(p for p in CONFIGS.rglob("*.yaml") if "accelerate" not in p.relative_to(CONFIGS).parts)


def parse(command: str, argv: list[str]):
    """The command's dataclasses filled from argv, as its main() would fill them (without running it)."""
    module = importlib.import_module(STAGES[command].module)
    return parse_args(module.ARGUMENTS, argv, prog=f"hfllm {command}", defaults=training_defaults())


def test_every_shipped_config_is_checked():
    assert {p.stem for p in SHIPPED} >= {"tokenizer", "pretrain", "sft", "reward", "dpo", "grpo", "ppo", "pipeline"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_shipped_config_parses_against_its_command(path, capsys):
    if path.stem == "pipeline":
        run_dir, stages, _ = read_pipeline(str(path))
        outputs = {s.name: str(Path(run_dir) / s.name) for s in stages}
        for stage in stages:  # each stage's config file and its args, as `hfllm run` passes them
            parse(stage.command, stage.argv(outputs))
    else:  # recipes/<model>/<command>_<variant>.yaml: sft_lora.yaml is read by hfllm sft
        command = path.stem.split("_")[0] if "recipes" in path.relative_to(CONFIGS).parts else path.stem
        assert command in STAGES, f"{path}: no command of that name reads it; name it after its command"
        parse(command, ["--config", str(path)])
    assert "deprecated" not in capsys.readouterr().err  # shipped files use the current names


def test_an_unknown_key_fails(tmp_path):
    from hfllm.errors import UserError

    bad = tmp_path / "sft.yaml"
    bad.write_text((CONFIGS / "tiny" / "sft.yaml").read_text() + "lerning_rate: 1.0e-3\n")
    with pytest.raises(UserError, match="unknown key 'lerning_rate'"):
        parse("sft", ["--config", str(bad)])
