"""`hfllm serve` under load, beside bare `transformers serve` under the same load.

    python bench/bench_serve.py                      # 20 clients for 60 s on each server
    python bench/bench_serve.py --clients 40 --seconds 120 --only hfllm

The model is bench_app_load's: a tokenizer trained on the built-in corpus and a random tiny Llama
(context 128) in a temporary folder. Each server runs as its own process on 127.0.0.1, one after the
other, with its defaults:
- ``python -m hfllm.cli serve MODEL`` (4 generations at once, 64 waiting, seeded sampling ones in turn);
- ``transformers serve MODEL`` (the model pinned, no continuous batching: one generate per request).

Every client is an ``openai.OpenAI`` client that sends a streamed chat completion (temperature 0.8,
a seed per request unless --no_seed, max_tokens 32) as soon as its previous one ended, until the time
is up; requests in flight then finish and count. Per request: latency, time to the first streamed piece, the completion
tokens the server reported (usage), or the error. RSS is the server process's, every second; the load
average is printed because the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench_app_load import Sampler, build_model, cpu_seconds, free_port, pct, rss_mb

ROOT = Path(__file__).resolve().parents[1]


def start(kind: str, model: Path, port: int, log: Path) -> subprocess.Popen:
    bin_dir = Path(sys.executable).parent
    command = ([sys.executable, "-m", "hfllm.cli", "serve", str(model), "--port", str(port)] if kind == "hfllm" else
               [str(bin_dir / "transformers"), "serve", str(model), "--host", "127.0.0.1", "--port", str(port)])
    proc = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ})
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{kind} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)
            return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"{kind} did not answer within 180 s")


def one_request(client, model: str, i: int, max_tokens: int, seed: bool) -> dict:
    start, first, tokens = time.perf_counter(), None, None
    try:
        stream = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": f"Tell me about question number {i}."}],
            max_tokens=max_tokens, temperature=0.8, seed=i if seed else None, stream=True,
            stream_options={"include_usage": True})
        for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - start
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
        return {"outcome": "answered", "latency": time.perf_counter() - start, "first_piece": first,
                "tokens": tokens}
    except Exception as exc:  # noqa: BLE001 - every failure is a result here
        return {"outcome": "error", "latency": time.perf_counter() - start, "message": str(exc)[:200]}


def load(kind: str, model: Path, clients: int, seconds: float, max_tokens: int, seed: bool, work: Path) -> dict:
    import openai

    port = free_port()
    server = start(kind, model, port, work / f"{kind}.log")
    sampler = Sampler(server.pid)
    sampler.start()
    # hfllm names a folder by its last two parts; transformers serve pinned to a path answers to that path
    name = "/".join(model.resolve().parts[-2:]) if kind == "hfllm" else str(model)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0,
                               timeout=600)
        one_request(client, name, -1, max_tokens, seed)  # first request: lazy loading, warm-up
        time.sleep(2)
        rss_idle, cpu_start, load_start = rss_mb(server.pid), cpu_seconds(server.pid), os.getloadavg()[0]
        rows, lock = [], threading.Lock()
        started = time.perf_counter()

        def loop(index: int):
            n = 0
            while time.perf_counter() < started + seconds:
                row = one_request(client, name, index * 100_000 + n, max_tokens, seed)
                with lock:
                    rows.append(row)
                n += 1
        threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        cpu, load_end, alive = cpu_seconds(server.pid) - cpu_start, os.getloadavg()[0], server.poll() is None
    finally:
        sampler.stop.set()
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    ok = [r for r in rows if r["outcome"] == "answered"]
    latencies, firsts = [r["latency"] for r in ok], [r["first_piece"] for r in ok if r["first_piece"] is not None]
    tokens = sum(r["tokens"] or 0 for r in ok)
    errors = [r for r in rows if r["outcome"] != "answered"]
    return {"server": kind, "seeded": seed, "clients": clients, "seconds": round(wall, 1), "requests": len(rows),
            "answered": len(ok), "errors": len(errors), "error_examples": sorted({r["message"] for r in errors})[:3],
            "latency_p50_p90_p99": [round(pct(latencies, q), 2) for q in (50, 90, 99)],
            "first_piece_p50_p90": [round(pct(firsts, q), 2) for q in (50, 90)],
            "tokens_per_s": round(tokens / wall, 1), "answers_per_s": round(len(ok) / wall, 2),
            "tokens_reported": all(r["tokens"] for r in ok),
            "rss_mb_idle_peak_end": [round(rss_idle), round(max(s for _, s in sampler.samples)),
                                     round(sampler.samples[-1][1])],
            "server_cpu_s": round(cpu, 1), "load_average_start_end": [round(load_start, 2), round(load_end, 2)],
            "alive": alive}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--max_tokens", type=int, default=32)
    parser.add_argument("--only", choices=["hfllm", "transformers"])
    parser.add_argument("--no_seed", action="store_true", help="send no seed (hfllm then samples concurrently)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="hfllm-serve-") as tmp:
        model = build_model(Path(tmp))
        for kind in ("hfllm", "transformers"):
            if args.only in (None, kind):
                results.append(load(kind, model, args.clients, args.seconds, args.max_tokens, not args.no_seed,
                                    Path(tmp)))
                print(json.dumps(results[-1]), flush=True)
    print("| server | seed | clients | duration | requests | answered | errors | answers/s | tokens/s | "
          "latency p50 / p90 / p99 | first piece p50 / p90 | server RSS idle / peak / end | "
          "load average start / end |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|")
    for r in results:
        print(f"| {r['server']} | {'yes' if r['seeded'] else 'no'} | {r['clients']} | {r['seconds']} s | "
              f"{r['requests']} | {r['answered']} | "
              f"{r['errors']} | {r['answers_per_s']} | {r['tokens_per_s']} | "
              f"{' / '.join(map(str, r['latency_p50_p90_p99']))} s | {' / '.join(map(str, r['first_piece_p50_p90']))}"
              f" s | {' / '.join(map(str, r['rss_mb_idle_peak_end']))} MB | "
              f"{' / '.join(map(str, r['load_average_start_end']))} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
