"""SimPO with TRL's CPOTrainer (``loss_type="simpo"``): length-normalised preference, no reference model.

    hfllm simpo --config configs/tiny/simpo.yaml
    hfllm simpo --model_name_or_path runs/tiny/sft --dataset_name pairs.jsonl --beta 2.0 --simpo_gamma 0.5

SimPO's implicit reward is the answer's mean log-probability per token times ``beta``; the loss
asks the chosen answer's reward to beat the rejected one's by a margin ``simpo_gamma``. TRL has it
as a loss of CPO; ``cpo_alpha`` (CPO's weight on the chosen answer's language-model loss) is 0 here,
which is SimPO as published (set it above 0 to keep some SFT loss). Everything else is ORPO's stage
(``hfllm.stages._preference.train``): the same data, LoRA, and before/after report on held-out pairs.
"""

from __future__ import annotations

from trl import ModelConfig

from hfllm.errors import UserError
from hfllm.stages._preference import train  # silences trl.experimental's notice: import it first
from hfllm.stages.dpo import DPOScriptArguments
from trl.experimental.cpo import CPOConfig, CPOTrainer

ARGUMENTS = (DPOScriptArguments, CPOConfig, ModelConfig)  # what its flags and config files fill


def check(config) -> None:
    if config.loss_type not in ("simpo", "alphapo"):  # AlphaPO is SimPO with a reward shape of its own
        raise UserError(f"hfllm simpo trains with loss_type simpo (or alphapo), not '{config.loss_type}'")


def main(argv: list[str]) -> int:
    return train("simpo", argv, ARGUMENTS, CPOTrainer, defaults={"loss_type": "simpo", "cpo_alpha": 0.0, "beta": 2.0},
                 check=check)
