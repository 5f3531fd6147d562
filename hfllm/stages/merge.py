"""Merge a LoRA adapter into its base model and save a standalone model.

    hfllm merge --adapter runs/tiny/sft-lora --output_dir runs/tiny/sft-merged

The result loads with ``AutoModelForCausalLM.from_pretrained`` alone (no peft),
and gives the same outputs as the adapter on its base, within float tolerance.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from hfllm import run_folder
from hfllm.config import parse_args
from hfllm.errors import UserError
from hfllm.model import adapter_base, check_model_source, is_adapter_folder, load_causal_lm, load_tokenizer


@dataclass
class MergeArguments:
    adapter: str | None = field(default=None, metadata={"help": "folder holding adapter_config.json"})
    output_dir: str | None = field(default=None, metadata={"help": "where to save the merged model"})
    dtype: str = field(default="auto", metadata={"help": "dtype to load and save in (auto keeps the base's)"})
    overwrite: bool = field(default=False, metadata={"help": "replace a finished folder in output_dir"})


def merge(adapter: str, output_dir: str, dtype: str = "auto") -> Path:
    if not is_adapter_folder(adapter):
        raise UserError(f"{adapter} is not a LoRA adapter folder (no adapter_config.json)")
    model = load_causal_lm(adapter, dtype=dtype, merge_adapter=True)
    tokenizer = load_tokenizer(adapter)
    out = Path(output_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    metrics = run_folder.read_metrics(adapter)
    for extra in ("hfllm_args.yaml", "loss.png"):  # keep the record of how the adapter was trained
        if (Path(adapter) / extra).is_file():
            shutil.copy(Path(adapter) / extra, out / extra)
    run_folder.write_metrics(out, {**{k: v for k, v in metrics.items() if k not in ("stage", "finished_at")},
                                   "merged_from": str(Path(adapter).resolve()),
                                   "base_model": adapter_base(adapter)}, stage=metrics.get("stage", "merge"))
    return out


def main(argv: list[str]) -> int:
    (args,), _ = parse_args([MergeArguments], argv, prog="hfllm merge")
    if not args.adapter or not args.output_dir:
        raise UserError("usage: hfllm merge --adapter ADAPTER_FOLDER --output_dir OUT")
    check_model_source(args.adapter, "adapter")  # and its base: before --overwrite removes anything
    if not is_adapter_folder(args.adapter):
        raise UserError(f"{args.adapter} is not a LoRA adapter folder (no adapter_config.json)")
    run_folder.prepare(args.output_dir, overwrite=args.overwrite, stage="merge", resume=False)
    out = merge(args.adapter, args.output_dir, args.dtype)
    print(f"merged {args.adapter} into its base ({adapter_base(args.adapter)}); saved to {out}")
    return 0
