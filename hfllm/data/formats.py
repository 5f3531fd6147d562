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

SFT_FORMATS = ("text", "messages", "sharegpt", "prompt_completion", "alpaca")
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
    for fmt, needed in (("messages", {"messages"}), ("sharegpt", {"conversations"}),
                        ("prompt_completion", {"prompt", "completion"}),
                        ("alpaca", {"instruction", "output"}), ("text", {"text"})):
        if needed <= cols:
            return fmt
    raise UserError(f"dataset '{dataset_name}' fits no SFT format: expected 'messages', 'conversations', "
                    "'prompt'+'completion', "
                    f"'instruction'+'output' or 'text' columns; it has {_names(cols)}")


SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
                  "model": "assistant", "system": "system", "tool": "tool", "function": "tool", "observation": "tool"}


def _content(value, where: str, name: str) -> str:
    """A message's text: a string, or OpenAI-style parts [{type: text, text}] joined (text only)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(p, dict) for p in value):
        kinds = {p.get("type") for p in value} - {"text"}
        if kinds:
            raise UserError(f"{where}: {name} has a {sorted(map(str, kinds))[0]!r} part; hfllm trains on text "
                            "parts only")
        if not all(isinstance(p.get("text"), str) for p in value):
            raise UserError(f"{where}: {name} has a text part without a 'text' string")
        return "\n".join(p["text"] for p in value)
    raise UserError(f"{where}: {name}.content must be a string or a list of {{type: text, text}} parts")


def _tool_calls(calls, where: str, name: str) -> list[dict]:
    """OpenAI tool calls as [{type: function, function: {name, arguments}}] with the arguments as JSON text:
    one Arrow type for every row, whatever each call's arguments hold."""
    import json

    out = []
    for call in calls if isinstance(calls, list) else [None]:
        function = call.get("function", call) if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise UserError(f"{where}: {name}.tool_calls must be a list of {{function: {{name, arguments}}}}")
        arguments = function.get("arguments", {})
        out.append({"type": "function", "function": {"name": function["name"], "arguments": arguments if
                    isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)}})
    return out


def _messages(value, where: str, field: str, need_assistant_last: bool) -> list[dict]:
    """Check a conversation and return it as [{role, content}] (+ tool_calls where a turn has them): ShareGPT's
    {from, value} and content parts are converted, so every row has one shape."""
    if not isinstance(value, list) or not value:
        raise UserError(f"{where}: '{field}' must be a non-empty list of {{role, content}} messages")
    out = []
    for i, message in enumerate(value):
        name = f"'{field}'[{i}]"
        if isinstance(message, dict) and "from" in message and "value" in message and "role" not in message:
            role = SHAREGPT_ROLES.get(message["from"]) if isinstance(message["from"], str) else None
            if role is None:
                raise UserError(f"{where}: {name} is from {message['from']!r}; use one of "
                                f"{', '.join(sorted(SHAREGPT_ROLES))}")
            message = {"role": role, "content": message["value"]}
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise UserError(f"{where}: {name} must have 'role' and 'content'")
        if not isinstance(message["role"], str) or message["role"] not in ROLES:
            raise UserError(f"{where}: {name} has role {message['role']!r}; use one of {sorted(ROLES)}")
        calls = message.get("tool_calls")
        if calls and message["role"] == "assistant":  # a call's content is often null
            out.append({"role": "assistant", "content": _content(message["content"] or "", where, name),
                        "tool_calls": _tool_calls(calls, where, name)})
        else:
            out.append({"role": message["role"], "content": _content(message["content"], where, name)})
    if need_assistant_last and out[-1]["role"] != "assistant":
        raise UserError(f"{where}: the last message of '{field}' must be the assistant's answer")
    if any("tool_calls" in m for m in out):  # one shape for every turn of the row
        out = [{"tool_calls": None, **m} for m in out]
    return out


def _text_of(value) -> str:
    return value if isinstance(value, str) else " ".join(m.get("content") or "" for m in value or [])


