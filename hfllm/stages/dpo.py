"""Direct preference optimisation with trl.DPOTrainer, from an SFT model.

    hfllm dpo --config configs/tiny/dpo.yaml
    hfllm dpo --model_name_or_path runs/tiny/sft --dataset_name pairs.jsonl --output_dir runs/tiny/dpo
    hfllm dpo --model_name_or_path runs/tiny/sft --use_peft --lora_r 16     # reference = adapter disabled

The reference model is a frozen copy of the starting model, or, with LoRA, the same
weights with the adapter switched off (no second copy in memory). Reported before
and after on held-out pairs: how often the policy itself prefers the chosen answer
(log-probability margin, no reference needed), TRL's implicit-reward margins, and
answer accuracy when the pairs carry an ``answer`` column, to show that aligning
did not cost what SFT taught.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import DPOConfig, DPOTrainer, ModelConfig

from hfllm.data.load import ScriptArguments
from hfllm.stages._preference import train


@dataclass
class DPOScriptArguments(ScriptArguments):
    dataset_name: str = field(default="builtin:preference", metadata={"help": "preference pairs"})
    eval_split_size: float = field(default=0.1, metadata={"help": "held-out share (<1) or count, if no eval set"})
    eval_samples: int = field(default=200, metadata={"help": "held-out pairs for the before/after numbers"})
    rule_checks: list[str] = field(default_factory=list, metadata={
        "help": "rule rewards (hfllm.rewards names or import paths) whose mean on held-out greedy answers is "
                "reported before/after, e.g. friendly_closing; not trained on"})


ARGUMENTS = (DPOScriptArguments, DPOConfig, ModelConfig)  # what its flags and config files fill
DEFAULTS = {"logging_steps": 10, "save_total_limit": 1, "lora_target_modules": ["all-linear"]}  # hfllm's, over TRL's


def main(argv: list[str]) -> int:
    return train("dpo", argv, ARGUMENTS, DPOTrainer, defaults=DEFAULTS,
                 needs_model="dpo needs a model to start from: set --model_name_or_path (e.g. the SFT stage folder)")
