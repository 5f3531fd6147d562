"""Faithful replicas of real open models, built offline: the real tokenizer, the family's real
chat template and the real config shape (model_type, GQA, tied embeddings, rope), at tiny sizes.

    tokenizer  the vocab-only GGUF files llama.cpp keeps for its tokenizer tests, converted by
               hfllm.export.llamacpp.vocab_tokenizer (the llama.cpp source `hfllm export` uses: one
               download from PyPI, one cache)
    template   the original chat templates TRL ships in trl/chat_templates/ (SmolLM2's, which
               TRL does not ship, is written out below)
    model      the family's config class with its shape kept and its sizes cut (hidden 48-64, 2 layers)

Converting a GGUF vocabulary takes 10-45 s; hfllm.export.llamacpp converts each once and keeps it in its
cache (~/.cache/hfllm/llama.cpp, or HFLLM_LLAMA_CPP_CACHE), and the replicas built from them are kept
beside it, in its replicas/ folder, so later sessions load them in well under a second. A replica's
folder name carries a hash of its recipe, so changing a spec below rebuilds it.

Where a replica differs from the real model: the GGUF files come from older releases of each
family, so tokens the family added later (Qwen2.5's <|fim_*|>, <tool_call>, Qwen3's <think>,
Llama 3.2's <|eom_id|>, <|python_tag|>) are renamed into the unused ids the real tokenizer has
them at; SmolLM2's replica uses StarCoder2's 49,152-token byte-level BPE (SmolLM2 trained its own
merges) with SmolLM2's chat tokens at the same ids (1, 2). Weights are random: a replica tests
plumbing, masks and learning from scratch, never a real model's knowledge.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hfllm.errors import UserError
from hfllm.export import llamacpp


def cache_root() -> Path:
    return llamacpp.cache_dir() / "replicas"


def _trl_template(name: str) -> str:
    import trl

    return (Path(trl.__file__).parent / "chat_templates" / f"{name}.jinja").read_text(encoding="utf-8")


# SmolLM2-*-Instruct's template (HuggingFaceTB/SmolLM2-360M-Instruct, tokenizer_config.json): ChatML with a
# default system prompt. TRL does not ship it, so it is one of the templates TRL cannot patch.
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Qwen2.5's added tokens beyond the three the GGUF names (id -> (content, special)).
QWEN25_TOKENS = {151646 + i: (t, True) for i, t in enumerate(
    ["<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>",
     "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"])}
QWEN25_TOKENS |= {151657: ("<tool_call>", False), 151658: ("</tool_call>", False)}
QWEN25_TOKENS |= {151659 + i: (t, True) for i, t in enumerate(
    ["<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"])}
QWEN3_TOKENS = QWEN25_TOKENS | {151665: ("<tool_response>", False), 151666: ("</tool_response>", False),
                                151667: ("<think>", False), 151668: ("</think>", False)}
LLAMA32_TOKENS = {128004: ("<|finetune_right_pad_id|>", True), 128008: ("<|eom_id|>", True),
                  128010: ("<|python_tag|>", True)}
# Llama 3's BOS is added by the tokenizer's post-processor (the real tokenizer.json does this too).
_BOS = [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": i}} for i in (0, 1)]
_SEQ = [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}]
LLAMA_BOS = {"type": "TemplateProcessing",
             "single": [_BOS[0], _SEQ[0]],
             "pair": [_BOS[0], _SEQ[0], _BOS[1], _SEQ[1]],
             "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [128000],
                                                      "tokens": ["<|begin_of_text|>"]}}}


@dataclass(frozen=True)
class Replica:
    real: str  # the model it stands for
    gguf: str  # ggml-vocab-<gguf>.gguf
    template: str
    tokens: dict = field(default_factory=dict)  # id -> (content, special): renamed in the GGUF's vocabulary
    drop_ids: tuple = ()  # tokens the converter added that the real tokenizer does not have
    tokenizer_config: dict = field(default_factory=dict)
    post_processor: dict | None = None
    config: dict = field(default_factory=dict)
    generation: dict = field(default_factory=dict)


QWEN_TOKENIZER = {"tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": "<|im_end|>",
                  "pad_token": "<|endoftext|>", "model_max_length": 131072}  # Qwen2.5's and Qwen3's alike
REPLICAS: dict[str, Replica] = {
    "qwen2.5": Replica(
        "Qwen/Qwen2.5-0.5B-Instruct", "qwen2", _trl_template("qwen2_5"), QWEN25_TOKENS,
        tokenizer_config=QWEN_TOKENIZER,
        # 14 query heads share 2 key/value heads in the real one; tied embeddings; rope theta 1e6.
        config=dict(model_type="qwen2", vocab_size=151936, hidden_size=64, intermediate_size=128,
                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32768,
                    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, rms_norm_eps=1e-6,
                    tie_word_embeddings=True, use_sliding_window=False, bos_token_id=151643, eos_token_id=151645),
        generation=dict(bos_token_id=151643, eos_token_id=[151645, 151643], pad_token_id=151643, do_sample=True,
                        temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.05)),
    "qwen3": Replica(
        "Qwen/Qwen3-0.6B", "qwen2", _trl_template("qwen3"), QWEN3_TOKENS,
        tokenizer_config=QWEN_TOKENIZER,
        # Qwen3's head_dim (128) is not hidden_size / heads (64): kept as 32 against 16 here.
        config=dict(model_type="qwen3", vocab_size=151936, hidden_size=64, intermediate_size=128,
                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                    max_position_embeddings=40960, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                    rms_norm_eps=1e-6, tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151645),
        generation=dict(bos_token_id=151643, eos_token_id=[151645, 151643], pad_token_id=151643, do_sample=True,
                        temperature=0.6, top_p=0.95, top_k=20)),
    "llama3": Replica(
        "meta-llama/Meta-Llama-3-8B-Instruct", "llama-bpe", _trl_template("llama3"), drop_ids=(128256,),
        tokenizer_config={"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
                          "eos_token": "<|eot_id|>", "pad_token": None,
                          "model_max_length": 1000000000000000019884624838656},
        post_processor=LLAMA_BOS,
        # 32 query heads on 8 key/value heads (4:1); untied output embeddings; rope theta 500k.
        config=dict(model_type="llama", vocab_size=128256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=8192,
                    rope_parameters={"rope_type": "default", "rope_theta": 500000.0}, rms_norm_eps=1e-5,
                    tie_word_embeddings=False, bos_token_id=128000, eos_token_id=128009),
        generation=dict(bos_token_id=128000, eos_token_id=[128001, 128009], do_sample=True, temperature=0.6,
                        top_p=0.9)),
    "llama3.2": Replica(
        "meta-llama/Llama-3.2-1B-Instruct", "llama-bpe", _trl_template("llama3_2"), LLAMA32_TOKENS, drop_ids=(128256,),
        tokenizer_config={"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
                          "eos_token": "<|eot_id|>", "pad_token": None, "model_max_length": 131072},
        post_processor=LLAMA_BOS,
        # 4:1 GQA, tied embeddings, Llama 3.1's rope scaling to 128k positions.
        config=dict(model_type="llama", vocab_size=128256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=1, head_dim=16, max_position_embeddings=131072,
                    rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                                     "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                     "original_max_position_embeddings": 8192},
                    rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=128000,
                    eos_token_id=[128001, 128008, 128009]),
        generation=dict(bos_token_id=128000, eos_token_id=[128001, 128008, 128009], do_sample=True, temperature=0.6,
                        top_p=0.9)),
    "smollm2": Replica(
        "HuggingFaceTB/SmolLM2-360M-Instruct", "starcoder", SMOLLM2_TEMPLATE,
        {1: ("<|im_start|>", True), 2: ("<|im_end|>", True)},
        # pad == eos, as shipped: the trap hfllm inspect checks for.
        tokenizer_config={"tokenizer_class": "GPT2Tokenizer", "bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
                          "pad_token": "<|im_end|>", "unk_token": "<|endoftext|>", "model_max_length": 8192},
        # 15 query heads on 5 key/value heads (3:1), tied embeddings, rope theta 100k.
        config=dict(model_type="llama", vocab_size=49152, hidden_size=48, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=3, num_key_value_heads=1, max_position_embeddings=8192,
                    rope_parameters={"rope_type": "default", "rope_theta": 100000.0}, rms_norm_eps=1e-5,
                    tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2),
        generation=dict(bos_token_id=1, eos_token_id=2, pad_token_id=2)),
}
# The family each recipe folder (configs/recipes/<model>/) is run on in tests.
RECIPE_REPLICAS = {"Qwen2.5-0.5B-Instruct": "qwen2.5", "Qwen3-0.6B": "qwen3", "SmolLM2-360M-Instruct": "smollm2",
                   "Llama-3.2-1B-Instruct": "llama3.2"}


def _key(*parts) -> str:
    import transformers

    blob = json.dumps([transformers.__version__, *parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _atomic_build(final: Path, build) -> Path:
    """Build into a temporary sibling and rename: a half-written cache entry is never read."""
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}-"))
    try:
        build(tmp)
        try:
            os.replace(tmp, final)
        except OSError:  # another session finished the same entry first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def converted_gguf(gguf: str) -> Path:
    """llama.cpp's ggml-vocab-<gguf>.gguf as a tokenizer folder; a failed fetch is one line in the test report."""
    try:
        return llamacpp.vocab_tokenizer(gguf)
    except UserError as exc:
        if "pytest" in sys.modules:
            import pytest

            pytest.fail(f"the real-model tests need llama.cpp's vocab files (the {llamacpp.PACKAGE} source "
                        f"package from PyPI): {exc}", pytrace=False)
        raise


