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
   estimated Jaccard similarity reaches --near_dup_threshold. The first copy is kept.

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
import string
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from hfllm.data import pii
from hfllm.config import parse_args
from hfllm.errors import UserError

BUILDERS = {".txt": "text", ".md": "text", ".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
TEXT_UNITS = {"line": "line", "document": "paragraph", "file": "document"}  # -> the text builder's sample_by
RULES = ("empty", "too_short", "too_long", "too_many_symbols", "too_many_digits", "repeated_lines", "language",
         "exact_duplicate", "near_duplicate")


@dataclass
class CleanArguments:
    dataset_name: str | None = field(default=None, metadata={"help": "file, folder of files, saved dataset or Hub id"})
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name"})
    dataset_train_split: str = field(default="train", metadata={"help": "split to read (Hub or saved dataset)"})
    dataset_text_field: str = field(default="text", metadata={"help": "column holding the text"})
    text_unit: Literal["line", "document", "file"] = field(
        default="line", metadata={"help": ".txt: a document per line, per blank-line separated block, or per file"})
    output_dir: str = field(default="runs/default/data", metadata={"help": "new folder for the cleaned dataset"})
    overwrite: bool = field(default=False, metadata={"help": "replace what output_dir already holds"})
    max_samples: int | None = field(default=None, metadata={"help": "read at most this many documents"})
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
_PUNCTUATION_TO_SPACE = str.maketrans({c: " " for c in string.punctuation})


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


def shingle_hashes(text: str, n: int) -> np.ndarray:
    """32-bit hashes of the n-word shingles of a text (words lower-cased, ASCII punctuation ignored)."""
    import xxhash  # a dependency of datasets; stable across processes, unlike hash()

    words = text.lower().translate(_PUNCTUATION_TO_SPACE).split() or [""]
    h = np.fromiter((xxhash.xxh32_intdigest(w.encode()) for w in words), np.uint64, len(words))
    k = max(1, len(h) - n + 1)  # a text shorter than n words is one shingle
    s = np.zeros(k, np.uint64)
    for j in range(min(n, len(h))):  # polynomial rolling hash of n word hashes, wrapping mod 2^64
        s = s * np.uint64(0x100000001B3) + h[j:j + k]
    return (s ^ (s >> np.uint64(32))).astype(np.uint32)


def signatures(texts: list[str], n: int, permutations: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """MinHash signatures (len(texts), num_perm): what datasketch's MinHash(scheme="affine32") gives
    when fed shingle_hashes, computed for a whole batch with a few numpy operations."""
    a, b = permutations
    hashes = [shingle_hashes(t, n) for t in texts]
    owner = np.repeat(np.arange(len(texts)), [len(h) for h in hashes])
    h = np.concatenate(hashes) if hashes else np.zeros(0, np.uint32)
    for shift, mult in ((16, 0x85EBCA6B), (13, 0xC2B2AE35)):  # MurmurHash3's finaliser, as datasketch mixes inputs
        h = (h ^ (h >> np.uint32(shift))) * np.uint32(mult)
    h ^= h >> np.uint32(16)
    sig = np.full((len(texts), len(a)), np.iinfo(np.uint32).max, np.uint32)
    for start in range(0, len(h), chunk):  # small chunks stay in the CPU cache: 3x faster than one big one
        rows, who = h[start:start + chunk], owner[start:start + chunk]
        first = np.flatnonzero(np.r_[True, who[1:] != who[:-1]])  # rows are grouped by document
        phv = rows[:, None] * a  # uint32 arithmetic wraps: the permutation a*h+b mod 2^32
        phv += b
        sig[who[first]] = np.minimum(sig[who[first]], np.minimum.reduceat(phv, first, axis=0))
    return sig


def _permutations(args: CleanArguments) -> np.ndarray:
    from datasketch import MinHash

    return MinHash(num_perm=args.num_perm, seed=args.seed, scheme="affine32").permutations


def band_keys(sig: np.ndarray, bands: int, rows: int) -> list[list[int]]:
    """LSH bucket keys: per signature, a 64-bit hash of each band of `rows` values (band number mixed in)."""
    s = sig[:, :bands * rows].astype(np.uint64).reshape(len(sig), bands, rows)
    keys = np.broadcast_to(np.arange(bands, dtype=np.uint64), (len(sig), bands)).copy()
    for j in range(rows):  # wraps mod 2^64; a rare collision only adds a candidate to verify
        keys = keys * np.uint64(0x100000001B3) + s[:, :, j]
    return keys.tolist()


# ---------------------------------------------------------------- the steps

def _check(args: CleanArguments) -> None:
    name = args.dataset_name
    if not name:
        raise UserError("--dataset_name is required: a .txt/.jsonl/.json/.csv/.parquet file, a folder or a Hub id")
    if not Path(name).expanduser().exists() and (Path(name).suffix in BUILDERS or name.startswith((".", "/", "~"))):
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
    from datasets import DatasetDict, load_dataset, load_from_disk

    name, path = args.dataset_name, Path(args.dataset_name).expanduser()
    if (path / "data" / "state.json").is_file():  # the output folder of an earlier 'hfllm data clean'
        path = path / "data"
    if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():  # a save_to_disk folder
        ds = load_from_disk(str(path))
        ds = ds[args.dataset_train_split] if isinstance(ds, DatasetDict) else ds
    elif path.exists():
        files = sorted(p for p in path.rglob("*") if p.suffix in BUILDERS) if path.is_dir() else [path]
        kinds = {BUILDERS.get(p.suffix) for p in files}
        if not files or None in kinds or len(kinds) > 1:
            raise UserError(f"{name}: expected files of one kind among {', '.join(BUILDERS)}, found "
                            f"{', '.join(sorted({p.suffix or p.name for p in files})) or 'none'}")
        if all(p.stat().st_size == 0 for p in files):
            raise UserError(f"{name} holds no documents")
        kind = kinds.pop()
        extra = {"sample_by": TEXT_UNITS[args.text_unit]} if kind == "text" else {}
        try:
            ds = load_dataset(kind, data_files=list(map(str, files)), split="train", cache_dir=str(cache_dir), **extra)
        except Exception as exc:  # malformed JSON/CSV: the innermost cause says where
            while exc.__cause__ is not None:
                exc = exc.__cause__
            raise UserError(f"could not read {name} as {kind}: {str(exc).splitlines()[0][:300]}") from None
    else:
        try:
            ds = load_dataset(name, args.dataset_config, split=args.dataset_train_split)
        except Exception as exc:  # offline, unknown id, bad split: all the user's to fix
            raise UserError(f"could not load '{name}' as a file or Hub dataset: {str(exc).splitlines()[0]}") from None
    column = ds.features.get(args.dataset_text_field)
    if column is None:
        raise UserError(f"{name} has no column '{args.dataset_text_field}' (columns: {', '.join(ds.column_names)}); "
                        "set --dataset_text_field")
    if getattr(column, "dtype", None) not in ("string", "large_string"):
        raise UserError(f"column '{args.dataset_text_field}' of {name} holds {column}, not plain text")
    if len(ds) == 0:
        raise UserError(f"{name} holds no documents")
    return ds.select(range(min(len(ds), args.max_samples))) if args.max_samples else ds


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


def deduplicate(ds, args: CleanArguments, report: dict) -> np.ndarray:
    """One sequential pass: the indices of the documents to keep; fills the report's counts.

    datasketch picks the bands (b bands of r rows) for the threshold, weighted to miss few true
    pairs (false positives 0.05, false negatives 0.95), since every candidate is then verified on
    its estimated Jaccard: a spurious one costs a lookup, not a document. The buckets are one dict
    of band key -> kept document (a list when several share it), a quarter of the memory that
    datasketch's MinHashLSH takes (a set per bucket, every band's bytes stored twice).
    """
    from datasketch import MinHashLSH

    lsh = MinHashLSH(args.near_dup_threshold, args.num_perm, weights=(0.05, 0.95))
    keep, seen, buckets, clusters = np.zeros(len(ds), bool), {}, {}, {}  # clusters: kept -> [copies, a copy]
    stored = ds.data.column("_minhash")  # memory-mapped: candidates' signatures are read back from disk
    lengths, removed, found = [], report["removed"], report["pii_found"]
    start = 0
    helpers = ds.select_columns([c for c in ds.column_names if c.startswith("_")])
    for batch in helpers.with_format("arrow").iter(batch_size=10_000):
        drops, hashes = batch.column("_drop").to_pylist(), batch.column("_hash").to_pylist()
        sigs = batch.column("_minhash").combine_chunks().flatten().to_numpy().reshape(len(batch), -1)
        keys = band_keys(sigs, lsh.b, lsh.r) if args.near_dedup else None
        for j in range(len(batch)):
            i, reason, rep = start + j, drops[j], None
            if not reason and args.exact_dedup and hashes[j] in seen:
                reason, rep = "exact_duplicate", seen[hashes[j]]
            elif not reason and keys is not None:
                candidates = set()
                for key in keys[j]:
                    bucket = buckets.get(key)
                    if isinstance(bucket, list):
                        candidates.update(bucket)
                    elif bucket is not None:
                        candidates.add(bucket)
                score, best = max(((np.mean(stored[c].values.to_numpy() == sigs[j]), c) for c in candidates),
                                  default=(0.0, None))
                if score >= args.near_dup_threshold:
                    reason, rep = "near_duplicate", best
                else:
                    for key in keys[j]:
                        bucket = buckets.setdefault(key, i)
                        if isinstance(bucket, list):
                            bucket.append(i)
                        elif bucket != i:
                            buckets[key] = [bucket, i]
            if reason:
                removed[reason] += 1
                if rep is not None:
                    clusters.setdefault(rep, [0, i])[0] += 1
                    if args.exact_dedup:  # later copies of this text point at the kept document
                        seen.setdefault(hashes[j], rep)
                continue
            keep[i] = True
            if args.exact_dedup:
                seen[hashes[j]] = i
        kept = keep[start:start + len(batch)]
        lengths.append(batch.column("_length").to_numpy()[kept])
        for kind in pii.KINDS:
            found[kind] += int(batch.column(f"_pii_{kind}").to_numpy()[kept].sum())
        start += len(batch)
    biggest = sorted(clusters.items(), key=lambda kv: -kv[1][0])[:5]
    text = ds.data.column(args.dataset_text_field)
    report["duplicate_clusters"] = {
        "count": len(clusters), "largest": 1 + biggest[0][1][0] if biggest else 0,
        "examples": [{"size": 1 + n, "kept": text[rep].as_py()[:120], "removed": text[dup].as_py()[:120]}
                     for rep, (n, dup) in biggest]}
    report["near_dedup"] = {"threshold": args.near_dup_threshold, "shingle_size": args.shingle_size,
                            "num_perm": args.num_perm, "bands": lsh.b, "rows_per_band": lsh.r}
    report["_lengths"] = np.concatenate(lengths)
    return np.flatnonzero(keep)


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


def clean(args: CleanArguments) -> dict:
    """Run every step into a temporary folder, then put it in output_dir's place; return the report."""
    _check(args)
    out, source = Path(args.output_dir).expanduser().resolve(), Path(args.dataset_name).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.overwrite:
        raise UserError(f"output_dir {args.output_dir} already holds something; pass --overwrite or choose another")
    if source.exists() and (source == out or out in source.parents or source in out.parents):
        raise UserError(f"output_dir {args.output_dir} and the input {args.dataset_name} overlap; keep them apart")
    detect, tokenizer = _detector(args.languages), None
    if args.tokenizer_name_or_path:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer_name_or_path)
    tmp, old = (out.parent / f".{out.name}.{what}-{os.getpid()}" for what in ("tmp", "old"))
    shutil.rmtree(tmp, ignore_errors=True)
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
    kwargs = {"args": args, "perms": _permutations(args), "detect": detect, "tokenizer": tokenizer}
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
    (args,), _ = parse_args([CleanArguments], argv, prog="hfllm data clean")
    report = clean(args)
    print_report(report, args.output_dir)
    return 0
