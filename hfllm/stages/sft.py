"""Supervised fine-tuning with trl.SFTTrainer: full, LoRA or QLoRA.

    hfllm sft --config configs/tiny/sft.yaml
    hfllm sft --model_name_or_path runs/tiny/pretrain --dataset_name chats.jsonl --output_dir runs/tiny/sft
    hfllm sft --model_name_or_path Qwen/Qwen2.5-0.5B --dataset_name alpaca.json --use_peft --lora_r 16

Datasets in TRL's formats (text, messages, prompt/completion) or Alpaca rows are
checked row by row and converted. Conversations go through the tokenizer's chat
template with the loss on the assistant's tokens only; a base model without a
template gets hfllm's. The saved model stops at the end of its answer: the eos
(and the template's end-of-turn token) stay in the labels and in generation_config.
When the eval data has an ``answer`` column, answer accuracy is measured before and after.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from transformers import set_seed
from trl import ModelConfig, SFTConfig, SFTTrainer, get_peft_config

from hfllm import run_folder
from hfllm.data import formats
from hfllm.stages import _frame as interrupt
from hfllm.chat_template import end_of_turn_ids, ensure_chat_template, supports_assistant_mask
from hfllm.config import parse_args, save_config
from hfllm.errors import UserError
from hfllm.scoring import answer_accuracy
from hfllm.model import check_model_source, count_parameters, load_causal_lm, load_tokenizer, training_defaults


@dataclass
class SFTScriptArguments:
    dataset_name: str = field(default="builtin:sft", metadata={"help": "file, folder, builtin:<part> or Hub id"})
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name"})
    dataset_train_split: str = field(default="train", metadata={"help": "training split"})
    dataset_test_split: str | None = field(default=None, metadata={"help": "eval split of the same dataset"})
    eval_dataset_name: str | None = field(default=None, metadata={"help": "a separate eval dataset"})
    eval_split_size: float = field(default=0.0, metadata={"help": "hold out this share (<1) or count of rows"})
    dataset_format: str = field(default="auto", metadata={"help": f"auto or one of {', '.join(formats.SFT_FORMATS)}"})
    max_train_samples: int | None = field(default=None, metadata={"help": "use at most this many rows"})
    answer_eval_samples: int = field(default=200, metadata={"help": "eval rows for answer accuracy (0: skip)"})
    merge_lora: bool = field(default=False, metadata={"help": "with use_peft: save the adapter merged into its "
                                                              "base, a standalone model later stages start from"})
    overwrite: bool = field(default=False, metadata={"help": "replace a finished run in output_dir"})



def main(argv: list[str]) -> int:
    defaults = {"output_dir": "runs/default/sft", "report_to": "none", "logging_steps": 10, "save_total_limit": 1,
                "lora_target_modules": ["all-linear"], **training_defaults()}
    (args, sft_args, model_args), explicit = parse_args([SFTScriptArguments, SFTConfig, ModelConfig], argv,
                                                        prog="hfllm sft", defaults=defaults)
    if not model_args.model_name_or_path:
        raise UserError("sft needs a model: set --model_name_or_path (a stage folder, HF folder or Hub id)")
    check_model_source(model_args.model_name_or_path)  # before any data or weights are read
    if args.merge_lora and not model_args.use_peft:
        raise UserError("--merge_lora merges a LoRA adapter: add --use_peft, or drop --merge_lora")
    push, sft_args.push_to_hub = sft_args.push_to_hub, False  # pushed by hfllm.hub once finished, with its card
    # The main process first: it alone removes a folder being overwritten; the others then agree on resuming.
    with sft_args.main_process_first(local=False, desc="checking the output folder"):
        resume_from = run_folder.prepare(sft_args.output_dir, overwrite=args.overwrite, stage="sft")
    main_process = run_folder.is_main_process()

    with sft_args.main_process_first(desc="checking data"):
        train_ds, eval_ds, fmt, dropped = formats.load_train_eval(args, "sft", sft_args.seed)
    tokenizer = load_tokenizer(model_args.model_name_or_path, revision=model_args.model_revision,
                               trust_remote_code=sft_args.trust_remote_code)
    if ensure_chat_template(tokenizer) and main_process:
        print("note: the model has no chat template; using hfllm's (role markers as plain text)")
    if fmt == "messages" and not supports_assistant_mask(tokenizer):
        # The template cannot mark assistant tokens: train on the last answer as a completion instead.
        to_pc = lambda r: {"prompt": r["messages"][:-1], "completion": r["messages"][-1:]}  # noqa: E731
        train_ds = train_ds.map(to_pc, remove_columns=["messages"])
        eval_ds = eval_ds.map(to_pc, remove_columns=["messages"]) if eval_ds is not None else None
        fmt = "prompt_completion"
    if fmt == "messages" and "assistant_only_loss" not in explicit:
        sft_args.assistant_only_loss = True
    if eval_ds is None:
        sft_args.eval_strategy = "no"
    elif "eval_strategy" not in explicit:
        sft_args.eval_strategy = "epoch" if "eval_steps" not in explicit else "steps"

    dtype = "bfloat16" if sft_args.bf16 else "float16" if sft_args.fp16 else "float32"
    set_seed(sft_args.seed)  # LoRA's initial weights are drawn in the trainer, before it seeds itself
    model = load_causal_lm(model_args.model_name_or_path, revision=model_args.model_revision, dtype=dtype,
                           trust_remote_code=sft_args.trust_remote_code)
    eos_ids = end_of_turn_ids(tokenizer)
    model.generation_config.update(eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id)
    before = answer_accuracy(model, tokenizer, eval_ds, args.answer_eval_samples) if eval_ds is not None and \
        args.answer_eval_samples and "answer" in eval_ds.column_names else {}

    trainer = SFTTrainer(model=model, args=sft_args, train_dataset=train_ds, eval_dataset=eval_ds,
                         processing_class=tokenizer, peft_config=get_peft_config(model_args))
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    if main_process:
        print(f"sft: {fmt} data, {len(train_ds)} rows; {trainable / 1e6:.2f} M of "
              f"{count_parameters(trainer.model) / 1e6:.2f} M parameters trainable")
    result = interrupt.train(trainer, resume_from)  # Ctrl-C: checkpoint, then exit 130
    final = trainer.evaluate() if eval_ds is not None else {}
    after = answer_accuracy(trainer.model, tokenizer, eval_ds, args.answer_eval_samples) if before else {}

    trainer.model.generation_config.update(eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id)
    trainer.save_model(sft_args.output_dir)  # on every process: under FSDP or ZeRO-3 gathering the weights takes them all
    if trainer.is_world_process_zero():
        if args.merge_lora:  # DPO, reward and RL then start from one model, and their reference is this one
            # From the saved adapter, not the trained (perhaps sharded) one: the same weights on any setup.
            merged = load_causal_lm(sft_args.output_dir, revision=model_args.model_revision, dtype=dtype,
                                    trust_remote_code=sft_args.trust_remote_code, merge_adapter=True)
            for name in ("adapter_model.safetensors", "adapter_config.json", "README.md"):  # + peft's adapter card
                (Path(sft_args.output_dir) / name).unlink(missing_ok=True)
            merged.generation_config.update(eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id)
            merged.save_pretrained(sft_args.output_dir)
        save_config(f"{sft_args.output_dir}/hfllm_args.yaml", args, model_args, sft_args)
        run_folder.plot_losses(trainer.state.log_history, f"{sft_args.output_dir}/loss.png", "SFT loss")
        metrics = {
            "model_name_or_path": model_args.model_name_or_path, "dataset_name": args.dataset_name,
            "dataset_format": fmt, "train_rows": len(train_ds), "dropped_empty_rows": dropped,
            "use_peft": model_args.use_peft, "merged": args.merge_lora, "trainable_parameters": trainable,
            "global_step": result.global_step, "train_loss": result.training_loss,
            "train_seconds": round(result.metrics.get("train_runtime", 0.0), 1), "eval_loss": final.get("eval_loss"),
            "answer_accuracy_before": before.get("answer_accuracy"), "answer_accuracy": after.get("answer_accuracy"),
            "answer_count": after.get("answer_count"), "answer_examples": after.get("answer_examples"),
            "world_size": sft_args.world_size,
        }
        run_folder.write_metrics(sft_args.output_dir, metrics, stage="sft")
        if push:
            from hfllm.hub.push import push_stage_from_args

            print(f"pushed to {push_stage_from_args(sft_args)}")
        if before:
            print(f"\nanswer accuracy on held-out questions: {before['answer_accuracy']:.1%} -> "
                  f"{after['answer_accuracy']:.1%}")
        kind = "LoRA adapter" if model_args.use_peft and not args.merge_lora else "model"
        print(f"saved {kind} to {sft_args.output_dir}")
    return 0
