"""Deduplication throughput and memory of `hfllm data clean` on synthetic corpora.

    python bench/bench_dedup.py                      # 10k and 100k documents
    python bench/bench_dedup.py --sizes 10000 --num_proc 2

Each size runs in a fresh process (so peak RSS is that run's own): it writes a .jsonl
corpus of random-word documents (150-250 words) with planted exact copies and
near copies (2 words changed, Jaccard of 5-word shingles ~0.9), then runs
``hfllm.data.clean.clean`` with PII scrubbing off. Columns:

- map s: normalise + filters + exact hash + MinHash signatures (datasets map, num_proc);
- index s: the sequential pass through the MinHash LSH index (exact and near dedup);
- total s: everything, including load, save_to_disk, clean.jsonl and the report;
- dedup docs/s: documents / (map s + index s);
- peak RSS growth: peak resident memory of the main process over its level before
  cleaning, libraries already imported; it includes pages of the memory-mapped Arrow
  files as they are read, which the OS can drop under pressure;
- peak heap growth: the same for anonymous memory only (RssAnon, sampled every 20 ms):
  the LSH buckets, the exact-hash set, per-batch arrays. Workers (--num_proc > 1) are
  separate processes and counted in neither.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import string
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def write_corpus(path: Path, n: int, dup_rate: float, seed: int = 0) -> dict:
    """Stream n documents to path: about dup_rate of them exact copies and as many near copies."""
    rng = random.Random(seed)
    vocab = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9))) for _ in range(20_000)]
    recent: list[str] = []  # a window of earlier originals to copy from, so memory stays flat
    planted = {"exact": 0, "near": 0}
    with path.open("w") as f:
        for i in range(n):
            roll = rng.random()
            if recent and roll < dup_rate:
                text = rng.choice(recent)
                planted["exact"] += 1
            elif recent and roll < 2 * dup_rate:
                words = rng.choice(recent).split()
                for _ in range(2):
                    words[rng.randrange(len(words))] = f"edit{rng.randrange(10**9)}"
                text = " ".join(words)
                planted["near"] += 1
            else:
                text = " ".join(rng.choices(vocab, k=rng.randint(150, 250)))
                recent = (recent + [text])[-1000:]
            f.write(json.dumps({"text": text}) + "\n")
    return planted


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class HeapPeak(threading.Thread):
    """Samples RssAnon (Linux): resident memory minus memory-mapped file pages, which the OS
    can drop at will; RSS counts the Arrow files as they are read, this does not."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.stop = 0.0, threading.Event()

    @staticmethod
    def now() -> float:
        try:
            line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("RssAnon:"))
        except (OSError, StopIteration):
            return float("nan")
        return int(line.split()[1]) / 1024

    def run(self):
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, self.now())


def child(n: int, num_proc: int | None, dup_rate: float) -> dict:
    import datasets, datasketch, matplotlib.pyplot, xxhash  # noqa: F401, E401  imports are not growth
    from datasketch import MinHashLSH

    from hfllm.data.clean import CleanArguments, clean

    MinHashLSH(0.8, 128, weights=(0.05, 0.95))  # pulls in scipy too
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        planted = write_corpus(corpus, n, dup_rate)
        args = CleanArguments(dataset_name=str(corpus), output_dir=str(Path(tmp) / "out"), scrub_pii=False,
                              num_proc=num_proc)
        before, heap_before, sampler = peak_rss_mb(), HeapPeak.now(), HeapPeak()
        sampler.start()
        start = time.perf_counter()
        report = clean(args)
        total = time.perf_counter() - start
        sampler.stop.set()
        sampler.join()
    seconds = report["seconds"]
    dedup = seconds["normalise_filter_scrub_hash"] + seconds["deduplicate"]
    return {"docs": n, "planted_exact": planted["exact"], "planted_near": planted["near"],
            "removed_exact": report["removed"]["exact_duplicate"], "removed_near": report["removed"]["near_duplicate"],
            "map_s": seconds["normalise_filter_scrub_hash"], "index_s": seconds["deduplicate"],
            "total_s": round(total, 1), "docs_per_s": round(n / dedup), "rss_growth_mb": round(peak_rss_mb() - before),
            "heap_growth_mb": round(sampler.peak - heap_before),
            "kb_per_doc": round((sampler.peak - heap_before) * 1024 / n, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--num_proc", type=int, default=None, help="map workers (default: one process)")
    parser.add_argument("--dup_rate", type=float, default=0.05, help="share of exact copies (and of near copies)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        print(json.dumps(child(opts.child, opts.num_proc, opts.dup_rate)))
        return
    env = {**os.environ, "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "HF_HUB_OFFLINE": "1"}
    rows = []
    for n in opts.sizes:
        cmd = [sys.executable, __file__, "--child", str(n), "--dup_rate", str(opts.dup_rate)]
        cmd += ["--num_proc", str(opts.num_proc)] if opts.num_proc else []
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"run with {n} documents failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"\nnum_proc={opts.num_proc or 1}, threshold 0.8, 5-word shingles, 128 permutations, {os.cpu_count()} CPUs\n")
    print("| docs | planted exact / near | removed exact / near | map s | index s | total s | dedup docs/s "
          "| peak RSS growth | peak heap growth (KB/doc) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['docs']:,} | {r['planted_exact']:,} / {r['planted_near']:,} | {r['removed_exact']:,} / "
              f"{r['removed_near']:,} | {r['map_s']:.1f} | {r['index_s']:.1f} | {r['total_s']:.1f} | "
              f"{r['docs_per_s']:,} | {r['rss_growth_mb']:,} MB | {r['heap_growth_mb']:,} MB ({r['kb_per_doc']}) |")


if __name__ == "__main__":
    main()
