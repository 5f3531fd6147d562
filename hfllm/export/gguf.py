"""GGUF files made by llama.cpp's own converter (convert_hf_to_gguf.py), k-quants by llama.cpp's quantizer.

The converter runs in a process of its own (hfllm.export._convert says why) on the serving-ready folder
that hfllm.export.hf_folder writes: f32, f16, bf16 and q8_0 come straight from it; q4_k_m is quantized
from the f16 file with llama.cpp's llama_model_quantize (through llama-cpp-python), as llama-quantize does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hfllm.errors import UserError
from hfllm.export import llamacpp

CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")
QUANTIZED_TYPES = {"q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}  # from the f16 file, with llama.cpp's quantizer
OUTTYPES = (*CONVERTER_TYPES, *QUANTIZED_TYPES)


def splits_like_gpt2(tokenizer) -> bool:
    """A byte-level BPE that splits text exactly as GPT-2 does: no normalizer, GPT-2's regex, no prefix space.
    hfllm's own tokenizers are such; llama.cpp's 'gpt-2' pre-tokenizer splits the same way."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    spec = json.loads(backend.to_str())
    pre = spec.get("pre_tokenizer") or {}
    return (spec.get("model", {}).get("type") == "BPE" and spec.get("normalizer") is None
            and pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space"))


def _runner(tree: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    return subprocess.run([sys.executable, "-m", "hfllm.export._convert", str(tree), *args],
                          capture_output=True, text=True, env=env)


def _failure(result: subprocess.CompletedProcess) -> str:
    """The converter's own last words: its exception line, else its last log line."""
    lines = [line.strip() for line in (result.stderr or "").splitlines() if line.strip()]
    errors = [line for line in lines if line.split(":")[0].endswith(("Error", "Exception"))]
    return (errors or lines or [f"exit code {result.returncode}"])[-1]


def probe(tree: Path, tokenizer_source: str, architecture: str, tokenizer, name: str) -> bool:
    """Checks made before any weights load: does the converter know the architecture and the tokenizer?
    Returns whether the GPT-2 pre-tokenizer is declared."""
    result = _runner(tree, "--probe", tokenizer_source, architecture)
    if result.returncode != 0:
        raise UserError(f"llama.cpp's converter could not read the tokenizer of {name}: {_failure(result)}")
    found = json.loads(result.stdout.strip().splitlines()[-1])
    if not found["architecture"]:
        raise UserError(f"llama.cpp's converter (llama-cpp-python {llamacpp.VERSION}) does not support the "
                        f"architecture {architecture} of {name}; a newer llama.cpp may: point HFLLM_LLAMA_CPP_DIR "
                        "at its source tree")
    if found["pre"] or not found["bpe"]:
        return False  # a known tokenizer, or one the converter reads another way (sentencepiece, WordPiece)
    if splits_like_gpt2(tokenizer):
        return True
    raise UserError(f"the tokenizer of {name} cannot be exported to GGUF: llama.cpp identifies a BPE tokenizer's "
                    "pre-tokenizer by how it splits a fixed text, does not know this one, and it does not split "
                    "text as GPT-2 does (normalizer or pre-tokenizer differ), so no llama.cpp pre-tokenizer is "
                    "known to match it")


def convert(tree: Path, hf_dir: Path, out: Path, outtype: str, *, gpt2_pre: bool, eot: int | None) -> Path:
    """One GGUF file of ``outtype`` from the serving-ready folder."""
    if outtype in QUANTIZED_TYPES:
        f16 = out.with_name(out.name.replace(outtype, "f16"))
        made = not f16.exists()
        if made:
            convert(tree, hf_dir, f16, "f16", gpt2_pre=gpt2_pre, eot=eot)
        try:
            quantize(f16, out, outtype)
        finally:
            if made:
                f16.unlink()
        return out
    options = [*(["--gpt2-pre"] if gpt2_pre else []), *(["--eot", str(eot)] if eot is not None else [])]
    result = _runner(tree, *options, "--", str(hf_dir), "--outfile", str(out), "--outtype", outtype)
    if result.returncode != 0 or not out.is_file():
        raise UserError(f"llama.cpp's converter failed on {hf_dir.name}: {_failure(result)}")
    return out


def quantize(source: Path, out: Path, outtype: str) -> Path:
    llama_cpp = llamacpp.runtime()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANTIZED_TYPES[outtype])
    params.nthread = os.cpu_count() or 1
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), params)
    if code != 0 or not out.is_file():
        raise UserError(f"llama.cpp's quantizer could not make {outtype} from {source.name} (code {code})")
    return out
