"""YAML + command-line flags -> the libraries' own dataclasses, with friendly errors.

A config file is a flat YAML mapping whose keys are argument names of the
dataclasses a command uses (``TrainingArguments``, ``SFTConfig``, hfllm's own
script arguments...). Any key can be given or overridden on the command line::

    hfllm pretrain --config configs/tiny/pretrain.yaml --learning_rate 1e-3

Parsing is done by ``transformers.HfArgumentParser``; this module only adds the
YAML layer, device-dependent defaults and error messages that name the bad key
and suggest the closest valid one.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import re
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml
from transformers import HfArgumentParser

from hfllm.errors import UserError, first_line


class _Parser(HfArgumentParser):
    """HfArgumentParser whose argparse errors become UserError instead of sys.exit."""

    def error(self, message: str):  # argparse calls this on bad values
        # "argument --vocab_size/--vocab-size: invalid int value" -> "--vocab_size: invalid int value"
        raise UserError(re.sub(r"argument (--[\w]+)(?:/--[\w-]+)*", r"\1", message).strip().splitlines()[0])


class _DuplicateKey(yaml.YAMLError):
    pass


class _Loader(yaml.SafeLoader):
    """yaml.safe_load that refuses a key given twice in one mapping (PyYAML keeps the last, silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # '<<: *defaults' then a key of its own: an override, as meant
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark.line + 1)
                except TypeError:  # an unhashable key: the base class says so
                    continue
                if first != key_node.start_mark.line + 1:
                    raise _DuplicateKey(f"key '{key}' is given twice (lines {first} and {key_node.start_mark.line + 1})"
                                        "; keep one")
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config file into a dict; every failure is a UserError naming the file."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder; give the YAML file itself (examples live in configs/)")
    if not path.is_file():
        raise UserError(f"config file not found: {path} (check the path; examples live in configs/)")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506  a SafeLoader
    except _DuplicateKey as exc:
        raise UserError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = str(getattr(exc, "problem", None) or exc).strip().splitlines() or ["unreadable"]
        raise UserError(f"{path} is not valid YAML{where}: {problem[0]}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text file (not UTF-8); a config is a YAML file of 'key: value' lines") \
            from None
    except (ValueError, OverflowError, RecursionError) as exc:  # e.g. a date that does not exist, deep nesting
        raise UserError(f"{path} could not be read as YAML: {first_line(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path} must be a mapping of 'key: value' lines, not a {type(data).__name__}")
    return data


def _closest(name: str, known: Sequence[str]) -> str:
    match = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean '{match[0]}'?" if match else ""


def _yaml_value_to_argv(key: str, value: Any, action: argparse.Action, source: str) -> list[str]:
    """Turn one YAML entry into the flags argparse would have seen on the command line."""
    flag = f"--{key}"
    if isinstance(value, dict):  # dates and bytes become strings; the field's own parser judges them
        return [flag, json.dumps(value, default=str)]
    if isinstance(value, list):
        if action.nargs not in ("+", "*"):
            raise UserError(f"{source}: '{key}' takes a single value, not a list ({value!r})")
        return [flag, *[str(v) for v in value]] if value else []
    if isinstance(value, bool):
        return [flag, "true" if value else "false"]
    return [flag, str(value)]


def _split_config_flag(argv: list[str]) -> tuple[str | None, list[str]]:
    """Pull ``--config PATH`` (or ``--config=PATH``) out of argv."""
    rest, config = [], None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--config":
            if i + 1 >= len(argv):
                raise UserError("--config needs a path to a YAML file")
            config, i = argv[i + 1], i + 2
            continue
        if arg.startswith("--config="):
            config = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return config, rest


def config_flag(argv: Sequence[str]) -> str | None:
    """The ``--config`` path in argv, if any (a run records it among its inputs)."""
    try:
        return _split_config_flag(list(argv))[0]
    except UserError:
        return None


