"""Generation tokens/s and time to first token: hfllm's paths vs bare `model.generate`, in one process.

    python bench/bench_generate.py
    python bench/bench_generate.py --quick

One model (the tiny preset, random weights, saved and loaded as a stage folder), one chat prompt
(rendered by the chat template), greedy decoding, batch 1, the same new tokens on every path:

- bare: tokenizer + `model.generate(max_new_tokens=N, do_sample=False)`, nothing else;
- hfllm generate(): hfllm.generate.generate, what `hfllm generate` runs for several samples;
- `hfllm generate` (streaming, its default): hfllm.generate.generate with ``write``, pieces handed to the
  caller on the generating thread (what the terminal gets);
- app: the playground's chat path: fit_chat, Sampling.kwargs (greedy), sampling_guard, stream (a
  generation thread feeding a TextIteratorStreamer, since Gradio iterates a generator).

Model loading is left out (steady state); each path runs once to warm up, then `--repeats`
rounds run every path once, in alternating order. A path's ratio to bare is the median over
rounds of (bare's time / its time) within the same round, so the machine's drift between rounds
(this VM's identical runs spread by +-10 %) cancels; tokens/s is the median time's rate. Time
to first token: for bare, the time of `generate` with one new token; for the streaming paths,
when the first text piece reaches the caller (TextIteratorStreamer releases text at word
boundaries, so this is what a user of the app or the terminal sees).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import load_average, median, random_model, write_json

MESSAGE = "Tell me a story about a cat who lives in a small town by the sea."


def bare_generate(model, tok, text: str, n: int):
    """(seconds, None, the new token ids) for plain model.generate."""
    import torch

    start = time.perf_counter()
    inputs = tok(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)
    return time.perf_counter() - start, None, out[0, inputs["input_ids"].shape[1]:]


def timed_stream(pieces) -> tuple[float, float, str]:
    start = time.perf_counter()
    first, text = None, ""
    for piece in pieces:
        if first is None and piece:
            first = time.perf_counter()
        text += piece
    return time.perf_counter() - start, (first or time.perf_counter()) - start, text


def run(quick: bool = False, work: Path | None = None, repeats: int = 15) -> dict:
    from transformers import AutoTokenizer

    from hfllm.app import handlers as h
    from hfllm.generate import GenerateArguments, generate, sampling_kwargs, stream
    from hfllm.loading import load_causal_lm

    n_new, repeats = (16, 2) if quick else (128, repeats)
    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
        folder = random_model(work or Path(tmp), "tiny")
        model, tok = load_causal_lm(folder).eval(), AutoTokenizer.from_pretrained(folder)
    messages = [{"role": "user", "content": MESSAGE}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    gen_kwargs = sampling_kwargs(GenerateArguments(max_new_tokens=n_new))  # hfllm generate's greedy default

    def app_chat():
        sampling = h.Sampling(greedy=True, max_new_tokens=n_new)
        prompt, max_new, _ = h.fit_chat(model, tok, messages, None, n_new)
        kwargs = sampling.kwargs(max_new)
        with h.sampling_guard(kwargs):
            return timed_stream(stream(model, tok, prompt, kwargs, sampling.seed_value))

    def hfllm_generate():
        start = time.perf_counter()
        out = generate(model, tok, text, gen_kwargs)[0]
        return time.perf_counter() - start, None, out

    def hfllm_stream():  # what the terminal gets: the first piece's time and the whole text
        pieces, first = [], []
        start = time.perf_counter()

        def write(piece):
            if not first:
                first.append(time.perf_counter())
            pieces.append(piece)

        generate(model, tok, text, gen_kwargs, write=write)
        total = time.perf_counter() - start
        return total, (first[0] if first else start + total) - start, "".join(pieces)

    ways = {"bare": lambda: bare_generate(model, tok, text, n_new), "hfllm_generate": hfllm_generate,
            "hfllm_stream": hfllm_stream, "app_stream": app_chat}
    seconds = {w: [] for w in ways}
    first = {w: [] for w in ways}
    outputs = {}
    for r in range(repeats + 1):  # round 0 warms up every path
        for way, call in (ways.items() if r % 2 else reversed(ways.items())):
            total, ttft, out = call()
            if r:
                seconds[way].append(total)
                first[way].append(ttft)
            outputs[way] = out
        if r:
            first["bare"][-1] = bare_generate(model, tok, text, 1)[0]
    new_tokens = len(outputs["bare"])
    # Greedy: every path must have produced the same tokens, or the rates would not compare.
    outputs["bare"] = tok.decode(outputs["bare"], skip_special_tokens=True)
    res = {"new_tokens": new_tokens, "prompt_tokens": len(tok(text, add_special_tokens=False)["input_ids"]),
           "same_text_on_every_path": len(set(outputs.values())) == 1, "repeats": repeats}
    for way in ways:
        res[f"{way}_tokens_per_s"] = round(new_tokens / median(seconds[way]), 1)
        if first[way][0] is not None:
            res[f"{way}_first_token_ms"] = round(1000 * median(first[way]), 1)
        res[f"{way}_vs_bare"] = round(median([b / t for b, t in zip(seconds["bare"], seconds[way])]), 3)
    return {"results": res, "markdown": markdown(res)}


def markdown(r: dict) -> str:
    names = {"bare": "bare `model.generate`", "hfllm_generate": "`hfllm.generate.generate`",
             "hfllm_stream": "`hfllm generate` (streaming, its default)", "app_stream": "app chat (streaming)"}
    lines = [f"Batch 1, greedy, {r['prompt_tokens']}-token chat prompt, {r['new_tokens']} new tokens, "
             f"median of {r['repeats']}.", "",
             "| path | tokens/s | vs bare, median of per-round ratios (goal >= 0.95) | time to first token / first piece |",
             "|---|---:|---:|---:|"]
    for way, name in names.items():
        ttft = f"{r[f'{way}_first_token_ms']:.0f} ms" if f"{way}_first_token_ms" in r else "-"
        lines.append(f"| {name} | {r[f'{way}_tokens_per_s']:,.0f} | {r[f'{way}_vs_bare']:.3f} | {ttft} |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="16 new tokens, 2 repeats")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", help="also write the results here")
    opts = parser.parse_args()
    print(f"load average {load_average()}")
    out = run(opts.quick, repeats=opts.repeats)
    print(out["markdown"])
    write_json(opts.json, out)
