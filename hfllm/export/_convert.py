"""Run llama.cpp's convert_hf_to_gguf.py, in a process of its own (hfllm.export.gguf starts it).

    python -m hfllm.export._convert LLAMA_CPP_DIR [--gpt2-pre] [--eot ID] -- CONVERTER_ARGS...
    python -m hfllm.export._convert LLAMA_CPP_DIR --probe TOKENIZER ARCHITECTURE   # what it would make of them

A process of its own because the converter puts its vendored ``gguf-py`` first on sys.path and imports
modules named ``gguf`` and ``conversion``, which must not mix with another ``gguf`` in hfllm's process.
Two additions, made through the converter's own classes rather than by editing its files:

- ``--gpt2-pre``: the converter names a BPE tokenizer's pre-tokenizer by hashing how it splits a fixed
  text, and refuses a hash missing from its table, which is every tokenizer trained from scratch. When
  hfllm has checked that the tokenizer is a byte-level BPE with GPT-2's split (hfllm's own are), the
  unknown hash is declared 'gpt-2', the same split in llama.cpp; known hashes keep their own name, and
  ``hfllm export --check`` compares llama.cpp's token ids with transformers'.
- ``--eot ID``: the end-of-turn token (e.g. <|im_end|>) is written as tokenizer.ggml.eot_token_id, so
  llama.cpp stops generating there as transformers does (it stops at eos too).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _import_converter(tree: Path):
    sys.path[:0] = [str(tree), str(tree / "gguf-py")]
    sys.argv = [str(tree / "convert_hf_to_gguf.py")]
    import convert_hf_to_gguf
    import gguf
    from conversion.base import TextModel

    return convert_hf_to_gguf, gguf, TextModel


def main(argv: list[str]) -> int:
    tree, rest = Path(argv[0]), argv[1:]
    converter, gguf, TextModel = _import_converter(tree)
    if rest[0] == "--probe":  # TOKENIZER ARCHITECTURE: what the converter would make of them
        from conversion import TEXT_MODEL_MAP
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(rest[1])
        spec = json.loads(tokenizer.backend_tokenizer.to_str()).get("model", {})
        try:
            name = TextModel.get_vocab_base_pre(None, tokenizer)
        except NotImplementedError:
            name = None
        # a BPE with byte fallback comes from sentencepiece, which the converter reads without the hash
        bpe = spec.get("type") == "BPE" and not spec.get("byte_fallback")
        print(json.dumps({"pre": name, "bpe": bpe, "architecture": rest[2] in TEXT_MODEL_MAP}))
        return 0
    split = rest.index("--")
    options, converter_args = rest[:split], rest[split + 1:]
    if "--gpt2-pre" in options:
        known = TextModel.get_vocab_base_pre

        def get_vocab_base_pre(self, tokenizer):
            try:
                return known(self, tokenizer)
            except NotImplementedError:
                return "gpt-2"
        TextModel.get_vocab_base_pre = get_vocab_base_pre
    if "--eot" in options:
        eot = int(options[options.index("--eot") + 1])
        add_to_gguf = gguf.SpecialVocab.add_to_gguf

        def add_with_eot(self, gw, quiet=False):
            add_to_gguf(self, gw, quiet)
            if gguf.Keys.Tokenizer.EOT_ID not in gw.kv_data[0]:  # written once, even if called twice
                gw.add_eot_token_id(eot)
        gguf.SpecialVocab.add_to_gguf = add_with_eot
    sys.argv = [sys.argv[0], *converter_args]
    converter.main()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
