"""ORPO with TRL's ORPOTrainer: supervised fine-tuning and preference in one loss, with no reference model.

    hfllm orpo --config configs/tiny/orpo.yaml
    hfllm orpo --model_name_or_path runs/tiny/pretrain --dataset_name pairs.jsonl --output_dir runs/mine/orpo
    hfllm orpo --model_name_or_path runs/tiny/sft --use_peft --lora_r 16

ORPO adds to the chosen answer's language-model loss a term that pushes the odds of the rejected
answer below those of the chosen one (weighted by ``beta``, the paper's lambda). It needs no
reference model, so one copy of the weights is in memory, and it can start from a base model as
well as from an SFT one. ``hfllm simpo`` (stages/simpo.py) runs through the same ``train`` (stages/_preference.py, DPO's too)
with SimPO's loss. Reported before and after on held-out pairs, as for DPO: how often the policy prefers the
chosen answer, the log-probability margin, and answer accuracy when the pairs carry an ``answer``.
TRL keeps ORPO and CPO/SimPO under ``trl.experimental``: their arguments may change between releases.
"""

from __future__ import annotations

from trl import ModelConfig

from hfllm.stages._preference import train  # silences trl.experimental's notice: import it first
from hfllm.stages.dpo import DPOScriptArguments  # the same pairs, held out the same way
from trl.experimental.orpo import ORPOConfig, ORPOTrainer

ARGUMENTS = (DPOScriptArguments, ORPOConfig, ModelConfig)  # what its flags and config files fill


def main(argv: list[str]) -> int:
    return train("orpo", argv, ARGUMENTS, ORPOTrainer)
