"""hfllm's built-in default data: the parts, drawn from the small synthetic world of hfllm.data.world.

Nothing is downloaded: every row comes from that world's facts and templates and the word
lists below, drawn with ``random.Random(seed)``, so one seed always gives the same data.
Users name the parts ``builtin:pretrain``, ``builtin:sft``, ``builtin:sft_eval``, ``builtin:preference``,
``builtin:preference_eval``, ``builtin:prompts`` and ``builtin:prompts_eval`` (arithmetic, for
rule rewards), ``builtin:questions`` and ``builtin:questions_eval`` (facts, for a reward model) wherever a
dataset is expected; hfllm.data resolves the prefix with :func:`builtin_path`, which
writes the part once as JSON lines under ``$HFLLM_CACHE`` (or ``~/.cache/hfllm``).

``pretrain`` (stories, fact paragraphs, arithmetic; about 1.5 MB) states every fact dozens
of times. The conversation parts ask about the taught facts, their ``*_eval`` parts only
about the held-out ones: eval therefore measures whether post-training taught the
question -> answer habit on top of knowledge learnt in pretraining, not whether it
memorised the answers it was shown.
"""

from __future__ import annotations

import json
import os
import random
import re
import tempfile
from pathlib import Path

from hfllm.data.world import (ANIMALS, ARITHMETIC, TEMPLATES, Fact, cap, count, facts, of_kind, questions, reply, say,
                              wrong_answer)
from hfllm.errors import UserError

VERSION = "builtin-v2"  # bump whenever the generated data changes (here or in world.py): stale caches go unused
PARTS = ("pretrain", "sft", "sft_eval", "preference", "preference_eval", "prompts", "prompts_eval", "questions",
         "questions_eval", "tone", "tone_eval")


# ------------------------------------------------------------------ pretraining text
PRETRAIN_BYTES = 1_500_000  # about 3-4 minutes of a ~5M-parameter model on 2 CPU cores
FACT_ROUNDS = 40  # each fact is stated this many times in fact paragraphs (stories add more)
INTROS = {"capital": ["Every country has a capital city.", "Here are some countries and their capitals.",
                      "Let us learn about the world."],
          "animal": ["Let us learn about animals.", "Animals are our friends.", "Here are some animals."],
          "colour": ["Everything has a colour.", "Let us learn about colours.", "Look around you."],
          "opposite": ["Some words are opposites.", "Let us learn about opposites."],
          "sum": ["Let us practise adding.", "Here are some sums.", "Adding is fun."],
          "difference": ["Let us practise taking away.", "Here are some differences.", "Taking away is easy."]}
NOUNS = ["apple", "ball", "cake", "star", "book", "cookie", "flower", "shell"]
GIRLS = ["Mia", "Lily", "Anna", "Zoe", "Ella", "Lucy", "Emma", "Rosa", "Nina", "Ruby", "Sara", "Amy"]
BOYS = ["Tom", "Ben", "Sam", "Max", "Leo", "Jack", "Noah", "Finn", "Omar", "Kai", "Tim", "Dan"]
ADJS = ["little", "kind", "brave", "curious", "happy", "shy", "clever", "funny"]
PLACES = ["the park", "the forest", "the beach", "the farm", "the garden", "the river", "the market", "the hill",
          "the lake", "the zoo", "the town", "the meadow"]
TINTS = ["red", "blue", "green", "yellow", "pink", "purple", "orange", "brown", "white", "black"]
TOYS = ["ball", "kite", "boat", "hat", "book", "box", "cup", "drum", "map", "scarf"]
FOODS = ["apple", "cake", "cookie", "carrot", "banana", "pie", "plum", "muffin"]
MORALS = ["help your friends", "be kind to animals", "never give up", "share with others", "ask for help",
          "listen to others", "tell the truth"]


