"""Clean a text corpus before the tokenizer sees it: normalise, filter, scrub PII, deduplicate.

    hfllm data clean --dataset_name corpus.jsonl --output_dir runs/mine/data
    hfllm data clean --dataset_name corpus.txt --text_unit document --num_proc 4 --output_dir runs/mine/data
    hfllm tokenizer --dataset_name runs/mine/data/clean.jsonl ...      # the next stage reads the export

A .jsonl file with a "text" field is the normal input; a .txt file gives one document
per line (--text_unit document: documents separated by a blank line; file: one per
file). Every document goes through, in order:

1. normalisation: unicode NFC, control characters dropped, odd spaces made plain, runs
   of spaces inside a line and of blank lines squeezed (indentation is kept);
2. filters; the first that fails names the removal: empty, too_short / too_long
   (whitespace words), too_many_symbols / too_many_digits (share of non-space
   characters), repeated_lines (share of lines repeating an earlier line of the same
   document), language (only with --languages; needs ``pip install langdetect``);
3. PII scrubbing (hfllm.data.pii): e-mails, phones, IP addresses and Luhn-valid card numbers
   become <EMAIL>, <PHONE>, <IP_ADDRESS>, <CREDIT_CARD>;
4. exact deduplication on a 128-bit hash of the cleaned text, then near-duplicates: MinHash
   signatures of word shingles (datasketch's affine32 scheme, computed with numpy for a
   whole batch at once) in banded LSH buckets; a candidate is a duplicate when the
   estimated Jaccard similarity reaches --near_dup_threshold. The first copy is kept
   (hfllm.data.dedup).

Defaults: threshold 0.8 on 5-word shingles, 128 permutations; at least 5 words; at most
30% symbols, 30% digits, 30% repeated lines; all four PII kinds scrubbed.

Steps 1-3 and the signatures run in one ``datasets`` batched map (--num_proc workers,
results memory-mapped on disk), so the corpus never has to fit in RAM. The dedup pass is
sequential and holds, per kept document, its exact hash and its LSH band keys (about
2 KB at 128 permutations: 2 GB per million documents); signatures are read back from
disk to verify candidates.

The input is never modified. output_dir gets data/ (``Dataset.save_to_disk``),
clean.jsonl, report.json, metrics.json (for the pipeline runner) and
length_histogram.png, built in a temporary folder beside it and renamed at the end,
so a crash never leaves a half-written output_dir. Called with flags only (as a
pipeline stage would be), ``main`` runs ``clean``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from hfllm.config import config_flag, parse_args, renamed
from hfllm.data import pii
from hfllm.data.dedup import deduplicate, permutations, signatures
from hfllm.data.load import ScriptArguments, first_rows, load_dataset
from hfllm.errors import UserError
from hfllm.loading import is_local

TEXT_UNITS = {"line": "line", "document": "paragraph", "file": "document"}  # -> the text builder's sample_by
RULES = ("empty", "too_short", "too_long", "too_many_symbols", "too_many_digits", "repeated_lines", "language",
         "exact_duplicate", "near_duplicate")


@dataclass
class CleanArguments(ScriptArguments):
    dataset_name: str | None = field(default=None, metadata={"help": "file, folder of files, saved dataset or Hub id"})
    dataset_text_field: str = field(default="text", metadata={"help": "column holding the text"})
    text_unit: Literal["line", "document", "file"] = field(
        default="line", metadata={"help": ".txt: a document per line, per blank-line separated block, or per file"})
    output_dir: str = field(default="runs/default/data", metadata={"help": "new folder for the cleaned dataset"})
    overwrite: bool = field(default=False, metadata={"help": "replace what output_dir already holds"})
    max_train_samples: int | None = field(default=None, metadata=renamed(
        "max_samples", help="read at most this many documents"))
    num_proc: int | None = field(default=None, metadata={"help": "worker processes for the map"})
    batch_size: int = field(default=1000, metadata={"help": "documents per map batch"})
    unicode_form: Literal["NFC", "NFKC", "none"] = field(default="NFC", metadata={"help": "unicode normalisation"})
    min_words: int = field(default=5, metadata={"help": "drop documents with fewer whitespace words"})
    max_words: int | None = field(default=None, metadata={"help": "drop documents with more words"})
    max_symbol_ratio: float = field(default=0.3, metadata={"help": "max share of symbols in non-space characters"})
    max_digit_ratio: float = field(default=0.3, metadata={"help": "max share of digits in non-space characters"})
    max_repeated_line_ratio: float = field(default=0.3, metadata={"help": "max share of lines repeating earlier ones"})
    languages: list[str] = field(default_factory=list, metadata={"help": "keep only these (en de); needs langdetect"})
    scrub_pii: bool = field(default=True, metadata={"help": "replace personal data with placeholder tokens"})
    pii_kinds: list[str] = field(default_factory=lambda: list(pii.KINDS), metadata={"help": "kinds of PII to scrub"})
    exact_dedup: bool = field(default=True, metadata={"help": "drop exact duplicates (after normalisation)"})
    near_dedup: bool = field(default=True, metadata={"help": "drop near-duplicates (MinHash LSH)"})
    near_dup_threshold: float = field(default=0.8, metadata={"help": "shingle Jaccard similarity of a near-duplicate"})
    shingle_size: int = field(default=5, metadata={"help": "words per shingle"})
    num_perm: int = field(default=128, metadata={"help": "MinHash permutations (more: sharper, slower)"})
    seed: int = field(default=1, metadata={"help": "seed of the MinHash permutations"})
    tokenizer_name_or_path: str | None = field(default=None, metadata={"help": "lengths in this tokenizer's tokens"})


# ---------------------------------------------------------------- pure functions

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\ufeff]")
_ODD_SPACE = re.compile(r"[\t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")
_INNER_SPACES, _TRAILING, _BLANK_LINES = re.compile(r"(?<=\S) {2,}"), re.compile(r" +(?=\n)"), re.compile(r"\n{3,}")
_SYMBOL, _DIGIT = re.compile(r"[^\w\s]"), re.compile(r"\d")


def normalize(text: str | None, form: str = "NFC") -> str:
    text = unicodedata.normalize(form, text or "") if form != "none" else text or ""
    text = _ODD_SPACE.sub(" ", _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n")))
    if "  " in text:  # cheap tests first: most texts have nothing to fix
        text = _INNER_SPACES.sub(" ", text)
    if " \n" in text:
        text = _TRAILING.sub("", text)
    return _BLANK_LINES.sub("\n\n", text).strip()


def quality_issue(text: str, args: CleanArguments, detect=None) -> str | None:
    """The name of the first filter a normalised text fails, or None."""
    words = len(text.split())
    if words == 0:
        return "empty"
    if words < args.min_words:
        return "too_short"
    if args.max_words and words > args.max_words:
        return "too_long"
    chars = len(text) - text.count(" ") - text.count("\n")  # non-space characters, once normalised
    if len(_SYMBOL.findall(text)) / chars > args.max_symbol_ratio:
        return "too_many_symbols"
    if len(_DIGIT.findall(text)) / chars > args.max_digit_ratio:
        return "too_many_digits"
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    if len(lines) > 1 and 1 - len(set(lines)) / len(lines) > args.max_repeated_line_ratio:
        return "repeated_lines"
    if detect is not None and detect(text) not in args.languages:
        return "language"
    return None


# ---------------------------------------------------------------- the steps

def _check(args: CleanArguments) -> None:
    name = args.dataset_name
    if not name:
        raise UserError("--dataset_name is required: a .txt/.jsonl/.json/.csv/.parquet file, a folder or a Hub id")
    if is_local(name) and not Path(name).expanduser().exists():
        raise UserError(f"dataset file not found: {name} (check the path)")
    ratios = ("max_symbol_ratio", "max_digit_ratio", "max_repeated_line_ratio")
    for bad, message in [
        (not 0 < args.near_dup_threshold <= 1, f"near_dup_threshold must be in (0, 1], got {args.near_dup_threshold}"),
        (args.shingle_size < 1, f"shingle_size must be >= 1, got {args.shingle_size}"),
        (args.num_perm < 16, f"num_perm must be >= 16, got {args.num_perm}"),
        (args.min_words < 0 or (args.max_words or 1) < 1, "min_words must be >= 0 and max_words >= 1"),
        (bool(set(args.pii_kinds) - set(pii.KINDS)), f"pii_kinds must be among {', '.join(pii.KINDS)}"),
        *[(not 0 <= getattr(args, r) <= 1, f"{r} must be in [0, 1], got {getattr(args, r)}") for r in ratios],
    ]:
        if bad:
            raise UserError(message)


def _detector(languages: list[str]):
    if not languages:
        return None
    try:
        import langdetect
    except ImportError:
        raise UserError("--languages needs a language detector: pip install langdetect") from None
    langdetect.DetectorFactory.seed = 0  # langdetect is random unless seeded

    def detect(text: str) -> str:
        try:
            return langdetect.detect(text)
        except langdetect.LangDetectException:  # no letters at all
            return "unknown"

    return detect


def load(args: CleanArguments, cache_dir: Path):
    """The documents as a memory-mapped Dataset; local files are converted to Arrow in cache_dir."""
    name = args.dataset_name
    ds = load_dataset(name, config=args.dataset_config, split=args.dataset_train_split,
                      sample_by=TEXT_UNITS[args.text_unit], cache_dir=str(cache_dir))
    column = ds.features.get(args.dataset_text_field)
    if column is None:
        raise UserError(f"{name} has no column '{args.dataset_text_field}' (columns: {', '.join(ds.column_names)}); "
                        "set --dataset_text_field")
    if getattr(column, "dtype", None) not in ("string", "large_string"):
        raise UserError(f"column '{args.dataset_text_field}' of {name} holds {column}, not plain text")
    return first_rows(ds, args.max_train_samples)


def _prepare_batch(batch, args: CleanArguments, perms, detect, tokenizer):
    """Steps 1-3 plus the hashes for step 4, for one batch (runs in the map workers)."""
    import xxhash

    texts, drop, counts = [], [], {k: [] for k in pii.KINDS}
    for raw in batch[args.dataset_text_field]:
        text = normalize(raw, args.unicode_form)
        drop.append(quality_issue(text, args, detect) or "")
        found = dict.fromkeys(pii.KINDS, 0)
        if args.scrub_pii and not drop[-1]:
            text, found = pii.scrub(text, args.pii_kinds)
        texts.append(text)
        for kind in pii.KINDS:
            counts[kind].append(found[kind])
    kept = [i for i, d in enumerate(drop) if not d]
    sig, lengths = np.zeros((len(texts), args.num_perm), np.uint32), np.zeros(len(texts), np.int64)
    if args.near_dedup and kept:
        sig[kept] = signatures([texts[i] for i in kept], args.shingle_size, perms)
    if tokenizer is not None and kept:
        lengths[kept] = [len(ids) for ids in tokenizer([texts[i] for i in kept], add_special_tokens=False)["input_ids"]]
    elif tokenizer is None:
        lengths[:] = [len(t.split()) for t in texts]
    return {args.dataset_text_field: texts, "_drop": drop, "_hash": [xxhash.xxh3_128_digest(t.encode()) for t in texts],
            "_minhash": sig, "_length": lengths, **{f"_pii_{k}": v for k, v in counts.items()}}


def plot_histogram(lengths: np.ndarray, path: Path, unit: str) -> dict:
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    counts, edges = np.histogram(lengths, bins=min(50, len(np.unique(lengths))))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(lengths, bins=edges, color="#4c72b0")
    ax.set(xlabel=f"length ({unit})", ylabel="documents", title=f"{len(lengths):,} documents after cleaning")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    p50, p90, p99 = np.percentile(lengths, [50, 90, 99]).round(1).tolist()
    return {"unit": unit, "mean": round(float(lengths.mean()), 1), "p50": p50, "p90": p90, "p99": p99,
            "max": int(lengths.max()), "histogram": {"counts": counts.tolist(), "bin_edges": edges.round(1).tolist()}}


def clean(args: CleanArguments, config_path: str | None = None) -> dict:
    """Run every step into a temporary folder, then put it in output_dir's place; return the report."""
    from hfllm import run_folder
    from hfllm.checks import input_paths, sources
    from hfllm.loading import check_model_source

    _check(args)
    if args.tokenizer_name_or_path:
        check_model_source(args.tokenizer_name_or_path, "tokenizer")
    out, source = Path(args.output_dir).expanduser().resolve(), Path(args.dataset_name).expanduser().resolve()
    if source.exists() and source in out.parents:
        raise UserError(f"output_dir {args.output_dir} is inside the input {args.dataset_name}; keep them apart")
    # The rules of every stage's folder (nothing is written here: the new folder is built beside it).
    plan = run_folder.prepare(out, overwrite=args.overwrite, stage="clean", resume=False,
                              inputs=input_paths([args], config_path), sources=sources([args]))
    detect, tokenizer = _detector(args.languages), None
    if args.tokenizer_name_or_path:
        from hfllm.loading import load_tokenizer

        tokenizer = load_tokenizer(args.tokenizer_name_or_path)
    tmp, old = (out.parent / f".{out.name}.{what}-{os.getpid()}" for what in ("tmp", "old"))
    shutil.rmtree(tmp, ignore_errors=True)
    plan.claim(into=tmp)  # the new folder, which replaces output_dir once complete
    (tmp / "cache").mkdir(parents=True)
    try:
        report = _clean_into(args, tmp, detect, tokenizer)
        shutil.rmtree(tmp / "cache")
        if out.exists():  # replaced only now that the new folder is complete
            out.rename(old)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old.is_dir():
        shutil.rmtree(old)
    old.unlink(missing_ok=True)  # the old output was a file
    return report


