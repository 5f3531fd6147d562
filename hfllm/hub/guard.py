"""The last check before anything is pushed: no Hugging Face token in any file that goes up."""

from __future__ import annotations

import re
from pathlib import Path

from hfllm.errors import UserError

TOKEN_RE = re.compile(r"hf_[A-Za-z0-9]{30,}")  # the shape of a Hub token


def looks_secret(text: str, token: str | None) -> bool:
    return bool((token and len(token) >= 16 and token in text) or TOKEN_RE.search(text))


def _needles(token: str | None) -> list[re.Pattern]:
    return [re.compile(TOKEN_RE.pattern.encode())] + (
        [re.compile(re.escape(token.encode()))] if token and len(token) >= 16 else [])


def _line_of_token(path: Path, needles: list[re.Pattern]) -> int | None:
    """The line holding a token, or None. Safetensors: the JSON header only (the rest is tensor data); any
    other file, whatever its name (train.log, run.sh, a Modelfile, a GGUF's metadata), every byte, read in
    overlapping chunks so a multi-GB file never sits in memory."""
    with path.open("rb") as f:
        if path.suffix == ".safetensors":
            head = f.read(8)
            data = head + f.read(int.from_bytes(head, "little")) if len(head) == 8 else head
            match = next((m for n in needles if (m := n.search(data))), None)
            return data.count(b"\n", 0, match.start()) + 1 if match else None
        tail, lines = b"", 0  # lines: newlines in what came before ``tail``
        while chunk := f.read(1 << 24):
            data = tail + chunk
            if match := next((m for n in needles if (m := n.search(data))), None):
                return lines + data.count(b"\n", 0, match.start()) + 1
            tail = data[-256:]
            lines += data.count(b"\n") - tail.count(b"\n")
    return None


def refuse_secrets(dest: Path, token: str | None) -> None:
    """Last line of defence: every file that would be uploaded, refused with its name and line."""
    needles = _needles(token)
    for path in sorted(p for p in dest.rglob("*") if p.is_file()):
        if (line := _line_of_token(path, needles)) is not None:
            raise UserError(f"refusing to push: {path.relative_to(dest)} line {line} holds what looks like a "
                            "Hugging Face token; remove it from the folder first")
