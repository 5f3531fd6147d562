"""Pretraining tokens/s and model FLOPs utilisation: `hfllm pretrain` vs bare transformers.Trainer vs a
plain PyTorch loop, same model, data and batch, back to back in one process.

    python bench/bench_pretrain.py                 # tiny and small presets
    python bench/bench_pretrain.py --quick         # a toy model, seconds

- hfllm: `hfllm pretrain --config configs/tiny/pretrain.yaml` (its logging, eval and save settings),
  run in-process through hfllm.cli with fewer steps;
- trainer: transformers.Trainer with TrainingArguments' own defaults (use_cpu, no eval, no reporting),
  the same Llama config, the same corpus tokenized and packed here, default_data_collator;
- raw: for each step, index a batch of blocks, forward, backward, clip, fused AdamW, LR schedule.

Steady state only: the step-end times of warm-up steps, model building, data preparation, the
evaluation hfllm runs before training and everything after the last step are left out; the
rate is the median over 3 equal windows of steps, over every round (rounds alternate the order).
The eval hfllm runs every eval_steps is reported on its own as a share of training time.

FLOPs per token = 6 N + 12 L d T (PaLM's count: no discount for the causal mask), N = the
parameters of every matmul: all but the input embedding, the LM head counted once (it is tied to
the embedding, yet a real matmul). Peak = measured fp32 torch.matmul rate on 2048 x 2048
matrices in this process, the best of before and after each preset's runs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import (QUIET, ROOT, hfllm_cli, load_average, matmul_peak_gflops, median, tiny_tokenizer,
                    trainer_step_timer, window_rates, write_json)

# preset -> (block size, batch): 2048 tokens a step for both, the tiny recipe's own batch for tiny.
SETUPS = {"tiny": dict(block=128, batch=16, sizes={}),
          "small": dict(block=256, batch=8, sizes={}),
          "quick": dict(block=64, batch=8, sizes=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                      intermediate_size=128, max_position_embeddings=128), limit=300)}
WARMUP, WINDOWS = 2, 3


def packed_blocks(tokenizer, block: int, limit: int | None):
    """The built-in corpus, eos after each text, cut into block-token rows (what the baselines train on)."""
    import torch

    from hfllm.data.load import load_dataset

    texts = list(load_dataset("builtin:pretrain")["text"])[:limit]
    ids = [t for x in tokenizer(texts, add_special_tokens=False)["input_ids"] for t in x + [tokenizer.eos_token_id]]
    n = len(ids) // block * block
    return torch.tensor(ids[:n]).view(-1, block)


def llama(tokenizer, preset: str, sizes: dict):
    """The same model hfllm builds for the preset, written with transformers alone."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from hfllm.model import PRESETS

    shape = {**PRESETS["tiny" if preset == "quick" else preset], **sizes}
    torch.manual_seed(42)
    return LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), tie_word_embeddings=True,
                                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                        pad_token_id=tokenizer.pad_token_id, **shape))


def flops_per_token(config, block: int) -> float:
    d, layers, heads = config.hidden_size, config.num_hidden_layers, config.num_attention_heads
    kv = config.num_key_value_heads * d // heads
    per_layer = 2 * d * d + 2 * d * kv + 3 * d * config.intermediate_size  # q, o; k, v; gate, up, down
    n_matmul = layers * per_layer + config.vocab_size * d  # + the LM head
    return 6 * n_matmul + 12 * layers * d * block


def run_hfllm(tok: str, preset: str, setup: dict, steps: int, out: Path) -> tuple[list[float], dict]:
    sizes = [x for k, v in setup["sizes"].items() for x in (f"--{k}", v)]
    sizes += ["--max_train_samples", setup["limit"]] if setup.get("limit") else []
    with trainer_step_timer() as timer:
        hfllm_cli("pretrain", "--config", ROOT / "configs/tiny/pretrain.yaml", "--tokenizer_name_or_path", tok,
                  "--preset", "tiny" if preset == "quick" else preset, *sizes, "--block_size", setup["block"],
                  "--per_device_train_batch_size", setup["batch"], "--max_steps", steps, "--output_dir", out, *QUIET)
    evals = [r for r in timer.logs if "eval_runtime" in r]
    return timer.times, {"eval_seconds": evals[0]["eval_runtime"] if evals else None}


def run_trainer(model, blocks, setup: dict, steps: int, out: Path) -> list[float]:
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments, default_data_collator

    ds = Dataset.from_dict({"input_ids": blocks.tolist(), "labels": blocks.tolist()})
    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=setup["batch"], max_steps=steps,
                             learning_rate=2e-3, lr_scheduler_type="cosine", warmup_steps=20, weight_decay=0.1,
                             use_cpu=True, save_strategy="no", report_to="none", disable_tqdm=True)
    with trainer_step_timer() as timer:
        Trainer(model=model, args=args, train_dataset=ds, data_collator=default_data_collator).train()
    return timer.times


