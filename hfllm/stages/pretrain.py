"""Pretrain a decoder-only model built from a config, with transformers.Trainer.

    hfllm pretrain --config configs/tiny/pretrain.yaml
    hfllm pretrain --tokenizer_name_or_path runs/tiny/tokenizer --dataset_name corpus.txt \
        --preset tiny --model_type qwen2 --max_steps 500 --output_dir runs/mine/pretrain

Texts are tokenized and packed into fixed-length blocks (each text ends with the
eos token) with ``datasets`` batched ``map`` (cached, ``num_proc`` workers); a
slice of the texts is held out for eval loss and perplexity. Every
TrainingArguments option passes through. An interrupted run resumes from its last
checkpoint when started again with the same output_dir.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from transformers import Trainer, TrainingArguments, default_data_collator

from hfllm.chat_template import set_stop_tokens
from hfllm.checks import check_split
from hfllm.data.load import ScriptArguments, first_rows, load_dataset
from hfllm.data.rows import check_text_rows
from hfllm.errors import UserError
from hfllm.generate import generate
from hfllm.loading import load_causal_lm
from hfllm.model import PRESET_TRAINING, PRESETS, build_config
from hfllm.model_checks import check_memory, training_bytes
from hfllm.stages._frame import Run


def _training(values: dict) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())


def apply_preset_training(args, config, explicit: set[str]) -> dict:
    """The preset's learning rate, warmup, schedule and weight decay, for what the user did not set, when the
    model is new (continued pretraining keeps the user's or TrainingArguments' values); returns those applied."""
    if args.model_name_or_path or args.preset not in PRESET_TRAINING:
        return {}
    applied = {k: v for k, v in PRESET_TRAINING[args.preset].items() if k not in explicit}
    for key, value in applied.items():
        setattr(config, key, value)
    return applied


@dataclass
class PretrainArguments(ScriptArguments):
    dataset_name: str = field(default="builtin:pretrain", metadata={"help": "file, folder, builtin:<part> or Hub id"})
    dataset_text_field: str = field(default="text", metadata={"help": "column holding the text"})
    tokenizer_name_or_path: str | None = field(default=None, metadata={"help": "tokenizer folder or Hub id"})
    model_name_or_path: str | None = field(default=None, metadata={"help": "continue pretraining this model"})
    model_type: str = field(default="llama", metadata={"help": "any transformers model_type: llama, qwen2, gpt2..."})
    preset: str = field(default="tiny", metadata={"help": f"size preset: {', '.join(PRESETS)}; from scratch it also "
                        "sets learning_rate, warmup_steps and lr_scheduler_type where not given: "
                        + "; ".join(f"{k} {_training(v)}" for k, v in PRESET_TRAINING.items())})
    num_hidden_layers: int | None = field(default=None, metadata={"help": "override the preset's layers"})
    hidden_size: int | None = field(default=None, metadata={"help": "override the preset's width"})
    num_attention_heads: int | None = field(default=None, metadata={"help": "override the preset's heads"})
    num_key_value_heads: int | None = field(default=None, metadata={"help": "grouped-query attention heads"})
    intermediate_size: int | None = field(default=None, metadata={"help": "override the MLP width"})
    max_position_embeddings: int | None = field(default=None, metadata={"help": "override the context length"})
    block_size: int | None = field(default=None, metadata={"help": "tokens per training block (default: context)"})
    eval_split_size: float = field(default=0.02, metadata={"help": "held-out share of texts (<1) or count (>=1), "
                                                                   "when no eval dataset or split is named"})
    num_proc: int | None = field(default=None, metadata={"help": "processes for tokenization"})
    sample_prompt: str = field(default="Once upon a time", metadata={"help": "prompt for the sample printed at the end"})


def pack(ds, tokenizer, text_field: str, block_size: int, num_proc):
    """Tokenize texts (eos after each) and cut the stream into blocks of block_size tokens."""
    eos = tokenizer.eos_token_id

    def tokenize(batch):
        ids = tokenizer(batch[text_field], add_special_tokens=False)["input_ids"]
        return {"input_ids": [x + [eos] for x in ids]}

    def group(batch):
        flat = [t for ids in batch["input_ids"] for t in ids]
        n = len(flat) // block_size * block_size  # the tail of each 1000-text batch is dropped
        blocks = [flat[i:i + block_size] for i in range(0, n, block_size)]
        return {"input_ids": blocks, "labels": [list(b) for b in blocks]}

    ds = ds.map(tokenize, batched=True, remove_columns=ds.column_names, num_proc=num_proc, desc="tokenizing")
    return ds.map(group, batched=True, batch_size=1000, num_proc=num_proc, desc=f"packing into {block_size}-token blocks")


def prepare_data(args: PretrainArguments, tokenizer, block_size: int, seed: int):
    """Load, hold out, tokenize and pack: (train, eval or None, the texts' RowReport). Arrow files on disk, memory-mapped,
    so a corpus larger than RAM goes through in batches (bench/bench_data_prep.py measures it)."""
    def texts(name, split, config, limit=None):
        ds = first_rows(load_dataset(name, config=config, split=split), limit)
        return check_text_rows(ds, args.dataset_text_field, name, strict=args.strict, max_bad_share=args.max_bad_share)

    train, rows = texts(args.dataset_name, args.dataset_train_split, args.dataset_config, args.max_train_samples)
    held_out = None
    if (source := args.eval_source()) is not None:
        held_out = texts(*source)[0]
    elif size := args.eval_split_size if args.eval_split_size < 1 else int(args.eval_split_size):
        check_split(len(train), args.eval_split_size, args.dataset_name)
        split = train.train_test_split(test_size=size, seed=seed)
        train, held_out = split["train"], split["test"]
    train_ds = pack(train, tokenizer, args.dataset_text_field, block_size, args.num_proc)
    eval_ds = pack(held_out, tokenizer, args.dataset_text_field, block_size, args.num_proc) if held_out else None
    return train_ds, eval_ds, rows


def build_model(args: PretrainArguments, tokenizer):
    from transformers import AutoModelForCausalLM

    if args.model_name_or_path:
        return load_causal_lm(args.model_name_or_path, dtype="float32")
    special = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
               "pad_token_id": tokenizer.pad_token_id}
    sizes = {k: getattr(args, k) for k in ("num_hidden_layers", "hidden_size", "num_attention_heads",
                                           "num_key_value_heads", "intermediate_size", "max_position_embeddings")}
    config = build_config(args.model_type, args.preset, len(tokenizer), special, **sizes)
    check_memory(training_bytes(config), f"pretraining this {args.model_type} model (weights, gradients and Adam's "
                 "two moments in float32)")
    return AutoModelForCausalLM.from_config(config)


ARGUMENTS = (PretrainArguments, TrainingArguments)  # what its flags and config files fill


def main(argv: list[str]) -> int:
    run = Run.start("pretrain", argv, ARGUMENTS, defaults={
        "logging_steps": 10, "save_total_limit": 2, "eval_strategy": "steps", "eval_steps": 100,
        "include_num_input_tokens_seen": True})  # for the console's tokens/s (packed blocks: no padding)
    args, config = run.parsed
    tok_source = args.tokenizer_name_or_path or args.model_name_or_path
    if not tok_source:
        raise UserError("pretrain needs a tokenizer: set --tokenizer_name_or_path (e.g. the output of hfllm tokenizer)")
    applied = apply_preset_training(args, config, run.explicit)
    if applied and run.is_main_process:
        print(f"training defaults of preset '{args.preset}' (set any to override): {_training(applied)}")
    run.prepare()
    tokenizer = run.load_tokenizer(tok_source)

    model = build_model(args, tokenizer)
    context = model.config.max_position_embeddings
    block_size = args.block_size or context
    if block_size > context:
        raise UserError(f"block_size {block_size} is longer than the model's context {context}")
    if len(tokenizer) > model.config.vocab_size:
        raise UserError(f"tokenizer has {len(tokenizer)} tokens but the model's vocab_size is {model.config.vocab_size}")
    room = context - len(tokenizer(args.sample_prompt)["input_ids"])
    if room < 1:
        raise UserError(f"--sample_prompt leaves no room in the model's {context}-token context; shorten it")
    n_params = model.num_parameters()
    if run.is_main_process:
        print(f"model: {model.config.model_type}, {n_params / 1e6:.2f} M parameters, context {context}")

    with config.main_process_first(desc="preparing data"):  # once, then read from the cache by other ranks
        train_ds, eval_ds, rows = prepare_data(args, tokenizer, block_size, config.seed)
    if len(train_ds) == 0:
        raise UserError(f"the corpus gives no full {block_size}-token block; use more text or a smaller --block_size")
    if eval_ds is not None and len(eval_ds) == 0:
        raise UserError("the held-out texts give no full block; raise --eval_split_size")
    if eval_ds is None:
        config.eval_strategy = "no"
    # The loss before training, measured inside train(): a trainer.evaluate() before train() marks the
    # model prepared, so it is never wrapped in DDP and several processes train unsynchronised copies.
    config.eval_on_start = eval_ds is not None

    trainer = Trainer(model=model, args=config, train_dataset=train_ds, eval_dataset=eval_ds,
                      data_collator=default_data_collator, processing_class=tokenizer)
    result = run.train(trainer)
    seconds = result.metrics["train_runtime"]  # the whole run's, across resumes
    # A resumed run keeps the first run's history, so this is the step-0 loss there too.
    initial = next((r for r in trainer.state.log_history if "eval_loss" in r), {})
    final = trainer.evaluate() if eval_ds is not None else {}

    set_stop_tokens(model, tokenizer, chat=False)  # a base model: it stops at eos
    run.save(trainer)  # also saves the tokenizer (processing_class)
    # On every process: a forward pass of a sharded (FSDP, ZeRO-3) model takes them all.
    sample = args.sample_prompt + generate(model, tokenizer, args.sample_prompt, {**SAMPLE, "max_new_tokens": min(
        SAMPLE["max_new_tokens"], room)}, seed=0, add_special_tokens=True)[0]
    tokens = result.global_step * config.per_device_train_batch_size * config.gradient_accumulation_steps \
        * config.world_size * block_size
    metrics = {
        "model_type": model.config.model_type, "num_parameters": n_params, "block_size": block_size,
        "train_blocks": len(train_ds), "eval_blocks": len(eval_ds) if eval_ds is not None else 0,
        "global_step": result.global_step, "train_loss": result.training_loss,
        "train_seconds": round(seconds, 1), "train_tokens_per_second": round(tokens / max(seconds, 1e-9)),
        "initial_eval_loss": initial.get("eval_loss"), "eval_loss": final.get("eval_loss"),
        "initial_perplexity": _ppl(initial.get("eval_loss")), "perplexity": _ppl(final.get("eval_loss")),
        "dataset_name": args.dataset_name, "tokenizer_name_or_path": tok_source, **rows.metrics(),
        "sample": sample,
    }
    run.finish(metrics, trainer, plot="pretraining loss", lines=[
        f"\neval loss {metrics['initial_eval_loss']} -> {metrics['eval_loss']} (perplexity "
        f"{metrics['initial_perplexity']} -> {metrics['perplexity']}); saved to {run.output_dir}", f"sample: {sample}"])
    return 0


# What the end-of-training sample draws with: sampled, so it shows what the model learned, not its mode.
SAMPLE = {"max_new_tokens": 60, "do_sample": True, "top_k": 40, "temperature": 0.8}


def _ppl(loss):
    return None if loss is None else round(math.exp(min(loss, 50)), 2)
