"""The built-in data: deterministic, sized for 2 CPU cores, split by fact, every held-out fact in pretrain."""

import json

import pytest

from hfllm.data import world
from hfllm.data.builtin import CLOSING, PARTS, PREFIXES, RUDE, answer_is_correct, build_part, builtin_path
from hfllm.data.world import ARITHMETIC, TEMPLATES, split_facts
from hfllm.errors import UserError

TRAIN, HELD_OUT = split_facts()
QUESTION_TO_FACT = {q: f for f in TRAIN + HELD_OUT for q in world.questions(f)}


@pytest.fixture(scope="module")
def parts():
    return {name: build_part(name) for name in PARTS}


def user_text(row) -> str:
    return [m for m in row.get("messages", row.get("prompt")) if m["role"] == "user"][-1]["content"]


def fact_of(question: str):
    """The fact a row asks about, once the friendly opener ("Hello! ") is taken off."""
    for prefix in sorted(set(PREFIXES), key=len, reverse=True):
        if question.startswith(prefix) and question[len(prefix):] in QUESTION_TO_FACT:
            return QUESTION_TO_FACT[question[len(prefix):]]
    raise AssertionError(f"not a question about a known fact: {question!r}")


def test_same_seed_same_rows_other_seed_other_rows(parts):
    for name in PARTS:
        assert build_part(name, seed=0) == parts[name], name
        assert build_part(name, seed=1) != parts[name], name
    # The split of facts never depends on the seed.
    held = {(f.kind, f.subject) for f in HELD_OUT}
    assert {(fact_of(user_text(r)).kind, fact_of(user_text(r)).subject) for r in build_part("sft_eval", 7)} == held


def test_sizes(parts):
    nbytes = {name: sum(len(json.dumps(r)) + 1 for r in rows) for name, rows in parts.items()}
    assert 2000 <= len(parts["pretrain"]) <= 6000 and 1_000_000 <= nbytes["pretrain"] <= 2_000_000
    for name, low, high in [("sft", 1500, 3000), ("preference", 1500, 3000), ("prompts", 300, 1000),
                            ("questions", 400, 1200), ("tone", 1500, 3000), ("sft_eval", 100, 400), ("tone_eval", 100, 400), ("preference_eval", 100, 400),
                            ("prompts_eval", 50, 300), ("questions_eval", 50, 200)]:
        assert low <= len(parts[name]) <= high, (name, len(parts[name]))
    assert 0.15 <= len(HELD_OUT) / (len(TRAIN) + len(HELD_OUT)) <= 0.25
    assert {f.kind for f in HELD_OUT} == set(TEMPLATES)  # every kind of fact is tested


@pytest.mark.parametrize("part", ["sft", "preference", "prompts", "questions", "tone"])
def test_eval_facts_are_disjoint_from_training_facts(parts, part):
    seen = {}
    for split in (part, f"{part}_eval"):
        rows = [r for r in parts[split] if r["answer"]]
        facts = [fact_of(user_text(r)) for r in rows]
        assert all(f.answer == r["answer"] for f, r in zip(facts, rows))
        assert all(f.held_out == split.endswith("_eval") for f in facts)
        seen[split] = {(f.kind, f.subject) for f in facts}
    assert seen[part] and seen[f"{part}_eval"] and not seen[part] & seen[f"{part}_eval"]
    kinds = {"prompts": ARITHMETIC, "questions": set(TEMPLATES) - set(ARITHMETIC)}.get(part, set(TEMPLATES))
    assert seen[f"{part}_eval"] == {(f.kind, f.subject) for f in HELD_OUT if f.kind in kinds}


def test_every_fact_is_stated_in_pretraining_many_times(parts):
    corpus = "\n".join(r["text"] for r in parts["pretrain"])
    for fact in TRAIN + HELD_OUT:
        plain = world.say(TEMPLATES[fact.kind][2][0], fact)  # "The capital of France is Paris.", "3 + 4 = 7."
        assert corpus.count(plain) >= 3, plain
    assert corpus.count("Once upon a time") > 1000 and corpus.count("In the end") > 1000


