"""Run the benchmarks of issue #8 and rewrite their sections of BENCHMARKS.md (`make bench`).

    python bench/run_all.py                          # all, a few minutes on 2 cores; rewrites BENCHMARKS.md
    python bench/run_all.py --only pretrain generate # some of them
    python bench/run_all.py --quick --no_write       # toy sizes, seconds: prints, writes nothing (the test)

Each benchmark is a bench/bench_<name>.py script (runnable alone); this runs each in its own
process, one after the other, and replaces the text between `<!-- bench:NAME -->` and
`<!-- /bench:NAME -->` in BENCHMARKS.md with its table, the command, the machine, the date and the
load average before and after. Every other part of the file is kept byte for byte; a section
not yet in the file is appended.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, load_average, machine  # noqa: E402

BENCHMARKS = {  # name -> (script, section title)
    "pretrain": ("bench_pretrain.py", "Pretraining: `hfllm pretrain` vs Trainer vs a PyTorch loop; MFU"),
    "generate": ("bench_generate.py", "Generation: `hfllm generate` and the app's streaming vs `model.generate`"),
    "tokenizer": ("bench_tokenizer.py", "Tokenizer training: `hfllm tokenizer` vs bare `tokenizers`"),
    "sft": ("bench_sft.py", "SFT: padding, packing, TRL's defaults; LoRA vs full"),
    "rl": ("bench_rl.py", "PPO vs GRPO: where an update's time goes"),
}
# 1-minute load average above which the section says the machine was shared. The benchmarks
# themselves keep ~2 threads busy, and the load average lags: one script ending leaves ~2 behind it.
BUSY_LOAD = 2.5


def replace_section(text: str, name: str, body: str) -> str:
    """`text` with the section `name` (between its marker comments) replaced by `body`, or appended."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    return text + ("" if text.endswith("\n") or not text else "\n") + "\n" + block + "\n"


def section(name: str, result: dict, info: dict, load_before: float, load_after: float, seconds: float,
            quick: bool) -> str:
    script, title = BENCHMARKS[name]
    command = f"python bench/{script}" + (" --quick" if quick else "")
    shared = max(load_before, load_after) > BUSY_LOAD
    lines = [f"## {title}", "",
             f"Command: `{command}` (or `make bench`, which runs every script). Machine: {info['cores']} CPU cores "
             f"({info['cpu']}), {info['ram_gib']} GiB, {info['gpu'] or 'no GPU'}, torch {info['torch']} with "
             f"{info['torch_threads']} threads; {info['date']}; {seconds:.0f} s. Load average (1 min) "
             f"{load_before} before, {load_after} after"
             + ("; the machine was shared with other jobs, so the times are inflated and noisier." if shared
                else " (up to about 2 is the benchmarks' own two threads)."), "", result["markdown"]]
    if result.get("notes"):
        lines += ["", result["notes"]]
    return "\n".join(lines)


def run_one(name: str, quick: bool) -> tuple[dict, float, float, float]:
    script = Path(__file__).resolve().parent / BENCHMARKS[name][0]
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        out = Path(tmp) / "result.json"
        load_before, start = load_average(), time.perf_counter()
        cmd = [sys.executable, str(script), "--json", str(out)] + (["--quick"] if quick else [])
        env = {**os.environ, "HFLLM_CACHE": str(Path(tmp) / "hfllm-cache")}
        if quick:  # toy sizes check the scripts, not the machine: one thread keeps them quick on a busy one
            env["OMP_NUM_THREADS"] = "1"
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
        seconds, load_after = time.perf_counter() - start, load_average()
        if done.returncode != 0:
            raise RuntimeError(f"bench/{script.name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
        return json.loads(out.read_text()), load_before, load_after, seconds


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run these benchmarks only")
    parser.add_argument("--quick", action="store_true", help="toy sizes, seconds each (for the test)")
    parser.add_argument("--no_write", action="store_true", help="print the sections, leave BENCHMARKS.md alone")
    parser.add_argument("--file", default=str(ROOT / "BENCHMARKS.md"), help="the file whose sections are rewritten")
    opts = parser.parse_args(argv)
    info, results = machine(), {}
    for name in opts.only or list(BENCHMARKS):
        print(f"== {name} (load average {load_average()})", flush=True)
        result, before, after, seconds = run_one(name, opts.quick)
        results[name] = result
        body = section(name, result, info, before, after, seconds, opts.quick)
        print(body + "\n", flush=True)
        if not opts.no_write:  # after each benchmark, so a failure later keeps the finished ones
            path = Path(opts.file)
            path.write_text(replace_section(path.read_text() if path.exists() else "", name, body))
    return results


if __name__ == "__main__":
    main()
