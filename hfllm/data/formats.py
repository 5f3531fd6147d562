"""Dataset formats: detect them, check every row, convert to the ones TRL reads.

TRL's formats pass through unchanged:
- language modeling: ``text``;
- conversational: ``messages`` (lists of {"role", "content"}, system turns allowed);
- prompt-completion: ``prompt`` / ``completion`` (strings, or lists of messages);
- preference: ``prompt`` / ``chosen`` / ``rejected`` (strings or messages), or
  ``chosen`` / ``rejected`` alone with the prompt inside each.
Converted on load:
- Alpaca ``instruction`` / ``input`` / ``output`` -> conversational prompt/completion;
- whole transcripts ``chosen`` / ``rejected`` sharing a prefix, as in Anthropic
  HH-RLHF ("\\n\\nHuman: ...\\n\\nAssistant: ..."), -> conversational prompt + answers.

A row that fits no format is an error naming the dataset, the row and the field.
Rows with an empty answer are dropped and counted (the rule: an empty target teaches nothing).
"""

from __future__ import annotations

import re

from hfllm.errors import UserError, first_line

SFT_FORMATS = ("text", "messages", "prompt_completion", "alpaca")
PREFERENCE_FORMATS = ("preference", "implicit_preference", "hh")
ROLES = {"system", "user", "assistant", "tool"}


def _names(columns) -> str:
    """Column names for a message: odd ones (newlines, control characters) quoted so it stays one line."""
    return ", ".join(sorted(c if c.isprintable() else repr(c) for c in map(str, columns))) or "none"


def detect(columns: list[str], kind: str, dataset_name: str) -> str:
    """Name the format of a dataset from its columns; ``kind`` is 'sft' or 'preference'."""
    cols = set(columns)
    if kind == "preference":
        if {"chosen", "rejected"} <= cols:
            return "preference" if "prompt" in cols else "implicit_preference"
        raise UserError(f"dataset '{dataset_name}' is not a preference dataset: it needs 'chosen' and 'rejected' "
                        f"columns (and usually 'prompt'); it has {_names(cols)}")
    for fmt, needed in (("messages", {"messages"}), ("prompt_completion", {"prompt", "completion"}),
                        ("alpaca", {"instruction", "output"}), ("text", {"text"})):
        if needed <= cols:
            return fmt
    raise UserError(f"dataset '{dataset_name}' fits no SFT format: expected 'messages', 'prompt'+'completion', "
                    f"'instruction'+'output' or 'text' columns; it has {_names(cols)}")


def _check_messages(value, where: str, field: str, need_assistant_last: bool) -> None:
    if not isinstance(value, list) or not value:
        raise UserError(f"{where}: '{field}' must be a non-empty list of {{role, content}} messages")
    for i, message in enumerate(value):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise UserError(f"{where}: '{field}'[{i}] must have 'role' and 'content'")
        if not isinstance(message["role"], str) or message["role"] not in ROLES:
            raise UserError(f"{where}: '{field}'[{i}] has role {message['role']!r}; use one of {sorted(ROLES)}")
        if not isinstance(message["content"], str):
            raise UserError(f"{where}: '{field}'[{i}].content must be a string")
    if need_assistant_last and value[-1]["role"] != "assistant":
        raise UserError(f"{where}: the last message of '{field}' must be the assistant's answer")


def _text_of(value) -> str:
    return value if isinstance(value, str) else " ".join(m.get("content", "") for m in value or [])


def _is_text_or_messages(value, where: str, field: str, need_assistant_last: bool = False) -> None:
    if isinstance(value, str):
        return
    if value is None:
        raise UserError(f"{where}: '{field}' is missing (null)")
    _check_messages(value, where, field, need_assistant_last)


HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


def split_transcript(text: str, where: str) -> list[dict]:
    """'\\n\\nHuman: hi\\n\\nAssistant: hello' -> [{user: hi}, {assistant: hello}]."""
    parts = HH_TURN.split(text if text.startswith("\n\n") else "\n\n" + text)
    if len(parts) < 3 or parts[0].strip():
        raise UserError(f"{where}: expected a transcript of '\\n\\nHuman: ...\\n\\nAssistant: ...' turns")
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[parts[i]], "content": parts[i + 1].strip()} for i in range(1, len(parts), 2)]


