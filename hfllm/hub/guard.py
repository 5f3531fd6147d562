"""The last check before anything is pushed: no Hugging Face token in any file that goes up."""

from __future__ import annotations

import re
from pathlib import Path

from hfllm.errors import UserError

TOKEN_RE = re.compile(r"hf_[A-Za-z0-9]{30,}")  # the shape of a Hub token
TEXT_SUFFIXES = (".json", ".yaml", ".yml", ".md", ".txt", ".jinja", ".py", ".cfg", ".ini", ".toml")


def looks_secret(text: str, token: str | None) -> bool:
    return bool((token and len(token) >= 16 and token in text) or TOKEN_RE.search(text))


def holds_token(path: Path, token: str | None) -> bool:
    """Every byte of a (big, binary) file against the token's shape, read in chunks that overlap."""
    needles = [re.compile(TOKEN_RE.pattern.encode())]  # the shape push's text scan looks for
    needles += [re.compile(re.escape(token.encode()))] if token and len(token) >= 16 else []
    tail = b""
    with path.open("rb") as f:
        while chunk := f.read(1 << 24):
            data = tail + chunk
            if any(n.search(data) for n in needles):
                return True
            tail = data[-256:]
    return False


def refuse_secrets(dest: Path, token: str | None) -> None:
    """Last line of defence: no token in any text file we push (Modelfile-like names without a suffix
    included), nor anywhere in a GGUF (its metadata holds the chat template and the tokenizer)."""
    for path in sorted(dest.iterdir()):
        if path.suffix.lower() == ".gguf":
            found = holds_token(path, token)
        else:
            found = (path.suffix.lower() in TEXT_SUFFIXES or not path.suffix) and \
                path.stat().st_size < 100_000_000 and looks_secret(path.read_text(errors="ignore"), token)
        if found:
            raise UserError(f"refusing to push: {path.name} holds what looks like a Hugging Face token; "
                            "remove it from the folder first")