def _text_or_messages(value, where: str, field: str, need_assistant_last: bool = False):
    if isinstance(value, str):
        return value
    if value is None:
        raise UserError(f"{where}: '{field}' is missing (null)")
    return _messages(value, where, field, need_assistant_last)


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
    if fmt in ("messages", "sharegpt"):
        field = "messages" if fmt == "messages" else "conversations"
        messages = _messages(row.get(field), where, field, need_assistant_last=True)
        return {"messages": messages} if messages[-1]["content"].strip() or messages[-1].get("tool_calls") else None
    if fmt == "prompt_completion":
        prompt = _text_or_messages(row.get("prompt"), where, "prompt")
        completion = _text_or_messages(row.get("completion"), where, "completion")
        return {"prompt": prompt, "completion": completion} if _text_of(completion).strip() else None
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
        row = dict(row)
        if fmt == "preference":
            row["prompt"] = _text_or_messages(row.get("prompt"), where, "prompt")
        for field in ("chosen", "rejected"):
            row[field] = _text_or_messages(row.get(field), where, field,
                                           need_assistant_last=fmt == "implicit_preference")
        if fmt == "implicit_preference" and isinstance(row["chosen"], str) and HH_TURN.search("\n\n" + row["chosen"]):
            if not isinstance(row["rejected"], str):
                raise UserError(f"{where}: 'chosen' is a transcript but 'rejected' is not; give both as "
                                "'\\n\\nHuman: ...\\n\\nAssistant: ...' text")
            return hh_to_preference(row, where)
        if not _text_of(row["chosen"]).strip() or not _text_of(row["rejected"]).strip():
            return None
        if row["chosen"] == row["rejected"]:
            raise UserError(f"{where}: 'chosen' and 'rejected' are identical; a pair must differ")
        if fmt == "implicit_preference" and isinstance(row["chosen"], list) and isinstance(row["rejected"], list) \
                and len(row["chosen"]) > 1:  # a prompt inside both conversations
            return split_shared_prompt(row["chosen"], row["rejected"], where)
        keep = ("prompt", "chosen", "rejected") if fmt == "preference" else ("chosen", "rejected")
        return {k: row[k] for k in keep}
    raise UserError(f"unknown dataset format '{fmt}'")


def hh_to_preference(row: dict, where: str) -> dict | None:
    """Split two whole transcripts into their shared prompt and the two final answers."""
    return split_shared_prompt(split_transcript(row["chosen"], where), split_transcript(row["rejected"], where),
                               where, transcripts=True)


def split_shared_prompt(chosen: list[dict], rejected: list[dict], where: str, transcripts: bool = False):
    """Two conversations that share every turn but the last -> the shared turns as the prompt, as TRL's
    ``extract_prompt`` does, and the two final answers."""
    if chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        raise UserError(f"{where}: each transcript must end with an Assistant turn")
    if chosen[:-1] != rejected[:-1]:
        what = "transcripts" if transcripts else "conversations"
        raise UserError(f"{where}: 'chosen' and 'rejected' {what} must share every turn but the last")
    if not chosen[-1]["content"].strip() or not rejected[-1]["content"].strip():
        return None
    if chosen[-1]["content"] == rejected[-1]["content"]:
        raise UserError(f"{where}: 'chosen' and 'rejected' end with the same answer; a pair must differ")
    return {"prompt": chosen[:-1], "chosen": [chosen[-1]], "rejected": [rejected[-1]]}


