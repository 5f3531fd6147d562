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
import time
from dataclasses import dataclass, field

from transformers import TrainingArguments

from hfllm import run_folder
from hfllm.data import load as data
from hfllm.stages import _frame as interrupt
from hfllm.config import parse_args, save_config
from hfllm.errors import UserError
from hfllm.model import PRESETS, build_config, count_parameters, load_causal_lm, load_tokenizer, training_defaults


@dataclass
class PretrainArguments:
    dataset_name: str = field(default="builtin:pretrain", metadata={"help": "file, folder, builtin:<part> or Hub id"})
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name"})
    dataset_train_split: str = field(default="train", metadata={"help": "split to read"})
    dataset_text_field: str = field(default="text", metadata={"help": "column holding the text"})
    tokenizer_name_or_path: str | None = field(default=None, metadata={"help": "tokenizer folder or Hub id"})
    model_name_or_path: str | None = field(default=None, metadata={"help": "continue pretraining this model"})
    model_type: str = field(default="llama", metadata={"help": "any transformers model_type: llama, qwen2, gpt2..."})
    preset: str = field(default="tiny", metadata={"help": f"size preset: {', '.join(PRESETS)}"})
    num_hidden_layers: int | None = field(default=None, metadata={"help": "override the preset's layers"})
    hidden_size: int | None = field(default=None, metadata={"help": "override the preset's width"})
    num_attention_heads: int | None = field(default=None, metadata={"help": "override the preset's heads"})
    num_key_value_heads: int | None = field(default=None, metadata={"help": "grouped-query attention heads"})
    intermediate_size: int | None = field(default=None, metadata={"help": "override the MLP width"})
    max_position_embeddings: int | None = field(default=None, metadata={"help": "override the context length"})
    block_size: int | None = field(default=None, metadata={"help": "tokens per training block (default: context)"})
    eval_split_size: float = field(default=0.02, metadata={"help": "held-out share of texts (<1) or count (>=1)"})
    max_train_samples: int | None = field(default=None, metadata={"help": "use at most this many texts"})
    num_proc: int | None = field(default=None, metadata={"help": "processes for tokenization"})
    sample_prompt: str = field(default="Once upon a time", metadata={"help": "prompt for the sample printed at the end"})
    overwrite: bool = field(default=False, metadata={"help": "replace a finished run in output_dir"})


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
    """Load, hold out, tokenize and pack: (train, eval or None). Arrow files on disk, memory-mapped,
    so a corpus larger than RAM goes through in batches (bench/bench_data_prep.py measures it)."""
    texts = data.load(args.dataset_name, config=args.dataset_config, split=args.dataset_train_split)
    data.require_columns(texts, [args.dataset_text_field], args.dataset_name, "choose it with --dataset_text_field")
    if args.max_train_samples:
        texts = texts.select(range(min(args.max_train_samples, len(texts))))
    size = args.eval_split_size if args.eval_split_size < 1 else int(args.eval_split_size)
    split = texts.train_test_split(test_size=size, seed=seed) if size else {"train": texts, "test": None}
    train_ds = pack(split["train"], tokenizer, args.dataset_text_field, block_size, args.num_proc)
    eval_ds = pack(split["test"], tokenizer, args.dataset_text_field, block_size, args.num_proc) if size else None
    return train_ds, eval_ds


def build_model(args: PretrainArguments, tokenizer):
    from transformers import AutoModelForCausalLM

    if args.model_name_or_path:
        return load_causal_lm(args.model_name_or_path, dtype="float32")
    special = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
               "pad_token_id": tokenizer.pad_token_id}
    sizes = {k: getattr(args, k) for k in ("num_hidden_layers", "hidden_size", "num_attention_heads",
                                           "num_key_value_heads", "intermediate_size", "max_position_embeddings")}
    config = build_config(args.model_type, args.preset, len(tokenizer), special, **sizes)
    return AutoModelForCausalLM.from_config(config)


