"""Property-based tests: whatever a user writes in a config or a dataset row, hfllm answers
with a UserError (one line naming the problem) or succeeds; never another exception.

Two targets: the config loader (YAML documents and command-line overrides into the
libraries' dataclasses) and dataset format detection, checking and conversion.
Example counts are modest so the file runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import dataclasses
import json
import os
import string

import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from hfllm.data import formats
from hfllm.data.load import load_dataset
from hfllm.config import parse_args
from hfllm.errors import UserError

SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

# --- the config loader ---------------------------------------------------------------------------

# Scalars YAML can hold, dates included (safe_load builds date objects; an impossible date raises).
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(), st.text(max_size=12),
                    st.dates(), st.datetimes(), st.binary(max_size=6))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=8)


def _classes():
    from transformers import TrainingArguments

    from hfllm.stages.pretrain import PretrainArguments
    from hfllm.stages.tokenizer import TokenizerArguments

    return [TokenizerArguments], [PretrainArguments, TrainingArguments]


TOKENIZER, PRETRAIN = _classes()
KEYS = sorted({f.name for cls in TOKENIZER + PRETRAIN for f in dataclasses.fields(cls) if f.init})
# Keys that would touch the machine rather than the config (a DeepSpeed install, a hub login).
KEYS = [k for k in KEYS if k not in ("deepspeed", "push_to_hub", "hub_token", "output_dir")]
KEY = st.one_of(st.sampled_from(KEYS), st.text(string.ascii_letters + "_-", min_size=1, max_size=12))


def parse(classes, argv):
    """parse_args that only ever raises UserError (argparse's --help exits, which the fuzz avoids)."""
    try:
        return parse_args(classes, argv)
    except UserError as exc:
        message = str(exc)
        assert message and "\n" not in message, repr(message)  # one line, never empty
        return None


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "c.yaml"

    def write(text: str) -> str:
        path.write_text(text, encoding="utf-8")
        return str(path)
    return write


@settings(max_examples=80, **SETTINGS)
@given(doc=st.dictionaries(KEY, VALUES, max_size=5), classes=st.sampled_from([TOKENIZER, PRETRAIN]))
@example(doc={"learning_rate": {"when": "2001-01-01"}}, classes=PRETRAIN)
def test_any_yaml_mapping_is_parsed_or_refused(config_file, tmp_path, doc, classes):
    try:
        text = yaml.safe_dump(doc, allow_unicode=True)
    except yaml.YAMLError:
        assume(False)
    parse(classes, ["--config", config_file(text), "--output_dir", str(tmp_path / "out")])


@settings(max_examples=100, **SETTINGS)
@given(text=st.one_of(st.text(max_size=80), st.text("[]{}:-,&*!|>'\"#%@ \n\tab01.", max_size=80)))
@example(text="learning_rate: 2001-02-30\n")       # a date that does not exist
@example(text="[" * 3000)                           # nesting deeper than Python's recursion limit
@example(text="seed: !!python/object/apply:os.system [echo hi]\n")
@example(text="\ufeffseed: 1\n")
@example(text="a: &x [*x]\n")
def test_any_yaml_text_is_parsed_or_refused(config_file, tmp_path, text):
    parse(PRETRAIN, ["--config", config_file(text), "--output_dir", str(tmp_path / "out")])


FLAG = st.one_of(st.sampled_from(KEYS).map(lambda k: f"--{k}"), st.text(max_size=10).map(lambda t: f"--{t}"),
                 st.text(max_size=6))
VALUE = st.one_of(st.text(max_size=10), st.integers().map(str), st.floats().map(str),
                  st.sampled_from(["true", "false", "-1", "0", "1e400", "{}", "{bad", "[1]", "nan"]))


@settings(max_examples=100, **SETTINGS)
@given(argv=st.lists(st.one_of(FLAG, VALUE), max_size=8))
def test_any_command_line_is_parsed_or_refused(tmp_path, argv):
    assume(not any(a in ("-h", "--help") or a.startswith(("--he", "--config", "--deepspeed")) for a in argv))
    parse(PRETRAIN, [*argv, "--output_dir", str(tmp_path / "out")])


@settings(max_examples=40, **SETTINGS)
@given(vocab=st.integers(300, 100_000), lr=st.floats(1e-6, 1.0), steps=st.integers(1, 10_000),
       tokens=st.lists(st.text(string.ascii_letters + "<|>", min_size=1, max_size=8), min_size=1, max_size=3))
def test_valid_configs_reach_the_dataclasses(config_file, tmp_path, vocab, lr, steps, tokens):
    text = yaml.safe_dump({"vocab_size": vocab, "chat_tokens": tokens, "output_dir": str(tmp_path)})
    (tok,), explicit = parse_args(TOKENIZER, ["--config", config_file(text)])
    assert tok.vocab_size == vocab and tok.chat_tokens == tokens and {"vocab_size", "chat_tokens"} <= explicit
    (_, targs), _ = parse_args(PRETRAIN, ["--learning_rate", repr(lr), "--max_steps", str(steps),
                                          "--output_dir", str(tmp_path)])
    assert targs.learning_rate == lr and targs.max_steps == steps


# --- dataset rows ----------------------------------------------------------------------------------

JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=8), st.sampled_from(["", "  ", "\n\nHuman: a\n\nAssistant: b", "Human: x"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["role", "content", "x"]), inner, max_size=3)),
    max_leaves=6)
MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "tool", "robot"]),
                                 "content": st.one_of(st.text(max_size=6), st.none(), st.integers())})
TRANSCRIPT = st.lists(st.tuples(st.sampled_from(["Human", "Assistant"]), st.text(max_size=5)), max_size=3).map(
    lambda turns: "".join(f"\n\nHuman: q{''.join(f'{chr(10) * 2}{r}: {t}' for r, t in turns)}"))
# A field's value: right-typed often, anything JSON-ish sometimes.
FIELD = st.one_of(st.text(max_size=10), st.lists(MESSAGE, max_size=3), TRANSCRIPT, JSONISH)
FORMAT_KEYS = {"text": ["text"], "messages": ["messages"], "prompt_completion": ["prompt", "completion"],
               "alpaca": ["instruction", "input", "output"], "preference": ["prompt", "chosen", "rejected"],
               "implicit_preference": ["chosen", "rejected"]}


@st.composite
def near_rows(draw):
    """A row that has (most of) one format's fields, with values of any shape, plus random extras."""
    keys = list(draw(st.sampled_from(list(FORMAT_KEYS.values()))))
    keys = [k for k in keys if draw(st.integers(0, 9))]  # now and then a field is missing
    row = {k: draw(FIELD) for k in keys}
    row.update(draw(st.dictionaries(st.one_of(st.sampled_from(["answer", "input", "prompt"]), st.text(max_size=4)),
                                    JSONISH, max_size=2)))
    return row


def check(fn, *args):
    try:
        return fn(*args)
    except UserError as exc:
        assert str(exc) and "\n" not in str(exc), repr(str(exc))
        return None


@settings(max_examples=300, **SETTINGS)
@given(row=st.one_of(near_rows(), st.dictionaries(st.text(max_size=6), JSONISH, max_size=4)))
@example(row={"instruction": "Add.", "input": 5, "output": "7"})
@example(row={"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": [{"role": "assistant", "content": "c"}]})
def test_any_row_is_converted_or_refused(row):
    for kind in ("sft", "preference"):
        fmt = check(formats.detect, list(row), kind, "d.jsonl")
        if fmt is not None:
            check(formats.convert_row, row, fmt, "d.jsonl, row 1")
    for fmt in (*formats.SFT_FORMATS, *formats.PREFERENCE_FORMATS):  # a forced --dataset_format
        check(formats.convert_row, row, fmt, "d.jsonl, row 1")


@settings(max_examples=60, **SETTINGS)
@given(rows=st.lists(near_rows(), min_size=1, max_size=4), kind=st.sampled_from(["sft", "preference"]))
@example(rows=[{"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"},
               {"chosen": "plain", "rejected": "other"}], kind="preference")
def test_any_dataset_is_normalised_or_refused(rows, kind):
    import datasets

    try:  # what Arrow cannot hold in one table never reaches hfllm from a file
        ds = datasets.Dataset.from_list(rows)
    except Exception:
        assume(False)
    check(formats.normalise, ds, kind, "d.jsonl")


@settings(max_examples=25, **SETTINGS)
@given(lines=st.lists(st.one_of(st.builds(json.dumps, near_rows()), st.text(max_size=20),
                                st.binary(max_size=20).map(lambda b: b.decode("latin-1"))), min_size=1, max_size=4),
       suffix=st.sampled_from([".jsonl", ".json", ".csv", ".txt"]), kind=st.sampled_from(["sft", "preference"]))
def test_any_file_is_loaded_or_refused(tmp_path_factory, lines, suffix, kind):
    path = tmp_path_factory.mktemp("rows") / f"d{suffix}"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ds = check(load_dataset, str(path))
    if ds is not None:
        check(formats.normalise, ds, kind, str(path))


# Valid rows of each format: always accepted, in their format, nothing dropped.
WORDS = st.text(string.ascii_letters + " .?", min_size=1, max_size=12).filter(str.strip)
TURN = lambda role: st.builds(lambda c: {"role": role, "content": c}, WORDS)  # noqa: E731
VALID = {
    "text": st.fixed_dictionaries({"text": WORDS}),
    "messages": st.builds(lambda system, q, a: {"messages": system + [q, a]},
                          st.lists(TURN("system"), max_size=1), TURN("user"), TURN("assistant")),
    "prompt_completion": st.fixed_dictionaries({"prompt": WORDS, "completion": WORDS}),
    "alpaca": st.fixed_dictionaries({"instruction": WORDS, "input": st.text(max_size=5), "output": WORDS}),
    "preference": st.builds(lambda p, c, r: {"prompt": p, "chosen": c, "rejected": c + " not " + r},
                            WORDS, WORDS, WORDS),
}


@settings(max_examples=15, **SETTINGS)
@given(data_=st.data(), fmt=st.sampled_from(sorted(VALID)))
def test_valid_rows_are_accepted_in_their_format(data_, fmt):
    import datasets

    rows = data_.draw(st.lists(VALID[fmt], min_size=1, max_size=4))
    kind = "preference" if fmt == "preference" else "sft"
    ds, detected, report = formats.normalise(datasets.Dataset.from_list(rows), kind, "d.jsonl")
    assert detected == fmt and report.empty == report.skipped == 0 and len(ds) == len(rows)


@pytest.fixture(autouse=True, scope="module")
def _quiet_datasets():
    import datasets

    datasets.disable_progress_bars()
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    yield
