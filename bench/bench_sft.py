"""SFT tokens/s and pad tokens per batch (hfllm's defaults vs TRL's), and LoRA vs full fine-tuning.

    python bench/bench_sft.py
    python bench/bench_sft.py --quick

The built-in conversations (builtin:sft, short question/answer chats) on the tiny preset (random
weights: speed does not depend on what they learned), max_length 128, batch 16, as in
configs/tiny/sft.yaml. Every way is `hfllm sft` run in this process unless said otherwise:

- hfllm defaults: `hfllm sft` with only model, data, batch, max_length and steps given (on a CPU,
  batches of conversations of similar length: `--train_sampling_strategy group_by_length`);
- hfllm, random batches: the same with `--train_sampling_strategy random` (transformers' and TRL's
  default sampler, hfllm's before it chose per device);
- TRL defaults (fp32): trl.SFTTrainer with SFTConfig's own defaults, except bf16 and activation
  checkpointing turned off as hfllm does on CPU (the row below shows why);
- TRL defaults as shipped: SFTConfig() untouched (bf16 autocast, activation checkpointing), a few steps;
- hfllm + packing (TRL's BFD, which is padding-free), + wrapped packing: TRL's options through
  hfllm's flags. (padding_free alone needs max_length None, which a flag cannot say; it runs the
  same flattened batch as BFD packing.)

Pad fraction = positions in the collated batch that hold no token of any conversation, over all
positions, read from TRL's collator as it builds each batch. Tokens/s counts conversation tokens
(pads excluded), median over 3 windows after 2 warm-up steps (model loading and dataset
preparation excluded). LoRA vs full: each in its own process (`hfllm sft`, then `--use_peft
--lora_r 16`, all-linear) on the small preset; peak RSS is the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from common import QUIET, hfllm_cli, load_average, median, random_model, rss_mb, trainer_step_timer, write_json

BATCH, MAX_LENGTH, WARMUP, WINDOWS = 16, 128, 2, 3
HFLLM_VARIANTS = {"hfllm defaults": [],
                  "hfllm, random batches": ["--train_sampling_strategy", "random"],
                  "hfllm + packing (BFD, padding-free)": ["--packing", "true"],
                  "hfllm + wrapped packing": ["--packing", "true", "--packing_strategy", "wrapped"]}


@contextmanager
def batch_counter():
    """Records (conversation tokens, positions) of every batch TRL's collator builds."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    counts, original = [], DataCollatorForLanguageModeling.torch_call

    def counting(self, examples):
        out = original(self, examples)
        counts.append((sum(len(e["input_ids"]) for e in examples), out["input_ids"].numel()))
        return out

    DataCollatorForLanguageModeling.torch_call = counting
    try:
        yield counts
    finally:
        DataCollatorForLanguageModeling.torch_call = original


def rates(times: list[float], counts: list[tuple[int, int]]) -> tuple[float, float]:
    """(conversation tokens/s: median of windows, pad fraction over all batches)."""
    usable, per = times[WARMUP:], (len(times) - WARMUP - 1) // WINDOWS
    windows = [sum(c[0] for c in counts[WARMUP + w * per + 1:WARMUP + (w + 1) * per + 1])
               / (usable[(w + 1) * per] - usable[w * per]) for w in range(WINDOWS)]
    return median(windows), 1 - sum(c[0] for c in counts) / sum(c[1] for c in counts)


def hfllm_sft(model: str, out: Path, steps: int, extra: list) -> tuple[float, float]:
    with trainer_step_timer() as timer, batch_counter() as counts:
        hfllm_cli("sft", "--model_name_or_path", model, "--dataset_name", "builtin:sft", "--max_length", MAX_LENGTH,
                  "--per_device_train_batch_size", BATCH, "--max_steps", steps, "--save_strategy", "no",
                  "--output_dir", out, *QUIET, *extra)
    return rates(timer.times, counts)


def trl_sft(model_path: str, out: Path, steps: int, as_shipped: bool) -> tuple[float, float]:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from hfllm.data.load import load_dataset

    cpu = {} if as_shipped else {"bf16": False, "gradient_checkpointing": False}
    config = SFTConfig(output_dir=str(out), per_device_train_batch_size=BATCH, max_length=MAX_LENGTH, max_steps=steps,
                       use_cpu=True, save_strategy="no", report_to="none", disable_tqdm=True, **cpu)
    model, tok = AutoModelForCausalLM.from_pretrained(model_path), AutoTokenizer.from_pretrained(model_path)
    train = load_dataset("builtin:sft").remove_columns(["answer"])
    with trainer_step_timer() as timer, batch_counter() as counts:
        SFTTrainer(model=model, args=config, train_dataset=train, processing_class=tok).train()
    return rates(timer.times, counts)


