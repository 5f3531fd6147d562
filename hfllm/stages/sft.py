"""Supervised fine-tuning with trl.SFTTrainer: full, LoRA or QLoRA.

    hfllm sft --config configs/tiny/sft.yaml
    hfllm sft --model_name_or_path runs/tiny/pretrain --dataset_name chats.jsonl --output_dir runs/tiny/sft
    hfllm sft --model_name_or_path Qwen/Qwen2.5-0.5B --dataset_name alpaca.json --use_peft --lora_r 16

Datasets in TRL's formats (text, messages, prompt/completion) or Alpaca rows are
checked row by row and converted. Conversations go through the model's own chat
template with the loss on every assistant turn and nothing else (how, per template:
hfllm.chat_template.training_plan); a base model without a template gets hfllm's. The
saved tokenizer keeps the original template, the one the model is served with. The saved
model stops at the end of its answer: the eos (and the template's end-of-turn token) stay
in the labels and in generation_config. Before the model loads, a few lines say what the
trainer will see (the frame's data summary; ``hfllm inspect`` shows more). When the eval data has an ``answer`` column,
answer accuracy is measured before and after. Unless the flags or config say how batches are formed, they are formed
with few pads for the device (``default_batching``), said in one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import ModelConfig, SFTConfig, SFTTrainer, get_peft_config

from hfllm.chat_template import chat_template_from_path, training_plan
from hfllm.data import formats
from hfllm.data.load import ScriptArguments
from hfllm.errors import UserError
from hfllm.loading import load_causal_lm
from hfllm.scoring import answer_accuracy
from hfllm.stages._frame import Run
from hfllm.stages.merge import save_merged


@dataclass
class SFTScriptArguments(ScriptArguments):
    dataset_name: str = field(default="builtin:sft", metadata={"help": "file, folder, builtin:<part> or Hub id"})
    eval_split_size: float = field(default=0.0, metadata={"help": "hold out this share (<1) or count of rows"})
    dataset_format: str = field(default="auto", metadata={"help": f"auto or one of {', '.join(formats.SFT_FORMATS)}"})
    answer_eval_samples: int = field(default=200, metadata={"help": "eval rows for answer accuracy (0: skip)"})
    merge_lora: bool = field(default=False, metadata={"help": "with use_peft: save the adapter merged into its "
                                                              "base, a standalone model later stages start from"})


ARGUMENTS = (SFTScriptArguments, SFTConfig, ModelConfig)  # what its flags and config files fill
DEFAULTS = {"logging_steps": 10, "save_total_limit": 1, "lora_target_modules": ["all-linear"]}  # hfllm's, over TRL's
BATCHING = ("train_sampling_strategy", "packing", "padding_free")  # how batches are formed; any one set: the user's


def main(argv: list[str]) -> int:
    run = Run.start("sft", argv, ARGUMENTS, defaults=DEFAULTS,
                    needs_model="sft needs a model: set --model_name_or_path (a stage folder, HF folder or Hub id)")
    args, config, model_args = run.parsed
    if args.merge_lora and not model_args.use_peft:
        raise UserError("--merge_lora merges a LoRA adapter: add --use_peft, or drop --merge_lora")
    run.prepare()
    batching = default_batching(config, model_args, run.explicit)
    if batching and run.is_main_process:
        print(batching)

    with config.main_process_first(desc="checking data"):
        train_ds, eval_ds, fmt, rows = formats.load_train_eval(args, "sft", config.seed)
    tokenizer = run.load_tokenizer()
    train_ds = formats.keep_tool_calls_if_rendered(train_ds, tokenizer, args.dataset_name)
    eval_ds = formats.keep_tool_calls_if_rendered(eval_ds, tokenizer, "the eval set")
    plan = None
    if fmt in ("messages", "sharegpt"):  # every assistant turn in the loss, whatever the template
        train_ds, eval_ds, fmt, plan = assistant_turns(tokenizer, train_ds, eval_ds, config, run.explicit,
                                                       run.is_main_process)
    if eval_ds is None:
        config.eval_strategy = "no"
    elif "eval_strategy" not in run.explicit:
        config.eval_strategy = "epoch" if "eval_steps" not in run.explicit else "steps"

    model = run.load_model(load_causal_lm, tokenizer, attn_implementation=model_args.attn_implementation)
    run.default_learning_rate(model)
    measure = eval_ds is not None and args.answer_eval_samples and "answer" in eval_ds.column_names
    before = answer_accuracy(model, tokenizer, eval_ds, args.answer_eval_samples) if measure else {}

    trainer = SFTTrainer(model=model, args=config, train_dataset=train_ds, eval_dataset=eval_ds,
                         processing_class=tokenizer, peft_config=get_peft_config(model_args))
    trainable = trainer.model.num_parameters(only_trainable=True)
    if run.is_main_process:
        print(f"sft: {fmt} data, {len(train_ds)} rows; {trainable / 1e6:.2f} M of "
              f"{trainer.model.num_parameters() / 1e6:.2f} M parameters trainable")
    result = run.train(trainer)
    final = trainer.evaluate() if eval_ds is not None else {}
    after = answer_accuracy(trainer.model, tokenizer, eval_ds, args.answer_eval_samples) if before else {}

    run.save(trainer, tokenizer)
    if run.is_main_process and args.merge_lora:  # DPO, reward and RL then start from one model, their reference
        # From the saved adapter, not the trained (perhaps sharded) one: the same weights on any setup,
        # and after QLoRA a base in full precision, not the 4-bit one it trained on.
        save_merged(str(run.output_dir), str(run.output_dir), dtype=run.dtype, trust_remote_code=run.trust_remote_code)
    kind = "LoRA adapter" if model_args.use_peft and not args.merge_lora else "model"
    run.finish({
        "model_name_or_path": model_args.model_name_or_path, "dataset_name": args.dataset_name,
        "dataset_format": fmt, "assistant_loss": plan.mode if plan else None, "train_rows": len(train_ds),
        "dropped_empty_rows": rows.empty, **rows.metrics(),
        "use_peft": model_args.use_peft, "merged": args.merge_lora, "trainable_parameters": trainable,
        "global_step": result.global_step, "train_loss": result.training_loss,
        "train_seconds": round(result.metrics.get("train_runtime", 0.0), 1), "eval_loss": final.get("eval_loss"),
        "answer_accuracy_before": before.get("answer_accuracy"), "answer_accuracy": after.get("answer_accuracy"),
        "answer_count": after.get("answer_count"), "answer_examples": after.get("answer_examples"),
    }, trainer, plot="SFT loss", lines=[
        *([f"\nanswer accuracy on held-out questions: {before['answer_accuracy']:.1%} -> "
           f"{after['answer_accuracy']:.1%}"] if before else []),
        f"saved {kind} to {run.output_dir}"])
    return 0


def default_batching(config, model_args, explicit: set) -> str | None:
    """Batches with few pads, unless the flags or config set one of BATCHING: random batches of chats of mixed
    length spend about a third of their positions on pads. With flash attention on a GPU, the chats go into rows
    without padding (TRL's best-fit packing, which also keeps max_length; without a max_length, padding_free alone);
    elsewhere, chats of similar length share a batch (attention over one flattened row, as padding-free takes, costs
    a CPU's sdpa more than the pads it saves). Returns the line that says which, or None when the user chose."""
    import torch
    from transformers.utils.generic import is_flash_attention_requested

    if explicit & set(BATCHING):
        return None
    flash = torch.cuda.is_available() and is_flash_attention_requested(
        requested_attention_implementation=model_args.attn_implementation)
    if flash and config.max_length is None:
        config.padding_free = True
        return ("batches: each batch's chats in one row, no padding (the default with flash attention; "
                "--padding_free false to change)")
    if flash:
        config.packing = True
        return (f"batches: chats packed into rows of {config.max_length} tokens, no padding (the default with "
                f"flash attention; --packing false to change)")
    config.train_sampling_strategy = "group_by_length"
    return ("batches: chats of similar length together, few pads (the default without flash attention; "
            "--train_sampling_strategy random to change)")


def assistant_turns(tokenizer, train_ds, eval_ds, config, explicit: set, main_process: bool = True):
    """Conversations ready for SFTTrainer with every assistant turn trained (hfllm.chat_template.training_plan).

    Sets ``config.assistant_only_loss`` to what the plan needs. Returns (train, eval, format, plan).
    """
    template = chat_template_from_path(config.chat_template_path) if config.chat_template_path else None
    asked = config.assistant_only_loss if "assistant_only_loss" in explicit else None
    plan = training_plan(tokenizer, asked, template)
    if plan.mode != "per_turn":
        config.assistant_only_loss = plan.assistant_only_loss
        return train_ds, eval_ds, "messages", plan
    chats = len(train_ds)
    train_ds = formats.split_turns(train_ds)
    eval_ds = formats.split_turns(eval_ds) if eval_ds is not None else None
    config.assistant_only_loss = False  # prompt/completion rows: the loss is on the completion
    if main_process:
        which = f"TRL has no training copy of it ({plan.name})" if plan.name else "TRL does not know it"
        print(f"note: the chat template has no {{% generation %}} markers and {which}: each of the "
              f"{len(train_ds)} non-empty assistant turns in {chats} conversations is trained as its own "
              f"prompt/completion row, the turns before it as context; to train each conversation in one pass, "
              f"pass --chat_template_path FILE.jinja, a copy of the template with each assistant turn and its "
              f"end-of-turn token inside {{% generation %}}...{{% endgeneration %}}")
    return train_ds, eval_ds, "prompt_completion", plan