def story(rng: random.Random) -> str:
    """A small children's story with an opening, two or three events and an ending; facts woven in are true."""
    girl = rng.random() < 0.5
    name = rng.choice(GIRLS if girl else BOYS)
    friend = rng.choice([n for n in GIRLS + BOYS if n != name])
    he, him, his, kid = ("she", "her", "her", "girl") if girl else ("he", "him", "his", "boy")
    toy, place, adj = f"{rng.choice(TINTS)} {rng.choice(TOYS)}", rng.choice(PLACES), rng.choice(ADJS)
    animal, country = rng.choice(of_kind("sound")), rng.choice(of_kind("capital"))
    colour, opposite = rng.choice(of_kind("colour")), rng.choice(of_kind("opposite"))
    legs = next((f for f in of_kind("legs") if f.subject == animal.subject), None)
    x, y, food = rng.randint(1, 9), rng.randint(1, 9), rng.choice(FOODS)
    out = [rng.choice([
        f"Once upon a time, there was a {adj} {kid} named {name}.",
        f"Once upon a time, in a small village, lived a {adj} {kid} called {name}.",
        f"Once upon a time, {name} was a {adj} {kid} who loved to play outside.",
        f"Once upon a time, there was a {kid} named {name}. {cap(he)} was very {adj}.",
    ]), rng.choice([
        f"{cap(he)} had a {toy} that {he} loved very much.",
        f"Every day, {he} played with {his} best friend {friend}.",
        f"{cap(he)} lived in a little house near {place} with {his} mom and dad.",
        f"{cap(his)} favourite colour was {rng.choice(TINTS)}, and {his} favourite food was {food}s.",
    ]), f"One day, {name} went to {place}" + rng.choice([f" with {friend}.", ".", " to play."])]
    events = [
        f"There {he} saw {say('{an}', animal)}. \"{cap(animal.answer)}, {animal.answer}!\" said the "
        f"{animal.subject}. {name} laughed, because {say('{an} says {a}.', animal)}"
        + (f" {name} counted its legs. {reply(legs)}" if legs else ""),
        f"\"What does {say('{an}', animal)} say?\" asked {friend}. \"{reply(animal)[:-1]},\" said {name}.",
        f"Oh no! {name} lost {his} {toy}. {cap(he)} looked under the trees and behind the rocks, but it was not "
        f"there. {friend} came to help. Together they looked and looked, and at last they found it by a big stone.",
        f"{name} had {count(x, food)}. {friend} gave {him} {y} more. Now {name} had {count(x + y, food)}, "
        f"because {x} + {y} = {x + y}.",
        f"Later, {name} and {his} family went on a trip to {country.subject}. They visited {country.answer}, "
        f"the capital of {country.subject}. \"{say('{a} is the capital of {s}', country)}!\" said {name}.",
        f"On the way, {name} saw {colour.subject}. {reply(colour)} {name} liked the colour {colour.answer}.",
        f"{friend} asked, \"What is the opposite of {opposite.subject}?\" {name} thought for a moment and said, "
        f"\"{reply(opposite)}\"",
        f"Suddenly, dark clouds came and it started to rain. {name} and {friend} ran under a big tree. "
        "They waited until the sun came out again.",
        f"Near the path, {he} found a little {animal.subject} that was stuck in a hole. {name} helped it out, "
        f"and the {animal.subject} was very happy.",
        f"They had a picnic. {name} brought {count(x, food)} and {friend} brought a big bottle of water. "
        "They sat on the soft grass and ate everything.",
        f"{name} wanted to climb a tall tree, but {he} was a little scared. \"You can do it!\" said {friend}. "
        f"{name} climbed slowly, one branch at a time, and at last {he} reached the top.",
        "There they met an old man who told them a funny story. They laughed so much that their tummies hurt.",
    ]
    out += rng.sample(events, rng.randint(2, 3))
    out.append(rng.choice([
        f"In the end, {name} and {friend} went home together. It was a wonderful day.",
        f"In the end, {name} was very happy. {cap(he)} learned that it is good to {rng.choice(MORALS)}.",
        f"In the end, they shared {count(rng.randint(2, 9), food)} and everyone smiled.",
        f"In the end, {name} went to bed and dreamed about {place}. The end.",
    ]))
    return " ".join(out)