def convert_row(row: dict, fmt: str, where: str) -> dict | None:
    """One row in TRL's format, or None when it has an empty answer (dropped and counted)."""
    if fmt == "text":
        if not isinstance(row.get("text"), str):
            raise UserError(f"{where}: 'text' must be a string")
        return {"text": row["text"]} if row["text"].strip() else None
    if fmt == "messages":
        _check_messages(row.get("messages"), where, "messages", need_assistant_last=True)
        return {"messages": row["messages"]} if row["messages"][-1]["content"].strip() else None
    if fmt == "prompt_completion":
        _is_text_or_messages(row.get("prompt"), where, "prompt")
        _is_text_or_messages(row.get("completion"), where, "completion")
        return {"prompt": row["prompt"], "completion": row["completion"]} if _text_of(row["completion"]).strip() else None
    if fmt == "alpaca":
        instruction, extra, output = row.get("instruction"), row.get("input"), row.get("output")
        if not isinstance(instruction, str) or not instruction.strip():
            raise UserError(f"{where}: 'instruction' must be a non-empty string")
        if not isinstance(output, str):
            raise UserError(f"{where}: 'output' must be a string")
        if extra is not None and not isinstance(extra, str):
            raise UserError(f"{where}: 'input' must be a string (or empty), not {type(extra).__name__}")
        content = f"{instruction.strip()}\n\n{extra.strip()}" if extra and extra.strip() else instruction.strip()
        if not output.strip():
            return None
        return {"prompt": [{"role": "user", "content": content}],
                "completion": [{"role": "assistant", "content": output.strip()}]}
    if fmt in ("preference", "implicit_preference"):
        if fmt == "preference":
            _is_text_or_messages(row.get("prompt"), where, "prompt")
        for field in ("chosen", "rejected"):
            _is_text_or_messages(row.get(field), where, field, need_assistant_last=fmt == "implicit_preference")
        if fmt == "implicit_preference" and isinstance(row["chosen"], str) and HH_TURN.search("\n\n" + row["chosen"]):
            if not isinstance(row["rejected"], str):
                raise UserError(f"{where}: 'chosen' is a transcript but 'rejected' is not; give both as "
                                "'\\n\\nHuman: ...\\n\\nAssistant: ...' text")
            return hh_to_preference(row, where)
        if not _text_of(row["chosen"]).strip() or not _text_of(row["rejected"]).strip():
            return None
        if row["chosen"] == row["rejected"]:
            raise UserError(f"{where}: 'chosen' and 'rejected' are identical; a pair must differ")
        keep = ("prompt", "chosen", "rejected") if fmt == "preference" else ("chosen", "rejected")
        return {k: row[k] for k in keep}
    raise UserError(f"unknown dataset format '{fmt}'")


def hh_to_preference(row: dict, where: str) -> dict | None:
    """Split two whole transcripts into their shared prompt and the two final answers."""
    chosen, rejected = split_transcript(row["chosen"], where), split_transcript(row["rejected"], where)
    if chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        raise UserError(f"{where}: each transcript must end with an Assistant turn")
    if chosen[:-1] != rejected[:-1]:
        raise UserError(f"{where}: 'chosen' and 'rejected' transcripts must share every turn but the last")
    if not chosen[-1]["content"] or not rejected[-1]["content"]:
        return None
    if chosen[-1]["content"] == rejected[-1]["content"]:
        raise UserError(f"{where}: 'chosen' and 'rejected' end with the same answer; a pair must differ")
    return {"prompt": chosen[:-1], "chosen": [chosen[-1]], "rejected": [rejected[-1]]}


