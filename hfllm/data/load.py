"""Load datasets from local files, folders, the built-in default data, or the Hub.

``dataset_name`` may be:
- ``builtin:<part>``: hfllm's generated default data (see hfllm.data.builtin);
- a local file: .txt (one example per line), .jsonl/.json, .csv, .parquet;
- a folder of such files (all with the same extension);
- a Hub / ``datasets`` id such as ``roneneldan/TinyStories``.

Everything is a ``datasets.Dataset`` (or ``IterableDataset`` when streaming), so
caching, batched ``map`` and memory mapping come from the library.
"""

from __future__ import annotations

from pathlib import Path

import datasets

from hfllm.errors import UserError

BUILDERS = {".txt": "text", ".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def _local_files(path: Path) -> tuple[str, list[str]]:
    """The datasets builder and file list for a local file or folder."""
    if path.is_file():
        files = [path]
    else:
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in BUILDERS)
        if not files:
            raise UserError(f"folder {path} holds no {'/'.join(BUILDERS)} files")
    suffixes = {p.suffix for p in files}
    if len({BUILDERS.get(s) for s in suffixes}) != 1 or None in {BUILDERS.get(s) for s in suffixes}:
        raise UserError(
            f"{path}: cannot read {', '.join(sorted(suffixes))} files; use one of {', '.join(BUILDERS)}"
            " (all files in a folder must share one format)"
        )
    for p in files:
        if p.stat().st_size == 0:
            raise UserError(f"dataset file {p} is empty")
    return BUILDERS[files[0].suffix], [str(p) for p in files]


EXPECTED = {"json": "one JSON object per line (.jsonl) or a JSON list of objects (.json)",
            "csv": "a CSV file with a header row", "text": "UTF-8 text", "parquet": "a Parquet file"}


def _reason(exc: BaseException, builder: str | None) -> str:
    """The useful line of a loading error: `datasets` wraps the parser's words in a generic one."""
    chain = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    expected = f"; expected {EXPECTED[builder]}" if builder in EXPECTED else ""
    if any(isinstance(e, UnicodeDecodeError) for e in chain):
        return f"it is not UTF-8 text (a binary file?){expected}"
    words = [str(e).strip().splitlines()[0] for e in chain if str(e).strip()]
    words = [w for w in words if not w.startswith("An error occurred while generating")] or [type(chain[0]).__name__]
    return f"{words[0][:300]}{expected}"


def resolve(dataset_name: str) -> str:
    """Turn ``builtin:<part>`` into the path of its generated file; other names pass through."""
    if dataset_name.startswith("builtin:"):
        from hfllm.data.builtin import builtin_path

        return str(builtin_path(dataset_name.split(":", 1)[1]))
    return dataset_name


def load(
    dataset_name: str,
    *,
    config: str | None = None,
    split: str = "train",
    streaming: bool = False,
    revision: str | None = None,
):
    """Load one split of a dataset, with a UserError for every way the name can be wrong."""
    if not dataset_name:
        raise UserError("no dataset given: set --dataset_name (a file, a folder, builtin:<part> or a Hub id)")
    name = resolve(dataset_name)
    path = Path(name).expanduser()
    looks_local = path.exists() or name.startswith((".", "/", "~")) or path.suffix in BUILDERS
    builder = None
    try:
        if looks_local:
            if not path.exists():
                raise UserError(f"dataset not found: {name} (no such file or folder)")
            builder, files = _local_files(path)
            # Local files have a single split; `split` only matters for Hub datasets.
            ds = datasets.load_dataset(builder, data_files={"train": files}, split="train", streaming=streaming)
        else:
            ds = datasets.load_dataset(name, config, split=split, streaming=streaming, revision=revision)
    except UserError:
        raise
    except datasets.exceptions.DatasetNotFoundError:
        raise UserError(f"dataset not found: '{name}' is neither a local path nor a reachable Hub dataset") from None
    except (ValueError, FileNotFoundError, datasets.exceptions.DatasetGenerationError) as exc:
        raise UserError(f"could not read dataset '{name}': {_reason(exc, builder if looks_local else None)}") \
            from None
    if not streaming and len(ds) == 0:
        raise UserError(f"dataset '{name}' (split '{split}') has no rows")
    return ds


def require_columns(ds, columns: list[str], dataset_name: str, hint: str = "") -> None:
    """Fail early, naming the missing column and the ones that do exist."""
    have = list(ds.column_names or [])
    missing = [c for c in columns if c not in have]
    if missing:
        extra = f"; {hint}" if hint else ""
        raise UserError(
            f"dataset '{dataset_name}' has no column '{missing[0]}' (columns: {', '.join(have) or 'none'}){extra}"
        )


def iter_texts(ds, text_field: str, dataset_name: str):
    """Yield the non-empty strings of one column, lazily (works for streaming datasets too)."""
    require_columns(ds, [text_field], dataset_name, "choose it with --dataset_text_field")
    # One column, a thousand rows at a time: row-by-row iteration builds a dict per row and made the
    # tokenizer stage a third slower than the bare trainer (bench/bench_tokenizer.py).
    for batch in ds.select_columns([text_field]).iter(batch_size=1000):
        for text in batch[text_field]:
            if isinstance(text, str) and text.strip():
                yield text