def _fact_docs(rng: random.Random, first: bool) -> list[str]:
    """One round of fact paragraphs: every fact stated once, grouped by topic, a few per document."""
    state = (lambda f: say(TEMPLATES[f.kind][2][0], f)) if first else \
        (lambda f: say(rng.choice(TEMPLATES[f.kind][2]), f, noun=rng.choice(NOUNS)))
    groups = {kind: [[f] for f in of_kind(kind)] for kind in ("capital", "colour", "opposite", "sum", "difference")}
    # One animal's facts stay together, like a page of a picture book.
    groups["animal"] = [[f for k in ("sound", "legs", "home") for f in of_kind(k) if f.subject == a] for a in ANIMALS]
    docs = []
    for kind, units in groups.items():
        rng.shuffle(units)
        size = 4 if kind == "animal" else (10 if kind in ("sum", "difference") else 6)
        sep = "\n" if kind in ("sum", "difference") else " "
        for i in range(0, len(units), size):
            lines = [rng.choice(INTROS[kind])]
            for unit in units[i:i + size]:
                lines += [f"This is {say('{an}', unit[0])}."] if kind == "animal" else []
                lines += [state(f) for f in unit]
            docs.append(sep.join(lines))
    return docs


def _pretrain(rng: random.Random) -> list[dict]:
    docs = [d for r in range(FACT_ROUNDS) for d in _fact_docs(rng, first=r == 0)]
    size = sum(len(d) + 12 for d in docs)  # + the JSON wrapping of each row
    while size < PRETRAIN_BYTES:
        docs.append(story(rng))
        size += len(docs[-1]) + 12
    rng.shuffle(docs)
    return [{"text": d} for d in docs]


# ------------------------------------------------------------------ conversations
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
SMALL_TALK = [
    ("Hello!", "Hello! How can I help you today?"), ("Hi there.", "Hi! What would you like to know?"),
    ("How are you?", "I am fine, thank you. How can I help you?"), ("Thank you!", "You are welcome!"),
    ("Thanks for your help.", "You are welcome. I am happy to help."),
    ("Good morning!", "Good morning! What can I do for you?"), ("Goodbye!", "Goodbye! Have a nice day."),
    ("Who are you?", "I am a small, friendly assistant."),
    ("What can you do?", "I can answer simple questions about animals, colours, countries and numbers."),
    ("Can you help me?", "Of course! What do you need?"),
]
RUDE = ["I don't know and I don't care.", "Figure it out yourself.", "Why should I tell you?",
        "That is a boring question.", "Go away, I am busy.", "Ask someone else.", "Look it up yourself."]
PREFIXES = ["", "", "", "", "Please tell me: ", "Hello! ", "I have a question. ", "Can you help me? "]
# The tone the "tone" preference pairs teach: the same answer, then a friendly closing. SFT never shows it, so
# the SFT model starts out preferring the plain answer, and preference tuning has something to change. One
# closing, at the end: with an opener ("Sure! ...") the answer follows in a context SFT never trained, and a
# tiny model tuned to open that way lost two thirds of its held-out answers; with four openers to choose from,
# no single one ever became likelier than the plain answer.
CLOSING = " Happy to help!"


def _asks(held_out: bool, rng: random.Random, kinds=None) -> list[tuple[Fact, str]]:
    """(fact, question) pairs: 8 per taught fact (4 for prompts) in mixed phrasings; eval: each phrasing once."""
    pairs = []
    for f in facts():
        if f.held_out != held_out or (kinds and f.kind not in kinds):
            continue
        qs = questions(f)
        if held_out:
            pairs += [(f, q) for q in qs]
        else:
            start = rng.randrange(len(qs))
            pairs += [(f, rng.choice(PREFIXES) + qs[(start + i) % len(qs)]) for i in range(8 if not kinds else 4)]
    return pairs


