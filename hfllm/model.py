"""Models: size presets for from-config models, loading any causal LM, per-device defaults.

A from-config model is ``AutoConfig.for_model(model_type, **sizes)``: any decoder
type transformers knows works (llama, qwen2, mistral, gpt2, ...). Presets only
fill in the sizes; every size can be overridden.
"""

from __future__ import annotations

import json
import sys
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
    # Every parameter of a decoder LM gets a gradient: DDP's search for unused ones (on by default)
    # only costs an extra pass over the graph per step, and a warning from every process.
    ddp = {"ddp_find_unused_parameters": False}
    if torch.cuda.is_available():
        return {"bf16": torch.cuda.is_bf16_supported(), "fp16": not torch.cuda.is_bf16_supported(),
                "tf32": torch.cuda.get_device_capability()[0] >= 8, **ddp}
    return {"use_cpu": True, "bf16": False, "fp16": False, "activation_checkpointing": False,
            "dataloader_pin_memory": False, **ddp}


def is_adapter_folder(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def _looks_local(name_or_path: str) -> bool:
    """A path rather than a Hub id: it exists, starts like a path, or has more than one '/'.

    "user/name" is a Hub id unless its first part is a local folder (e.g. "runs/x" where runs/ exists).
    """
    parent_exists = "/" in name_or_path and Path(name_or_path.split("/")[0]).is_dir()
    return (Path(name_or_path).expanduser().exists() or name_or_path.startswith((".", "/", "~"))
            or name_or_path.count("/") > 1 or parent_exists)


def check_model_source(name_or_path: str, what: str = "model") -> None:
    """A local path must exist and hold a model (an adapter: and its base); a Hub id is checked when loaded."""
    path = Path(name_or_path).expanduser()
    if not _looks_local(name_or_path):
        return
    if not path.exists():
        raise UserError(f"{what} not found: {name_or_path} (no such folder; pass a stage output folder or a Hub id)")
    if not path.is_dir():
        raise UserError(f"{what} path {name_or_path} is a file; pass the folder that holds config.json")
    if not ((path / "config.json").is_file() or is_adapter_folder(path) or (path / "tokenizer_config.json").is_file()):
        raise UserError(f"{name_or_path} is not a model folder (no config.json or adapter_config.json inside)")
    if is_adapter_folder(path):  # checked now, before any data or weights are read
        base = adapter_base(path)
        if _looks_local(base) and not Path(base).expanduser().is_dir():
            raise UserError(f"{name_or_path} is a LoRA adapter whose base model {base} does not exist (moved or "
                            f"deleted?); put it back, or set base_model_name_or_path in "
                            f"{Path(name_or_path) / 'adapter_config.json'} to its new folder or Hub id")


def adapter_base(path: str | Path) -> str:
    """The base model an adapter folder was trained on."""
    config = Path(path) / "adapter_config.json"
    try:
        base = json.loads(config.read_text()).get("base_model_name_or_path")
    except (ValueError, AttributeError) as exc:
        raise UserError(f"{config} is not a valid adapter config ({type(exc).__name__}); "
                        "save the adapter again with peft") from None
    if not base or not isinstance(base, str):
        raise UserError(f"{config} names no base_model_name_or_path")
    return base


# --- loading safely ------------------------------------------------------------------------------
# Weights load from safetensors only: a pickle file (pytorch_model.bin, *.pt) can run code when it is
# unpickled, and a model folder or Hub repo is data from someone else. Remote code runs only when the
# config turns trust_remote_code on, and then a warning names the repo.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
NOT_WEIGHTS = ("training_args.bin",)  # the Trainer's own record, never loaded as weights here
_warned_remote: set[str] = set()


def warn_remote_code(name_or_path: str) -> None:
    """One warning line per repo and process, on stderr."""
    path = Path(name_or_path).expanduser()
    key = str(path.resolve()) if path.exists() else name_or_path
    if key not in _warned_remote:
        _warned_remote.add(key)
        print(f"warning: trust_remote_code is on: Python code from '{key}' will run on this machine; "
              "turn it on only for repos you trust", file=sys.stderr, flush=True)


def check_safe_weights(name_or_path: str) -> None:
    """A local folder must hold safetensors weights; one with only pickle weights is refused, unloaded."""
    folder = Path(name_or_path).expanduser()
    if not name_or_path or not folder.is_dir():
        return  # a Hub id: from_pretrained(use_safetensors=True) refuses pickle-only repos itself
    names = [p.name for p in folder.iterdir() if p.is_file()]
    if any(n.endswith((".safetensors", ".safetensors.index.json")) for n in names):
        return
    pickles = sorted(n for n in names if n.endswith(PICKLE_SUFFIXES) and n not in NOT_WEIGHTS)
    if pickles:
        raise UserError(f"{name_or_path} holds its weights only as a pickle file ({pickles[0]}), which can run code "
                        "when loaded; hfllm loads safetensors only: convert it once where you trust the file "
                        "(from_pretrained, then save_pretrained writes model.safetensors)")


def _from_pretrained(auto_class, name_or_path: str, what: str = "model", **kwargs):
    """auto_class.from_pretrained with safetensors only, remote code only when asked, one-line errors."""
    check_safe_weights(name_or_path)
    if kwargs.get("trust_remote_code"):
        warn_remote_code(name_or_path)
    try:
        return auto_class.from_pretrained(name_or_path, use_safetensors=True, **kwargs)
    except OSError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "safetensors" in first and not Path(name_or_path).exists():
            raise UserError(f"{what} '{name_or_path}' has no safetensors weights on the Hub (only pickle files, which "
                            "can run code when loaded); hfllm loads safetensors only") from None
        where = "" if Path(name_or_path).exists() else " (not a local folder, so the Hub was asked)"
        raise UserError(f"could not load {what} '{name_or_path}'{where}: {first}") from None


def load_causal_lm(name_or_path: str, *, revision: str | None = None, dtype: str | torch.dtype = "auto",
                   trust_remote_code: bool = False, merge_adapter: bool = False):
    """Load any causal LM: a stage folder, a local HF folder, a Hub id, or a LoRA adapter on its base."""
    from transformers import AutoModelForCausalLM

    check_model_source(name_or_path)
    if Path(name_or_path).expanduser().exists():
        # Absolute, so adapters trained on it record a base path that works from any folder.
        name_or_path = str(Path(name_or_path).expanduser().resolve())
    kwargs = dict(revision=revision, dtype=dtype, trust_remote_code=trust_remote_code)
    if is_adapter_folder(name_or_path):
        from peft import PeftModel

        check_safe_weights(name_or_path)
        base = adapter_base(name_or_path)
        check_model_source(base, "adapter's base model")
        model = PeftModel.from_pretrained(_from_pretrained(AutoModelForCausalLM, base, "adapter's base model",
                                                           **kwargs), name_or_path)
        return model.merge_and_unload() if merge_adapter else model
    return _from_pretrained(AutoModelForCausalLM, name_or_path, **kwargs)


def load_sequence_classifier(name_or_path: str, *, num_labels: int | None = None, revision: str | None = None,
                             dtype: str | torch.dtype = "auto", trust_remote_code: bool = False,
                             what: str = "reward model"):
    """A sequence-classification model (a reward model has one label), loaded as safely as a causal LM.
    ``num_labels`` gives a new head that many outputs; None keeps the saved model's."""
    from transformers import AutoModelForSequenceClassification

    check_model_source(name_or_path, what)
    if Path(name_or_path).expanduser().exists():
        name_or_path = str(Path(name_or_path).expanduser().resolve())
    extra = {} if num_labels is None else {"num_labels": num_labels}
    return _from_pretrained(AutoModelForSequenceClassification, name_or_path, what, revision=revision, dtype=dtype,
                            trust_remote_code=trust_remote_code, **extra)


def _config_vocab_size(folder: Path) -> int | None:
    """vocab_size from a local config.json (text_config's for multimodal configs), if there is one."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    size = config.get("vocab_size") or (config.get("text_config") or {}).get("vocab_size")
    return size if isinstance(size, int) else None


def _check_vocab(tok, vocab: int, name: str, model_folder: Path) -> None:
    """The ids a tokenizer emits must exist in the model's embedding. Added tokens beyond the base
    vocabulary that nothing emits (e.g. the unk token Qwen2's tokenizer adds when none is set) are fine."""
    if tok.vocab_size > vocab:
        raise UserError(f"the tokenizer of {name} has {tok.vocab_size} tokens but the model in {model_folder} has "
                        f"vocab_size {vocab}: they were not made together; use the tokenizer the model was "
                        "trained with")
    for role in ("bos", "eos", "pad"):
        token_id = getattr(tok, f"{role}_token_id", None)
        if isinstance(token_id, int) and token_id >= vocab:
            raise UserError(f"the {role} token of the tokenizer of {name} has id {token_id}, outside the model's "
                            f"vocab_size {vocab} ({model_folder}); set a {role} token the model knows")


def load_tokenizer(name_or_path: str, *, revision: str | None = None, trust_remote_code: bool = False):
    """The tokenizer saved with a model (for adapters: the adapter folder's, else its base's).

    When the folder (or the adapter's base) also holds a model config, the tokenizer must fit the
    model's embedding: a larger tokenizer means they were not made together, and generation would
    fail with an index error deep inside torch.
    """
    from transformers import AutoTokenizer

    check_model_source(name_or_path, "tokenizer")
    source = name_or_path
    adapter = is_adapter_folder(name_or_path)
    if adapter and not (Path(name_or_path) / "tokenizer_config.json").is_file():
        source = adapter_base(name_or_path)
    if trust_remote_code:
        warn_remote_code(source)
    try:
        tok = AutoTokenizer.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        where = "" if Path(source).exists() else " (not a local folder, so the Hub was asked)"
        raise UserError(f"could not load tokenizer '{source}'{where}: {str(exc).strip().splitlines()[0]}") from None
    model_folder = Path(adapter_base(name_or_path) if adapter else name_or_path).expanduser()
    vocab = _config_vocab_size(model_folder) if model_folder.is_dir() else None
    if vocab is not None:
        _check_vocab(tok, vocab, name_or_path, model_folder)
    if tok.pad_token is None:  # many open models ship none; padding needs one
        tok.pad_token = tok.eos_token
    return tok
