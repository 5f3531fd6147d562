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

from trl import DPOConfig, DPOTrainer, ModelConfig, get_peft_config

from hfllm.data import formats
from hfllm.data.load import ScriptArguments
from hfllm.loading import load_causal_lm
from hfllm.scoring import answer_accuracy, preference_accuracy
from hfllm.stages._frame import Run


@dataclass
class DPOScriptArguments(ScriptArguments):
    dataset_name: str = field(default="builtin:preference", metadata={"help": "preference pairs"})
    eval_split_size: float = field(default=0.1, metadata={"help": "held-out share (<1) or count, if no eval set"})
    eval_samples: int = field(default=200, metadata={"help": "held-out pairs for the before/after numbers"})


def measure(model, tokenizer, eval_ds, n):
    if eval_ds is None or not n:
        return {}
    out = preference_accuracy(model, tokenizer, eval_ds.select(range(min(n, len(eval_ds)))))
    if "answer" in eval_ds.column_names:
        out.update(answer_accuracy(model, tokenizer, eval_ds, n))
    return out


ARGUMENTS = (DPOScriptArguments, DPOConfig, ModelConfig)  # what its flags and config files fill
DEFAULTS = {"logging_steps": 10, "save_total_limit": 1, "lora_target_modules": ["all-linear"]}  # hfllm's, over TRL's


def main(argv: list[str]) -> int:
    run = Run.start("dpo", argv, ARGUMENTS, defaults=DEFAULTS,
                    needs_model="dpo needs a model to start from: set --model_name_or_path (e.g. the SFT stage folder)")
    args, config, model_args = run.parsed
    run.prepare()
    with config.main_process_first(desc="checking data"):
        train_ds, eval_ds, fmt, rows = formats.load_train_eval(args, "preference", config.seed)
    if eval_ds is None:
        config.eval_strategy = "no"

    tokenizer = run.load_tokenizer()
    # Loaded from a folder (or the Hub), so DPOTrainer can load the reference from the same place.
    model = run.load_model(load_causal_lm, tokenizer)
    before = measure(model, tokenizer, eval_ds, args.eval_samples)

    trainer = DPOTrainer(model=model, args=config, train_dataset=formats.pair_columns(train_ds),
                         eval_dataset=formats.pair_columns(eval_ds), processing_class=tokenizer,
                         peft_config=get_peft_config(model_args))
    result = run.train(trainer)
    final = trainer.evaluate() if eval_ds is not None else {}
    after = measure(trainer.model, tokenizer, eval_ds, args.eval_samples)

    run.save(trainer, tokenizer)
    lines = []
    if before:
        lines.append(f"\nheld-out pairs: policy prefers chosen {before['preference_accuracy']:.1%} -> "
                     f"{after['preference_accuracy']:.1%}, log-prob margin {before['logprob_margin']:.2f} -> "
                     f"{after['logprob_margin']:.2f}")
    if "answer_accuracy" in before:
        lines.append(f"answer accuracy: {before['answer_accuracy']:.1%} -> {after['answer_accuracy']:.1%}")
    run.finish({
        "model_name_or_path": model_args.model_name_or_path, "dataset_name": args.dataset_name,
        "train_pairs": len(train_ds), "dropped_empty_pairs": rows.empty, **rows.metrics(),
        "use_peft": model_args.use_peft,
        "beta": config.beta, "global_step": result.global_step, "train_loss": result.training_loss,
        "train_seconds": round(result.metrics.get("train_runtime", 0), 1),
        "reward_margin": final.get("eval_rewards/margins"), "reward_accuracy": final.get("eval_rewards/accuracies"),
        **{f"{k}_before": v for k, v in before.items() if k != "answer_examples"}, **after,
    }, trainer, plot="DPO loss", lines=[*lines, f"saved {'LoRA adapter' if model_args.use_peft else 'model'} to "
                                                f"{run.output_dir}"])
    return 0