def _sft(rng: random.Random, held_out: bool) -> list[dict]:
    turns = [(q, reply(f), f.answer) for f, q in _asks(held_out, rng)]
    turns += [] if held_out else [(q, a, "") for q, a in SMALL_TALK for _ in range(4)]
    rows = []
    for q, a, key in turns:
        system = [SYSTEM] if rng.random() < 0.3 else []
        rows.append({"messages": system + [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                     "answer": key})
    return rows


def _rejected(fact: Fact, rng: random.Random) -> str:
    """A worse answer: a wrong fact (40%), a rude refusal (30%), or a true answer to another kind of
    question (30%). Without the off-topic kind, a reward model learns to like the shape "The answer
    is 7." for any question, and PPO against it turns every fact question into a sum."""
    draw = rng.random()
    if draw < 0.4:
        return reply(fact, wrong_answer(fact, rng))
    if draw < 0.7:
        return rng.choice(RUDE)
    others = [f for f in facts() if f.kind != fact.kind and f.held_out == fact.held_out]
    while answer_is_correct(text := reply(rng.choice(others)), fact.answer) and fact.answer:
        pass  # "A cow has four legs." must not pass as the answer to another question
    return text


def _preference(rng: random.Random, held_out: bool) -> list[dict]:
    triples = [(q, reply(f), _rejected(f, rng), f.answer) for f, q in _asks(held_out, rng)]
    triples += [] if held_out else [(q, a, rng.choice(RUDE), "") for q, a in SMALL_TALK for _ in range(2)]
    return [{"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": good}],
             "rejected": [{"role": "assistant", "content": bad}], "answer": key} for q, good, bad, key in triples]


def _tone(rng: random.Random, held_out: bool) -> list[dict]:
    """Pairs that differ in tone, not in facts: the right answer + the friendly closing beats the plain answer
    (70%) or a rude reply (30%). Any model can judge this, and every answer in them is true."""
    rows = []
    for f, q in _asks(held_out, rng):
        good = reply(f) + CLOSING
        bad = reply(f) if rng.random() < 0.7 else rng.choice(RUDE)
        rows.append({"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": good}],
                     "rejected": [{"role": "assistant", "content": bad}], "answer": f.answer})
    return rows


def _prompts(rng: random.Random, held_out: bool) -> list[dict]:
    """Arithmetic questions: a rule can check them exactly (GRPO, RLOO), a small reward model cannot."""
    return [{"prompt": [{"role": "user", "content": q}], "answer": f.answer}
            for f, q in _asks(held_out, rng, kinds=ARITHMETIC)]


def _questions_part(rng: random.Random, held_out: bool) -> list[dict]:
    """Questions about facts (capitals, animals, colours, opposites): what a reward model can judge (PPO)."""
    kinds = tuple(k for k in TEMPLATES if k not in ARITHMETIC)
    return [{"prompt": [{"role": "user", "content": q}], "answer": f.answer} for f, q in _asks(held_out, rng, kinds)]


# ------------------------------------------------------------------ public API
def build_part(name: str, seed: int = 0) -> list[dict]:
    """The rows of one part, the same for the same seed (the held-out facts never depend on it)."""
    _check(name)
    rng = random.Random(f"{name}:{seed}")
    base, held_out = name.removesuffix("_eval"), name.endswith("_eval")
    rows = _pretrain(rng) if name == "pretrain" else {"sft": _sft, "preference": _preference,
                                                      "prompts": _prompts, "questions": _questions_part,
                                                      "tone": _tone}[base](rng, held_out)
    rng.shuffle(rows)
    return rows


def builtin_path(name: str, cache_dir: str | Path | None = None) -> Path:
    """The .jsonl file of a part (seed 0), written once into ``<cache>/<VERSION>/`` and then reused."""
    _check(name)
    root = Path(cache_dir or os.environ.get("HFLLM_CACHE") or Path.home() / ".cache" / "hfllm").expanduser()
    path = root / VERSION / f"{name}.jsonl"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write to a temporary file and rename it, so a reader (or a second process) never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in build_part(name))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def answer_is_correct(text: str, answer: str) -> bool:
    """True when ``answer`` appears in the first line of ``text`` as a whole word, ignoring case; '' always passes.

    "7" matches "The answer is 7." but not "17"; "New Delhi" matches across any whitespace.
    Only the first line counts: a base model that rambles on through a list of sums would
    otherwise be credited for any number it happens to mention.
    """
    key = answer.strip()
    if not key:
        return True
    first_line = text.strip().split("\n", 1)[0]
    pattern = r"\s+".join(re.escape(word) for word in key.split())
    return re.search(rf"(?<!\w){pattern}(?!\w)", first_line, flags=re.IGNORECASE) is not None


def _check(name: str) -> None:
    if name not in PARTS:
        raise UserError(f"unknown builtin dataset '{name}'; choose one of: {', '.join(PARTS)}")
