"""Memory and speed of pretraining data preparation as the corpus grows (10 MB, 100 MB, 1 GB).

    python bench/bench_data_prep.py                       # 10 MB, 100 MB, 1000 MB
    python bench/bench_data_prep.py --sizes_mb 10 100 --num_proc 2

This is the exact path `hfllm pretrain` takes before training (hfllm.stages.pretrain.prepare_data):
datasets reads the .txt file into Arrow, holds out 2 %, tokenizes with the tiny recipe's tokenizer
(configs/tiny/tokenizer.yaml, trained here on the built-in corpus) and packs 128-token blocks.
The corpus is plain text, one document per line, drawn from the built-in generator
(hfllm/builtin_data.py, 16 seeds cycled); it and the Arrow cache live in a temporary folder that
is deleted after each size. Each size runs in a fresh process, so peak memory is that run's own:

- load s: text -> Arrow (datasets' text builder); tokenize+pack s: both batched maps;
- tokens/s: packed tokens / (load s + tokenize+pack s);
- peak RSS growth: peak resident memory over its level before preparing, libraries loaded. It
  counts pages of the memory-mapped Arrow files as they are read and written, which the OS
  drops under pressure;
- peak heap growth: anonymous memory only (RssAnon, sampled every 20 ms): what the process
  really holds. Flat heap across sizes = the corpus streams through, it is never held whole;
- Arrow on disk: the cache the stage leaves (text, tokens, blocks);
- CPU / wall: the process's CPU time over wall time (below 1.0: it waited for a core).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_corpus  # noqa: E402
BLOCK_SIZE = 128  # configs/tiny/pretrain.yaml


class HeapPeak(threading.Thread):
    """Peak RssAnon (Linux): resident memory without the pages of memory-mapped files."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.stop = 0.0, threading.Event()

    @staticmethod
    def now() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def run(self):
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, self.now())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(corpus: str, tokenizer: str, num_proc: int | None) -> dict:
    import datasets  # noqa: F401  imports are not growth
    import transformers  # noqa: F401

    from hfllm.data.load import load_dataset
    from hfllm.loading import load_tokenizer
    from hfllm.stages.pretrain import PretrainArguments, prepare_data

    tok = load_tokenizer(tokenizer)
    args = PretrainArguments(dataset_name=corpus, tokenizer_name_or_path=tokenizer, block_size=BLOCK_SIZE,
                             num_proc=num_proc)
    rss_before, heap_before, sampler = peak_rss_mb(), HeapPeak.now(), HeapPeak()
    sampler.start()
    cpu, start = cpu_seconds(), time.perf_counter()
    load_dataset(corpus)  # text -> Arrow, timed on its own; prepare_data then finds it cached
    loaded = time.perf_counter()
    train, held_out = prepare_data(args, tok, BLOCK_SIZE, seed=0)
    done = time.perf_counter()
    sampler.stop.set()
    sampler.join()
    blocks = len(train) + len(held_out)
    cache = Path(os.environ["HF_DATASETS_CACHE"])
    return {"load_s": round(loaded - start, 1), "pack_s": round(done - loaded, 1), "blocks": blocks,
            "tokens_per_s": round(blocks * BLOCK_SIZE / (done - start)),
            "rss_growth_mb": round(peak_rss_mb() - rss_before), "heap_growth_mb": round(sampler.peak - heap_before),
            "arrow_mb": round(sum(p.stat().st_size for p in cache.rglob("*.arrow")) / 1e6),
            "cpu_per_wall": round((cpu_seconds() - cpu) / (done - start), 2)}


def train_tokenizer(folder: Path) -> str:
    from hfllm.stages import tokenizer

    out = folder / "tokenizer"
    tokenizer.main(["--config", str(ROOT / "configs/tiny/tokenizer.yaml"), "--output_dir", str(out)])
    return str(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes_mb", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--num_proc", type=int, default=None, help="tokenization processes (default: one)")
    parser.add_argument("--child", nargs=2, metavar=("CORPUS", "TOKENIZER"), help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        print(json.dumps(child(*opts.child, opts.num_proc)))
        return
    print(f"load average at start: {os.getloadavg()[0]:.1f} (1 min), {os.cpu_count()} CPUs", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-data-prep-") as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("HFLLM_CACHE", str(tmp / "hfllm-cache"))  # the built-in data, not the user's cache
        tokenizer = train_tokenizer(tmp)
        for size in opts.sizes_mb:
            work = tmp / f"{size}mb"
            work.mkdir()
            corpus = work / "corpus.txt"
            written = write_corpus(corpus, size)
            env = {**os.environ, "HF_DATASETS_CACHE": str(work / "cache"), "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
                   "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "true"}
            cmd = [sys.executable, __file__, "--child", str(corpus), tokenizer]
            cmd += ["--num_proc", str(opts.num_proc)] if opts.num_proc else []
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"run with {size} MB failed:\n{out.stderr[-3000:]}")
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append({"mb": written / 1e6, **row})
            print(f"{size} MB done: {row}", flush=True)
            shutil.rmtree(work)  # the corpus and its Arrow cache
    print(f"\nnum_proc={opts.num_proc or 1}, block size {BLOCK_SIZE}, tiny recipe tokenizer, "
          f"load average at the end: {os.getloadavg()[0]:.1f}\n")
    print("| corpus | blocks | load s | tokenize+pack s | tokens/s | peak RSS growth | peak heap growth "
          "| Arrow on disk | CPU / wall |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['mb']:,.0f} MB | {r['blocks']:,} | {r['load_s']:.1f} | {r['pack_s']:.1f} "
              f"| {r['tokens_per_s']:,} | {r['rss_growth_mb']:,} MB | {r['heap_growth_mb']:,} MB "
              f"| {r['arrow_mb']:,} MB | {r['cpu_per_wall']} |")


if __name__ == "__main__":
    main()
