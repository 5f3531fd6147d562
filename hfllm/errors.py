"""Errors a user can fix, and the one way hfllm turns any exception into one readable line.

``UserError`` is raised for mistakes in what the user gave (bad config, path, data, prompt);
``user_line`` is the one mapping from an exception to what the user sees (the CLI prints it
after ``hfllm <command>: error:``, the app shows it on the page): a UserError's message, or
for what is the user's to fix but raised by a library or the system (a full, read-only or
forbidden disk, no memory left, the Hub out of reach) one line found anywhere in the
exception's chain; None for a bug, which keeps its traceback. Every line is one line: a
newline inside a message (a column name can hold one) is shown as ``\\n``.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


class UserError(Exception):
    """A problem in what the user gave us, with a message saying how to fix it."""


def causes(exc: BaseException | None):
    """The exception, then its cause (or context), and theirs, each once."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def first_line(exc: BaseException, *, with_type: bool = False) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    if with_type:
        return f"{type(exc).__name__}: {line}".rstrip(": ")
    return line or type(exc).__name__


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
# Rust writers (safetensors, tokenizers, Arrow) report a full disk in their own exception types.
DISK_FULL_TEXT = ("No space left on device", "os error 28", "StorageFull", "Disk quota exceeded", "os error 122")


def mount_point(path: str | os.PathLike) -> str:
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return str(p)


def system_error(exc: BaseException) -> str | None:
    """One line for a full, read-only or forbidden disk, found anywhere in the exception's chain; else None."""
    for link in causes(exc):
        code = link.errno if isinstance(link, OSError) else None
        filename = getattr(link, "filename", None) if isinstance(link, OSError) else None
        where = f" while writing {filename}" if filename else ""
        if code in DISK_FULL or any(t in str(link) for t in DISK_FULL_TEXT):
            return (f"no space left on the disk mounted at {mount_point(filename or '.')}{where}: free some space "
                    "there or choose an --output_dir on another disk, then run again (the output was not marked "
                    "complete)")
        if code == errno.EROFS:
            return f"the disk mounted at {mount_point(filename or '.')} is read-only{where}; choose another --output_dir"
        if code in (errno.EACCES, errno.EPERM) and filename:
            return f"permission denied: {filename}; check its permissions or choose another path"
    return None


def one_line(text: str) -> str:
    """A message as one line: line breaks inside it (from a name the user gave) shown as \\n, \\r."""
    return str(text).strip().replace("\r", "\\r").replace("\n", "\\n")


def _unreachable_hub(exc: BaseException) -> str | None:
    names = {type(link).__name__ for link in causes(exc)}
    if "OfflineModeIsEnabled" in names:
        return "the Hub cannot be reached: offline mode is on (HF_HUB_OFFLINE=1); use local paths, or unset it"
    if names & {"ConnectError", "ConnectTimeout", "ConnectionError", "NameResolutionError"}:
        link = next(link for link in causes(exc) if type(link).__name__ in
                    ("ConnectError", "ConnectTimeout", "ConnectionError", "NameResolutionError"))
        return f"the Hub cannot be reached ({type(link).__name__}: {first_line(link)[:200]}); check the network " \
               "or HF_ENDPOINT, or use local paths"
    return None


def user_line(exc: BaseException) -> str | None:
    """What the user sees for ``exc`` (one line), or None when it is a bug (shown with its traceback)."""
    if isinstance(exc, UserError):
        return one_line(str(exc))
    if any(isinstance(link, MemoryError) or type(link).__name__ == "OutOfMemoryError" for link in causes(exc)):
        return ("out of memory: lower --per_device_train_batch_size or --max_length (raise "
                "--gradient_accumulation_steps to keep the batch), or choose a smaller model")
    message = system_error(exc) or _unreachable_hub(exc)
    return one_line(message) if message else None
