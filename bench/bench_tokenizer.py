"""Tokenizer training MB/s: `hfllm tokenizer` vs the bare `tokenizers` BPE trainer on the same corpus.

    python bench/bench_tokenizer.py                 # a 20 MB corpus
    python bench/bench_tokenizer.py --quick         # 1 MB

The corpus is a plain-text file, one built-in document per line (hfllm/builtin_data.py, seeds
0-15 cycled). Every way trains a byte-level BPE of vocab 4096, min_frequency 2, the same special
tokens, and is timed from the file on disk to a saved tokenizer:

- hfllm: `hfllm tokenizer --dataset_name corpus.txt --vocab_size 4096` in this process (the file's lines
  stream through `train_from_iterator`, 1 % held out, save);
- bare files: `Tokenizer.train([corpus.txt])`, the library reading the file itself;
- bare iterator: `train_from_iterator` over the file's lines, the way hfllm feeds it.

A warm-up run of each way on a 50 kB file comes first (imports are not training). Each hfllm run
reads a fresh copy of the file, so no cache can serve it.
TOKENIZERS_PARALLELISM is on for all (its default). Median of `--repeats` alternated runs.
Characters per token: on documents from seeds the corpus never used.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from common import documents, hfllm_cli, load_average, median, write_corpus, write_json

VOCAB = 4096
SPECIALS = ["<|pad|>", "<|begin|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]  # hfllm's defaults


def bare(corpus: Path, out: Path, from_iterator: bool) -> float:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    start = time.perf_counter()
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, min_frequency=2, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    if from_iterator:
        with corpus.open(encoding="utf-8") as f:
            bpe.train_from_iterator((line.rstrip("\n") for line in f), trainer=trainer)
    else:
        bpe.train([str(corpus)], trainer=trainer)
    out.mkdir(parents=True, exist_ok=True)
    bpe.save(str(out / "tokenizer.json"))
    return time.perf_counter() - start


def hfllm_run(corpus: Path, out: Path) -> tuple[float, float]:
    """(wall seconds of the whole command, seconds inside train_from_iterator from its metrics.json)."""
    start = time.perf_counter()
    hfllm_cli("tokenizer", "--dataset_name", corpus, "--vocab_size", VOCAB, "--output_dir", out)
    seconds = time.perf_counter() - start
    return seconds, json.loads((out / "metrics.json").read_text())["train_seconds"]


def chars_per_token(tokenizer_json: Path, texts: list[str]) -> float:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    return sum(map(len, texts)) / sum(len(e.ids) for e in tok.encode_batch(texts))


def run(quick: bool = False, work: Path | None = None, repeats: int = 3, megabytes: float = 20) -> dict:
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    megabytes, repeats = (1, 1) if quick else (megabytes, repeats)
    times = {"hfllm": [], "hfllm_train_only": [], "bare_files": [], "bare_iterator": []}
    with tempfile.TemporaryDirectory(prefix="bench-tokenizer-") as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("HFLLM_CACHE", str(tmp / "hfllm-cache"))
        corpus = tmp / "corpus.txt"
        size = write_corpus(corpus, megabytes)
        warm = tmp / "warm-up.txt"  # imports and first calls of every way, paid once per process, not timed
        write_corpus(warm, 0.05)
        hfllm_run(warm, tmp / "warm-hfllm")
        bare(warm, tmp / "warm-bare", True)
        for r in range(repeats):
            ways = ["hfllm", "bare_files", "bare_iterator"]
            for way in ways if r % 2 == 0 else reversed(ways):
                out = tmp / f"{way}-{r}"
                if way == "hfllm":
                    copy = tmp / f"corpus-{r}.txt"  # a new file: datasets' Arrow cache cannot serve it
                    shutil.copy(corpus, copy)
                    wall, train_only = hfllm_run(copy, out)
                    times["hfllm"].append(wall)
                    times["hfllm_train_only"].append(train_only)
                    copy.unlink()
                else:
                    times[way].append(bare(corpus, out, way == "bare_iterator"))
        held_out = documents(range(100, 102))
        cpt = {"hfllm": chars_per_token(tmp / "hfllm-0/tokenizer.json", held_out),
               "bare": chars_per_token(tmp / "bare_files-0/tokenizer.json", held_out)}
    mb = size / 1e6
    res = {"corpus_mb": round(mb, 1), "vocab_size": VOCAB, "repeats": repeats,
           **{f"{w}_mb_per_s": round(mb / median(t), 2) for w, t in times.items()},
           "hfllm_chars_per_token": round(cpt["hfllm"], 3), "bare_chars_per_token": round(cpt["bare"], 3)}
    res["hfllm_vs_bare_files"] = round(res["hfllm_mb_per_s"] / res["bare_files_mb_per_s"], 3)
    res["hfllm_vs_bare_iterator"] = round(res["hfllm_mb_per_s"] / res["bare_iterator_mb_per_s"], 3)
    return {"results": res, "markdown": markdown(res)}


def markdown(r: dict) -> str:
    return "\n".join([
        f"Byte-level BPE, vocab {r['vocab_size']}, a {r['corpus_mb']} MB corpus, median of {r['repeats']} runs.", "",
        "| way | MB/s (file to saved tokenizer) | hfllm / this (goal >= 0.9) | characters per token (held out) |",
        "|---|---:|---:|---:|",
        f"| `hfllm tokenizer` | {r['hfllm_mb_per_s']} | - | {r['hfllm_chars_per_token']} |",
        f"| bare `tokenizers`, `train(files)` | {r['bare_files_mb_per_s']} | {r['hfllm_vs_bare_files']:.3f} "
        f"| {r['bare_chars_per_token']} |",
        f"| bare `tokenizers`, `train_from_iterator` | {r['bare_iterator_mb_per_s']} "
        f"| {r['hfllm_vs_bare_iterator']:.3f} | - |",
        f"| `hfllm tokenizer`, training call only (its metrics.json) | {r['hfllm_train_only_mb_per_s']} | - | - |"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 1 MB corpus, one run")
    parser.add_argument("--megabytes", type=float, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    opts = parser.parse_args()
    print(f"load average {load_average()}")
    out = run(opts.quick, repeats=opts.repeats, megabytes=opts.megabytes)
    print(out["markdown"])
    write_json(opts.json, out)