def replica_tokenizer(name: str) -> Path:
    spec = REPLICAS[name]

    def build(out: Path) -> None:
        from transformers import AutoTokenizer

        data = json.loads((converted_gguf(spec.gguf) / "tokenizer.json").read_text())
        by_id = {t["id"]: t for t in data["added_tokens"]}
        vocab = data["model"]["vocab"]
        inverse = {i: tok for tok, i in vocab.items()}
        for token_id, (content, special) in spec.tokens.items():
            by_id[token_id].update(content=content, special=special)
            if token_id in inverse:
                vocab[content] = vocab.pop(inverse[token_id])
        data["added_tokens"] = [t for t in data["added_tokens"] if t["id"] not in spec.drop_ids]
        if spec.post_processor:
            data["post_processor"] = spec.post_processor
        (out / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False))
        (out / "tokenizer_config.json").write_text(json.dumps(
            {**spec.tokenizer_config, "add_prefix_space": False, "clean_up_tokenization_spaces": False}))
        tok = AutoTokenizer.from_pretrained(out)
        tok.chat_template = spec.template
        tok.save_pretrained(out)

    return _atomic_build(cache_root() / "tokenizers" / f"{name}-{_key(llamacpp.VERSION, spec)}", build)


def replica(name: str) -> Path:
    """A saved HF folder (tokenizer + tiny random model + generation config) standing for a real model."""
    spec = REPLICAS[name]

    def build(out: Path) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        tok = AutoTokenizer.from_pretrained(replica_tokenizer(name))
        sizes = dict(spec.config)
        config = AutoConfig.for_model(sizes.pop("model_type"), **sizes)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config)
        model.generation_config = GenerationConfig(**spec.generation)
        model.save_pretrained(out)
        tok.save_pretrained(out)

    return _atomic_build(cache_root() / "models" / f"{name}-{_key(llamacpp.VERSION, spec)}", build)
