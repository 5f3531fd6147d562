"""GRPO with trl.GRPOTrainer: rewards for groups of sampled answers, no value model.

    hfllm grpo --config configs/tiny/grpo.yaml
    hfllm grpo --model_name_or_path runs/tiny/sft --reward_funcs answer_partial exact_answer --reward_weights 1 1
    hfllm grpo --model_name_or_path runs/tiny/sft --reward_model_name_or_path runs/tiny/reward --reward_funcs exact_answer

The options, the rewards and the before/after measurement are shared with
``hfllm rloo``: see hfllm/group_rl.py.
"""

from __future__ import annotations

from trl import GRPOConfig, GRPOTrainer, ModelConfig

# DEFAULTS: hfllm's over TRL's, which run_stage applies; hfllm inspect reads a stage's ARGUMENTS and DEFAULTS.
from hfllm.stages.group_rl import DEFAULTS, RLScriptArguments, run_stage  # noqa: F401

ARGUMENTS = (RLScriptArguments, GRPOConfig, ModelConfig)  # what its flags and config files fill


def main(argv: list[str]) -> int:
    return run_stage(argv, "grpo", ARGUMENTS, GRPOTrainer)
