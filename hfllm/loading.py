"""The one way hfllm loads a model or tokenizer: safely, from a folder or the Hub, adapters included.

- "Local path or Hub id?" has one answer, ``is_local``, used for models and datasets alike.
- Weights load from safetensors only: a pickle file (pytorch_model.bin, *.pt) can run code when it is
  unpickled, and a model folder or Hub repo is data from someone else. A local folder holding only
  pickles is refused before anything is read; for Hub ids ``use_safetensors=True`` refuses them.
- Remote code runs only when ``trust_remote_code`` is on, and then one warning names the repo.
- A LoRA adapter folder loads on its base with peft (``PeftConfig`` names the base, ``PeftModel``
  puts the adapter on it; ``merge_adapter=True`` merges it in); the base is checked before any
  weights are read.
- Every failure is one ``UserError`` line.
"""

from __future__ import annotations

import json
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

from hfllm.errors import UserError, first_line

# Files that make a name a local dataset even before it exists (so a typo says "not found").
DATA_SUFFIXES = (".txt", ".md", ".json", ".jsonl", ".csv", ".tsv", ".parquet", ".arrow")


def is_local(name: str) -> bool:
    """A local path rather than a Hub id: it exists, starts like a path (. / ~), has more than one '/',
    ends like a data file, or its first part is a local folder ("runs/x" where runs/ exists)."""
    if not isinstance(name, str) or not name:
        return False
    first = name.split("/")[0]
    return (Path(name).expanduser().exists() or name.startswith((".", "/", "~")) or name.count("/") > 1
            or name.lower().endswith(DATA_SUFFIXES) or ("/" in name and Path(first).is_dir()))


def is_adapter_folder(path: str | Path) -> bool:
    return (Path(path).expanduser() / "adapter_config.json").is_file()


def adapter_base(path: str | Path) -> str:
    """The base model an adapter folder was trained on (peft's PeftConfig reads it)."""
    from peft import PeftConfig

    config = Path(path).expanduser() / "adapter_config.json"
    try:
        base = PeftConfig.from_pretrained(str(config.parent)).base_model_name_or_path
    except (ValueError, TypeError, AttributeError) as exc:
        raise UserError(f"{config} is not a valid adapter config ({type(exc).__name__}); "
                        "save the adapter again with peft") from None
    if not base or not isinstance(base, str):
        raise UserError(f"{config} names no base_model_name_or_path")
    return base


def check_model_source(name_or_path: str, what: str = "model") -> None:
    """A local path must exist and hold a model (an adapter: and its base); a Hub id is checked when loaded."""
    if not is_local(name_or_path):
        return
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise UserError(f"{what} not found: {name_or_path} (no such folder; pass a stage output folder or a Hub id)")
    if not path.is_dir():
        raise UserError(f"{what} path {name_or_path} is a file; pass the folder that holds config.json")
    if not ((path / "config.json").is_file() or is_adapter_folder(path) or (path / "tokenizer_config.json").is_file()):
        raise UserError(f"{name_or_path} is not a model folder (no config.json or adapter_config.json inside)")
    check_safe_weights(name_or_path)  # first: whatever else is wrong, a pickle is named as the reason
    if (path / "config.json").is_file() and not is_adapter_folder(path):
        check_config(path / "config.json", name_or_path)
    check_weight_files(path, name_or_path)
    if is_adapter_folder(path):  # checked now, before any data or weights are read
        base = adapter_base(path)
        if is_local(base) and not Path(base).expanduser().is_dir():
            raise UserError(f"{name_or_path} is a LoRA adapter whose base model {base} does not exist (moved or "
                            f"deleted?); put it back, or set base_model_name_or_path in "
                            f"{Path(name_or_path) / 'adapter_config.json'} to its new folder or Hub id")


def check_config(config: Path, shown: str) -> None:
    """A config.json that transformers can tell the model from (AutoConfig needs model_type)."""
    try:
        data = json.loads(config.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{shown}/config.json is not valid JSON ({first_line(exc)}); save the model again with "
                        "save_pretrained") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str):
        raise UserError(f"{shown}/config.json has no model_type, so transformers cannot tell which model it is; save "
                        "the model with save_pretrained (which writes it), or add the line, e.g. \"model_type\": "
                        "\"llama\"")


def check_weight_files(folder: Path, shown: str) -> None:
    """Each safetensors file holds what its header says: a 0-byte or cut-off file (an interrupted copy or save)
    is one line here, not a deserialising error from deep inside from_pretrained. Reads 8 bytes + the header."""
    import struct

    for file in sorted(folder.glob("*.safetensors")):
        size = file.stat().st_size
        try:
            with open(file, "rb") as f:
                length = struct.unpack("<Q", f.read(8))[0] if size >= 8 else None
                header = json.loads(f.read(length)) if length is not None and 8 + length <= size else None
        except (OSError, ValueError, UnicodeDecodeError, struct.error):
            header = None
        ends = [v["data_offsets"][1] for v in (header or {}).values()
                if isinstance(v, dict) and isinstance(v.get("data_offsets"), list) and len(v["data_offsets"]) == 2]
        if not isinstance(header, dict) or 8 + length + max(ends, default=0) > size:
            state = "empty (0 bytes)" if size == 0 else f"cut off or damaged ({size:,} bytes)"
            raise UserError(f"{shown}/{file.name} is {state}: an interrupted copy or save? copy or save the model "
                            "again")


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


