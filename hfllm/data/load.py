"""The one dataset loader: local files, folders, saved datasets, the built-in data, the Hub.

``dataset_name`` may be:
- ``builtin:<part>``: hfllm's generated default data (see hfllm.data.builtin);
- a local file: .txt/.md (one example per line), .jsonl/.json, .csv, .parquet;
- a folder of such files (all of one kind), or a folder written by ``Dataset.save_to_disk``
  (``hfllm data clean`` writes one under ``data/``);
- a Hub / ``datasets`` id such as ``roneneldan/TinyStories``.

Everything is a ``datasets.Dataset`` (or ``IterableDataset`` when streaming), so caching,
batched ``map`` and memory mapping come from the library. The dataset options are TRL's
(``ScriptArguments``), so a TRL config's dataset keys work here unchanged.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import datasets
import trl

from hfllm.errors import UserError, causes, first_line
from hfllm.loading import is_local

BUILDERS = {".txt": "text", ".md": "text", ".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
EXPECTED = {"json": "one JSON object per line (.jsonl) or a JSON list of objects (.json)",
            "csv": "a CSV file with a header row", "text": "UTF-8 text", "parquet": "a Parquet file"}
NOT_UTF8 = "it is not UTF-8 text (a binary file?)"


@dataclasses.dataclass
class ScriptArguments(trl.ScriptArguments):
    """TRL's dataset fields (dataset_name, dataset_config, dataset_train_split, dataset_test_split,
    dataset_streaming, ignore_bias_buffers), plus what every hfllm command that reads data shares.

    Held-out rows come from ``eval_dataset_name`` (or, without it, the training dataset) at
    ``dataset_test_split`` when either is set; a stage that can hold out a share of its
    training data instead has an ``eval_split_size``.
    """

    dataset_test_split: str | None = dataclasses.field(
        default=None, metadata={"help": "eval split (of eval_dataset_name, or of dataset_name without it)"})
    eval_dataset_name: str | None = dataclasses.field(default=None, metadata={"help": "a separate eval dataset"})
    max_train_samples: int | None = dataclasses.field(default=None, metadata={"help": "use at most this many rows"})
    overwrite: bool = dataclasses.field(default=False, metadata={"help": "replace a finished run in output_dir"})
    strict: bool = dataclasses.field(default=False, metadata={"help": "refuse the data on its first bad row "
                                                                      "(default: skip bad rows and count them)"})
    max_bad_share: float = dataclasses.field(default=0.1, metadata={"help": "refuse the data when more than this "
                                                                            "share of its rows is bad"})
    evaluate_after: list[str] = dataclasses.field(default_factory=list, metadata={
        "help": "hfllm eval tasks run on the saved model (e.g. hfllm_facts, hfllm, a harness task, a data file); "
                "results in metrics.json's eval block and the model card"})

    def check_supported(self, prog: str, *, streaming: bool = False, trains_model: bool = True,
                        held_out: bool = True) -> None:
        """Refuse TRL's dataset options this command has no use for, rather than ignore them."""
        unused = [("dataset_streaming", self.dataset_streaming and not streaming,
                   "it needs the whole dataset (every row is checked or converted)"),
                  ("ignore_bias_buffers", self.ignore_bias_buffers and not trains_model, "it trains no model"),
                  ("dataset_test_split", self.dataset_test_split and not held_out, "it holds out no eval rows"),
                  ("eval_dataset_name", self.eval_dataset_name and not held_out, "it holds out no eval rows"),
                  ("evaluate_after", self.evaluate_after and not trains_model, "it makes no model to evaluate")]
        for name, used, why in unused:
            if used:
                raise UserError(f"--{name} does not apply to {prog}: {why}")

    def eval_source(self) -> tuple[str, str, str | None] | None:
        """(dataset, split, config) of the held-out rows when the user named them, else None. The
        dataset_config is the training dataset's: a separate eval dataset is read without it."""
        if not (self.eval_dataset_name or self.dataset_test_split):
            return None
        name = self.eval_dataset_name or self.dataset_name
        return name, self.dataset_test_split or "train", self.dataset_config if name == self.dataset_name else None


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