def normalise(ds, kind: str, dataset_name: str, fmt: str = "auto", *, strict: bool = False,
              max_bad_share: float = 0.1):
    """Check and convert every row; returns (dataset, format, RowReport: rows skipped as bad or empty).

    A row that fails its checks is skipped and counted (hfllm.data.rows), unless ``strict``. ``Dataset.map``
    then ``filter``: the rows stream through in batches and the result is memory-mapped from the datasets
    cache (reused when the same data comes again), never a list in RAM.
    """
    from hfllm.data.rows import check_rows

    fmt = detect(ds.column_names, kind, dataset_name) if fmt in ("auto", None) else fmt
    allowed = SFT_FORMATS if kind == "sft" else PREFERENCE_FORMATS + ("implicit_preference",)
    if fmt not in allowed:
        raise UserError(f"dataset_format '{fmt}' is not a {kind} format; choose one of {', '.join(allowed)}")

    def usable(row, where):  # raises, naming the row, on a row that fits no format
        return convert_row(row, fmt, where) is not None

    kept, report = check_rows(ds, usable, lambda i: f"{dataset_name}, row {i + 1}", strict=strict,
                              max_bad_share=max_bad_share)
    if not len(kept):
        raise UserError(f"dataset '{dataset_name}' has no usable rows ({report.empty} had empty answers)")
    if report.empty:
        print(f"note: dropped {report.empty} rows of '{dataset_name}' with an empty answer")
    if report.bad:
        print(f"{dataset_name}: {report.summary()}")
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
    return converted, fmt, report


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
    training data. Returns (train, eval or None, format, the training rows' RowReport).
    """
    from hfllm.data.load import first_rows, load_dataset

    fmt = getattr(args, "dataset_format", "auto")

    def load_one(name, split, config, limit=None):
        ds = first_rows(load_dataset(name, config=config, split=split), limit)
        return normalise(ds, kind, name, fmt, strict=args.strict, max_bad_share=args.max_bad_share)

    train, fmt, report = load_one(args.dataset_name, args.dataset_train_split, args.dataset_config,
                                   args.max_train_samples)
    train, eval_ds = split_eval(args, train, lambda *source: load_one(*source)[0], seed)
    return train, eval_ds, fmt, report


def split_turns(ds):
    """Conversations -> one prompt/completion row per non-empty assistant turn: the chat before it, then the turn.

    For templates SFT cannot mark assistant turns in (hfllm.chat_template.training_plan): every turn
    is trained once. An ``answer`` column (for answer accuracy) stays on the row of the last turn only.
    """
    def split(batch):
        out = {"prompt": [], "completion": [], **({"answer": []} if "answer" in batch else {})}
        for row, messages in enumerate(batch["messages"]):
            last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
            for i, message in enumerate(messages):
                if message["role"] == "assistant" and i > 0 and (message["content"] or "").strip():
                    out["prompt"].append(messages[:i])
                    out["completion"].append([message])
                    if "answer" in batch:
                        out["answer"].append(batch["answer"][row] if i == last else None)
        return out

    return ds.map(split, batched=True, remove_columns=ds.column_names, desc="one row per assistant turn")


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


def prompts_for_rl(ds, name: str, *, strict: bool = False, max_bad_share: float = 0.1):
    """The ``prompt`` column RL samples from, out of a dataset without one: preference pairs and HH transcripts
    (the turns the two share before the last), or conversations (``messages``, ShareGPT ``conversations``:
    every turn up to the last user turn). Bad rows are skipped and counted as in ``normalise``."""
    from hfllm.data.rows import check_rows

    cols = set(ds.column_names)
    if {"chosen", "rejected"} <= cols:
        pairs, _, _ = normalise(ds, "preference", name, strict=strict, max_bad_share=max_bad_share)
        if "prompt" not in pairs.column_names:
            raise UserError(f"dataset '{name}': its 'chosen' and 'rejected' hold no shared prompt to sample from; "
                            "add a 'prompt' column")
        return pairs.remove_columns([c for c in pairs.column_names if c not in ("prompt", "answer")])
    field = next((c for c in ("messages", "conversations") if c in cols), None)
    if field is None:
        raise UserError(f"dataset '{name}' has no 'prompt' column (it has {_names(cols)}); RL takes prompts from "
                        "'prompt', 'messages', 'conversations' or 'chosen'/'rejected' pairs")

    def prompt_of(row, where):
        messages = _messages(row.get(field), where, field, need_assistant_last=False)
        last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
        if last_user is None:
            raise UserError(f"{where}: '{field}' has no user turn to prompt with")
        return messages[:last_user + 1]

    kept, report = check_rows(ds, lambda row, where: bool(prompt_of(row, where)), lambda i: f"{name}, row {i + 1}",
                              strict=strict, max_bad_share=max_bad_share)
    if report.bad:
        print(f"{name}: {report.summary()}")
    return kept.map(lambda row: {"prompt": prompt_of(row, name)},
                    remove_columns=[c for c in kept.column_names if c != "answer"])


def keep_tool_calls_if_rendered(ds, tokenizer, name: str):
    """Conversations with tool calls stay when the chat template renders the calls; otherwise those rows are
    dropped with one line (trained without its call, an assistant turn would teach an empty answer)."""
    if ds is None or "messages" not in ds.column_names:
        return ds
    with_calls = lambda row: any(m.get("tool_calls") for m in row["messages"])  # noqa: E731
    calls = ds.filter(with_calls, desc="finding tool calls")
    if not len(calls):
        return ds
    probe = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "zq_probe_tool", "arguments": "{}"}}]}]
    try:
        rendered = "zq_probe_tool" in tokenizer.apply_chat_template(probe, tokenize=False)
    except Exception:  # noqa: BLE001 - a template that raises on tool calls cannot render them either
        rendered = False
    if rendered:
        print(f"{name}: {len(calls):,} conversations with tool calls, rendered by the chat template")
        return ds
    if len(calls) == len(ds):
        raise UserError(f"{name}: every conversation has tool calls and the model's chat template does not render "
                        "them; use a model whose template does (e.g. Qwen2.5's)")
    print(f"{name}: {len(calls):,} of {len(ds):,} conversations skipped: they have tool calls and the model's chat "
          "template does not render them (use a model whose template does, e.g. Qwen2.5's)")
    return ds.filter(lambda row: not with_calls(row), desc="skipping tool calls")
