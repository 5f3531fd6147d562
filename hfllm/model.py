"""Models: size presets for from-config models, loading any causal LM, per-device defaults.

A from-config model is ``AutoConfig.for_model(model_type, **sizes)``: any decoder
type transformers knows works (llama, qwen2, mistral, gpt2, ...). Presets only
fill in the sizes; every size can be overridden.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from hfllm.errors import UserError

# Sizes in the vocabulary of LlamaConfig; GPT-2 style configs map them through
# their attribute_map (hidden_size -> n_embd, ...). Parameter counts are for vocab 4096.
PRESETS: dict[str, dict] = {
    # ~5 M parameters: learns the built-in corpus in a few CPU minutes.
    "tiny": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=768,
                 max_position_embeddings=256),
    # ~20 M parameters: a laptop-hour model.
    "small": dict(hidden_size=512, num_hidden_layers=6, num_attention_heads=8, intermediate_size=1536,
                  max_position_embeddings=512),
    # GPT-2 small's shape (124 M with GPT-2's 50 k vocabulary): a single-GPU model.
    "gpt2-124m": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                      max_position_embeddings=1024),
}
SIZE_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
             "intermediate_size", "max_position_embeddings")


def build_config(model_type: str, preset: str, vocab_size: int, special_ids: dict, **overrides):
    """A transformers config for a new model: preset sizes, then overrides, validated."""
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if preset not in PRESETS:
        raise UserError(f"unknown preset '{preset}'; choose one of: {', '.join(PRESETS)}")
    if model_type not in CONFIG_MAPPING:
        import difflib

        match = difflib.get_close_matches(model_type, list(CONFIG_MAPPING.keys()), n=1)
        raise UserError(f"unknown model_type '{model_type}'" + (f"; did you mean '{match[0]}'?" if match else ""))
    sizes = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    for key, value in sizes.items():
        if not isinstance(value, int) or value <= 0:
            raise UserError(f"{key} must be a positive integer, got {value!r}")
    heads = sizes["num_attention_heads"]
    if sizes["hidden_size"] % heads:
        raise UserError(f"hidden_size {sizes['hidden_size']} is not divisible by num_attention_heads {heads}")
    kv = sizes.setdefault("num_key_value_heads", heads)
    if heads % kv:
        raise UserError(f"num_attention_heads {heads} is not divisible by num_key_value_heads {kv}")
    if model_type == "gpt2":  # GPT-2 has no grouped-query attention; its MLP width is n_inner
        sizes.pop("num_key_value_heads")
        sizes["n_inner"] = sizes.pop("intermediate_size")
    from huggingface_hub.errors import StrictDataclassClassValidationError

    try:  # tied input/output embeddings: a large share of a tiny model's parameters otherwise
        return AutoConfig.for_model(model_type, vocab_size=vocab_size, tie_word_embeddings=True, **special_ids, **sizes)
    except (ValueError, TypeError, StrictDataclassClassValidationError) as exc:  # the config classes validate combinations (e.g. RoPE head size)
        cause = getattr(exc, "__cause__", None) or exc
        raise UserError(f"invalid {model_type} config: {str(cause).strip().splitlines()[-1]}") from None


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def training_defaults() -> dict:
    """TrainingArguments values that follow the device, unless the user set them.

    On CPU: fp32 (bf16 is ~40x slower on CPUs without AMX), no activation
    checkpointing (it only trades speed for memory we have), and ``use_cpu`` so that
    several processes under ``accelerate launch`` synchronise over gloo instead of
    training independent copies.
    """
    if torch.cuda.is_available():
        return {"bf16": torch.cuda.is_bf16_supported(), "fp16": not torch.cuda.is_bf16_supported(),
                "tf32": torch.cuda.get_device_capability()[0] >= 8}
    return {"use_cpu": True, "bf16": False, "fp16": False, "activation_checkpointing": False,
            "dataloader_pin_memory": False}


def is_adapter_folder(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def check_model_source(name_or_path: str, what: str = "model") -> None:
    """A local path must exist and hold a model; a Hub id is checked when it is loaded."""
    path = Path(name_or_path).expanduser()
    # "user/name" is a Hub id unless its first part is a local folder (e.g. "runs/x" where runs/ exists).
    parent_exists = "/" in name_or_path and Path(name_or_path.split("/")[0]).is_dir()
    local = path.exists() or name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1 or parent_exists
    if not local:
        return
    if not path.exists():
        raise UserError(f"{what} not found: {name_or_path} (no such folder; pass a stage output folder or a Hub id)")
    if not path.is_dir():
        raise UserError(f"{what} path {name_or_path} is a file; pass the folder that holds config.json")
    if not ((path / "config.json").is_file() or is_adapter_folder(path) or (path / "tokenizer_config.json").is_file()):
        raise UserError(f"{name_or_path} is not a model folder (no config.json or adapter_config.json inside)")


def adapter_base(path: str | Path) -> str:
    """The base model an adapter folder was trained on (checked to exist when local)."""
    base = json.loads((Path(path) / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise UserError(f"{path}/adapter_config.json names no base_model_name_or_path")
    return base


def load_causal_lm(name_or_path: str, *, revision: str | None = None, dtype: str | torch.dtype = "auto",
                   trust_remote_code: bool = False, merge_adapter: bool = False):
    """Load any causal LM: a stage folder, a local HF folder, a Hub id, or a LoRA adapter on its base."""
    from transformers import AutoModelForCausalLM

    check_model_source(name_or_path)
    if Path(name_or_path).expanduser().exists():
        # Absolute, so adapters trained on it record a base path that works from any folder.
        name_or_path = str(Path(name_or_path).expanduser().resolve())
    if trust_remote_code:
        print(f"warning: trust_remote_code is on: code from '{name_or_path}' will run on this machine")
    kwargs = dict(revision=revision, dtype=dtype, trust_remote_code=trust_remote_code)
    if is_adapter_folder(name_or_path):
        from peft import PeftModel

        base = adapter_base(name_or_path)
        check_model_source(base, "adapter's base model")
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, **kwargs), name_or_path)
        return model.merge_and_unload() if merge_adapter else model
    try:
        return AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)
    except OSError as exc:
        raise UserError(f"could not load model '{name_or_path}' (not a local folder, so the Hub was asked): "
                        f"{str(exc).strip().splitlines()[0]}") from None


def load_tokenizer(name_or_path: str, *, revision: str | None = None, trust_remote_code: bool = False):
    """The tokenizer saved with a model (for adapters: the adapter folder's, else its base's)."""
    from transformers import AutoTokenizer

    check_model_source(name_or_path, "tokenizer")
    source = name_or_path
    if is_adapter_folder(name_or_path) and not (Path(name_or_path) / "tokenizer_config.json").is_file():
        source = adapter_base(name_or_path)
    try:
        tok = AutoTokenizer.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        where = "" if Path(source).exists() else " (not a local folder, so the Hub was asked)"
        raise UserError(f"could not load tokenizer '{source}'{where}: {str(exc).strip().splitlines()[0]}") from None
    if tok.pad_token is None:  # many open models ship none; padding needs one
        tok.pad_token = tok.eos_token
    return tok
