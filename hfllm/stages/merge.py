"""Merge a LoRA adapter into its base model and save a standalone model: the one merge in hfllm.

    hfllm merge --model_name_or_path runs/tiny/sft-lora --output_dir runs/tiny/sft-merged

The result loads with ``from_pretrained`` alone (no peft) and gives the same outputs as the
adapter on its base, within float tolerance. ``hfllm sft --merge_lora`` and ``hfllm push --merge``
merge through ``save_merged`` too. A reward model's adapter (task SEQ_CLS) merges into a
sequence classifier; any other into a causal LM, which stops where its chat template ends a turn.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from hfllm import run_folder
from hfllm.chat_template import set_stop_tokens
from hfllm.checks import input_paths, sources
from hfllm.config import config_flag, parse_args, renamed
from hfllm.errors import UserError
from hfllm.loading import (adapter_base, check_model_source, is_adapter_folder, load_causal_lm,
                           load_sequence_classifier, load_tokenizer)

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin", "adapter_config.json")


@dataclass
class MergeArguments:
    model_name_or_path: str | None = field(default=None, metadata=renamed(
        "adapter", help="the LoRA adapter folder (holds adapter_config.json)"))
    output_dir: str | None = field(default=None, metadata={"help": "where to save the merged model"})
    dtype: str = field(default="auto", metadata={"help": "dtype to load and save in (auto keeps the base's)"})
    overwrite: bool = field(default=False, metadata={"help": "replace a finished folder in output_dir"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow code from the base model's repo to run"})


def save_merged(adapter: str, output_dir: str, *, dtype: str = "auto", token: str | None = None,
                trust_remote_code: bool = False, before_save=None) -> Path:
    """Load ``adapter`` on its base with peft, merge it in, save the model and tokenizer to ``output_dir``.
    ``output_dir`` may be the adapter's own folder: its adapter files (and peft's adapter card) are replaced.
    ``before_save`` runs once everything has loaded (hfllm merge claims its output folder then)."""
    from peft import PeftConfig

    if not is_adapter_folder(adapter):
        raise UserError(f"{adapter} is not a LoRA adapter folder (no adapter_config.json)")
    load = load_sequence_classifier if PeftConfig.from_pretrained(adapter).task_type == "SEQ_CLS" else load_causal_lm
    model = load(adapter, dtype=dtype, token=token, trust_remote_code=trust_remote_code, merge_adapter=True)
    tokenizer = load_tokenizer(adapter, token=token, trust_remote_code=trust_remote_code)
    if before_save is not None:
        before_save()
    out = Path(output_dir)
    if out.resolve() == Path(adapter).resolve():
        for name in (*ADAPTER_FILES, "README.md"):
            (out / name).unlink(missing_ok=True)
    if load is load_causal_lm:
        set_stop_tokens(model, tokenizer)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main(argv: list[str]) -> int:
    (args,), _ = parse_args([MergeArguments], argv, prog="hfllm merge")
    adapter = args.model_name_or_path
    if not adapter or not args.output_dir:
        raise UserError("usage: hfllm merge --model_name_or_path ADAPTER_FOLDER --output_dir OUT")
    check_model_source(adapter, "adapter")  # and its base: before anything is written
    if not is_adapter_folder(adapter):
        raise UserError(f"{adapter} is not a LoRA adapter folder (no adapter_config.json)")
    plan = run_folder.prepare(args.output_dir, overwrite=args.overwrite, stage="merge", resume=False,
                              inputs=input_paths([args], config_flag(argv)), sources=sources([args]))
    out = save_merged(adapter, args.output_dir, dtype=args.dtype, trust_remote_code=args.trust_remote_code,
                      before_save=plan.claim)
    metrics = run_folder.read_metrics(adapter)
    for extra in ("hfllm_args.yaml", "loss.png"):  # keep the record of how the adapter was trained
        if (Path(adapter) / extra).is_file():
            shutil.copy(Path(adapter) / extra, out / extra)
    run_folder.write_metrics(out, {**{k: v for k, v in metrics.items() if k not in ("stage", "finished_at")},
                                   "merged_from": str(Path(adapter).resolve()),
                                   "base_model": adapter_base(adapter)}, stage=metrics.get("stage", "merge"))
    print(f"merged {adapter} into its base ({adapter_base(adapter)}); saved to {out}")
    return 0
