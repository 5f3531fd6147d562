"""What a command reads: the options naming local paths (the output folder may be none of these, nor hold
one) and the ones that say what a run starts from (recorded in the folder, compared when it resumes)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from hfllm.errors import UserError

# Options that say what a run starts from: recorded in the output folder, compared when it resumes.
SOURCE_OPTIONS = ("model_name_or_path", "tokenizer_name_or_path", "reward_model_name_or_path",
                  "value_model_name_or_path", "dataset_name", "eval_dataset_name")
OUTPUTS = ("output_dir", "logging_dir")


def _local(value) -> Path | None:
    """The path a string names, when it exists on this machine (a Hub id or a word does not)."""
    if not isinstance(value, str) or not value or value.startswith("builtin:"):
        return None
    try:
        path = Path(value).expanduser()
        return path if path.exists() else None
    except (OSError, ValueError):  # too long for a path, a NUL byte
        return None


def input_paths(objects, config_path: str | None = None) -> dict[str, str]:
    """Every option of ``objects`` (parsed dataclasses) that names an existing local path, by option name; an
    adapter's base model too. The output folder may be none of these, nor hold one."""
    from hfllm.loading import adapter_base, is_adapter_folder

    found = {"config": config_path} if _local(config_path) else {}
    for obj in objects:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name, None)
            if f.name in OUTPUTS or f.name in found:
                continue
            for i, item in enumerate(value if isinstance(value, list) else [value]):
                path = _local(item)
                if path is None:
                    continue
                name = f.name if i == 0 else f"{f.name} ({i + 1})"
                found[name] = item
                if path.is_dir() and is_adapter_folder(path):
                    try:
                        base = adapter_base(path)
                    except UserError:
                        continue
                    if _local(base):
                        found[f"{f.name} (its base)"] = base
    return found


def sources(objects) -> dict[str, str]:
    """What the run starts from (SOURCE_OPTIONS that are set), as given."""
    out = {}
    for obj in objects:
        for name in SOURCE_OPTIONS:
            value = getattr(obj, name, None)
            if isinstance(value, str) and value and name not in out:
                out[name] = value
    return out
