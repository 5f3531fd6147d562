"""The built-in data's world: what it knows (the facts) and how it puts them into words (the templates).

The world is a fixed knowledge base: capitals, animals (sound, legs, home), colours,
opposites, sums and differences of digits. The facts are split once, by a checksum and
not by the seed: about 80% are asked about in ``sft``, ``preference`` and ``prompts``, the
other 20% only in the ``*_eval`` parts (:func:`split_facts`). hfllm.data.builtin draws each
part from this world.
"""

from __future__ import annotations

import functools
import random
import zlib
from dataclasses import dataclass

ARITHMETIC = ("sum", "difference")  # the kinds of fact a rule can check exactly

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


# ------------------------------------------------------------------ facts and phrasing
@dataclass(frozen=True)
class Fact:
    kind: str
    subject: str  # "France", "cow", "the sky", "hot", "3 + 4"
    answer: str  # the key a correct reply must contain: "Paris", "moo", "blue", "cold", "7"
    held_out: bool = False  # True: asked about only in the *_eval parts


@functools.lru_cache(maxsize=None)
def facts() -> tuple[Fact, ...]:
    """Every fact of the world, by kind, each marked taught or held out."""
    raw = [("capital", c, k) for c, k in CAPITALS.items()]
    for animal, values in ANIMALS.items():
        raw += [(kind, animal, v.split()[-1]) for kind, v in zip(("sound", "legs", "home"), values) if v]
    raw += [("colour", t, c) for t, c in COLOURS.items()] + [("opposite", w, o) for w, o in OPPOSITES.items()]
    raw += [("sum", f"{x} + {y}", str(x + y)) for x in range(10) for y in range(10)]
    raw += [("difference", f"{x} - {y}", str(x - y)) for x in range(10) for y in range(x + 1)]
    # Every fifth fact of each kind, in an order fixed by a checksum (not the seed), is held
    # out: all parts and all seeds agree on which facts are for evaluation only.
    out = []
    for kind in TEMPLATES:
        group = sorted((r for r in raw if r[0] == kind), key=lambda r: zlib.crc32(f"{r[0]}|{r[1]}".encode()))
        out += [Fact(*r, held_out=i % 5 == 2) for i, r in enumerate(group)]
    return tuple(out)


@functools.lru_cache(maxsize=None)
def of_kind(kind: str) -> tuple[Fact, ...]:
    return tuple(f for f in facts() if f.kind == kind)


def split_facts() -> tuple[tuple[Fact, ...], tuple[Fact, ...]]:
    """(taught facts, held-out facts): the one fixed split every part and every seed shares."""
    return tuple(f for f in facts() if not f.held_out), tuple(f for f in facts() if f.held_out)


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def count(n, noun: str) -> str:
    return f"{n} {noun}" + ("" if int(n) == 1 else "s")


def say(template: str, fact: Fact, value: str | None = None, noun: str = "apple") -> str:
    """Fill a template for ``fact``; ``value`` replaces the answer (to state a wrong fact)."""
    a = fact.answer if value is None else value
    an = ("an " if fact.subject[0] in "aeiou" else "a ") + fact.subject
    p = PLURALS.get(fact.subject, fact.subject + "s")
    kw = dict(s=fact.subject, S=cap(fact.subject), a=a, Ca=cap(a), h=HOMES.get(a, ""),
              an=an, A=cap(an), p=p, P=cap(p))
    if fact.kind in ("sum", "difference"):
        x, y = fact.subject.split()[::2]
        kw.update(x=x, y=y, X=count(x, noun), Y=count(y, noun), N=count(a, noun))
    return template.format(**kw)


def reply(fact: Fact, value: str | None = None) -> str:
    return say(TEMPLATES[fact.kind][0], fact, value)


def questions(fact: Fact) -> list[str]:
    return [say(q, fact) for q in TEMPLATES[fact.kind][1]]


def wrong_answer(fact: Fact, rng: random.Random) -> str:
    """A plausible wrong answer of the same kind (another capital, a near-miss sum...)."""
    if fact.kind in ("sum", "difference"):
        n = int(fact.answer)
        return str(rng.choice([v for v in range(max(0, n - 3), n + 4) if v != n]))
    return rng.choice(sorted({f.answer for f in of_kind(fact.kind)} - {fact.answer}))