def normalise(ds, kind: str, dataset_name: str, fmt: str = "auto"):
    """Check and convert every row; returns (dataset, format, number of rows dropped as empty).

    ``Dataset.filter`` then ``Dataset.map``: the rows stream through in batches and the result is
    memory-mapped from the datasets cache (reused when the same data comes again), never a list in RAM.
    """
    fmt = detect(ds.column_names, kind, dataset_name) if fmt in ("auto", None) else fmt
    allowed = SFT_FORMATS if kind == "sft" else PREFERENCE_FORMATS + ("implicit_preference",)
    if fmt not in allowed:
        raise UserError(f"dataset_format '{fmt}' is not a {kind} format; choose one of {', '.join(allowed)}")

    def usable(row, i):  # raises, naming the row, on a row that fits no format
        return convert_row(row, fmt, f"{dataset_name}, row {i + 1}") is not None

    kept = ds.filter(usable, with_indices=True, desc="checking rows")
    dropped = len(ds) - len(kept)
    if not len(kept):
        raise UserError(f"dataset '{dataset_name}' has no usable rows ({dropped} had empty answers)")
    if dropped:
        print(f"note: dropped {dropped} rows of '{dataset_name}' with an empty answer")
    extra = [c for c in ("answer",) if c in ds.column_names]  # a checkable answer rides along for evaluation
    shapes: dict[str, tuple[int, str]] = {}

    def convert(row, i):
        out = {**convert_row(row, fmt, dataset_name), **{c: row[c] for c in extra}}
        if fmt == "implicit_preference":
            out.setdefault("prompt", None)  # HH transcripts give one; every row needs the same columns
        _check_same_shape(out, i, shapes, dataset_name)
        return out

    try:
        converted = kept.map(convert, with_indices=True, remove_columns=kept.column_names, desc="converting rows")
    except (ValueError, TypeError) as exc:  # pyarrow's ArrowInvalid / ArrowTypeError: rows Arrow cannot unify
        raise UserError(f"dataset '{dataset_name}': its rows do not fit one table ({first_line(exc)}); "
                        "give every row the same fields and shapes") from None
    if "prompt" in converted.column_names and converted.data.column("prompt").null_count == len(converted):
        converted = converted.remove_columns("prompt")
    return converted, fmt, dropped


def _shape(value) -> str:
    return "text" if isinstance(value, str) else "a list of messages" if isinstance(value, list) else \
        type(value).__name__


def _check_same_shape(row: dict, i: int, first: dict[str, tuple[int, str]], dataset_name: str) -> None:
    """One table needs one type per column: text in one row and messages in another cannot mix. ``first``
    holds each column's shape in the first usable row that had it (``i`` counts usable rows)."""
    for key, value in row.items():
        if value is None:
            continue
        shape = _shape(value)
        seen = first.setdefault(key, (i, shape))
        if seen[1] != shape:
            raise UserError(f"{dataset_name}: after conversion, '{key}' is {shape} in usable row {i + 1} but "
                            f"{seen[1]} in usable row {seen[0] + 1}; give every row the same shape "
                            "(all text, or all messages)")


def load_train_eval(args, kind: str, seed: int):
    """Train and eval datasets from a stage's script arguments, checked and converted.

    The eval set is, in order of preference: ``eval_dataset_name`` or the ``dataset_test_split``
    of the same dataset (``args.eval_source()``), or ``eval_split_size`` rows held out of the
    training data. Returns (train, eval or None, format, rows dropped as empty).
    """
    from hfllm.data.load import first_rows, load_dataset

    fmt = getattr(args, "dataset_format", "auto")

    def load_one(name, split, config, limit=None):
        ds = first_rows(load_dataset(name, config=config, split=split), limit)
        return normalise(ds, kind, name, fmt)

    train, fmt, dropped = load_one(args.dataset_name, args.dataset_train_split, args.dataset_config,
                                   args.max_train_samples)
    train, eval_ds = split_eval(args, train, lambda *source: load_one(*source)[0], seed)
    return train, eval_ds, fmt, dropped


def split_eval(args, train, load_eval, seed: int):
    """(train, eval or None): ``load_eval(*args.eval_source())`` when there is one, else ``eval_split_size``
    rows held out of train (a share below 1, a count from 1)."""
    if (source := args.eval_source()) is not None:
        return train, load_eval(*source)
    if not args.eval_split_size:
        return train, None
    size = args.eval_split_size if args.eval_split_size < 1 else int(args.eval_split_size)
    if size >= len(train):
        raise UserError(f"eval_split_size {args.eval_split_size} leaves no training rows of {len(train)}")
    parts = train.train_test_split(test_size=size, seed=seed)
    return parts["train"], parts["test"]


def pair_columns(ds):
    """Only the columns preference trainers read (extra ones like 'answer' are for evaluation)."""
    if ds is None:
        return None
    return ds.remove_columns([c for c in ds.column_names if c not in ("prompt", "chosen", "rejected")])
