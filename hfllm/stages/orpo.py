"""ORPO with TRL's ORPOTrainer: supervised fine-tuning and preference in one loss, with no reference model.

    hfllm orpo --config configs/tiny/orpo.yaml
    hfllm orpo --model_name_or_path runs/tiny/pretrain --dataset_name pairs.jsonl --output_dir runs/mine/orpo
    hfllm orpo --model_name_or_path runs/tiny/sft --use_peft --lora_r 16

ORPO adds to the chosen answer's language-model loss a term that pushes the odds of the rejected
answer below those of the chosen one (weighted by ``beta``, the paper's lambda). It needs no
reference model, so one copy of the weights is in memory, and it can start from a base model as
well as from an SFT one. ``hfllm simpo`` (stages/simpo.py) runs through ``train`` below with SimPO's
loss. Reported before and after on held-out pairs, as for DPO: how often the policy prefers the
chosen answer, the log-probability margin, and answer accuracy when the pairs carry an ``answer``.
TRL keeps ORPO and CPO/SimPO under ``trl.experimental``: their arguments may change between releases.
"""

from __future__ import annotations

import os

from trl import ModelConfig, get_peft_config

from hfllm.data import formats
from hfllm.loading import load_causal_lm
from hfllm.stages._frame import Run
from hfllm.stages._preference import before_after, measure, report_lines
from hfllm.stages.dpo import DPOScriptArguments  # the same pairs, held out the same way

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # its notice on every run; the docstring says it once
from trl.experimental.orpo import ORPOConfig, ORPOTrainer  # noqa: E402

ARGUMENTS = (DPOScriptArguments, ORPOConfig, ModelConfig)  # what its flags and config files fill


def train(stage: str, argv: list[str], arguments: tuple, trainer_class, *, defaults: dict | None = None,
          check=None) -> int:
    """A reference-free trainer from TRL on preference pairs, with the before/after report; ``check(config)``
    refuses what the stage does not do before anything loads."""
    run = Run.start(stage, argv, arguments, defaults={"logging_steps": 10, "save_total_limit": 1,
                                                      "lora_target_modules": ["all-linear"], **(defaults or {})},
                    needs_model=f"{stage} needs a model to start from: set --model_name_or_path")
    args, config, model_args = run.parsed
    if check:
        check(config)
    run.prepare()
    with config.main_process_first(desc="checking data"):
        train_ds, eval_ds, fmt, dropped = formats.load_train_eval(args, "preference", config.seed)
    if eval_ds is None:
        config.eval_strategy = "no"

    tokenizer = run.load_tokenizer()
    model = run.load_model(load_causal_lm, tokenizer)
    before = measure(model, tokenizer, eval_ds, args.eval_samples)

    trainer = trainer_class(model=model, args=config, train_dataset=formats.pair_columns(train_ds),
                            eval_dataset=formats.pair_columns(eval_ds), processing_class=tokenizer,
                            peft_config=get_peft_config(model_args))
    result = run.train(trainer)
    final = trainer.evaluate() if eval_ds is not None else {}
    after = measure(trainer.model, tokenizer, eval_ds, args.eval_samples)

    run.save(trainer, tokenizer)
    run.finish({
        "model_name_or_path": model_args.model_name_or_path, "dataset_name": args.dataset_name,
        "dataset_format": fmt, "train_pairs": len(train_ds), "dropped_empty_pairs": dropped,
        "use_peft": model_args.use_peft, "beta": config.beta, "global_step": result.global_step,
        "train_loss": result.training_loss, "train_seconds": round(result.metrics.get("train_runtime", 0), 1),
        "reward_margin": final.get("eval_rewards/margins"), "reward_accuracy": final.get("eval_rewards/accuracies"),
        "nll_loss": final.get("eval_nll_loss"), **before_after(before, after),
    }, trainer, plot=f"{stage.upper()} loss", lines=[
        *report_lines(before, after), f"saved {'LoRA adapter' if model_args.use_peft else 'model'} to {run.output_dir}"])
    return 0


def main(argv: list[str]) -> int:
    return train("orpo", argv, ARGUMENTS, ORPOTrainer)
