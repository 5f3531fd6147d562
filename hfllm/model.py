"""Models built from a config, and the defaults that follow the device.

A from-config model is ``AutoConfig.for_model(model_type, **sizes)``: any decoder
type transformers knows works (llama, qwen2, mistral, gpt2, ...). Presets only
fill in the sizes; every size can be overridden. Loading a saved model is
hfllm.loading's job.
"""

from __future__ import annotations

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
# What a model of each preset, trained from scratch, learns with when the user set none of these: measured,
# TrainingArguments' 5e-5 constant leaves a tiny model at 3x the held-out perplexity of these after the same
# steps. A fraction of warmup_steps below 1 is a share of all steps (TrainingArguments.get_warmup_steps).
PRESET_TRAINING: dict[str, dict] = {
    "tiny": dict(learning_rate=2e-3, warmup_steps=0.1, lr_scheduler_type="cosine"),
    "small": dict(learning_rate=1e-3, warmup_steps=0.1, lr_scheduler_type="cosine"),
    "gpt2-124m": dict(learning_rate=6e-4, warmup_steps=0.1, lr_scheduler_type="cosine"),
}
# The learning rate of a fine-tuning stage whose user set none: TRL's default for the stage (the reward model's:
# TRL's example for full training), meant for full fine-tuning of models of half a billion parameters and more,
# times the square root of how much smaller the model is (a small model takes larger steps; at most
# SMALL_MODEL_FACTOR times), times LORA_FACTOR with LoRA (TRL's examples: 2e-4 with LoRA, 2e-5 without),
# at most MAX_FINE_TUNING_LR. Larger models keep the anchor.
FINE_TUNING_LR = {"sft": 2e-5, "reward": 1e-5, "dpo": 1e-6, "kto": 1e-6, "orpo": 1e-6, "simpo": 1e-6}
REFERENCE_PARAMETERS = 5e8
SMALL_MODEL_FACTOR, LORA_FACTOR, MAX_FINE_TUNING_LR = 30.0, 10.0, 1e-3


def fine_tuning_learning_rate(stage: str, parameters: int, lora: bool) -> float:
    """The default learning rate of ``stage`` (a key of FINE_TUNING_LR) for a model of ``parameters``, to one
    significant digit."""
    size = min(SMALL_MODEL_FACTOR, max(1.0, (REFERENCE_PARAMETERS / max(parameters, 1)) ** 0.5))
    rate = min(MAX_FINE_TUNING_LR, FINE_TUNING_LR[stage] * size * (LORA_FACTOR if lora else 1.0))
    return float(f"{rate:.0e}")


def fine_tuning_rule(stage: str) -> str:
    """The rule in words, for --help."""
    return (f"{short(FINE_TUNING_LR[stage])} x sqrt(500 M / the model's parameters), 1x to {SMALL_MODEL_FACTOR:g}x, "
            f"x{LORA_FACTOR:g} with LoRA, at most {short(MAX_FINE_TUNING_LR)} (so "
            f"{short(fine_tuning_learning_rate(stage, 10**6, False))} for a 1 M-parameter model, "
            f"{short(FINE_TUNING_LR[stage])} from 500 M up)")


def short(rate: float) -> str:
    """5e-4, not 5e-04 or 0.0005."""
    return f"{rate:.0e}".replace("e-0", "e-")


def parameter_count(parameters: int) -> str:
    """12 M, 0.8 M, 1.5 B: how the default's line names a model's size."""
    if parameters >= 1e9:
        return f"{parameters / 1e9:.1f} B"
    return f"{parameters / 1e6:.1f} M" if parameters < 1e7 else f"{parameters / 1e6:.0f} M"


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


def training_defaults() -> dict:
    """TrainingArguments values that follow the device, unless the user set them.

    On CPU: fp32 (bf16 is ~40x slower on CPUs without AMX), no activation
    checkpointing (it only trades speed for memory we have), and ``use_cpu`` so that
    several processes under ``accelerate launch`` synchronise over gloo instead of
    training independent copies.
    """
    # Every parameter of a decoder LM gets a gradient: DDP's search for unused ones (on by default)
    # only costs an extra pass over the graph per step, and a warning from every process.
    ddp = {"ddp_find_unused_parameters": False}
    if torch.cuda.is_available():
        return {"bf16": torch.cuda.is_bf16_supported(), "fp16": not torch.cuda.is_bf16_supported(),
                "tf32": torch.cuda.get_device_capability()[0] >= 8, **ddp}
    return {"use_cpu": True, "bf16": False, "fp16": False, "activation_checkpointing": False,
            "dataloader_pin_memory": False, **ddp}


def torch_dtype(args) -> str:
    """The dtype to load weights in, from the precision flags of a TrainingArguments (or alike)."""
    return "bfloat16" if getattr(args, "bf16", False) else "float16" if getattr(args, "fp16", False) else "float32"