def run_raw(model, blocks, setup: dict, steps: int) -> list[float]:
    import torch
    from transformers import get_cosine_schedule_with_warmup

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=2e-3, fused=True)
    schedule = get_cosine_schedule_with_warmup(optimizer, 20, steps)
    order = torch.randperm(len(blocks), generator=torch.Generator().manual_seed(0))
    model.train()
    times = []
    for step in range(steps):
        batch = blocks[order[step * setup["batch"]:(step + 1) * setup["batch"]]]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter())
    return times


def bench_preset(tok_path: str, preset: str, rounds: int, steps: int, work: Path) -> dict:
    from transformers import AutoTokenizer

    setup = SETUPS[preset]
    tok = AutoTokenizer.from_pretrained(tok_path)
    blocks = packed_blocks(tok, setup["block"], setup.get("limit"))
    tokens_per_step = setup["batch"] * setup["block"]
    peaks = [matmul_peak_gflops()]
    rates = {"hfllm": [], "trainer": [], "raw": []}
    extra = {}
    for r in range(rounds):
        order = ["hfllm", "trainer", "raw"] if r % 2 == 0 else ["raw", "trainer", "hfllm"]
        for way in order:
            if way == "hfllm":
                times, extra = run_hfllm(tok_path, preset, setup, steps, work / f"{preset}-hfllm-{r}")
            elif way == "trainer":
                times = run_trainer(llama(tok, preset, setup["sizes"]), blocks, setup, steps, work / f"{preset}-tr-{r}")
            else:
                times = run_raw(llama(tok, preset, setup["sizes"]), blocks, setup, steps)
            rates[way] += window_rates(times, tokens_per_step, WARMUP, WINDOWS)
    peaks.append(matmul_peak_gflops())
    model = llama(tok, preset, setup["sizes"])
    flops = flops_per_token(model.config, setup["block"])
    peak = max(peaks)
    res = {"preset": preset, "params": sum(p.numel() for p in model.parameters()), "block": setup["block"],
           "batch": setup["batch"], "flops_per_token": flops, "peak_gflops": round(peak, 1),
           "peak_gflops_before_after": [round(p, 1) for p in peaks]}
    for way, values in rates.items():
        res[f"{way}_tokens_per_s"] = round(median(values))
        res[f"{way}_mfu"] = round(median(values) * flops / (peak * 1e9), 3)
    res["hfllm_vs_trainer"] = round(res["hfllm_tokens_per_s"] / res["trainer_tokens_per_s"], 3)
    res["hfllm_vs_raw"] = round(res["hfllm_tokens_per_s"] / res["raw_tokens_per_s"], 3)
    res["trainer_vs_raw"] = round(res["trainer_tokens_per_s"] / res["raw_tokens_per_s"], 3)
    if extra.get("eval_seconds"):  # the recipe evaluates every 120 steps: that time, spread over the steps
        step_s = tokens_per_step / res["hfllm_tokens_per_s"]
        res["eval_share_of_training"] = round(extra["eval_seconds"] / (extra["eval_seconds"] + 120 * step_s), 3)
    return res


def markdown(results: list[dict]) -> str:
    lines = ["| preset | params | block x batch | hfllm tok/s | Trainer tok/s | raw loop tok/s | hfllm / Trainer "
             "(goal >= 0.98) | hfllm / raw | Trainer / raw | MFU hfllm / Trainer / raw (goal >= 60 %) "
             "| fp32 matmul peak | eval share |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for r in results:
        eval_share = f"{r['eval_share_of_training']:.1%}" if r.get("eval_share_of_training") else "-"
        lines.append(f"| {r['preset']} | {r['params'] / 1e6:.2f} M | {r['block']} x {r['batch']} "
                     f"| {r['hfllm_tokens_per_s']:,} | {r['trainer_tokens_per_s']:,} | {r['raw_tokens_per_s']:,} "
                     f"| {r['hfllm_vs_trainer']:.3f} | {r['hfllm_vs_raw']:.3f} | {r['trainer_vs_raw']:.3f} "
                     f"| {r['hfllm_mfu']:.0%} / {r['trainer_mfu']:.0%} / {r['raw_mfu']:.0%} "
                     f"| {r['peak_gflops']:.0f} GFLOP/s | {eval_share} |")
    return "\n".join(lines)


def run(quick: bool = False, work: Path | None = None) -> dict:
    presets, rounds, steps = (["quick"], 1, 8) if quick else (["tiny", "small"], 2, 17)
    with tempfile.TemporaryDirectory(prefix="bench-pretrain-") as tmp:
        work = work or Path(tmp)
        tok = tiny_tokenizer(work)
        results = [bench_preset(tok, p, rounds, steps if p != "small" else 9, Path(tmp)) for p in presets]
    return {"results": results, "markdown": markdown(results)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a toy model and a few steps")
    parser.add_argument("--json", help="also write the results here")
    opts = parser.parse_args()
    print(f"load average {load_average()}")
    out = run(opts.quick)
    print(out["markdown"])
    write_json(opts.json, out)
