"""Pretraining a GPT-2-small-sized Llama on one GPU: tokens/s and MFU of `hfllm pretrain` in bf16.

    python bench/bench_gpu_pretrain.py                     # gpt2-124m preset, 300 steps, needs CUDA
    python bench/bench_gpu_pretrain.py --torch_compile     # the same, compiled
    python bench/bench_gpu_pretrain.py --quick             # a toy model on the CPU, seconds (the test)

The run is `hfllm pretrain --preset gpt2-124m` itself, in this process, with the device-aware
defaults it picks on a GPU (bf16, tf32) and transformers' default attention (SDPA), on the
built-in corpus cut into 1024-token blocks (the text repeats: speed does not depend on it).
hfllm's tokenizer for the tiny recipe has a 1.6 k vocabulary, so the model has ~114 M parameters
where GPT-2 has 124 M (its 50 k-token embedding).

Steady state only: the rate is the median of 3 equal windows of step-end times after 10 warm-up
steps (first-call and compile costs). FLOPs per token = 6 N + 12 L d T, N = every matmul's
parameters (bench_pretrain.flops_per_token). Peak = the best bf16 torch.matmul rate on 8192 x 8192
matrices measured in this process (fp32 on 2048 x 2048 with --quick), not the datasheet's.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench_pretrain import flops_per_token
from common import QUIET, ROOT, hfllm_cli, matmul_peak_gflops, median, tiny_tokenizer, trainer_callback, \
    trainer_step_timer, window_rates, write_json

WARMUP, WINDOWS = 10, 3
QUICK_SIZES = ["--hidden_size", "64", "--num_hidden_layers", "2", "--num_attention_heads", "4",
               "--intermediate_size", "128", "--max_position_embeddings", "128"]


def gpu_peak_tflops(size: int = 8192, repeats: int = 10) -> float:
    """The GPU's bf16 matmul rate: best of `repeats` square products (2 n^3 FLOPs each)."""
    import torch

    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):  # warm-up: cuBLAS picks its kernel
        a @ b
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e12


def what_ran():
    """A callback that records what the Trainer really used: the attention kernel and the precision."""
    from transformers import TrainerCallback

    class WhatRan(TrainerCallback):
        seen: dict = {}

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.seen = {"attention": model.config._attn_implementation,
                         "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
                         "tf32": bool(args.tf32), "parameters": sum(p.numel() for p in model.parameters())}

    return trainer_callback(WhatRan())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a toy model on the CPU (for the test)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default 300; 40 with --quick)")
    parser.add_argument("--batch", type=int, default=None, help="blocks per step (default 32; 8 with --quick)")
    parser.add_argument("--torch_compile", action="store_true", help="pass --torch_compile to hfllm pretrain")
    parser.add_argument("--json", help="also write the result here")
    opts = parser.parse_args(argv)

    import torch
    from transformers import AutoConfig

    if not opts.quick and not torch.cuda.is_available():
        raise SystemExit("bench_gpu_pretrain needs a CUDA GPU; --quick runs a toy model on the CPU")
    steps = opts.steps or (40 if opts.quick else 300)
    batch = opts.batch or (8 if opts.quick else 32)
    block = 64 if opts.quick else 1024
    peak = matmul_peak_gflops() / 1e3 if opts.quick else gpu_peak_tflops()

    with tempfile.TemporaryDirectory(prefix="bench-gpu-pretrain-") as tmp:
        work, out = Path(tmp), Path(tmp) / "run"
        shape = QUICK_SIZES if opts.quick else ["--preset", "gpt2-124m"]
        with trainer_step_timer() as timer, what_ran() as ran:
            hfllm_cli("pretrain", "--config", ROOT / "configs/tiny/pretrain.yaml",
                      "--tokenizer_name_or_path", tiny_tokenizer(work), *shape, "--block_size", block,
                      "--per_device_train_batch_size", batch, "--max_steps", steps, "--warmup_steps", 20,
                      "--learning_rate", 6e-4, "--eval_steps", 100000, "--save_strategy", "no",
                      "--logging_steps", 50, *(["--torch_compile", "true"] if opts.torch_compile else []),
                      "--output_dir", out, *QUIET)
        config = AutoConfig.from_pretrained(out)

    tokens_per_step = batch * block
    rate = median(window_rates(timer.times, tokens_per_step, min(WARMUP, steps // 4), WINDOWS))
    model_tflops = rate * flops_per_token(config, block) / 1e12
    result = {
        "device": torch.cuda.get_device_name() if not opts.quick else "cpu", "quick": opts.quick,
        "parameters_m": round(ran.seen["parameters"] / 1e6, 1), "block": block, "batch": batch, "steps": steps,
        "precision": ran.seen["precision"], "tf32": ran.seen["tf32"], "attention": ran.seen["attention"],
        "torch_compile": opts.torch_compile, "tokens_per_s": round(rate), "model_tflops": round(model_tflops, 6),
        "peak_tflops": round(peak, 6), "mfu": round(model_tflops / peak, 4),
    }
    print("| device | parameters | block x batch | precision | attention | compiled | tokens/s | model TFLOP/s | peak TFLOP/s "
          "| MFU |\n|---|---:|---|---|---|---|---:|---:|---:|---:|")
    print(f"| {result['device']} | {result['parameters_m']} M | {block} x {batch} | {result['precision']} "
          f"| {result['attention']} "
          f"| {'yes' if opts.torch_compile else 'no'} | {result['tokens_per_s']:,} | {result['model_tflops']:.3g} "
          f"| {result['peak_tflops']:.3g} | {result['mfu']:.1%} |")
    write_json(opts.json, result)
    return result


if __name__ == "__main__":
    main()
