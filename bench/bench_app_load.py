"""The playground under load: N gradio_client clients chatting back to back for a while.

    python bench/bench_app_load.py                        # 20 clients for 60 s
    python bench/bench_app_load.py --clients 40 --seconds 120 --max_new_tokens 48

A tiny Llama (random weights, built from a config as the tests build theirs) and a BPE
tokenizer are made in a temporary folder; ``python -m hfllm.cli chat MODEL`` serves it as a
separate process on 127.0.0.1 with its defaults (4 requests generating at once, 64 waiting).
Every client has its own ``gradio_client.Client`` and sends a chat request (the Chat tab's
defaults: sampling at temperature 0.8, a seed per request) as soon as its previous one
ended, until the time is up; requests still in flight then finish and are counted.

Per request: answered (an assistant message came back), refused with a message (queue full)
or failed (the message is kept), whether it waited in the queue (the server said IN_QUEUE
with others ahead), the time to its first streamed piece, its total latency. The server's
resident memory (VmRSS from /proc) is sampled every second: after start-up, its peak under
load and at the end show whether memory stays flat. The load average is printed because the
machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_model(folder: Path) -> Path:
    """A tokenizer trained on the built-in corpus and a random tiny Llama (context 128), saved together."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from hfllm.cli import main as hfllm

    os.environ.setdefault("HFLLM_CACHE", str(folder / "cache"))
    assert hfllm(["tokenizer", "--dataset_name", "builtin:pretrain", "--vocab_size", "1024",
                  "--max_train_samples", "3000", "--output_dir", str(folder / "tok")]) == 0
    tok = AutoTokenizer.from_pretrained(folder / "tok")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, intermediate_size=128, max_position_embeddings=128,
                                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                         pad_token_id=tok.pad_token_id))
    model.save_pretrained(folder / "model")
    tok.save_pretrained(folder / "model")
    return folder / "model"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Sampler(threading.Thread):
    """The server's RSS every `every` seconds, with the time it was taken."""

    def __init__(self, pid: int, every: float = 1.0):
        super().__init__(daemon=True)
        self.pid, self.every, self.samples, self.stop = pid, every, [], threading.Event()

    def run(self):
        start = time.perf_counter()
        while not self.stop.is_set():
            self.samples.append((time.perf_counter() - start, rss_mb(self.pid)))
            self.stop.wait(self.every)


def serve(model: Path, port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "hfllm.cli", "chat", str(model), "--port", str(port),
                             "--preference_file", str(log.parent / "feedback.jsonl")],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ})
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the app exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the app did not answer within 180 s")


