"""hfllm's built-in default data: a small synthetic world, written by this module.

Nothing is downloaded: every row comes from the word lists and templates below, drawn
with ``random.Random(seed)``, so one seed always gives the same data. Users name the
parts ``builtin:pretrain``, ``builtin:sft``, ``builtin:sft_eval``, ``builtin:preference``,
``builtin:preference_eval``, ``builtin:prompts`` and ``builtin:prompts_eval`` (arithmetic, for
rule rewards), ``builtin:questions`` and ``builtin:questions_eval`` (facts, for a reward model) wherever a
dataset is expected; hfllm.data resolves the prefix with :func:`builtin_path`, which
writes the part once as JSON lines under ``$HFLLM_CACHE`` (or ``~/.cache/hfllm``).

The world is a fixed knowledge base: capitals, animals (sound, legs, home), colours,
opposites, sums and differences of digits. ``pretrain`` (stories, fact paragraphs,
arithmetic; about 1.5 MB) states every fact dozens of times. The facts are split once,
by a checksum and not by the seed: about 80% are asked about in ``sft``, ``preference``
and ``prompts``, the other 20% only in the ``*_eval`` parts. Eval therefore measures
whether post-training taught the question -> answer habit on top of knowledge learnt in
pretraining, not whether it memorised the answers it was shown.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from hfllm.errors import UserError

VERSION = "builtin-v2"  # bump whenever the generated data changes, so stale caches are not reused
PARTS = ("pretrain", "sft", "sft_eval", "preference", "preference_eval", "prompts", "prompts_eval", "questions",
         "questions_eval", "tone", "tone_eval")
ARITHMETIC = ("sum", "difference")
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
PRETRAIN_BYTES = 1_500_000  # about 3-4 minutes of a ~5M-parameter model on 2 CPU cores
FACT_ROUNDS = 40  # each fact is stated this many times in fact paragraphs (stories add more)

# ------------------------------------------------------------------ the knowledge base
CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon",
    "England": "London", "Ireland": "Dublin", "Norway": "Oslo", "Sweden": "Stockholm", "Finland": "Helsinki",
    "Denmark": "Copenhagen", "Poland": "Warsaw", "Greece": "Athens", "Austria": "Vienna", "Hungary": "Budapest",
    "Russia": "Moscow", "Egypt": "Cairo", "Kenya": "Nairobi", "Morocco": "Rabat", "Ghana": "Accra",
    "Japan": "Tokyo", "China": "Beijing", "South Korea": "Seoul", "Thailand": "Bangkok", "Vietnam": "Hanoi",
    "Iran": "Tehran", "Canada": "Ottawa", "Brazil": "Brasilia", "Argentina": "Buenos Aires", "Peru": "Lima",
    "Chile": "Santiago", "Cuba": "Havana", "Australia": "Canberra", "New Zealand": "Wellington",
    "Belgium": "Brussels", "Switzerland": "Bern", "India": "New Delhi", "Nigeria": "Abuja",
    "Iceland": "Reykjavik", "Scotland": "Edinburgh",
}
# animal: (sound, legs, home); None where there is no simple answer (what does a fish say?).
# The key of a home is its last word: "A fish lives in the water." is right when it says "water".
ANIMALS = {
    "cow": ("moo", "four", "on a farm"), "dog": ("woof", "four", "in a house"),
    "cat": ("meow", "four", "in a house"), "duck": ("quack", "two", "in a pond"),
    "sheep": ("baa", "four", "in a field"), "pig": ("oink", "four", "on a farm"),
    "horse": ("neigh", "four", "in a stable"), "hen": ("cluck", "two", "in a coop"),
    "owl": ("hoot", "two", "in a tree"), "lion": ("roar", "four", "on the savanna"),
    "bee": ("buzz", "six", "in a hive"), "frog": ("ribbit", "four", "in a pond"),
    "mouse": ("squeak", "four", "in a hole"), "wolf": ("howl", "four", "in the forest"),
    "bird": ("tweet", "two", "in a nest"), "snake": ("hiss", None, "in the grass"),
    "bear": ("growl", "four", "in a cave"), "goose": ("honk", "two", "on a lake"),
    "elephant": ("toot", "four", "in the jungle"), "dolphin": ("click", None, "in the sea"),
    "fish": (None, None, "in the water"), "spider": (None, "eight", "in a web"),
    "ant": (None, "six", "in an anthill"), "crab": (None, "ten", "on the beach"),
    "camel": (None, "four", "in the desert"), "penguin": (None, "two", "on the ice"),
    "rabbit": (None, "four", "in a burrow"),
}
HOMES = {home.split()[-1]: home for _, _, home in ANIMALS.values()}
PLURALS = {"sheep": "sheep", "mouse": "mice", "wolf": "wolves", "goose": "geese", "fish": "fish"}
COLOURS = {
    "the sky": "blue", "the sun": "yellow", "grass": "green", "a banana": "yellow", "snow": "white",
    "coal": "black", "a strawberry": "red", "a carrot": "orange", "a lemon": "yellow", "a leaf": "green",
    "milk": "white", "the sea": "blue", "a tomato": "red", "a cherry": "red", "chocolate": "brown",
    "a pumpkin": "orange", "a crow": "black", "a plum": "purple", "a grape": "purple", "a flamingo": "pink",
    "a lime": "green", "mud": "brown", "a cloud": "white", "a fire truck": "red", "a blueberry": "blue",
}
OPPOSITES = {
    "hot": "cold", "big": "small", "up": "down", "day": "night", "fast": "slow", "happy": "sad",
    "old": "young", "wet": "dry", "light": "dark", "open": "closed", "tall": "short", "full": "empty",
    "hard": "soft", "loud": "quiet", "early": "late", "clean": "dirty", "strong": "weak", "near": "far",
    "good": "bad", "push": "pull",
}

# kind: (polite reply, question phrasings, statement phrasings). statements[0] is the plain
# fact and is used in the first round, so every fact appears verbatim in pretrain at least once.
TEMPLATES = {
    "capital": ("The capital of {s} is {a}.",
                ["What is the capital of {s}?", "Which city is the capital of {s}?", "Name the capital of {s}."],
                ["The capital of {s} is {a}.", "{a} is the capital of {s}.", "The capital city of {s} is {a}.",
                 "{a} is a big city. It is the capital of {s}.", "What is the capital of {s}? It is {a}."]),
    "sound": ("{A} says {a}.", ["What does {an} say?", "What sound does {an} make?", "What noise does {an} make?"],
              ["{A} says {a}.", "The {s} goes {a}.", "{P} say {a}.", "Listen! {A} says {a}, {a}!",
               "What does {an} say? {A} says {a}."]),
    "legs": ("{A} has {a} legs.", ["How many legs does {an} have?", "How many legs has {an} got?"],
             ["{A} has {a} legs.", "{P} have {a} legs.", "Count the legs of {an}. There are {a}.",
              "How many legs does {an} have? {A} has {a} legs."]),
    "home": ("{A} lives {h}.", ["Where does {an} live?", "Where do {p} live?", "Where can you find {an}?"],
             ["{A} lives {h}.", "{P} live {h}.", "You can find {p} {h}.", "Where does {an} live? {A} lives {h}."]),
    "colour": ("{S} is {a}.", ["What colour is {s}?", "What is the colour of {s}?", "Which colour is {s}?"],
               ["{S} is {a}.", "The colour of {s} is {a}.", "Look at {s}. It is {a}.",
                "What colour is {s}? {S} is {a}."]),
    "opposite": ("The opposite of {s} is {a}.", ["What is the opposite of {s}?", "What word is the opposite of {s}?"],
                 ["The opposite of {s} is {a}.", "{Ca} is the opposite of {s}.", "{S} and {a} are opposites.",
                  "What is the opposite of {s}? The opposite of {s} is {a}."]),
    # Arithmetic replies do not repeat the operands, so a rule check for "7" cannot be
    # passed by echoing "3 + 4" (as "3 + 0" would be for the answer "3").
    "sum": ("The answer is {a}.",
            ["What is {s}?", "How much is {s}?", "What do you get when you add {x} and {y}?", "Can you work out {s}?"],
            ["{s} = {a}.", "What is {s}? The answer is {a}.", "What is {s}? {s} = {a}.", "{x} plus {y} is {a}.",
             "{X} and {Y} make {N}."]),
    "difference": ("The answer is {a}.",
                   ["What is {s}?", "How much is {s}?", "What do you get when you take {y} from {x}?",
                    "Can you work out {s}?"],
                   ["{s} = {a}.", "What is {s}? The answer is {a}.", "What is {s}? {s} = {a}.", "{x} minus {y} is {a}.",
                    "If you have {X} and give away {y}, you have {a} left."]),
}
INTROS = {"capital": ["Every country has a capital city.", "Here are some countries and their capitals.",
                      "Let us learn about the world."],
          "animal": ["Let us learn about animals.", "Animals are our friends.", "Here are some animals."],
          "colour": ["Everything has a colour.", "Let us learn about colours.", "Look around you."],
          "opposite": ["Some words are opposites.", "Let us learn about opposites."],
          "sum": ["Let us practise adding.", "Here are some sums.", "Adding is fun."],
          "difference": ["Let us practise taking away.", "Here are some differences.", "Taking away is easy."]}
NOUNS = ["apple", "ball", "cake", "star", "book", "cookie", "flower", "shell"]
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


# ------------------------------------------------------------------ facts and phrasing
@dataclass(frozen=True)
class Fact:
    kind: str
    subject: str  # "France", "cow", "the sky", "hot", "3 + 4"
    answer: str  # the key a correct reply must contain: "Paris", "moo", "blue", "cold", "7"
    held_out: bool = False  # True: asked about only in the *_eval parts


@functools.lru_cache(maxsize=None)
def _facts() -> tuple[Fact, ...]:
    raw = [("capital", c, k) for c, k in CAPITALS.items()]
    for animal, values in ANIMALS.items():
        raw += [(kind, animal, v.split()[-1]) for kind, v in zip(("sound", "legs", "home"), values) if v]
    raw += [("colour", t, c) for t, c in COLOURS.items()] + [("opposite", w, o) for w, o in OPPOSITES.items()]
    raw += [("sum", f"{x} + {y}", str(x + y)) for x in range(10) for y in range(10)]
    raw += [("difference", f"{x} - {y}", str(x - y)) for x in range(10) for y in range(x + 1)]
    # Every fifth fact of each kind, in an order fixed by a checksum (not the seed), is held
    # out: all parts and all seeds agree on which facts are for evaluation only.
    facts = []
    for kind in TEMPLATES:
        group = sorted((r for r in raw if r[0] == kind), key=lambda r: zlib.crc32(f"{r[0]}|{r[1]}".encode()))
        facts += [Fact(*r, held_out=i % 5 == 2) for i, r in enumerate(group)]
    return tuple(facts)


@functools.lru_cache(maxsize=None)
def _of_kind(kind: str) -> tuple[Fact, ...]:
    return tuple(f for f in _facts() if f.kind == kind)


def split_facts() -> tuple[tuple[Fact, ...], tuple[Fact, ...]]:
    """(taught facts, held-out facts): the one fixed split every part and every seed shares."""
    return tuple(f for f in _facts() if not f.held_out), tuple(f for f in _facts() if f.held_out)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _count(n, noun: str) -> str:
    return f"{n} {noun}" + ("" if int(n) == 1 else "s")


def _say(template: str, fact: Fact, value: str | None = None, noun: str = "apple") -> str:
    """Fill a template for ``fact``; ``value`` replaces the answer (to state a wrong fact)."""
    a = fact.answer if value is None else value
    an = ("an " if fact.subject[0] in "aeiou" else "a ") + fact.subject
    p = PLURALS.get(fact.subject, fact.subject + "s")
    kw = dict(s=fact.subject, S=_cap(fact.subject), a=a, Ca=_cap(a), h=HOMES.get(a, ""),
              an=an, A=_cap(an), p=p, P=_cap(p))
    if fact.kind in ("sum", "difference"):
        x, y = fact.subject.split()[::2]
        kw.update(x=x, y=y, X=_count(x, noun), Y=_count(y, noun), N=_count(a, noun))
    return template.format(**kw)


def _reply(fact: Fact, value: str | None = None) -> str:
    return _say(TEMPLATES[fact.kind][0], fact, value)


def _questions(fact: Fact) -> list[str]:
    return [_say(q, fact) for q in TEMPLATES[fact.kind][1]]


def _wrong(fact: Fact, rng: random.Random) -> str:
    """A plausible wrong answer of the same kind (another capital, a near-miss sum...)."""
    if fact.kind in ("sum", "difference"):
        n = int(fact.answer)
        return str(rng.choice([v for v in range(max(0, n - 3), n + 4) if v != n]))
    return rng.choice(sorted({f.answer for f in _of_kind(fact.kind)} - {fact.answer}))


# ------------------------------------------------------------------ pretraining text
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
    animal, country = rng.choice(_of_kind("sound")), rng.choice(_of_kind("capital"))
    colour, opposite = rng.choice(_of_kind("colour")), rng.choice(_of_kind("opposite"))
    legs = next((f for f in _of_kind("legs") if f.subject == animal.subject), None)
    x, y, food = rng.randint(1, 9), rng.randint(1, 9), rng.choice(FOODS)
    out = [rng.choice([
        f"Once upon a time, there was a {adj} {kid} named {name}.",
        f"Once upon a time, in a small village, lived a {adj} {kid} called {name}.",
        f"Once upon a time, {name} was a {adj} {kid} who loved to play outside.",
        f"Once upon a time, there was a {kid} named {name}. {_cap(he)} was very {adj}.",
    ]), rng.choice([
        f"{_cap(he)} had a {toy} that {he} loved very much.",
        f"Every day, {he} played with {his} best friend {friend}.",
        f"{_cap(he)} lived in a little house near {place} with {his} mom and dad.",
        f"{_cap(his)} favourite colour was {rng.choice(TINTS)}, and {his} favourite food was {food}s.",
    ]), f"One day, {name} went to {place}" + rng.choice([f" with {friend}.", ".", " to play."])]
    events = [
        f"There {he} saw {_say('{an}', animal)}. \"{_cap(animal.answer)}, {animal.answer}!\" said the "
        f"{animal.subject}. {name} laughed, because {_say('{an} says {a}.', animal)}"
        + (f" {name} counted its legs. {_reply(legs)}" if legs else ""),
        f"\"What does {_say('{an}', animal)} say?\" asked {friend}. \"{_reply(animal)[:-1]},\" said {name}.",
        f"Oh no! {name} lost {his} {toy}. {_cap(he)} looked under the trees and behind the rocks, but it was not "
        f"there. {friend} came to help. Together they looked and looked, and at last they found it by a big stone.",
        f"{name} had {_count(x, food)}. {friend} gave {him} {y} more. Now {name} had {_count(x + y, food)}, "
        f"because {x} + {y} = {x + y}.",
        f"Later, {name} and {his} family went on a trip to {country.subject}. They visited {country.answer}, "
        f"the capital of {country.subject}. \"{_say('{a} is the capital of {s}', country)}!\" said {name}.",
        f"On the way, {name} saw {colour.subject}. {_reply(colour)} {name} liked the colour {colour.answer}.",
        f"{friend} asked, \"What is the opposite of {opposite.subject}?\" {name} thought for a moment and said, "
        f"\"{_reply(opposite)}\"",
        f"Suddenly, dark clouds came and it started to rain. {name} and {friend} ran under a big tree. "
        "They waited until the sun came out again.",
        f"Near the path, {he} found a little {animal.subject} that was stuck in a hole. {name} helped it out, "
        f"and the {animal.subject} was very happy.",
        f"They had a picnic. {name} brought {_count(x, food)} and {friend} brought a big bottle of water. "
        "They sat on the soft grass and ate everything.",
        f"{name} wanted to climb a tall tree, but {he} was a little scared. \"You can do it!\" said {friend}. "
        f"{name} climbed slowly, one branch at a time, and at last {he} reached the top.",
        "There they met an old man who told them a funny story. They laughed so much that their tummies hurt.",
    ]
    out += rng.sample(events, rng.randint(2, 3))
    out.append(rng.choice([
        f"In the end, {name} and {friend} went home together. It was a wonderful day.",
        f"In the end, {name} was very happy. {_cap(he)} learned that it is good to {rng.choice(MORALS)}.",
        f"In the end, they shared {_count(rng.randint(2, 9), food)} and everyone smiled.",
        f"In the end, {name} went to bed and dreamed about {place}. The end.",
    ]))
    return " ".join(out)


def _fact_docs(rng: random.Random, first: bool) -> list[str]:
    """One round of fact paragraphs: every fact stated once, grouped by topic, a few per document."""
    say = (lambda f: _say(TEMPLATES[f.kind][2][0], f)) if first else \
        (lambda f: _say(rng.choice(TEMPLATES[f.kind][2]), f, noun=rng.choice(NOUNS)))
    groups = {kind: [[f] for f in _of_kind(kind)] for kind in ("capital", "colour", "opposite", "sum", "difference")}
    # One animal's facts stay together, like a page of a picture book.
    groups["animal"] = [[f for k in ("sound", "legs", "home") for f in _of_kind(k) if f.subject == a] for a in ANIMALS]
    docs = []
    for kind, units in groups.items():
        rng.shuffle(units)
        size = 4 if kind == "animal" else (10 if kind in ("sum", "difference") else 6)
        sep = "\n" if kind in ("sum", "difference") else " "
        for i in range(0, len(units), size):
            lines = [rng.choice(INTROS[kind])]
            for unit in units[i:i + size]:
                lines += [f"This is {_say('{an}', unit[0])}."] if kind == "animal" else []
                lines += [say(f) for f in unit]
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
def _asks(held_out: bool, rng: random.Random, kinds=None) -> list[tuple[Fact, str]]:
    """(fact, question) pairs: 8 per taught fact (4 for prompts) in mixed phrasings; eval: each phrasing once."""
    pairs = []
    for f in _facts():
        if f.held_out != held_out or (kinds and f.kind not in kinds):
            continue
        qs = _questions(f)
        if held_out:
            pairs += [(f, q) for q in qs]
        else:
            start = rng.randrange(len(qs))
            pairs += [(f, rng.choice(PREFIXES) + qs[(start + i) % len(qs)]) for i in range(8 if not kinds else 4)]
    return pairs


def _sft(rng: random.Random, held_out: bool) -> list[dict]:
    turns = [(q, _reply(f), f.answer) for f, q in _asks(held_out, rng)]
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
        return _reply(fact, _wrong(fact, rng))
    if draw < 0.7:
        return rng.choice(RUDE)
    others = [f for f in _facts() if f.kind != fact.kind and f.held_out == fact.held_out]
    while answer_is_correct(reply := _reply(rng.choice(others)), fact.answer) and fact.answer:
        pass  # "A cow has four legs." must not pass as the answer to another question
    return reply


def _preference(rng: random.Random, held_out: bool) -> list[dict]:
    triples = [(q, _reply(f), _rejected(f, rng), f.answer) for f, q in _asks(held_out, rng)]
    triples += [] if held_out else [(q, a, rng.choice(RUDE), "") for q, a in SMALL_TALK for _ in range(2)]
    return [{"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": good}],
             "rejected": [{"role": "assistant", "content": bad}], "answer": key} for q, good, bad, key in triples]


def _tone(rng: random.Random, held_out: bool) -> list[dict]:
    """Pairs that differ in tone, not in facts: the right answer + the friendly closing beats the plain answer
    (70%) or a rude reply (30%). Any model can judge this, and every answer in them is true."""
    rows = []
    for f, q in _asks(held_out, rng):
        good = _reply(f) + CLOSING
        bad = _reply(f) if rng.random() < 0.7 else rng.choice(RUDE)
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
    """The .jsonl file of a part (seed 0), written once into ``<cache>/builtin-v1/`` and then reused."""
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
