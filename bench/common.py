"""What the benchmark scripts share: the machine, timing windows, a Trainer step timer, fixtures.

Each bench_*.py script measures hfllm's real code path beside a baseline written in the script
itself; this module only holds the plumbing they would otherwise each repeat.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # benchmarks never reach the Hub
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

QUIET = ["--disable_tqdm", "true", "--report_to", "none"]


def machine() -> dict:
    import torch

    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cores": os.cpu_count(), "ram_gib": round(mem_kb / 2**20), "cpu": cpu, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "gpu": torch.cuda.get_device_name() if torch.cuda.is_available()
            else None, "date": time.strftime("%Y-%m-%d")}


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def median(values) -> float:
    return float(statistics.median(values))


def window_rates(times: list[float], units_per_step: float, warmup: int, windows: int) -> list[float]:
    """Units/s in `windows` equal windows of step-end timestamps, after `warmup` steps.

    times[i] is when step i ended; the first `warmup` steps (allocator, first-call costs) are skipped.
    """
    usable = times[warmup:]
    per = (len(usable) - 1) // windows
    if per < 1:
        raise ValueError(f"{len(times)} steps leave no window after {warmup} warm-up steps")
    return [per * units_per_step / (usable[(w + 1) * per] - usable[w * per]) for w in range(windows)]


@contextmanager
def trainer_callback(callback):
    """Every transformers Trainer (and TRL trainer) built inside gets `callback`. It hooks the trainer's
    default callback list, so hfllm's own code runs unchanged."""
    import transformers.trainer as trainer_module

    trainer_module.DEFAULT_CALLBACKS.append(callback)
    try:
        yield callback
    finally:
        trainer_module.DEFAULT_CALLBACKS.remove(callback)


def trainer_step_timer():
    """A callback (see trainer_callback) that records when each optimizer step ends, and the logs."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []
            self.logs: list[dict] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.logs.append(dict(logs or {}))

    return trainer_callback(StepTimer())



def rss_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process; unlike ru_maxrss, not inherited from the parent."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1]) / 1024

def matmul_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    """The machine's fp32 matmul rate: best of `repeats` square size x size products (2 n^3 FLOPs each)."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)  # warm-up: thread pool, allocation
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def hfllm_cli(*argv) -> None:
    """`hfllm ...` in this process, as a user runs it from the shell."""
    from hfllm.cli import main

    code = main([str(a) for a in argv])
    if code != 0:
        raise RuntimeError(f"hfllm {argv[0]} exited with {code}")


def tiny_tokenizer(work: Path) -> str:
    """The tiny recipe's tokenizer (configs/tiny/tokenizer.yaml), trained once per work folder."""
    out = work / "tokenizer"
    if not (out / "tokenizer.json").is_file():
        os.environ.setdefault("HFLLM_CACHE", str(work / "hfllm-cache"))  # built-in data, not the user's cache
        hfllm_cli("tokenizer", "--config", ROOT / "configs/tiny/tokenizer.yaml", "--output_dir", out)
    return str(out)


def random_model(work: Path, preset: str = "tiny", **sizes) -> str:
    """A randomly initialised Llama of a preset, saved with the tiny tokenizer: throughput does not
    depend on what the weights learned. The end-of-turn token is the stop token, as after SFT."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hfllm.model import build_config

    name = "-".join([preset, *(f"{k}{v}" for k, v in sorted(sizes.items()))])
    out = work / f"model-{name}"
    if not (out / "config.json").is_file():
        import torch

        tok = AutoTokenizer.from_pretrained(tiny_tokenizer(work))
        special = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
                   "pad_token_id": tok.pad_token_id}
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(build_config("llama", preset, len(tok), special, **sizes))
        model.save_pretrained(out)
        tok.save_pretrained(out)
    return str(out)


def write_json(path: str | None, result: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(result, indent=1))


def documents(seeds) -> list[str]:
    """Built-in pretraining documents of these generator seeds, whitespace collapsed to one line each."""
    from hfllm.data.builtin import build_part

    return [" ".join(row["text"].split()) for seed in seeds for row in build_part("pretrain", seed)]


def write_corpus(path: Path, megabytes: float) -> int:
    """Plain text, one built-in document per line (seeds 0-15 cycled), until the file holds `megabytes` MB."""
    pool = [doc + "\n" for doc in documents(range(16))]
    target, written = int(megabytes * 1_000_000), 0
    with path.open("w", encoding="utf-8") as f:
        while written < target:
            for line in pool:
                f.write(line)
                written += len(line.encode())
                if written >= target:
                    break
    return written