def child(mode: str, model: str, out: str, steps: int) -> dict:
    """One `hfllm sft` in a fresh process: its peak memory is its own."""
    import hfllm.stages.sft  # noqa: F401  torch, transformers, trl, peft: imports are not training
    import peft  # noqa: F401

    rss_loaded = rss_mb("VmRSS")
    lora = ["--use_peft", "true", "--lora_r", "16", "--lora_alpha", "32"] if mode == "lora" else []
    tokens_per_s, pad = hfllm_sft(model, Path(out), steps, lora)
    metrics = json.loads((Path(out) / "metrics.json").read_text())
    return {"tokens_per_s": round(tokens_per_s), "pad_fraction": round(pad, 4), "peak_rss_mb": round(rss_mb("VmHWM")),
            "rss_after_imports_mb": round(rss_loaded), "trainable": metrics["trainable_parameters"]}


def lora_vs_full(work: Path, steps: int, preset: str, sizes: dict) -> dict:
    model = random_model(work, preset, **sizes)
    res = {"preset": preset}
    for mode in ("full", "lora"):
        cmd = [sys.executable, __file__, "--child", mode, model, str(work / f"child-{mode}"), str(steps)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"sft child {mode} failed:\n{done.stderr[-3000:]}")
        res[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    res["params"] = res["full"]["trainable"]  # full fine-tuning trains every parameter
    return res


def run(quick: bool = False, work: Path | None = None) -> dict:
    steps = 8 if quick else 17
    with tempfile.TemporaryDirectory(prefix="bench-sft-") as tmp:
        tmp = Path(tmp)
        work = work or tmp
        sizes = dict(hidden_size=64, num_hidden_layers=2, intermediate_size=128) if quick else {}
        model = random_model(work, "tiny", **sizes)
        rows = {}
        for name, extra in HFLLM_VARIANTS.items():
            if quick and name != "hfllm defaults":
                continue
            rows[name] = hfllm_sft(model, tmp / name.replace(" ", "_"), steps, extra)
        rows["TRL defaults (fp32)"] = trl_sft(model, tmp / "trl", steps, as_shipped=False)
        if not quick:
            rows["TRL defaults as shipped"] = trl_sft(model, tmp / "trl-shipped", WARMUP + WINDOWS + 1, as_shipped=True)
        lora = lora_vs_full(work, 6 if quick else 11, "tiny" if quick else "small", sizes)
    sft = {name: {"tokens_per_s": round(t), "pad_fraction": round(p, 4)} for name, (t, p) in rows.items()}
    res = {"sft": sft, "lora_vs_full": lora}
    return {"results": res, "markdown": markdown(res)}


def markdown(r: dict) -> str:
    base = r["sft"]["TRL defaults (fp32)"]["tokens_per_s"]
    lines = [f"Built-in conversations, tiny preset, batch {BATCH}, max_length {MAX_LENGTH}.", "",
             "| setup | conversation tokens/s | vs TRL defaults (fp32) | pad fraction (goal <= 1 %) |",
             "|---|---:|---:|---:|"]
    for name, row in r["sft"].items():
        lines.append(f"| {name} | {row['tokens_per_s']:,} | {row['tokens_per_s'] / base:.2f} "
                     f"| {row['pad_fraction']:.1%} |")
    lo = r["lora_vs_full"]
    lines += ["", f"LoRA vs full fine-tuning, {lo['preset']} preset ({lo['params'] / 1e6:.1f} M parameters), "
              "hfllm defaults otherwise, each in its own process:", "",
              "| | trainable parameters | peak RSS | peak RSS - RSS after imports | tokens/s |",
              "|---|---:|---:|---:|---:|"]
    for mode, label in (("full", "full"), ("lora", "LoRA r16, all-linear")):
        m = lo[mode]
        lines.append(f"| {label} | {m['trainable']:,} ({m['trainable'] / lo['params']:.1%}) | {m['peak_rss_mb']:,} MB "
                     f"| {m['peak_rss_mb'] - m['rss_after_imports_mb']:,} MB | {m['tokens_per_s']:,} |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a toy model, few steps")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", nargs=4, metavar=("MODE", "MODEL", "OUT", "STEPS"), help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        mode, model, out, steps = opts.child
        print(json.dumps(child(mode, model, out, int(steps))))
        sys.exit(0)
    print(f"load average {load_average()}")
    result = run(opts.quick)
    print(result["markdown"])
    write_json(opts.json, result)
