"""What a model folder holds and what a model needs, read from its config files, never its weights.

hfllm.checks asks these before any data or weights are loaded: is the folder a causal LM, a reward
model or a LoRA adapter (``check_model_kind``), how long is its context, which modules can LoRA
target, is a new model type a decoder, and does training it fit in this machine's memory.
"""

from __future__ import annotations

from pathlib import Path

from hfllm.errors import UserError


def existing_path(value) -> Path | None:
    """The path a string names, when it exists on this machine (a Hub id or a word does not)."""
    if not isinstance(value, str) or not value or value.startswith("builtin:"):
        return None
    try:
        path = Path(value).expanduser()
        return path if path.exists() else None
    except (OSError, ValueError):  # too long for a path, a NUL byte
        return None


def _json(path: Path) -> dict:
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def model_kind(name_or_path: str) -> str | None:
    """"adapter" (a LoRA adapter on a causal LM), "reward adapter", "reward" (a sequence classifier),
    "causal_lm", "tokenizer" (a folder with a tokenizer only), or None (a Hub id: judged when it loads)."""
    path = existing_path(name_or_path)
    if path is None or not path.is_dir():
        return None
    if (path / "adapter_config.json").is_file():
        return "reward adapter" if _json(path / "adapter_config.json").get("task_type") == "SEQ_CLS" else "adapter"
    if not (path / "config.json").is_file():
        return "tokenizer"
    architectures = _json(path / "config.json").get("architectures") or []
    if architectures and all(str(a).endswith("ForSequenceClassification") for a in architectures):
        return "reward"
    return "causal_lm"


def check_model_kind(name_or_path: str, need: str, option: str | None, command: str) -> None:
    """``need``: "causal_lm" (a language model, an adapter on one included), "full" (a model, not an adapter),
    "reward" (a reward model or a reward adapter)."""
    kind = model_kind(name_or_path)
    if kind is None or kind == "tokenizer":
        return
    flag = f" for --{option}" if option else ""
    if need == "reward" and kind in ("causal_lm", "adapter"):
        raise UserError(f"{name_or_path} is a causal language model, not a reward model: as one it would score with "
                        f"an untrained head; train one with 'hfllm reward --model_name_or_path {name_or_path}'")
    if need in ("causal_lm", "full") and kind in ("reward", "reward adapter"):
        raise UserError(f"{name_or_path} is a reward model (it scores a conversation, it does not write one); "
                        f"hfllm {command} needs a causal language model{flag}, e.g. the SFT stage folder")
    if need == "full" and kind == "adapter":
        raise UserError(f"{name_or_path} is a LoRA adapter; hfllm {command} starts from a full model: merge it first "
                        f"(hfllm merge --model_name_or_path {name_or_path} --output_dir {name_or_path}-merged), or "
                        "train the SFT stage with --merge_lora")


def model_config(name_or_path: str) -> dict:
    """A local model's config.json (an adapter's: its base's), {} when there is none to read."""
    from hfllm.loading import adapter_base, is_adapter_folder

    path = existing_path(name_or_path)
    if path is None or not path.is_dir():
        return {}
    if is_adapter_folder(path):
        try:
            return model_config(adapter_base(path))
        except UserError:
            return {}
    return _json(path / "config.json")


def context_length(config: dict) -> int | None:
    for holder in (config, config.get("text_config") or {}):
        for key in ("max_position_embeddings", "n_positions"):
            if isinstance(holder.get(key), int):
                return holder[key]
    return None


def check_lora_targets(name_or_path: str, targets) -> None:
    """Each --lora_target_modules name must end a module name of the model (peft's rule), read from a copy of the
    model built on the meta device: no weights, no memory."""
    if not targets or targets in ("all-linear", ["all-linear"]) or model_kind(name_or_path) != "causal_lm":
        return
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(name_or_path)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except Exception:  # noqa: BLE001  a model that cannot be built is refused, with its reason, when it loads
        return
    linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()} | {n for n, _ in model.named_modules()}
    for target in [targets] if isinstance(targets, str) else targets:
        if target not in names:
            raise UserError(f"lora_target_modules: the model has no module '{target}'; its linear layers are "
                            f"{', '.join(linear)} (or use all-linear)")


def memory_bytes() -> int | None:
    """What this machine (or its container's memory limit) has."""
    import os

    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        total = min(total, int(limit)) if limit.isdigit() else total
    except OSError:
        pass
    return total


def check_memory(needed: float, what: str) -> None:
    """Refuse, before allocating, what cannot fit in this machine's memory at all."""
    have = memory_bytes()
    if have and needed > have:
        raise UserError(f"{what} needs ~{needed / 2**30:.1f} GB of memory; this machine has {have / 2**30:.1f} GB: "
                        "choose a smaller model, or a machine with more memory")


def training_bytes(config) -> int:
    """Memory to train a model of ``config`` from scratch in float32: weights, gradients and Adam's two moments
    (16 bytes a parameter), counted on a copy built on the meta device (no memory)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return 16 * sum(p.numel() for p in model.parameters())


def check_decoder(model_type: str) -> None:
    """A model built from scratch must be a decoder: an encoder's tokens also see the ones after them."""
    from transformers.models.auto import modeling_auto as auto

    if model_type not in auto.CONFIG_MAPPING_NAMES:
        return  # build_config names the unknown type, with the closest match
    if model_type not in auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or model_type in \
            auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES or model_type in auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES:
        raise UserError(f"model_type {model_type} is not a decoder-only language model (an encoder, or an "
                        "encoder-decoder): pretrained on next tokens, its tokens would see the ones they predict; "
                        "choose a decoder such as llama, qwen2, mistral or gpt2")