def main(argv: list[str]) -> int:
    defaults = {"output_dir": "runs/default/pretrain", "logging_steps": 10, "save_total_limit": 2,
                "eval_strategy": "steps", "eval_steps": 100, "report_to": "none", **training_defaults()}
    (args, targs), _ = parse_args([PretrainArguments, TrainingArguments], argv, prog="hfllm pretrain",
                                  defaults=defaults)
    tok_source = args.tokenizer_name_or_path or args.model_name_or_path
    if not tok_source:
        raise UserError("pretrain needs a tokenizer: set --tokenizer_name_or_path (e.g. the output of hfllm tokenizer)")
    tokenizer = load_tokenizer(tok_source)
    push, targs.push_to_hub = targs.push_to_hub, False  # pushed by hfllm.hub once finished, with its card
    # The main process first: it alone removes a folder being overwritten; the others then agree on resuming.
    with targs.main_process_first(local=False, desc="checking the output folder"):
        resume_from = run_folder.prepare(targs.output_dir, overwrite=args.overwrite, stage="pretrain")
    main_process = run_folder.is_main_process()

    from transformers import Trainer, default_data_collator, set_seed

    set_seed(targs.seed)
    model = build_model(args, tokenizer)
    context = model.config.max_position_embeddings
    block_size = args.block_size or context
    if block_size > context:
        raise UserError(f"block_size {block_size} is longer than the model's context {context}")
    if len(tokenizer) > model.config.vocab_size:
        raise UserError(f"tokenizer has {len(tokenizer)} tokens but the model's vocab_size is {model.config.vocab_size}")
    n_params = count_parameters(model)
    if main_process:
        print(f"model: {model.config.model_type}, {n_params / 1e6:.2f} M parameters, context {context}")

    with targs.main_process_first(desc="preparing data"):  # once, then read from the cache by other ranks
        train_ds, eval_ds = prepare_data(args, tokenizer, block_size, targs.seed)
    if len(train_ds) == 0:
        raise UserError(f"the corpus gives no full {block_size}-token block; use more text or a smaller --block_size")
    if eval_ds is not None and len(eval_ds) == 0:
        raise UserError("the held-out texts give no full block; raise --eval_split_size")
    if eval_ds is None:
        targs.eval_strategy = "no"
    # The loss before training, measured inside train(): a trainer.evaluate() before train() marks the
    # model prepared, so it is never wrapped in DDP and several processes train unsynchronised copies.
    targs.eval_on_start = eval_ds is not None

    trainer = Trainer(model=model, args=targs, train_dataset=train_ds, eval_dataset=eval_ds,
                      data_collator=default_data_collator, processing_class=tokenizer)
    start = time.perf_counter()
    result = interrupt.train(trainer, resume_from)  # Ctrl-C: checkpoint, then exit 130
    seconds = time.perf_counter() - start
    # A resumed run keeps the first run's history, so this is the step-0 loss there too.
    initial = next((r for r in trainer.state.log_history if "eval_loss" in r), {})
    final = trainer.evaluate() if eval_ds is not None else {}

    model.generation_config.update(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                                   bos_token_id=tokenizer.bos_token_id)
    # On every process: under FSDP or ZeRO-3 gathering the weights takes them all (the main one writes),
    # and so does a forward pass of the sharded model.
    trainer.save_model(targs.output_dir)  # also saves the tokenizer (processing_class)
    sample = sample_text(model, tokenizer, args.sample_prompt)
    if trainer.is_world_process_zero():
        save_config(f"{targs.output_dir}/hfllm_args.yaml", args, targs)
        run_folder.plot_losses(trainer.state.log_history, f"{targs.output_dir}/loss.png", "pretraining loss")
        tokens = result.global_step * targs.per_device_train_batch_size * targs.gradient_accumulation_steps \
            * targs.world_size * block_size
        metrics = {
            "model_type": model.config.model_type, "num_parameters": n_params, "block_size": block_size,
            "train_blocks": len(train_ds), "eval_blocks": len(eval_ds) if eval_ds is not None else 0,
            "global_step": result.global_step, "train_loss": result.training_loss,
            "train_seconds": round(seconds, 1), "train_tokens_per_second": round(tokens / max(seconds, 1e-9)),
            "initial_eval_loss": initial.get("eval_loss"), "eval_loss": final.get("eval_loss"),
            "initial_perplexity": _ppl(initial.get("eval_loss")), "perplexity": _ppl(final.get("eval_loss")),
            "world_size": targs.world_size, "dataset_name": args.dataset_name,
            "tokenizer_name_or_path": tok_source, "sample": sample,
        }
        run_folder.write_metrics(targs.output_dir, metrics, stage="pretrain")
        if push:
            from hfllm.hub.push import push_stage_from_args

            print(f"pushed to {push_stage_from_args(targs)}")
        print(f"\neval loss {metrics['initial_eval_loss']} -> {metrics['eval_loss']} "
              f"(perplexity {metrics['initial_perplexity']} -> {metrics['perplexity']}); saved to {targs.output_dir}")
        print(f"sample: {sample}")
    return 0


def _ppl(loss):
    return None if loss is None else round(math.exp(min(loss, 50)), 2)


def sample_text(model, tokenizer, prompt: str, max_new_tokens: int = 60) -> str:
    import torch

    inputs = tokenizer(prompt, return_tensors="pt").to(model.device)
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=True, top_k=40, temperature=0.8)
    return tokenizer.decode(out[0], skip_special_tokens=True)