def _checked(name_or_path: str, what: str) -> str:
    """Check a source (an adapter: and its base) as far as can be done without loading; local paths absolute,
    so adapters trained on them record a base path that works from any folder."""
    check_model_source(name_or_path, what)
    check_safe_weights(name_or_path)
    if is_adapter_folder(name_or_path):
        base = adapter_base(name_or_path)
        check_model_source(base, "adapter's base model")
        check_safe_weights(base)
    path = Path(name_or_path).expanduser()
    return str(path.resolve()) if path.exists() else name_or_path


def _from_pretrained(auto_class, name_or_path: str, what: str, shown: str | None = None, **kwargs):
    """auto_class.from_pretrained with safetensors only, remote code only when asked, one-line errors
    naming ``shown`` (for an adapter: its base, which is what comes from elsewhere)."""
    shown = shown or name_or_path
    if kwargs.get("trust_remote_code"):
        warn_remote_code(shown)
    folder = Path(name_or_path).expanduser()
    if folder.is_dir():  # before allocating: a model that cannot fit is one line, not a frozen machine
        from hfllm.model_checks import check_memory

        check_memory(sum(f.stat().st_size for f in folder.glob("*.safetensors")), f"{what} '{shown}'")
    try:
        with quiet_load_report():
            model, info = auto_class.from_pretrained(name_or_path, use_safetensors=True, output_loading_info=True,
                                                     **kwargs)
    except OSError as exc:
        first = first_line(exc)
        if "safetensors" in first and not Path(shown).exists():
            raise UserError(f"{what} '{shown}' has no safetensors weights on the Hub (only pickle files, which "
                            "can run code when loaded); hfllm loads safetensors only") from None
        where = "" if Path(shown).exists() else " (not a local folder, so the Hub was asked)"
        raise UserError(f"could not load {what} '{shown}'{where}: {first}") from None
    except (ValueError, KeyError, RuntimeError, TypeError) as exc:  # a config or weights it cannot take
        if type(exc).__name__ == "OutOfMemoryError" or isinstance(exc, MemoryError):
            raise
        raise UserError(f"could not load {what} '{shown}': {first_line(exc, with_type=True)}") from exc  # --debug
    report_loading(model, info, what, shown)
    return model


