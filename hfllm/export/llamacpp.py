"""Where llama.cpp comes from: its source tree (the GGUF converter) and its Python runtime (parity checks).

Both come from one pinned PyPI package, llama-cpp-python. Its source package vendors llama.cpp under
``vendor/llama.cpp``: ``convert_hf_to_gguf.py`` with ``conversion/`` and ``gguf-py/``, and
``models/ggml-vocab-*.gguf``, vocab-only GGUF files of real tokenizers (qwen2, llama-bpe, ...) that tests
load offline. Building the same package gives a CPU llama.cpp runtime in Python (``import llama_cpp``).

    python -m hfllm.export.llamacpp fetch     # the source tree only: what `hfllm export` needs (77 MB download)
    python -m hfllm.export.llamacpp install   # and the runtime: builds llama.cpp (~5 min on 2 cores, once;
                                              # the wheel is cached) and installs it into this Python
    python -m hfllm.export.llamacpp where     # print the source tree's path
    python -m hfllm.export.llamacpp tokenizers qwen2 llama-bpe   # convert real tokenizers for tests, once

``HFLLM_LLAMA_CPP_DIR`` points at another llama.cpp checkout (say, a newer converter). The cache is
``$HFLLM_LLAMA_CPP_CACHE`` or ``~/.cache/hfllm/llama.cpp``; it is kept apart from ``HFLLM_CACHE``, which
the tests point at a fresh folder each session.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from hfllm.errors import UserError

VERSION = "0.3.36"
PACKAGE = f"llama-cpp-python=={VERSION}"
SDIST = f"llama_cpp_python-{VERSION}"
INSTALL_HINT = "python -m hfllm.export.llamacpp install"


def cache_dir() -> Path:
    root = os.environ.get("HFLLM_LLAMA_CPP_CACHE") or Path.home() / ".cache" / "hfllm" / "llama.cpp"
    return Path(root).expanduser()


def source_tree(fetch: bool = True) -> Path:
    """The llama.cpp source tree: HFLLM_LLAMA_CPP_DIR, else the one vendored in the pinned sdist (fetched on
    first use when ``fetch``). This is the one place that answers the question; tests reuse its models/."""
    override = os.environ.get("HFLLM_LLAMA_CPP_DIR")
    if override:
        tree = Path(override).expanduser()
        if not (tree / "convert_hf_to_gguf.py").is_file():
            raise UserError(f"HFLLM_LLAMA_CPP_DIR={override} is not a llama.cpp source tree "
                            "(no convert_hf_to_gguf.py inside)")
        return tree
    tree = cache_dir() / SDIST / "vendor" / "llama.cpp"
    if (tree / "convert_hf_to_gguf.py").is_file():
        return tree
    if not fetch:
        raise UserError(f"llama.cpp's source is not in {cache_dir()}; fetch it once with "
                        "`python -m hfllm.export.llamacpp fetch`")
    _extract(_sdist())
    return tree


def vocab_file(name: str) -> Path:
    """A real tokenizer shipped with llama.cpp, e.g. vocab_file("qwen2") -> .../models/ggml-vocab-qwen2.gguf."""
    path = source_tree() / "models" / f"ggml-vocab-{name}.gguf"
    if not path.is_file():
        known = sorted(p.name[len("ggml-vocab-"):-len(".gguf")] for p in path.parent.glob("ggml-vocab-*.gguf"))
        raise UserError(f"llama.cpp ships no vocab '{name}'; it has: {', '.join(known)}")
    return path


def vocab_tokenizer(name: str) -> Path:
    """The same tokenizer as a transformers folder (AutoTokenizer.from_pretrained loads it), converted from the
    GGUF once (13-30 s, needs the `gguf` package) and cached beside the source. It has no chat template."""
    folder = cache_dir() / "tokenizers" / name
    if not (folder / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        path = vocab_file(name)
        tmp = Path(tempfile.mkdtemp(dir=cache_dir()))
        AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name).save_pretrained(tmp)
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    return folder


def _sdist() -> Path:
    """The source package, downloaded once with pip (PyPI's own copy, checked by pip)."""
    folder = cache_dir()
    found = sorted(folder.glob(f"{SDIST}.tar.gz"))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    print(f"hfllm: downloading the {PACKAGE} source package (77 MB, once) into {folder}", file=sys.stderr, flush=True)
    _pip("download", "--no-deps", "--no-binary", ":all:", PACKAGE, "-d", str(folder))
    return folder / f"{SDIST}.tar.gz"


def _extract(sdist: Path) -> None:
    """Unpack into a temporary folder, then rename: an interrupted unpack never looks complete."""
    with tempfile.TemporaryDirectory(dir=sdist.parent) as tmp, tarfile.open(sdist) as tar:
        tar.extractall(tmp, filter="data")  # refuses links and paths that leave the folder
        target = sdist.parent / SDIST
        if target.exists():
            shutil.rmtree(target)
        os.replace(Path(tmp) / SDIST, target)


def wheel() -> Path:
    """The runtime's wheel, built from the source package once (cmake + a C++ compiler; minutes) and cached."""
    folder = cache_dir() / "wheels"
    built = sorted(folder.glob(f"llama_cpp_python-{VERSION}-*.whl"))
    if built:
        return built[-1]
    sdist = _sdist()
    print(f"hfllm: building {PACKAGE} from source (about 5 minutes on 2 cores, once)", file=sys.stderr, flush=True)
    _pip("wheel", "--no-deps", str(sdist), "-w", str(folder))
    return sorted(folder.glob(f"llama_cpp_python-{VERSION}-*.whl"))[-1]


def install() -> None:
    """Install the cached wheel into this Python (its small dependencies come from the index as usual)."""
    built = wheel()
    _pip("install", "--find-links", str(built.parent), PACKAGE)


def runtime():
    """``llama_cpp``, or one line saying how to get it."""
    try:
        import llama_cpp
    except ImportError:
        raise UserError(f"this needs llama.cpp's Python runtime ({PACKAGE}), which is not installed; run "
                        f"`{INSTALL_HINT}` (it builds llama.cpp from source once: about 5 minutes on 2 cores)") \
            from None
    # llama.cpp's own log (every tensor of a quantization, context warnings) goes through this logger
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    return llama_cpp


def _pip(*args: str) -> None:
    try:
        subprocess.run([sys.executable, "-m", "pip", *args], check=True)
    except subprocess.CalledProcessError as exc:
        raise UserError(f"`pip {' '.join(args)}` failed (exit {exc.returncode}); see pip's output above") from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv else "where"
    if command == "fetch":
        print(source_tree())
    elif command == "install":
        print(source_tree())
        install()
    elif command == "where":
        print(source_tree(fetch=False))
    elif command == "tokenizers":
        for name in argv[1:]:
            print(vocab_tokenizer(name))
    else:
        print(f"usage: python -m hfllm.export.llamacpp fetch|install|where|tokenizers NAME... (got {command!r})",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except UserError as exc:
        print(f"hfllm.export.llamacpp: error: {exc}", file=sys.stderr)
        raise SystemExit(2)
