"""LoRA SFT with a real 151,936-token vocabulary on the CPU: where the step goes, and what computing the loss
without the full logits saves.

    python bench/bench_large_vocab.py
    python bench/bench_large_vocab.py --quick

The model is the Qwen2.5 replica of the test suite (tests/replicas.py: Qwen2.5's real tokenizer and
chat template, its config shape at hidden 64, 2 layers, random weights), so nearly all of a step is
the output layer: 64 x 151,936 weights against 8 x 256 positions. The data is one-turn chats whose
answers are built-in stories long enough to fill max_length. Every way trains LoRA r16 (all-linear) in
fp32 with batch 8, max_length 256, each in its own process (its peak memory is its own):

- hfllm: `hfllm sft --use_peft` (TRL's SFTTrainer underneath);
- TRL: trl.SFTTrainer with the same arguments. It projects only the positions that carry a label, in
  tiles (its fused LM head), and never materialises the (batch, length, vocab) logits;
- full logits: the same SFTTrainer, but the loss is the model's own (`model(..., labels=...)`), which
  computes every position's 151,936 logits first: what a plain Trainer does.

Seconds per step are the median after 2 warm-up steps (model loading and data preparation excluded);
peak RSS is the process's VmHWM, RSS after imports its VmRSS before the model loads.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import QUIET, ROOT, hfllm_cli, load_average, median, rss_mb, trainer_step_timer, write_json

BATCH, WARMUP = 8, 2
LORA = {"r": 16, "lora_alpha": 32, "target_modules": "all-linear"}
WAYS = {"hfllm": "`hfllm sft --use_peft`", "trl": "trl.SFTTrainer (fused LM head)",
        "full_logits": "SFTTrainer, model's own loss (full logits)"}


def replica() -> str:
    sys.path.insert(0, str(ROOT / "tests"))
    from replicas import replica as build

    return str(build("qwen2.5"))


def write_data(path: Path, rows: int) -> None:
    from hfllm.data.load import iter_texts, load_dataset

    texts = iter_texts(load_dataset("builtin:pretrain"), "text", "builtin:pretrain")
    with path.open("w", encoding="utf-8") as f:
        for _ in range(rows):
            story = ""
            while len(story) < 2000:  # ~2 characters a token: past max_length, so every row is cut to it
                story += next(texts) + " "
            f.write(json.dumps({"messages": [{"role": "user", "content": "Tell me a story."},
                                             {"role": "assistant", "content": story.strip()}]}) + "\n")


def child(way: str, model: str, data: str, out: str, steps: int, max_length: int) -> dict:
    import peft  # noqa: F401  imports are not training
    import trl

    import hfllm.stages.sft  # noqa: F401

    rss_imports = rss_mb("VmRSS")
    with trainer_step_timer() as timer:
        if way == "hfllm":
            hfllm_cli("sft", "--model_name_or_path", model, "--dataset_name", data, "--use_peft", "true",
                      "--lora_r", LORA["r"], "--lora_alpha", LORA["lora_alpha"], "--lora_target_modules",
                      LORA["target_modules"], "--per_device_train_batch_size", BATCH, "--max_length", max_length,
                      "--max_steps", steps, "--save_strategy", "no", "--output_dir", out, *QUIET)
        else:
            from datasets import load_dataset
            from peft import LoraConfig
            from transformers import AutoModelForCausalLM, AutoTokenizer

            class FullLogits(trl.SFTTrainer):  # the model's own loss: every position's logits, then cross-entropy
                def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                    outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                    labels=inputs["labels"])
                    return (outputs.loss, outputs) if return_outputs else outputs.loss

            config = trl.SFTConfig(output_dir=out, per_device_train_batch_size=BATCH, max_length=max_length,
                                   max_steps=steps, use_cpu=True, bf16=False, gradient_checkpointing=False,
                                   save_strategy="no", report_to="none", disable_tqdm=True)
            trainer_class = trl.SFTTrainer if way == "trl" else FullLogits
            trainer_class(model=AutoModelForCausalLM.from_pretrained(model), args=config,
                          train_dataset=load_dataset("json", data_files=data, split="train"),
                          processing_class=AutoTokenizer.from_pretrained(model),
                          peft_config=LoraConfig(task_type="CAUSAL_LM", **LORA)).train()
    steps_s = [b - a for a, b in zip(timer.times[WARMUP:], timer.times[WARMUP + 1:])]
    return {"seconds_per_step": round(median(steps_s), 3), "peak_rss_mb": round(rss_mb("VmHWM")),
            "rss_after_imports_mb": round(rss_imports)}


def run(quick: bool = False, work: Path | None = None) -> dict:
    steps, max_length = (WARMUP + 3, 64) if quick else (WARMUP + 6, 256)
    with tempfile.TemporaryDirectory(prefix="bench-large-vocab-") as tmp:
        work = Path(work or tmp)
        data = work / "stories.jsonl"
        write_data(data, BATCH * steps)
        model = replica()
        res = {"max_length": max_length, "batch": BATCH, "steps": steps}
        for way in WAYS:
            cmd = [sys.executable, __file__, "--child", way, model, str(data), str(work / way), str(steps),
                   str(max_length)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{way} failed:\n{done.stderr[-3000:]}")
            res[way] = json.loads(done.stdout.strip().splitlines()[-1])
    for way in WAYS:
        res[way]["vs_trl"] = round(res["trl"]["seconds_per_step"] / res[way]["seconds_per_step"], 3)
    return {"results": res, "markdown": markdown(res)}


def markdown(r: dict) -> str:
    lines = [f"Qwen2.5 replica (vocab 151,936, hidden 64, 2 layers), LoRA r16 all-linear, fp32, batch {r['batch']} x "
             f"max_length {r['max_length']}, median step after {WARMUP} warm-up steps, each way in its own process.", "",
             "| way | s / step | speed vs TRL | peak RSS | peak RSS - RSS after imports |", "|---|---:|---:|---:|---:|"]
    for way, name in WAYS.items():
        m = r[way]
        lines.append(f"| {name} | {m['seconds_per_step']:.2f} | {m['vs_trl']:.2f} | {m['peak_rss_mb']:,} MB "
                     f"| {m['peak_rss_mb'] - m['rss_after_imports_mb']:,} MB |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="max_length 64, 3 timed steps")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        way, model, data, out, steps, max_length = opts.child
        print(json.dumps(child(way, model, data, out, int(steps), int(max_length))))
        sys.exit(0)
    print(f"load average {load_average()}")
    result = run(opts.quick)
    print(result["markdown"])
    write_json(opts.json, result)