def one_request(client, model_name: str, i: int, max_new_tokens: int) -> dict:
    """Send one chat message; watch its status until it ends."""
    from gradio_client.utils import Status

    start = time.perf_counter()
    job = client.submit(message=f"Tell me about question number {i}.", history=[], model_name=model_name,
                        system_prompt="", greedy=False, temperature=0.8, top_k=0, top_p=1.0, min_p=0.0,
                        repetition_penalty=1.0, max_new_tokens=max_new_tokens, seed=i, api_name="/chat")
    queued, first_piece, queue_full = False, None, False
    while not job.done():
        status = job.status()
        if status.code == Status.IN_QUEUE and (status.rank or 0) > 0:
            queued = True
        if status.code == Status.QUEUE_FULL:
            queue_full = True
        if first_piece is None and len(job.outputs()) > 1:  # outputs()[0] echoes the user's message
            first_piece = time.perf_counter() - start
        time.sleep(0.05)
    row = {"queued": queued, "first_piece": first_piece}
    try:
        out = job.result(timeout=5)
        answered = bool(out and out[1] and out[1][-1].get("role") == "assistant")
        row.update(outcome="answered" if answered else "empty", latency=time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - every failure is a result here
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        row.update(outcome="queue full" if queue_full or "queue is full" in text.lower() else "error",
                   message=text[:200], latency=time.perf_counter() - start)
    return row


def client_loop(url: str, model_name: str, index: int, until: float, max_new_tokens: int, rows: list, lock):
    from gradio_client import Client

    client = Client(url, verbose=False)
    n = 0
    while time.perf_counter() < until:
        row = one_request(client, model_name, index * 100_000 + n, max_new_tokens)
        row["client"] = index
        with lock:
            rows.append(row)
        n += 1


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))] if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--max_new_tokens", type=int, default=32)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="hfllm-load-") as tmp:
        tmp = Path(tmp)
        model = build_model(tmp)
        port = free_port()
        server = serve(model, port, tmp / "app.log")
        sampler = Sampler(server.pid)
        sampler.start()
        try:
            time.sleep(3)  # settled after start-up
            rss_idle = rss_mb(server.pid)
            cpu_server, cpu_clients = cpu_seconds(server.pid), time.process_time()
            model_name = "/".join(model.resolve().parts[-2:])  # how the app names a model folder
            rows, lock = [], threading.Lock()
            started = time.perf_counter()
            until = started + args.seconds
            threads = [threading.Thread(target=client_loop, args=(f"http://127.0.0.1:{port}/", model_name, i, until,
                                                                  args.max_new_tokens, rows, lock))
                       for i in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - started
            rss_end = rss_mb(server.pid)
            cpu_server, cpu_clients = cpu_seconds(server.pid) - cpu_server, time.process_time() - cpu_clients
            alive = server.poll() is None
        finally:
            sampler.stop.set()
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
    load_end = os.getloadavg()

    during = [mb for t, mb in sampler.samples if t >= 3]
    answered = [r for r in rows if r["outcome"] == "answered"]
    latency = [r["latency"] for r in answered]
    first = [r["first_piece"] for r in answered if r["first_piece"] is not None]
    errors: dict[str, int] = {}
    for r in rows:
        if r["outcome"] != "answered":
            errors[r.get("message", r["outcome"])] = errors.get(r.get("message", r["outcome"]), 0) + 1
    result = {
        "clients": args.clients, "seconds": args.seconds, "wall_s": round(wall, 1),
        "max_new_tokens": args.max_new_tokens, "requests": len(rows), "answered": len(answered),
        "queued": sum(r["queued"] for r in rows), "queue_full": sum(r["outcome"] == "queue full" for r in rows),
        "errors": sum(r["outcome"] in ("error", "empty") for r in rows), "error_messages": errors,
        "answers_per_s": round(len(answered) / wall, 2),
        "latency_s": {f"p{q}": round(pct(latency, q), 2) for q in (50, 90, 99)} | {"max": round(max(latency), 2)
                                                                                  if latency else None},
        "first_piece_s": {f"p{q}": round(pct(first, q), 2) for q in (50, 90)},
        "per_client_answered": {"min": min(sum(r["client"] == c and r["outcome"] == "answered" for r in rows)
                                           for c in range(args.clients)),
                                "max": max(sum(r["client"] == c and r["outcome"] == "answered" for r in rows)
                                           for c in range(args.clients))},
        "rss_mb": {"after_start": round(rss_idle), "peak": round(max(during)) if during else None,
                   "end": round(rss_end), "mean_last_10s": round(statistics.mean(during[-10:])) if during else None},
        "rss_mb_every_10s": [round(min(sampler.samples, key=lambda s: abs(s[0] - k))[1])
                             for k in range(0, int(sampler.samples[-1][0]) + 1, 10)],
        "cpu_s": {"server": round(cpu_server, 1), "clients": round(cpu_clients, 1)},
        "server_alive_at_end": alive, "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in load_end], "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    lat, rss = result["latency_s"], result["rss_mb"]
    print(f"\n| clients | duration | requests | answered | waited in queue | queue full | errors | answers/s "
          f"| latency p50 / p90 / p99 / max | first piece p50 / p90 | server RSS start / peak / end |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|")
    print(f"| {args.clients} | {wall:.0f} s | {len(rows)} | {len(answered)} | {result['queued']} | "
          f"{result['queue_full']} | {result['errors']} | {result['answers_per_s']} | {lat['p50']} / {lat['p90']} / "
          f"{lat['p99']} / {lat['max']} s | {result['first_piece_s']['p50']} / {result['first_piece_s']['p90']} s | "
          f"{rss['after_start']} / {rss['peak']} / {rss['end']} MB |")
    print(f"server RSS every 10 s (MB): {result['rss_mb_every_10s']}")
    print(f"CPU time during the load: server {result['cpu_s']['server']} s, the clients (this process) "
          f"{result['cpu_s']['clients']} s, of {wall * (os.cpu_count() or 1):.0f} core-seconds")
    print(f"load average (1/5/15 min): {result['loadavg_start']} at start, {result['loadavg_end']} at end; "
          f"{os.cpu_count()} CPUs")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
