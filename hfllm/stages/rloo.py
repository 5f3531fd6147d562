"""RLOO with trl.RLOOTrainer: each answer's baseline is the mean reward of the others for its prompt.

    hfllm rloo --model_name_or_path runs/tiny/sft --reward_funcs answer_partial
    hfllm rloo --model_name_or_path runs/tiny/sft --reward_model_name_or_path runs/tiny/reward

Same options as ``hfllm grpo`` (hfllm/group_rl.py), with trl.RLOOConfig passed through.
"""

from __future__ import annotations

from trl import ModelConfig, RLOOConfig, RLOOTrainer

from hfllm.stages.group_rl import RLScriptArguments, run_stage

ARGUMENTS = (RLScriptArguments, RLOOConfig, ModelConfig)  # what its flags and config files fill


def main(argv: list[str]) -> int:
    return run_stage(argv, "rloo", ARGUMENTS, RLOOTrainer)