def _clean_into(args: CleanArguments, tmp: Path, detect, tokenizer) -> dict:
    from datasets import Features, List, Value

    from hfllm import run_folder

    start = time.perf_counter()
    ds = load(args, tmp / "cache")
    features = Features({**ds.features, "_drop": Value("string"), "_hash": Value("binary"),
                         "_minhash": List(Value("uint32"), length=args.num_perm), "_length": Value("int64"),
                         **{f"_pii_{k}": Value("int32") for k in pii.KINDS}})
    kwargs = {"args": args, "perms": permutations(args.num_perm, args.seed), "detect": detect, "tokenizer": tokenizer}
    prepared = ds.map(_prepare_batch, batched=True, batch_size=args.batch_size, num_proc=args.num_proc,
                      features=features, fn_kwargs=kwargs, cache_file_name=str(tmp / "cache" / "prepared.arrow"),
                      desc="normalise, filter, scrub, hash")
    mapped = time.perf_counter()
    report = {"dataset_name": args.dataset_name, "documents_in": len(ds), "documents_out": 0,
              "removed": dict.fromkeys(RULES, 0), "pii_found": dict.fromkeys(pii.KINDS, 0)}
    keep = deduplicate(prepared, args, report)
    lengths, deduped = report.pop("_lengths"), time.perf_counter()
    if len(keep) == 0:
        raise UserError(f"every document of {args.dataset_name} was removed ({report['removed']}); relax the filters")
    result = prepared.select(keep).remove_columns([c for c in features if c.startswith("_")])
    result.save_to_disk(str(tmp / "data"), num_proc=args.num_proc)
    result.to_json(str(tmp / "clean.jsonl"), lines=True, force_ascii=False)
    report["documents_out"] = len(result)
    report["length"] = plot_histogram(lengths, tmp / "length_histogram.png", "tokens" if tokenizer else "words")
    report["seconds"] = {"normalise_filter_scrub_hash": round(mapped - start, 2),
                         "deduplicate": round(deduped - mapped, 2), "total": round(time.perf_counter() - start, 2)}
    report["settings"] = dataclasses.asdict(args)
    (tmp / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    run_folder.write_metrics(tmp, {k: report[k] for k in ("dataset_name", "documents_in", "documents_out")}, "data")
    return report


def print_report(report: dict, output_dir: str) -> None:
    n_in, n_out, n = report["documents_in"], report["documents_out"], report["length"]
    print(f"\nhfllm data clean: {n_in:,} documents in, {n_out:,} out ({n_out / n_in:.1%} kept) "
          f"in {report['seconds']['total']:.1f} s\n  {'rule':<18}{'removed':>10}")
    for rule, count in report["removed"].items():
        print(f"  {rule:<18}{count:>10,}")
    print(f"  duplicate clusters: {report['duplicate_clusters']['count']:,} "
          f"(largest {report['duplicate_clusters']['largest']})")
    print("  PII scrubbed: " + ", ".join(f"{k} {v:,}" for k, v in report["pii_found"].items()))
    print(f"  length ({n['unit']}): mean {n['mean']}, median {n['p50']}, p90 {n['p90']}, max {n['max']}")
    print(f"saved to {output_dir}/: data/, clean.jsonl, report.json, length_histogram.png")


USAGE = """usage: hfllm data clean --dataset_name FILE --output_dir DIR [--config FILE] [--key value ...]

commands:
  clean      normalise, filter, scrub PII and deduplicate a corpus into a new folder

'hfllm data clean --help' lists every option."""


ARGUMENTS = (CleanArguments,)  # what its flags and config files fill


def main(argv: list[str]) -> int:
    argv = list(argv)
    if argv and argv[0] == "clean":
        argv = argv[1:]
    elif not argv or argv[0] in ("help", "--help", "-h"):
        print(USAGE)
        return 0
    elif not argv[0].startswith("--"):  # flags alone (as a pipeline stage gets them) mean 'clean'
        print(f"hfllm data: unknown command '{argv[0]}'\n\n{USAGE}")
        return 2
    if "-h" in argv or "--help" in argv:
        from transformers import HfArgumentParser

        HfArgumentParser([CleanArguments], prog="hfllm data clean").print_help()
        return 0
    (args,), _ = parse_args(ARGUMENTS, argv, prog="hfllm data clean")
    args.check_supported("hfllm data clean", trains_model=False, held_out=False)
    report = clean(args, config_flag(argv))
    print_report(report, args.output_dir)
    return 0
