"""Every shipped recipe (configs/recipes/<model>/*.yaml) parses, and runs 2 steps on its family's replica.

The recipes are written for a GPU; here the model id is swapped for the replica's folder, the Hub
dataset for a few local rows of the same shape, and the CPU override of the recipes' headers
(--bf16 false --activation_checkpointing false) plus test sizes are added on the command line.
By default SmolLM2's four recipes run (a 49k vocabulary: seconds each, and the same keys as the
others'); the twelve on 128-152k vocabularies take 10-90 s each on 2 cores and are extras
(`pytest -m extra tests/test_recipes.py`).
"""

import json
from pathlib import Path

import pytest
import yaml

from conftest import run_cli
from replicas import RECIPE_REPLICAS, replica

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "configs" / "recipes").glob("*/*.yaml"))
CPU = ["--bf16", "false", "--activation_checkpointing", "false"]
SIZES = {  # test sizes only: every other choice is the recipe's
    "sft": ["--max_length", "48", "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1"],
    "dpo": ["--max_length", "48", "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1",
            "--eval_samples", "4"],
    "grpo": ["--max_completion_length", "6", "--num_generations", "2", "--per_device_train_batch_size", "2",
             "--gradient_accumulation_steps", "1"],
}


def stage_of(recipe: Path) -> str:
    return recipe.stem.split("_")[0]


def stage_module(stage: str):
    """The stage's module: its ARGUMENTS (what its flags and config files fill) and DEFAULTS."""
    import importlib

    from hfllm.stages import STAGES

    return importlib.import_module(STAGES[stage].module)


def test_every_model_has_the_four_recipes():
    assert sorted(p.name for p in (ROOT / "configs" / "recipes").iterdir()) == sorted(RECIPE_REPLICAS)
    for folder in RECIPE_REPLICAS:
        names = sorted(p.stem for p in (ROOT / "configs" / "recipes" / folder).glob("*.yaml"))
        assert names == ["dpo_lora", "grpo_lora", "sft_lora", "sft_qlora"], folder


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_keys_parse_for_a_gpu(recipe):
    from hfllm.config import parse_args
    from hfllm.stages._frame import stage_defaults

    values = yaml.safe_load(recipe.read_text())
    assert values["model_name_or_path"].endswith("/" + recipe.parent.name)  # the folder names the model
    stage = stage_module(stage_of(recipe))
    (script, config, model), explicit = parse_args(stage.ARGUMENTS, ["--config", str(recipe)],  # as the stages do
                                                   defaults=stage_defaults(stage_of(recipe), stage.DEFAULTS))
    assert set(values) <= explicit
    assert config.bf16 and model.use_peft and (model.load_in_4bit == recipe.stem.endswith("qlora"))


def local_rows(stage: str, path: Path) -> Path:
    """A few rows shaped like the recipe's Hub dataset (Capybara, UltraFeedback, DeepMath)."""
    rows = []
    for i in range(8):
        user, answer = f"What is {i} plus {i}?", f"It is {2 * i}."
        if stage == "sft":
            rows.append({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer},
                                      {"role": "user", "content": "And twice that?"},
                                      {"role": "assistant", "content": f"{4 * i}."}]})
        elif stage == "dpo":
            rows.append({"chosen": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}],
                         "rejected": [{"role": "user", "content": user},
                                      {"role": "assistant", "content": f"It is {2 * i + 1}."}],
                         "score_chosen": 8.0, "score_rejected": 2.0})
        else:
            rows.append({"prompt": [{"role": "user", "content": user}], "solution": str(2 * i)})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


RUN_BY_DEFAULT = "SmolLM2-360M-Instruct"


@pytest.mark.parametrize("recipe", [
    pytest.param(r, id=f"{r.parent.name}/{r.stem}", marks=() if r.parent.name == RUN_BY_DEFAULT else pytest.mark.extra)
    for r in RECIPES])
def test_recipe_runs_two_steps_on_its_replica(recipe, tmp_path):
    stage = stage_of(recipe)
    out = tmp_path / "out"
    code = run_cli(stage, "--config", recipe, "--model_name_or_path", replica(RECIPE_REPLICAS[recipe.parent.name]),
                   "--dataset_name", local_rows(stage, tmp_path / "data.jsonl"), "--output_dir", out,
                   *CPU, *SIZES[stage], "--max_steps", "2", "--logging_steps", "1", "--save_strategy", "no",
                   "--disable_tqdm", "true")
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_step"] == 2 and metrics["use_peft"]
    assert (out / "adapter_config.json").is_file()
    if stage == "sft":
        mode = {"qwen2.5": "trl_patch", "qwen3": "trl_patch", "llama3.2": "per_turn", "smollm2": "per_turn"}
        assert metrics["assistant_loss"] == mode[RECIPE_REPLICAS[recipe.parent.name]]