@contextmanager
def quiet_load_report():
    """Without transformers' LOAD REPORT table (a warning of modeling_utils' logger): report_loading says what
    matters in one line. Errors still raise. modeling_utils at that level also checks the tensor-parallel plan
    of a model that is not split, and warns that its norms "were not sharded": quiet too."""
    from transformers.utils import logging as hf_logging

    loggers = [hf_logging.get_logger(f"transformers.{name}") for name in ("modeling_utils", "distributed.tensor_parallel")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(hf_logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


_new_heads: set[str] = set()  # the sources a new head was reported for, once per process


def report_loading(model, info: dict, what: str, shown: str) -> None:
    """One line where the weights and the model differ. A head outside the base model (a reward or value model
    made from a causal LM) starts untrained on purpose: said once. Checkpoint weights the model has no place
    for outside the base (a causal LM's lm_head under a reward head) do not matter: silent."""
    prefix = getattr(model, "base_model_prefix", "") + "."
    missing = sorted(info.get("missing_keys") or [])
    unused = sorted(k for k in info.get("unexpected_keys") or [] if k.startswith(prefix))
    head = [k for k in missing if not k.startswith(prefix)]
    if head and len(head) == len(missing) and not unused and type(model).__name__.endswith("SequenceClassification"):
        if shown not in _new_heads:
            _new_heads.add(shown)
            modules = sorted({k.rsplit(".", 1)[0] for k in head})
            print(f"note: {what} '{shown}' has no {', '.join(modules)} head yet: it starts from random values and "
                  "this training learns it (expected for a new reward or value model)")
        return
    if missing or unused:
        def some(keys):
            return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
        parts = [f"{len(missing)} weights are not in the checkpoint and start random ({some(missing)})"] \
            if missing else []
        parts += [f"{len(unused)} checkpoint weights are not used ({some(unused)})"] if unused else []
        print(f"warning: {what} '{shown}': {'; '.join(parts)}; is it the model you meant?")


def _load(kind: str, name_or_path: str, what: str, merge_adapter: bool, **kwargs):
    """A model of ``kind`` ("causal_lm" or "sequence_classification"); an adapter folder on its base, with peft."""
    import transformers

    name_or_path = _checked(name_or_path, what)
    auto = transformers.AutoModelForCausalLM if kind == "causal_lm" else \
        transformers.AutoModelForSequenceClassification
    if not is_adapter_folder(name_or_path):
        return _from_pretrained(auto, name_or_path, what, **kwargs)
    from peft import PeftModel

    # The base, then the adapter (peft picks the task's class from the adapter's config). Not peft's
    # AutoPeftModel*: it also loads the adapter folder's tokenizer and, when that is longer than the
    # embedding (Qwen2's adds an unknown token), grows the embedding by untrained rows.
    base = _from_pretrained(auto, adapter_base(name_or_path), "adapter's base model", **kwargs)
    with warnings.catch_warnings():  # peft calls APIs that transformers 5 has deprecated
        warnings.simplefilter("ignore", FutureWarning)
        model = PeftModel.from_pretrained(base, name_or_path, token=kwargs.get("token"))
    return model.merge_and_unload() if merge_adapter else model


def quantization_config(model_args, dtype: str):
    """bitsandbytes loading for QLoRA (``--load_in_4bit`` / ``--load_in_8bit``), computing in the training dtype;
    None without those flags. Which stages may ask for it is hfllm.checks.check_quantization's to say."""
    from trl import get_quantization_config

    config = get_quantization_config(model_args)
    if config is not None and config.load_in_4bit:
        import torch

        config.bnb_4bit_compute_dtype = getattr(torch, dtype)
    return config


def _model_kwargs(quantization_config=None, attn_implementation: str | None = None) -> dict:
    """from_pretrained's options for how the weights load, only where asked (the defaults otherwise)."""
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    if quantization_config is not None:  # QLoRA: each process quantizes its own copy, on its own GPU
        import torch
        from accelerate import PartialState

        device_map = {"": PartialState().local_process_index} if torch.cuda.is_available() else None
        kwargs.update(quantization_config=quantization_config, device_map=device_map)
    return kwargs


def load_causal_lm(name_or_path: str, *, revision: str | None = None, dtype="auto",
                   trust_remote_code: bool = False, merge_adapter: bool = False, token: str | None = None,
                   quantization_config=None, attn_implementation: str | None = None):
    """Any causal LM: a stage folder, a local HF folder, a Hub id, or a LoRA adapter on its base.
    ``quantization_config`` (see quantization_config()) loads the base in 4 or 8 bits, for QLoRA."""
    return _load("causal_lm", name_or_path, "model", merge_adapter, revision=revision, dtype=dtype,
                 trust_remote_code=trust_remote_code, token=token,
                 **_model_kwargs(quantization_config, attn_implementation))


def load_sequence_classifier(name_or_path: str, *, num_labels: int | None = None, revision: str | None = None,
                             dtype="auto", trust_remote_code: bool = False, merge_adapter: bool = False,
                             token: str | None = None, what: str = "reward model", quantization_config=None):
    """A sequence-classification model (a reward model has one label), loaded as safely as a causal LM.
    ``num_labels`` gives a new head that many outputs; None keeps the saved model's."""
    extra = {} if num_labels is None else {"num_labels": num_labels}
    return _load("sequence_classification", name_or_path, what, merge_adapter, revision=revision, dtype=dtype,
                 trust_remote_code=trust_remote_code, token=token, **extra, **_model_kwargs(quantization_config))


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


def load_tokenizer(name_or_path: str, *, revision: str | None = None, trust_remote_code: bool = False,
                   token: str | None = None):
    """The tokenizer saved with a model (for adapters: the adapter folder's, else its base's).

    When the folder (or the adapter's base) also holds a model config, the tokenizer must fit the
    model's embedding: a larger tokenizer means they were not made together, and generation would
    fail with an index error deep inside torch.
    """
    from transformers import AutoTokenizer

    check_model_source(name_or_path, "tokenizer")
    source = name_or_path
    adapter = is_adapter_folder(name_or_path)
    if adapter and not (Path(name_or_path).expanduser() / "tokenizer_config.json").is_file():
        source = adapter_base(name_or_path)
    if trust_remote_code:
        warn_remote_code(source)
    try:
        tok = AutoTokenizer.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code,
                                            token=token)
    except (OSError, ValueError) as exc:
        where = "" if Path(source).exists() else " (not a local folder, so the Hub was asked)"
        raise UserError(f"could not load tokenizer '{source}'{where}: {first_line(exc)}") from None
    model_folder = Path(adapter_base(name_or_path) if adapter else name_or_path).expanduser()
    vocab = _config_vocab_size(model_folder) if model_folder.is_dir() else None
    if vocab is not None:
        _check_vocab(tok, vocab, name_or_path, model_folder)
    # "Token indices sequence length is longer than the specified maximum": hfllm packs long texts into blocks
    # and the trainers cut rows at max_length (the data line before training shows row lengths against it).
    tok.deprecation_warnings["sequence-length-is-longer-than-the-specified-maximum"] = True
    if tok.pad_token is None:  # many open models ship none; padding needs one
        tok.pad_token = tok.eos_token
    return tok