def parse_args(
    dataclass_types: Sequence[type],
    argv: Sequence[str],
    *,
    prog: str = "hfllm",
    defaults: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    helps: dict[str, str] | None = None,
) -> tuple[list[Any], set[str]]:
    """Parse ``--config file.yaml`` plus flags into instances of ``dataclass_types``.

    ``defaults`` replace the dataclasses' own defaults (e.g. per device) for keys the
    user did not set; ``config`` is an already-loaded mapping used instead of a file
    (the pipeline runner passes one); ``helps`` replace options' help texts where hfllm
    decides their defaults itself. Returns the instances and the set of keys the
    user set explicitly (in the file or as flags).
    """
    parser = _Parser(list(dataclass_types), prog=prog, allow_abbrev=False)
    actions = {a.dest: a for a in parser._actions if a.dest != "help"}
    for key, text in (helps or {}).items():
        if key in actions:
            actions[key].help = text
    known = sorted(actions)
    old_to_new = old_names(parser)

    if "-h" in argv or "--help" in argv:
        parser.print_help()
        raise SystemExit(0)
    config_path, cli = _split_config_flag(list(argv))
    source = "command line"
    entries: dict[str, Any] = dict(config or {})
    if config_path:
        entries.update(load_yaml(config_path))
        source = config_path

    for old in [k for k in entries if k in old_to_new]:
        _deprecated(prog, f"'{old}' in {source}", f"'{old_to_new[old]}'")
        entries[old_to_new[old]] = entries.pop(old)
    yaml_argv: list[str] = []
    for key, value in entries.items():
        if key not in actions:
            raise UserError(f"unknown key '{key}' in {source}{_closest(str(key), known)}")
        if value is not None:
            yaml_argv += _yaml_value_to_argv(key, value, actions[key], source)

    explicit = {k for k, v in entries.items() if v is not None}
    from_cli: set[str] = set()
    for arg in cli:
        if arg.startswith("--"):
            name = arg[2:].split("=", 1)[0]
            dest = name.replace("-", "_")
            if dest.startswith("no_") and dest[3:] in actions and dest not in actions:
                dest = dest[3:]
            if dest in old_to_new:
                _deprecated(prog, f"--{name}", f"--{old_to_new[dest]}")
                dest = old_to_new[dest]
            if dest not in actions:
                raise UserError(f"unknown option '--{name}'{_closest(dest, known)} (see '{prog} --help')")
            explicit.add(dest)
            from_cli.add(dest)

    if defaults:
        parser.set_defaults(**{k: v for k, v in defaults.items() if k in actions and k not in explicit})

    try:
        namespace, remaining = parser.parse_known_args(yaml_argv + cli)
    except UserError as exc:  # say where a bad value came from when it was the file
        key = re.match(r"--(\w+)", str(exc))
        if config_path and key and key.group(1) in entries and key.group(1) not in from_cli:
            raise UserError(f"{exc} (in {config_path})") from None
        raise
    if remaining:
        raise UserError(f"unexpected argument '{remaining[0]}' (flags look like --name value)")
    from hfllm.checks import check_values

    # Ranges before the dataclasses are built: their __post_init__ would meet a zero divisor as a traceback.
    check_values(vars(namespace), prog.split(" ")[-1], explicit)

    outputs = []
    for dtype in dataclass_types:
        names = {f.name for f in dataclasses.fields(dtype) if f.init}
        kwargs = {k: v for k, v in vars(namespace).items() if k in names}
        try:
            outputs.append(dtype(**kwargs))
        except Exception as exc:  # noqa: BLE001
            # The libraries validate combinations in __post_init__ (ValueError, TypeError, a missing
            # optional package...): all of it is about the values given; keep their words.
            raise UserError(f"invalid {dtype.__name__}: {first_line(exc)}") from None
    return outputs, explicit


def old_names(parser: HfArgumentParser) -> dict[str, str]:
    """Old spellings of renamed options (a field's ``aliases`` metadata) -> the field they now set."""
    out = {}
    for action in parser._actions:
        for option in action.option_strings:
            name = option.lstrip("-").replace("-", "_")
            if option.startswith("--") and name not in (action.dest, f"no_{action.dest}"):
                out[name] = action.dest
    return out


def _deprecated(prog: str, old: str, new: str) -> None:
    from hfllm.run_folder import is_main_process

    if is_main_process():  # one note per run, not one per process
        print(f"{prog}: note: {old} is deprecated; use {new}", file=sys.stderr, flush=True)


def renamed(*old: str, help: str) -> dict:
    """Field metadata for an option that TRL's name replaced: the old spellings still work, with a note."""
    return {"help": help, "aliases": [f"--{name}" for name in old]}


SECRET_FIELDS = {"hub_token", "token", "push_to_hub_token"}


def save_config(path: str | Path, *objects: Any, skip: Sequence[str] = ()) -> None:
    """Write the resolved arguments of a run (minus secrets) as YAML, for the record."""
    merged: dict[str, Any] = {}
    for obj in objects:
        for field in dataclasses.fields(obj):
            if field.name in skip or field.name in SECRET_FIELDS:
                continue  # never write credentials into a run folder
            value = getattr(obj, field.name)
            if hasattr(value, "value"):  # enums
                value = value.value
            if isinstance(value, (str, int, float, bool, type(None), list, dict)):
                merged[field.name] = value
    Path(path).write_text(yaml.safe_dump(merged, sort_keys=True))
