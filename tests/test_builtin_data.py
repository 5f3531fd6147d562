"""The generated default data: deterministic, split by fact, every held-out fact taught in pretraining."""

import json

import pytest

from hfllm.builtin_data import PARTS, build_part, builtin_path, split_facts
from hfllm.errors import UserError


def test_deterministic_and_seeded():
    assert build_part("sft") == build_part("sft")
    assert build_part("pretrain", seed=1) != build_part("pretrain", seed=0)


def test_sizes():
    size = sum(len(r["text"]) for r in build_part("pretrain"))
    assert 1_000_000 < size < 2_500_000
    assert len(build_part("sft")) > 400 and len(build_part("sft_eval")) > 80
    assert len(build_part("prompts_eval")) >= 30


def test_held_out_facts_are_disjoint_and_stated_in_pretraining():
    train, held = split_facts()
    assert not {f["id"] for f in train} & {f["id"] for f in held}
    questions = lambda part: {m["content"] for r in build_part(part) for m in r.get("messages", r.get("prompt", []))
                              if m["role"] == "user"}
    for part in ("sft", "preference", "prompts"):
        assert not questions(part) & questions(f"{part}_eval"), part
    corpus = "\n".join(r["text"] for r in build_part("pretrain"))
    missing = [f["id"] for f in held if not any(s in corpus for s in f["statements"])]
    assert not missing


def test_preference_rows_are_valid_pairs():
    for row in build_part("preference") + build_part("preference_eval"):
        assert row["chosen"] != row["rejected"]
        assert row["answer"].lower() in row["chosen"][0]["content"].lower()
        assert row["prompt"][0]["role"] == "user" and row["chosen"][0]["role"] == "assistant"


def test_builtin_path_writes_once(tmp_path):
    path = builtin_path("prompts_eval", cache_dir=tmp_path)
    first = path.stat().st_mtime_ns
    assert builtin_path("prompts_eval", cache_dir=tmp_path).stat().st_mtime_ns == first
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == build_part("prompts_eval")


def test_unknown_part():
    with pytest.raises(UserError, match="unknown builtin dataset 'stories'; choose one of: " + ", ".join(PARTS)):
        builtin_path("stories")
