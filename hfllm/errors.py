"""Errors a user can fix, and the one way hfllm turns any exception into one readable line.

``UserError`` is raised for mistakes in what the user gave (bad config, path, data, prompt);
the CLI prints it as a single line without a traceback (``--debug`` shows it). ``first_line``
and ``causes`` read other exceptions, whose useful words are often in their chain; a full,
read-only or forbidden disk is recognised anywhere in that chain (``system_error``).
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
