"""Train a byte-level BPE tokenizer with the `tokenizers` library.

    hfllm tokenizer --config configs/tiny/tokenizer.yaml
    hfllm tokenizer --dataset_name corpus.txt --vocab_size 2048 --output_dir out/tok

Texts are read through an iterator, so a corpus larger than RAM streams through
the trainer (add --dataset_streaming for Hub datasets). Every 100th text is held
out to report characters per token on text the tokenizer never saw. The result is
a folder that ``AutoTokenizer.from_pretrained`` loads, with special tokens for
begin/end/padding, chat roles, and a chat template.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from itertools import islice

from hfllm import run_folder
from hfllm.chat_template import CHAT_TEMPLATE
from hfllm.checks import input_paths, sources
from hfllm.config import config_flag, parse_args, save_config
from hfllm.data.load import ScriptArguments, iter_lines, iter_texts, load_dataset, plain_text_files
from hfllm.data.rows import RowReport, check_text_rows
from hfllm.errors import UserError, first_line

HELD_OUT_EVERY = 100  # every Nth text is kept out of training, to measure chars/token


@dataclass
class TokenizerArguments(ScriptArguments):
    dataset_name: str = field(default="builtin:pretrain", metadata={"help": "file, folder, builtin:<part> or Hub id"})
    dataset_text_field: str = field(default="text", metadata={"help": "column holding the text"})
    output_dir: str = field(default="runs/default/tokenizer", metadata={"help": "where to save the tokenizer"})
    vocab_size: int = field(default=4096, metadata={"help": "vocabulary size including special tokens"})
    min_frequency: int = field(default=2, metadata={"help": "minimum pair count for a merge"})
    bos_token: str = field(default="<|begin|>", metadata={"help": "beginning-of-text token"})
    eos_token: str = field(default="<|end|>", metadata={"help": "end of a text or of a chat turn"})
    pad_token: str = field(default="<|pad|>", metadata={"help": "padding token (distinct from eos)"})
    chat_tokens: list[str] = field(default_factory=lambda: ["<|system|>", "<|user|>", "<|assistant|>"],
                                   metadata={"help": "role markers used by the chat template"})
    additional_special_tokens: list[str] = field(default_factory=list, metadata={"help": "more special tokens"})
    chat_template: str | None = field(default=None, metadata={"help": "Jinja chat template (default: hfllm's)"})
    model_max_length: int = field(default=2048, metadata={"help": "longest sequence a model using it will see"})


def special_tokens(args: TokenizerArguments) -> list[str]:
    tokens = [args.pad_token, args.bos_token, args.eos_token, *args.chat_tokens, *args.additional_special_tokens]
    return list(dict.fromkeys(t for t in tokens if t))  # dedupe, keep order: pad gets id 0


def check(args: TokenizerArguments) -> None:
    """What the saved tokenizer would carry: special tokens that exist, a chat template that parses."""
    for role in ("bos", "eos", "pad"):
        if not getattr(args, f"{role}_token").strip():
            raise UserError(f"{role}_token must not be empty (the default is {getattr(TokenizerArguments, f'{role}_token')})")
    if any(not t.strip() for t in [*args.chat_tokens, *args.additional_special_tokens]):
        raise UserError("chat_tokens and additional_special_tokens must not hold an empty token")
    if args.chat_template is not None:
        from jinja2 import TemplateError
        from transformers.utils.chat_template_utils import _compile_jinja_template

        try:  # transformers' own compiler: what apply_chat_template will run
            _compile_jinja_template(args.chat_template)
        except TemplateError as exc:
            line = f" at line {exc.lineno}" if getattr(exc, "lineno", None) else ""
            raise UserError(f"chat_template does not parse{line}: {first_line(exc)}") from None
    specials = special_tokens(args)
    if args.vocab_size < 256 + len(specials):
        raise UserError(f"vocab_size {args.vocab_size} is too small: a byte-level BPE needs at least "
                        f"256 byte tokens + {len(specials)} special tokens = {256 + len(specials)}")


def read_texts(args: TokenizerArguments):
    """The training texts, streamed, and the rows skipped. Plain-text files are read line by line, as datasets'
    text builder would cut them, but without first writing them to Arrow (a pass training does not need)."""
    files = None if args.dataset_config or args.dataset_text_field != "text" else plain_text_files(args.dataset_name)
    if files:  # every line is text: no row to skip
        return iter_lines(files), RowReport()
    ds = load_dataset(args.dataset_name, config=args.dataset_config, split=args.dataset_train_split,
                      streaming=args.dataset_streaming)
    rows = RowReport()
    if not args.dataset_streaming:  # a stream is read once, by the trainer: its non-text rows are skipped unseen
        ds, rows = check_text_rows(ds, args.dataset_text_field, args.dataset_name, strict=args.strict,
                                   max_bad_share=args.max_bad_share)
    return iter_texts(ds, args.dataset_text_field, args.dataset_name), rows


def train(args: TokenizerArguments):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = special_tokens(args)
    texts, rows = read_texts(args)
    if args.max_train_samples:
        texts = islice(texts, args.max_train_samples)
    held_out: list[str] = []
    stats = {"train_texts": 0, "train_chars": 0}

    def training_texts(stop):  # streams: nothing but the held-out sample stays in memory
        for i, text in enumerate(texts):
            if stop.is_set():
                return
            if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1 and len(held_out) < 1000:
                held_out.append(text)
                continue
            stats["train_texts"] += 1
            stats["train_chars"] += len(text)
            yield text
        print(f"read {stats['train_texts']} texts; learning the merges", flush=True)

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=args.vocab_size, min_frequency=args.min_frequency,
                                  special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=True)
    print(f"training a BPE tokenizer (vocab {args.vocab_size}) on {args.dataset_name}; Ctrl-C stops it", flush=True)
    start = time.perf_counter()
    train_interruptibly(bpe, training_texts, trainer)
    seconds = time.perf_counter() - start
    if stats["train_texts"] == 0:
        raise UserError(f"dataset '{args.dataset_name}' has no non-empty text in '{args.dataset_text_field}'")

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token=args.bos_token, eos_token=args.eos_token, pad_token=args.pad_token,
        additional_special_tokens=[t for t in specials if t not in (args.bos_token, args.eos_token, args.pad_token)],
        model_max_length=args.model_max_length, clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = args.chat_template or CHAT_TEMPLATE
    rows.total = rows.total or stats["train_texts"] + len(held_out)  # unchecked rows (text files, streams): as read
    return tokenizer, held_out, {**stats, **rows.metrics()}, seconds


def train_interruptibly(bpe, texts, trainer) -> None:
    """``bpe.train_from_iterator`` in a worker thread, so that Ctrl-C stops the run at once: inside the trainer
    (Rust) Python's signal handler does not run, and an interrupt raised in the iterator is swallowed (the
    run then finished on part of the data, with exit 0). Nothing is saved: the folder stays unfinished."""
    stop, errors = threading.Event(), []

    def work():
        try:
            bpe.train_from_iterator(texts(stop), trainer=trainer)
        except BaseException as exc:  # noqa: BLE001  handed to the main thread
            errors.append(exc)

    worker = threading.Thread(target=work, daemon=True, name="bpe-trainer")
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.2)
    finally:
        stop.set()  # on Ctrl-C: the iterator ends, the daemon thread goes with the process
    if errors:
        raise errors[0]


ARGUMENTS = (TokenizerArguments,)  # what its flags and config files fill


def main(argv: list[str]) -> int:
    (args,), _ = parse_args(ARGUMENTS, argv, prog="hfllm tokenizer")
    args.check_supported("hfllm tokenizer", streaming=True, trains_model=False, held_out=False)
    if args.strict and args.dataset_streaming:
        raise UserError("--strict checks every row before training, which a stream (--dataset_streaming) cannot "
                        "give; drop one of them")
    check(args)
    plan = run_folder.prepare(args.output_dir, overwrite=args.overwrite, stage="tokenizer", resume=False,
                              inputs=input_paths([args], config_flag(argv)), sources=sources([args]))
    tokenizer, held_out, stats, seconds = train(args)
    # Measured on held-out text only; a corpus of under 100 texts has none.
    tokens = sum(map(len, tokenizer(held_out)["input_ids"])) if held_out else 0  # one batch: encoded in parallel
    chars_per_token = sum(map(len, held_out)) / max(1, tokens)
    plan.claim()
    tokenizer.save_pretrained(args.output_dir)
    save_config(f"{args.output_dir}/hfllm_args.yaml", args)
    metrics = {
        "vocab_size": len(tokenizer), "chars_per_token_held_out": round(chars_per_token, 3) if held_out else None,
        "held_out_texts": len(held_out), "train_texts": stats["train_texts"],
        "train_megabytes": round(stats["train_chars"] / 1e6, 3), "train_seconds": round(seconds, 2),
        "dataset_name": args.dataset_name, **{k: v for k, v in stats.items() if k.startswith("rows_")},
    }
    run_folder.write_metrics(args.output_dir, metrics, stage="tokenizer")
    measured = f"{chars_per_token:.2f} characters/token on {len(held_out)} held-out texts" if held_out else \
        "no held-out texts (corpus under 100 texts)"
    print(f"tokenizer saved to {args.output_dir}: vocab {len(tokenizer)}, {measured}, "
          f"trained on {stats['train_chars'] / 1e6:.1f} MB in {seconds:.1f} s")
    return 0