def _reason(exc: BaseException, builder: str | None) -> str:
    """The useful line of a loading error: `datasets` wraps the parser's words in a generic one."""
    chain = list(causes(exc))
    expected = f"; expected {EXPECTED[builder]}" if builder in EXPECTED else ""
    if any(isinstance(e, UnicodeDecodeError) for e in chain):
        return f"{NOT_UTF8}{expected}"
    words = [first_line(e) for e in chain if str(e).strip()]
    words = [w for w in words if not w.startswith("An error occurred while generating")] or [type(chain[0]).__name__]
    return f"{words[0][:300]}{expected}"


def resolve(dataset_name: str) -> str:
    """Turn ``builtin:<part>`` into the path of its generated file; other names pass through."""
    if dataset_name.startswith("builtin:"):
        from hfllm.data.builtin import builtin_path

        return str(builtin_path(dataset_name.split(":", 1)[1]))
    return dataset_name


def _saved_dataset(path: Path) -> Path | None:
    """The save_to_disk folder at path (or at path/data, as ``hfllm data clean`` writes it), if any."""
    for folder in (path / "data", path):
        if (folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file():
            return folder
    return None


def load_dataset(dataset_name: str, *, config: str | None = None, split: str = "train", streaming: bool = False,
                 revision: str | None = None, sample_by: str | None = None, cache_dir: str | None = None):
    """Load one split of a dataset, with a UserError for every way the name can be wrong.

    ``sample_by`` (line, paragraph, document) is how .txt/.md files are cut into examples;
    ``cache_dir`` is where local files become Arrow files (default: the datasets cache).
    """
    if not dataset_name:
        raise UserError("no dataset given: set --dataset_name (a file, a folder, builtin:<part> or a Hub id)")
    name = resolve(dataset_name)
    path = Path(name).expanduser()
    local = is_local(name)
    builder = None
    try:
        if local and not path.exists():
            raise UserError(f"dataset not found: {name} (no such file or folder)")
        if local and (saved := _saved_dataset(path)) is not None:
            ds = datasets.load_from_disk(str(saved))
            ds = ds[split] if isinstance(ds, datasets.DatasetDict) else ds
            ds = ds.to_iterable_dataset() if streaming else ds
        elif local:
            builder, files = _local_files(path)
            extra = {"sample_by": sample_by} if builder == "text" and sample_by else {}
            # Local files have a single split; `split` only matters for Hub and saved datasets.
            ds = datasets.load_dataset(builder, data_files={"train": files}, split="train", streaming=streaming,
                                       cache_dir=cache_dir, **extra)
        else:
            ds = datasets.load_dataset(name, config, split=split, streaming=streaming, revision=revision)
    except UserError:
        raise
    except datasets.exceptions.DatasetNotFoundError:
        raise UserError(f"dataset not found: '{name}' is neither a local path nor a reachable Hub dataset") from None
    except ConnectionError as exc:  # offline (HF_HUB_OFFLINE) or no network: the name was taken for a Hub id
        raise UserError(f"dataset '{name}' is not a local path, and the Hub cannot be reached to look for it "
                        f"({first_line(exc)}); check the path, or the network") from None
    except (ValueError, KeyError, FileNotFoundError, datasets.exceptions.DatasetGenerationError) as exc:
        raise UserError(f"could not read dataset '{name}': {_reason(exc, builder)}") from None
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


def plain_text_files(dataset_name: str) -> list[str] | None:
    """The .txt/.md files a local ``dataset_name`` names (None for anything else): a reader that only needs their
    lines can read them straight, without datasets' pass that writes them to Arrow first."""
    name = resolve(dataset_name)
    path = Path(name).expanduser()
    if not is_local(name) or not path.exists() or _saved_dataset(path) is not None:
        return None
    builder, files = _local_files(path)
    return files if builder == "text" else None


def iter_lines(files: list[str]):
    """The non-blank lines of text files, cut where datasets' text builder cuts them."""
    for file in files:
        try:
            with open(file, encoding="utf-8") as f:
                for line in f:  # text mode: "\r\n" and "\r" arrive as "\n", the only break datasets cuts at
                    if line.strip():
                        yield line.rstrip("\n")
        except UnicodeDecodeError:
            raise UserError(f"could not read dataset '{file}': {NOT_UTF8}; expected {EXPECTED['text']}") from None


def first_rows(ds, limit: int | None):
    """At most ``limit`` rows (all when limit is None or 0)."""
    return ds.select(range(min(limit, len(ds)))) if limit else ds
