"""KTO (Kahneman-Tversky optimisation) with trl.KTOTrainer: answers marked good or bad one at a time.

    hfllm kto --config configs/tiny/kto.yaml
    hfllm kto --model_name_or_path runs/tiny/sft --dataset_name runs/tiny/feedback.jsonl --use_peft
    hfllm kto --model_name_or_path runs/tiny/sft --dataset_name thumbs.jsonl   # prompt, completion, label

KTO needs no pairs: a row is one answer and whether it is desirable, a label given with one click.
Rows in TRL's unpaired format (``prompt`` / ``completion`` / ``label``) train as they are; preference
pairs (``builtin:preference``, the playground's votes in ``feedback.jsonl``) become one desirable and
one undesirable row each (hfllm.data.unpaired). The reference model is a frozen copy of the
starting model, or, with LoRA, the same weights with the adapter switched off. Reported before and
after on held-out pairs, as for DPO: how often the policy prefers the chosen answer and by what
log-probability margin, and answer accuracy when the pairs carry an ``answer`` column.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import KTOConfig, KTOTrainer, ModelConfig, get_peft_config

from hfllm.data import unpaired
from hfllm.data.load import ScriptArguments
from hfllm.loading import load_causal_lm
from hfllm.stages._frame import Run
from hfllm.stages._preference import before_after, measure, report_lines


@dataclass
class KTOScriptArguments(ScriptArguments):
    dataset_name: str = field(default="builtin:preference", metadata={
        "help": "unpaired rows (prompt, completion, label) or preference pairs, split into two rows each"})
    eval_split_size: float = field(default=0.1, metadata={"help": "held-out share (<1) or count, if no eval set"})
    eval_samples: int = field(default=200, metadata={"help": "held-out pairs for the before/after numbers"})


ARGUMENTS = (KTOScriptArguments, KTOConfig, ModelConfig)  # what its flags and config files fill


def trainer_rows(ds):
    """Only the columns KTOTrainer reads ('answer' rides along for evaluation)."""
    return None if ds is None else ds.select_columns(list(unpaired.COLUMNS))


def main(argv: list[str]) -> int:
    run = Run.start("kto", argv, ARGUMENTS,
                    defaults={"logging_steps": 10, "save_total_limit": 1, "lora_target_modules": ["all-linear"]},
                    needs_model="kto needs a model to start from: set --model_name_or_path (e.g. the SFT stage folder)")
    args, config, model_args = run.parsed
    run.prepare()
    with config.main_process_first(desc="checking data"):
        train_ds, eval_ds, held_out_pairs, fmt, dropped = unpaired.load_train_eval(args, config.seed)
    if eval_ds is None:
        config.eval_strategy = "no"

    tokenizer = run.load_tokenizer()
    model = run.load_model(load_causal_lm, tokenizer)
    run.default_learning_rate(model)
    # The reference through hfllm's safe loader too (TRL would reload it by path itself); LoRA needs none.
    reference = None if model_args.use_peft else run.load_model(load_causal_lm)
    before = measure(model, tokenizer, held_out_pairs, args.eval_samples)

    trainer = KTOTrainer(model=model, ref_model=reference, args=config, train_dataset=trainer_rows(train_ds),
                         eval_dataset=trainer_rows(eval_ds), processing_class=tokenizer,
                         peft_config=get_peft_config(model_args))
    result = run.train(trainer)
    final = trainer.evaluate() if eval_ds is not None else {}
    after = measure(trainer.model, tokenizer, held_out_pairs, args.eval_samples)

    run.save(trainer, tokenizer)
    desirable = sum(train_ds["label"])
    run.finish({
        "model_name_or_path": model_args.model_name_or_path, "dataset_name": args.dataset_name,
        "dataset_format": fmt, "train_rows": len(train_ds), "desirable_rows": desirable,
        "undesirable_rows": len(train_ds) - desirable, "dropped_rows": dropped, "use_peft": model_args.use_peft,
        "beta": config.beta, "global_step": result.global_step, "train_loss": result.training_loss,
        "train_seconds": round(result.metrics.get("train_runtime", 0), 1),
        "reward_margin": final.get("eval_rewards/margins"), "kl": final.get("eval_kl"),
        **before_after(before, after),
    }, trainer, plot="KTO loss", lines=[*report_lines(before, after),
                                        f"saved {'LoRA adapter' if model_args.use_peft else 'model'} to {run.output_dir}"])
    return 0