def test_rows_have_valid_roles_and_keys(parts):
    for row in parts["sft"] + parts["sft_eval"]:
        roles = [m["role"] for m in row["messages"]]
        assert roles in (["user", "assistant"], ["system", "user", "assistant"])
        assert answer_is_correct(row["messages"][-1]["content"], row["answer"])
    small_talk = [r for r in parts["sft"] if r["answer"] == ""]
    assert small_talk and not [r for r in parts["sft_eval"] if r["answer"] == ""]
    assert any(r["messages"][0]["role"] == "system" for r in parts["sft"])
    for row in parts["prompts"] + parts["prompts_eval"]:
        assert [m["role"] for m in row["prompt"]] == ["user"] and row["answer"].isdigit()
    for row in parts["questions"] + parts["questions_eval"]:
        assert [m["role"] for m in row["prompt"]] == ["user"] and row["answer"] and not row["answer"].isdigit()


def test_preference_pairs(parts):
    rows = parts["preference"] + parts["preference_eval"]
    for row in rows:
        assert [m["role"] for m in row["prompt"]] == ["user"]
        assert [m["role"] for m in row["chosen"]] == [m["role"] for m in row["rejected"]] == ["assistant"]
        assert row["chosen"] != row["rejected"]
        assert answer_is_correct(row["chosen"][0]["content"], row["answer"])
        if row["answer"]:  # a wrong fact or a rude reply never contains the right key
            assert not answer_is_correct(row["rejected"][0]["content"], row["answer"])
    rude = sum(r["rejected"][0]["content"] in RUDE for r in rows) / len(rows)
    assert 0.2 <= rude <= 0.45
    # Off-topic: a true reply to another kind of question, so a reward model learns relevance.
    def same_question(row):  # the reply template of the question's own fact, with some value in it
        fact = fact_of(user_text(row))
        values = {f.answer for f in TRAIN + HELD_OUT if f.kind == fact.kind} | {str(n) for n in range(30)}
        return row["rejected"][0]["content"] in {world.reply(fact, v) for v in values}

    off_topic = [r for r in rows if r["answer"] and r["rejected"][0]["content"] not in RUDE and not same_question(r)]
    assert 0.2 <= len(off_topic) / len(rows) <= 0.45


def test_builtin_path_writes_once_and_reuses(tmp_path, monkeypatch):
    path = builtin_path("prompts_eval", cache_dir=tmp_path)
    assert path == tmp_path / "builtin-v2" / "prompts_eval.jsonl"
    first = path.stat().st_mtime_ns
    assert builtin_path("prompts_eval", cache_dir=tmp_path).stat().st_mtime_ns == first
    assert [json.loads(line) for line in path.read_text().splitlines()] == build_part("prompts_eval")
    assert sorted(p.name for p in path.parent.iterdir()) == ["prompts_eval.jsonl"]  # no temporary file left
    monkeypatch.setenv("HFLLM_CACHE", str(tmp_path / "env"))
    assert builtin_path("prompts_eval") == tmp_path / "env" / "builtin-v2" / "prompts_eval.jsonl"


def test_unknown_part():
    message = "unknown builtin dataset 'stories'; choose one of: " + ", ".join(PARTS)
    with pytest.raises(UserError, match=message):
        builtin_path("stories")
    with pytest.raises(UserError, match="unknown builtin dataset"):
        build_part("sft_test")


@pytest.mark.parametrize("text, key, expected", [
    ("The answer is 7.", "7", True), ("7", "7", True), ("The answer is 17.", "7", False),
    ("The answer is 71.", "7", False), ("3 + 4 = 7, of course", "7", True), ("THE CAPITAL IS PARIS!", "Paris", True),
    ("a parisian cafe", "Paris", False), ("It is Buenos  Aires.", "Buenos Aires", True), ("Moo-moo!", "moo", True),
    ("", "7", False), ("anything at all", "", True), ("A cow says moo.", "moo", True),
    ("The answer is 9.\nWhat is 3 + 4? The answer is 7.", "7", False), ("\n  It is 7.\nMore.", "7", True),
])
def test_answer_is_correct(text, key, expected):
    assert answer_is_correct(text, key) is expected


def test_tone_pairs_differ_in_tone_only(parts):
    rows = parts["tone"] + parts["tone_eval"]
    for row in rows:
        chosen, rejected = row["chosen"][0]["content"], row["rejected"][0]["content"]
        assert chosen.endswith(CLOSING) and answer_is_correct(chosen, row["answer"])
        plain = chosen.removesuffix(CLOSING)
        assert rejected == plain or rejected in RUDE  # the same true answer without the closing, or rudeness
    sft_replies = [r["messages"][-1]["content"] for r in parts["sft"]]
    assert not any(CLOSING.strip() in reply for reply in sft_replies)  # SFT never shows the closing
    plain_share = sum(r["rejected"][0]["content"] not in RUDE for r in rows) / len(rows)
    assert 0.6 <= plain_share <= 0.8
