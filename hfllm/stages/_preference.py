"""The preference stages' shared parts: training on pairs (dpo, orpo, simpo) and the before/after report
(with kto): the same numbers on held-out pairs in the same words."""

from __future__ import annotations

import os

from trl import get_peft_config

from hfllm.data import formats
from hfllm.loading import load_causal_lm
from hfllm.rewards import resolve_reward_funcs
from hfllm.scoring import answer_accuracy, preference_accuracy
from hfllm.stages._frame import Run

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # ORPO/CPO's notice on every run; their docstrings say it once


def measure(model, tokenizer, eval_ds, n, checks=()):
    """Preference accuracy and log-prob margin on up to n held-out pairs (+ answer accuracy with an 'answer',
    and the rule checks on the same greedy answers)."""
    if eval_ds is None or not n:
        return {}
    out = preference_accuracy(model, tokenizer, eval_ds.select(range(min(n, len(eval_ds)))))
    if "answer" in eval_ds.column_names:
        out.update(answer_accuracy(model, tokenizer, eval_ds, n, checks=checks))
    return out


def report_lines(before: dict, after: dict) -> list[str]:
    """What changed on the held-out pairs: preference, log-prob margin, answer accuracy (when measured)."""
    lines = []
    if before:
        lines.append(f"\nheld-out pairs: policy prefers chosen {before['preference_accuracy']:.1%} -> "
                     f"{after['preference_accuracy']:.1%}, log-prob margin {before['logprob_margin']:.2f} -> "
                     f"{after['logprob_margin']:.2f}")
    if "answer_accuracy" in before:
        lines.append(f"answer accuracy: {before['answer_accuracy']:.1%} -> {after['answer_accuracy']:.1%}")
    lines += [f"rule check {k.removeprefix('check_')} (greedy answers): {before[k]:.1%} -> {after[k]:.1%}"
              for k in after if k.startswith("check_") and k in before]
    return lines


def before_after(before: dict, after: dict) -> dict:
    """metrics.json's entries: the numbers after, and before under ``<name>_before`` (examples after only)."""
    return {**{f"{k}_before": v for k, v in before.items() if k != "answer_examples"}, **after}


def train(stage: str, argv: list[str], arguments: tuple, trainer_class, *, defaults: dict | None = None,
          check=None, needs_model: str = "") -> int:
    """A TRL trainer on preference pairs (DPO, ORPO, SimPO), with the before/after report; ``check(config)``
    refuses what the stage does not do before anything loads. The model is loaded from its folder (or the
    Hub), so a trainer that needs a reference (DPO) loads it from the same place."""
    run = Run.start(stage, argv, arguments, defaults={"logging_steps": 10, "save_total_limit": 1,
                                                      "lora_target_modules": ["all-linear"], **(defaults or {})},
                    needs_model=needs_model or f"{stage} needs a model to start from: set --model_name_or_path")
    args, config, model_args = run.parsed
    if check:
        check(config)
    checks = resolve_reward_funcs(args.rule_checks)
    run.prepare()
    with config.main_process_first(desc="checking data"):
        train_ds, eval_ds, fmt, rows = formats.load_train_eval(args, "preference", config.seed)
    if eval_ds is None:
        config.eval_strategy = "no"

    tokenizer = run.load_tokenizer()
    model = run.load_model(load_causal_lm, tokenizer)
    run.default_learning_rate(model)
    before = measure(model, tokenizer, eval_ds, args.eval_samples, checks)

    trainer = trainer_class(model=model, args=config, train_dataset=formats.pair_columns(train_ds),
                            eval_dataset=formats.pair_columns(eval_ds), processing_class=tokenizer,
                            peft_config=get_peft_config(model_args))
    result = run.train(trainer)
    final = trainer.evaluate() if eval_ds is not None else {}
    after = measure(trainer.model, tokenizer, eval_ds, args.eval_samples, checks)

    run.save(trainer, tokenizer)
    run.finish({
        "model_name_or_path": model_args.model_name_or_path, "dataset_name": args.dataset_name,
        "dataset_format": fmt, "train_pairs": len(train_ds), "dropped_empty_pairs": rows.empty, **rows.metrics(),
        "use_peft": model_args.use_peft, "beta": config.beta, "global_step": result.global_step,
        "train_loss": result.training_loss, "train_seconds": round(result.metrics.get("train_runtime", 0), 1),
        "reward_margin": final.get("eval_rewards/margins"), "reward_accuracy": final.get("eval_rewards/accuracies"),
        "nll_loss": final.get("eval_nll_loss"), **before_after(before, after),
    }, trainer, plot=f"{stage.upper()} loss", lines=[
        *report_lines(before, after), f"saved {'LoRA adapter' if model_args.use_peft else 'model'} to {run.output_dir}"])
    return 0
