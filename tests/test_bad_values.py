"""Property: every command, given any out-of-range value for any option it has (hfllm.checks' rules),
exits 2 with one line and no traceback, and writes nothing: no folder is created, none removed.

The options are read from each command's own ``--help`` (what a user sees), the bad values drawn
from each option's rule: below its low end, above its high end, an open end itself, NaN or an
infinity, a fraction where an integer is needed, a word where a number is. No model is needed:
the values are refused while the arguments are parsed, before any folder or model is looked at.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_cli

# Imported at collection, not first inside a test under capsys: their log handlers keep the stream they were
# made with, and a later test's log line would go to this test's closed capture (a traceback in its stderr).
import datasets  # noqa: E402,F401,I001
from transformers.utils import logging as _transformers_logging  # noqa: E402,I001

_transformers_logging.get_logger()

from hfllm.checks import COMMAND_RULES, RULES, Range

# Each command with a numeric option (merge has none: its --dtype is a word) and the words that make a run of
# it otherwise plausible (serve takes its models as words, not a flag).
COMMANDS = {
    "tokenizer": ["tokenizer", "--dataset_name", "corpus.txt"],
    "pretrain": ["pretrain", "--tokenizer_name_or_path", "tok"],
    "sft": ["sft", "--model_name_or_path", "model"],
    "reward": ["reward", "--model_name_or_path", "model"],
    "dpo": ["dpo", "--model_name_or_path", "model"],
    "ppo": ["ppo", "--model_name_or_path", "model", "--reward_funcs", "answer_partial"],
    "grpo": ["grpo", "--model_name_or_path", "model", "--reward_funcs", "answer_partial"],
    "rloo": ["rloo", "--model_name_or_path", "model", "--reward_funcs", "answer_partial"],
    "generate": ["generate", "--model_name_or_path", "model", "--prompt", "hi"],
    "clean": ["data", "clean", "--dataset_name", "corpus.txt"],
    "kto": ["kto", "--model_name_or_path", "model"],
    "orpo": ["orpo", "--model_name_or_path", "model"],
    "simpo": ["simpo", "--model_name_or_path", "model"],
    "serve": ["serve", "model"],
    "export": ["export", "--model_name_or_path", "model", "--format", "gguf"],
}


@cache
def options(command: str) -> tuple[str, ...]:
    """The options of ``command`` that have a rule, from its --help."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        run_cli(*COMMANDS[command][:2 if command == "clean" else 1], "--help")
    flags = set(re.findall(r"--([a-z_][a-z0-9_]*)", out.getvalue()))
    return tuple(sorted(f for f in flags if (command, f) in COMMAND_RULES or f in RULES))


def rule(command: str, option: str) -> Range:
    return COMMAND_RULES.get((command, option)) or RULES[option]


def bad_values(r: Range) -> st.SearchStrategy[str]:
    """Values that ``r`` refuses, written as a user would type them."""
    choices = [st.sampled_from(["nan", "inf", "-inf", "ten", "1e999"])]
    if r.low is not None:
        below = st.integers(1, 10**25) if r.integer else st.floats(1e-6, 1e30)
        choices.append(below.map(lambda d: repr(r.low - d) if not r.integer else str(int(r.low) - d)))
        if r.low_open:
            choices.append(st.just(str(int(r.low)) if r.low == int(r.low) else repr(r.low)))
    if r.high is not None:
        above = st.integers(1, 10**25) if r.integer else st.floats(1e-6, 1e30)
        choices.append(above.map(lambda d: repr(r.high + d) if not r.integer else str(int(r.high) + d)))
        if r.high_open:
            choices.append(st.just(repr(float(r.high))))
    if r.integer:
        choices.append(st.sampled_from(["0.5", "2.5", "1e3x"]))
    return st.one_of(choices)


@st.composite
def bad_command(draw):
    command = draw(st.sampled_from(sorted(COMMANDS)))
    option = draw(st.sampled_from(options(command)))
    return command, option, draw(bad_values(rule(command, option)))


def listing(root: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, n), root) for d, dirs, files in os.walk(root) for n in dirs + files)


@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(case=bad_command())
def test_any_bad_value_of_any_option_is_one_line_and_writes_nothing(case, capsys):
    command, option, value = case
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, "keep"))
        with open(os.path.join(root, "corpus.txt"), "w") as f:
            f.write("some text\n")
        before, cwd = listing(root), os.getcwd()
        os.chdir(root)
        try:
            capsys.readouterr()
            code = run_cli(*COMMANDS[command], f"--{option}", value)
            err = capsys.readouterr().err
        finally:
            os.chdir(cwd)
        assert code == 2, (command, option, value, err[-1500:])
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"hfllm {COMMANDS[command][0]}"), (case, err[-1500:])
        assert option in lines[0], (case, lines[0])  # refused for this value, not for something else further on
        assert "Traceback" not in err
        assert listing(root) == before, (case, listing(root))


def test_every_command_has_options_with_rules():
    """The property reaches each command (a --help that stopped listing options would make it vacuous)."""
    for command in COMMANDS:
        assert len(options(command)) >= (1 if command == "export" else 3), (command, options(command))
