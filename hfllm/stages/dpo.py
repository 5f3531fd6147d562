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

from transformers import set_seed
from trl import DPOConfig, DPOTrainer, ModelConfig, get_peft_config

from hfllm import run_folder
from hfllm.data import formats
from hfllm.stages import _frame as interrupt
from hfllm.chat_template import end_of_turn_ids, ensure_chat_template
from hfllm.config import parse_args, save_config
from hfllm.errors import UserError
from hfllm.scoring import answer_accuracy, preference_accuracy
from hfllm.model import check_model_source, load_causal_lm, load_tokenizer, training_defaults


@dataclass
class DPOScriptArguments:
    dataset_name: str = field(default="builtin:preference", metadata={"help": "preference pairs"})
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name"})
    dataset_train_split: str = field(default="train", metadata={"help": "training split"})
    dataset_test_split: str | None = field(default=None, metadata={"help": "eval split of the same dataset"})
    eval_dataset_name: str | None = field(default=None, metadata={"help": "a separate eval dataset"})
    eval_split_size: float = field(default=0.1, metadata={"help": "held-out share (<1) or count, if no eval set"})
    max_train_samples: int | None = field(default=None, metadata={"help": "use at most this many pairs"})
    eval_samples: int = field(default=200, metadata={"help": "held-out pairs for the before/after numbers"})
    overwrite: bool = field(default=False, metadata={"help": "replace a finished run in output_dir"})



def measure(model, tokenizer, eval_ds, n):
    if eval_ds is None or not n:
        return {}
    out = preference_accuracy(model, tokenizer, eval_ds.select(range(min(n, len(eval_ds)))))
    if "answer" in eval_ds.column_names:
        out.update(answer_accuracy(model, tokenizer, eval_ds, n))
    return out


def main(argv: list[str]) -> int:
    defaults = {"output_dir": "runs/default/dpo", "report_to": "none", "logging_steps": 10, "save_total_limit": 1,
                "lora_target_modules": ["all-linear"], **training_defaults()}
    (args, dargs, model_args), _ = parse_args([DPOScriptArguments, DPOConfig, ModelConfig], argv,
                                              prog="hfllm dpo", defaults=defaults)
    if not model_args.model_name_or_path:
        raise UserError("dpo needs a model to start from: set --model_name_or_path (e.g. the SFT stage folder)")
    check_model_source(model_args.model_name_or_path)  # before any data or weights are read
    push, dargs.push_to_hub = dargs.push_to_hub, False  # pushed by hfllm.hub once finished, with its card
    resume_from = run_folder.prepare(dargs.output_dir, overwrite=args.overwrite, stage="dpo")

    with dargs.main_process_first(desc="checking data"):
        train_ds, eval_ds, fmt, dropped = formats.load_train_eval(args, "preference", dargs.seed)
    if eval_ds is None:
        dargs.eval_strategy = "no"

    tokenizer = load_tokenizer(model_args.model_name_or_path, revision=model_args.model_revision,
                               trust_remote_code=dargs.trust_remote_code)
    ensure_chat_template(tokenizer)
    dtype = "bfloat16" if dargs.bf16 else "float16" if dargs.fp16 else "float32"
    set_seed(dargs.seed)  # LoRA's initial weights are drawn in the trainer, before it seeds itself
    # Loaded from a folder (or the Hub), so DPOTrainer can load the reference from the same place.
    model = load_causal_lm(model_args.model_name_or_path, revision=model_args.model_revision, dtype=dtype,
                           trust_remote_code=dargs.trust_remote_code)
    eos_ids = end_of_turn_ids(tokenizer)
    model.generation_config.update(eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id)
    before = measure(model, tokenizer, eval_ds, args.eval_samples)

    trainer = DPOTrainer(model=model, args=dargs, train_dataset=formats.pair_columns(train_ds),
                         eval_dataset=formats.pair_columns(eval_ds), processing_class=tokenizer,
                         peft_config=get_peft_config(model_args))
    result = interrupt.train(trainer, resume_from)  # Ctrl-C: checkpoint, then exit 130
    final = trainer.evaluate() if eval_ds is not None else {}
    after = measure(trainer.model, tokenizer, eval_ds, args.eval_samples)

    trainer.model.generation_config.update(eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id)
    trainer.save_model(dargs.output_dir)  # on every process: under FSDP or ZeRO-3 gathering the weights takes them all
    if trainer.is_world_process_zero():
        save_config(f"{dargs.output_dir}/hfllm_args.yaml", args, model_args, dargs)
        run_folder.plot_losses(trainer.state.log_history, f"{dargs.output_dir}/loss.png", "DPO loss")
        metrics = {
            "model_name_or_path": model_args.model_name_or_path, "dataset_name": args.dataset_name,
            "train_pairs": len(train_ds), "dropped_empty_pairs": dropped, "use_peft": model_args.use_peft,
            "beta": dargs.beta, "global_step": result.global_step, "train_loss": result.training_loss,
            "train_seconds": round(result.metrics.get("train_runtime", 0), 1),
            "reward_margin": final.get("eval_rewards/margins"), "reward_accuracy": final.get("eval_rewards/accuracies"),
            **{f"{k}_before": v for k, v in before.items() if k != "answer_examples"},
            **after, "world_size": dargs.world_size,
        }
        run_folder.write_metrics(dargs.output_dir, metrics, stage="dpo")
        if push:
            from hfllm.hub.push import push_stage_from_args

            print(f"pushed to {push_stage_from_args(dargs)}")
        if before:
            print(f"\nheld-out pairs: policy prefers chosen {before['preference_accuracy']:.1%} -> "
                  f"{after['preference_accuracy']:.1%}, log-prob margin {before['logprob_margin']:.2f} -> "
                  f"{after['logprob_margin']:.2f}")
        if "answer_accuracy" in before:
            print(f"answer accuracy: {before['answer_accuracy']:.1%} -> {after['answer_accuracy']:.1%}")
        print(f"saved {'LoRA adapter' if model_args.use_peft else 'model'} to {dargs.output_dir}")
    return 0
