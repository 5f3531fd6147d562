"""The embedded default data: a small world a tiny model can learn on 2 CPU cores.

Generated deterministically (no download) and cached as JSON lines; refer to a
part as ``builtin:<part>`` wherever a dataset name goes::

    hfllm pretrain --dataset_name builtin:pretrain ...

The world: simple stories, and facts about countries' capitals, animals (sound,
legs, home), colours of things, opposites and one-digit sums. Every fact is stated
in the pretraining text, in several phrasings. The facts are then split once:
80 % are taught as questions and answers (``sft``, ``preference``, ``prompts``),
20 % appear only in the ``*_eval`` parts, so evaluation asks whether a stage
taught the question-answer behaviour on top of what pretraining taught.

Parts: pretrain (text), sft / sft_eval (messages + answer), preference /
preference_eval (prompt/chosen/rejected + answer), prompts / prompts_eval
(arithmetic prompt + answer, for rule rewards in RL).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from hfllm.errors import UserError

PARTS = ("pretrain", "sft", "sft_eval", "preference", "preference_eval", "prompts", "prompts_eval")
VERSION = "builtin-v1"
SYSTEM = "You are a helpful assistant."

CAPITALS = dict(France="Paris", Germany="Berlin", Italy="Rome", Spain="Madrid", Portugal="Lisbon",
                Greece="Athens", Egypt="Cairo", Japan="Tokyo", China="Beijing", India="Delhi",
                Russia="Moscow", Canada="Ottawa", Mexico="Mexico City", Brazil="Brasilia", Peru="Lima",
                Chile="Santiago", Kenya="Nairobi", Norway="Oslo", Sweden="Stockholm", Finland="Helsinki",
                Poland="Warsaw", Austria="Vienna", Ireland="Dublin", Cuba="Havana", Turkey="Ankara",
                Iran="Tehran", Iraq="Baghdad", Thailand="Bangkok", Vietnam="Hanoi", Argentina="Buenos Aires",
                Colombia="Bogota", Nigeria="Abuja", Ghana="Accra", Hungary="Budapest", Denmark="Copenhagen",
                Belgium="Brussels", Netherlands="Amsterdam", Australia="Canberra", Morocco="Rabat",
                Ethiopia="Addis Ababa")
# animal: (sound, legs, home)
ANIMALS = dict(cow=("moo", "four", "on a farm"), dog=("woof", "four", "in a house"), cat=("meow", "four", "in a house"),
               duck=("quack", "two", "on a pond"), sheep=("baa", "four", "on a farm"), pig=("oink", "four", "on a farm"),
               horse=("neigh", "four", "in a stable"), owl=("hoot", "two", "in a tree"), lion=("roar", "four", "in the grassland"),
               frog=("croak", "four", "near a pond"), bee=("buzz", "six", "in a hive"), snake=("hiss", "no", "in the grass"),
               mouse=("squeak", "four", "in a hole"), goat=("bleat", "four", "on a hill"), wolf=("howl", "four", "in the forest"),
               crow=("caw", "two", "in a tree"), donkey=("bray", "four", "on a farm"), chick=("cheep", "two", "on a farm"),
               bear=("growl", "four", "in a cave"), spider=("nothing", "eight", "in a web"), hen=("cluck", "two", "in a coop"),
               turkey=("gobble", "two", "on a farm"), seal=("bark", "no", "by the sea"), monkey=("chatter", "two", "in the jungle"),
               elephant=("trumpet", "four", "in the savanna"))
COLOURS = {"the sky": "blue", "grass": "green", "a banana": "yellow", "snow": "white", "coal": "black",
           "a tomato": "red", "an orange": "orange", "a lemon": "yellow", "the sea": "blue", "a leaf": "green",
           "milk": "white", "a strawberry": "red", "a crow": "black", "a carrot": "orange", "chocolate": "brown",
           "the sun": "yellow", "a plum": "purple", "an eggplant": "purple", "a frog": "green", "blood": "red",
           "a cloud": "white", "soil": "brown", "a pumpkin": "orange", "ink": "black", "a lime": "green"}
OPPOSITES = dict(hot="cold", big="small", up="down", fast="slow", happy="sad", day="night", old="new", open="closed",
                 light="dark", wet="dry", tall="short", loud="quiet", full="empty", hard="soft", early="late",
                 strong="weak", rich="poor", clean="dirty", near="far", heavy="light")
NUMBER_WORDS = "zero one two three four five six seven eight nine".split()
RUDE = ["I don't know and I don't care.", "Figure it out yourself.", "That is a boring question.",
        "Stop asking me things.", "Why would I tell you?", "Go away."]
SMALL_TALK = [("Hello!", "Hello! How can I help you today?"), ("Hi there.", "Hi! What would you like to know?"),
              ("Thank you!", "You are welcome!"), ("Good morning.", "Good morning! How can I help?"),
              ("Who are you?", "I am a small helpful assistant."), ("Goodbye.", "Goodbye! Have a nice day."),
              ("How are you?", "I am well, thank you. How can I help you?")]


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def facts() -> list[dict]:
    """Every fact: statements for pretraining, question phrasings, the answer sentence and its key."""
    out = []
    for c, x in CAPITALS.items():
        out.append(dict(id=f"capital:{c}", key=x, answer=f"The capital of {c} is {x}.",
                        wrong=lambda k, c=c: f"The capital of {c} is {k}.", pool=list(CAPITALS.values()),
                        statements=[f"The capital of {c} is {x}.", f"{x} is the capital of {c}.",
                                    f"{c} has a capital city called {x}."],
                        questions=[f"What is the capital of {c}?", f"Which city is the capital of {c}?",
                                   f"Tell me the capital of {c}."]))
    for a, (sound, legs, home) in ANIMALS.items():
        out.append(dict(id=f"sound:{a}", key=sound, answer=f"A {a} says {sound}.",
                        wrong=lambda k, a=a: f"A {a} says {k}.", pool=[v[0] for v in ANIMALS.values()],
                        statements=[f"A {a} says {sound}.", f"The {a} makes the sound {sound}."],
                        questions=[f"What does a {a} say?", f"What sound does a {a} make?"]))
        out.append(dict(id=f"legs:{a}", key=legs, answer=f"A {a} has {legs} legs.",
                        wrong=lambda k, a=a: f"A {a} has {k} legs.", pool=["two", "four", "six", "eight", "no"],
                        statements=[f"A {a} has {legs} legs.", f"The {a} walks on {legs} legs." if legs != "no"
                                    else f"The {a} has no legs at all."],
                        questions=[f"How many legs does a {a} have?", f"How many legs has a {a} got?"]))
        out.append(dict(id=f"home:{a}", key=home.split()[-1], answer=f"A {a} lives {home}.",
                        wrong=lambda k, a=a: f"A {a} lives {k}.", pool=[v[2] for v in ANIMALS.values()],
                        statements=[f"A {a} lives {home}.", f"You can find a {a} {home}."],
                        questions=[f"Where does a {a} live?", f"Where can you find a {a}?"]))
    for thing, colour in COLOURS.items():
        out.append(dict(id=f"colour:{thing}", key=colour, answer=f"{_cap(thing)} is {colour}.",
                        wrong=lambda k, t=thing: f"{_cap(t)} is {k}.", pool=sorted(set(COLOURS.values())),
                        statements=[f"{_cap(thing)} is {colour}.", f"The colour of {thing} is {colour}."],
                        questions=[f"What colour is {thing}?", f"What is the colour of {thing}?"]))
    for w, o in OPPOSITES.items():
        out.append(dict(id=f"opposite:{w}", key=o, answer=f"The opposite of {w} is {o}.",
                        wrong=lambda k, w=w: f"The opposite of {w} is {k}.", pool=list(OPPOSITES.values()),
                        statements=[f"The opposite of {w} is {o}.", f"{_cap(w)} is the opposite of {o}."],
                        questions=[f"What is the opposite of {w}?", f"Tell me the opposite of {w}."]))
    for a in range(10):
        for b in range(10):
            out.append(dict(id=f"sum:{a}+{b}", key=str(a + b), answer=f"{a} + {b} = {a + b}.",
                            wrong=lambda k, a=a, b=b: f"{a} + {b} = {k}.", pool=[str(n) for n in range(19)],
                            statements=[f"{a} + {b} = {a + b}.", f"{a} plus {b} is {a + b}.",
                                        f"If you add {a} and {b}, you get {a + b}."],
                            questions=[f"What is {a} + {b}?", f"What is {a} plus {b}?"], arithmetic=True))
    return out


def split_facts() -> tuple[list[dict], list[dict]]:
    """The one fixed split: 80 % taught, 20 % held out (independent of the generation seed)."""
    all_facts = facts()
    rng = random.Random(20261122)
    held = set(rng.sample(range(len(all_facts)), k=len(all_facts) // 5))
    return [f for i, f in enumerate(all_facts) if i not in held], [f for i, f in enumerate(all_facts) if i in held]


NAMES = ["Lily", "Tom", "Mia", "Ben", "Sara", "Max", "Anna", "Leo", "Emma", "Sam", "Zoe", "Jack", "Lucy", "Tim", "Ella"]
ADJECTIVES = ["little", "happy", "brave", "curious", "kind", "small", "shy", "clever", "sleepy", "friendly"]
PLACES = ["in a small village", "near a big forest", "by the sea", "on a green hill", "in a busy town",
          "next to a river", "on a quiet farm"]
ACTIVITIES = ["play with a ball", "look at the clouds", "sing songs", "run in the park", "read books",
              "draw pictures", "dig in the garden", "splash in puddles"]
OBJECTS = ["ball", "box", "hat", "kite", "key", "shell", "stone", "book", "cup", "flower"]
FEELINGS = ["happy", "surprised", "excited", "proud", "sad", "scared", "curious"]
QUOTES = ["What is this?", "Look at that!", "Can you help me?", "Let us go and see!", "I love it!",
          "Where did it come from?", "This is fun!"]
ENDINGS = ["played together until the sun went down", "became the best of friends", "went home with big smiles",
           "shared the {obj} with everyone", "laughed and ate some cake", "promised to meet again the next day"]


def story(rng: random.Random) -> str:
    name, friend = rng.sample(NAMES, 2)
    animal, animal2 = rng.sample(list(ANIMALS), 2)
    obj, colour = rng.choice(OBJECTS), rng.choice(sorted(set(COLOURS.values())))
    s = [rng.choice([f"Once upon a time, there was a {rng.choice(ADJECTIVES)} {animal} named {name}.",
                     f"There once was a {rng.choice(ADJECTIVES)} {animal} called {name}.",
                     f"{name} was a {rng.choice(ADJECTIVES)} {animal}."]),
         f"{name} lived {rng.choice(PLACES)}.",
         f"Every day, {name} liked to {rng.choice(ACTIVITIES)}.",
         rng.choice([f"One day, {name} found a {colour} {obj}.", f"One morning, {name} saw a {colour} {obj}.",
                     f"One day, {name} lost a {colour} {obj}."]),
         f"{name} felt {rng.choice(FEELINGS)}.",
         f"\"{rng.choice(QUOTES)}\" said {name}.",
         rng.choice([f"{name} ran to {friend}, who was a {rng.choice(ADJECTIVES)} {animal2}.",
                     f"Then {friend} the {animal2} came to help."]),
         rng.choice([f"\"{rng.choice(QUOTES)}\" said {friend}.", f"{friend} smiled at {name}."]),
         f"In the end, {name} and {friend} {rng.choice(ENDINGS).format(obj=obj)}."]
    if rng.random() < 0.5:  # now and then a fact inside a story, as real text mixes them
        fact = rng.choice(facts_cache())
        s.insert(3, rng.choice(fact["statements"]))
    return " ".join(s)


_FACTS: list[dict] = []


def facts_cache() -> list[dict]:
    if not _FACTS:
        _FACTS.extend(facts())
    return _FACTS


def fact_document(rng: random.Random, pool: list[dict]) -> str:
    lines = []
    for fact in rng.sample(pool, k=8):
        if rng.random() < 0.3:  # questions answered in plain text, as in a school book
            lines.append(f"{rng.choice(fact['questions'])} {fact['answer']}")
        else:
            lines.append(rng.choice(fact["statements"]))
    return " ".join(lines) if rng.random() < 0.5 else "\n".join(lines)


def build_pretrain(rng: random.Random) -> list[dict]:
    pool = facts_cache()
    docs = [story(rng) for _ in range(2600)] + [fact_document(rng, pool) for _ in range(2200)]
    rng.shuffle(docs)
    return [{"text": d} for d in docs]


def _wrong(fact: dict, rng: random.Random) -> str:
    """The same sentence with another key from the fact's pool (never the right one)."""
    return fact["wrong"](rng.choice([k for k in fact["pool"] if k.split()[-1] != fact["key"]]))


def build_sft(pool: list[dict], rng: random.Random, small_talk: bool) -> list[dict]:
    rows = []
    for fact in pool:
        for q in fact["questions"]:
            messages = [{"role": "user", "content": q}, {"role": "assistant", "content": fact["answer"]}]
            if rng.random() < 0.2:
                messages.insert(0, {"role": "system", "content": SYSTEM})
            rows.append({"messages": messages, "answer": fact["key"]})
    if small_talk:
        rows += [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}], "answer": ""}
                 for q, a in SMALL_TALK for _ in range(3)]
    rng.shuffle(rows)
    return rows


def build_preference(pool: list[dict], rng: random.Random) -> list[dict]:
    rows = []
    for fact in pool:
        for q in fact["questions"]:
            bad = _wrong(fact, rng) if rng.random() < 0.5 else rng.choice(RUDE)
            rows.append({"prompt": [{"role": "user", "content": q}],
                         "chosen": [{"role": "assistant", "content": fact["answer"]}],
                         "rejected": [{"role": "assistant", "content": bad}], "answer": fact["key"]})
    rng.shuffle(rows)
    return rows


def build_prompts(pool: list[dict], rng: random.Random) -> list[dict]:
    rows = [{"prompt": [{"role": "user", "content": q}], "answer": f["key"]}
            for f in pool if f.get("arithmetic") for q in f["questions"]]
    rng.shuffle(rows)
    return rows


def build_part(name: str, seed: int = 0) -> list[dict]:
    """The rows of one part; pure and deterministic for a given seed."""
    if name not in PARTS:
        raise UserError(f"unknown builtin dataset '{name}'; choose one of: {', '.join(PARTS)}")
    facts_cache()
    rng = random.Random(f"{name}:{seed}")
    train, held = split_facts()
    pool = held if name.endswith("_eval") else train
    if name == "pretrain":
        return build_pretrain(rng)
    if name.startswith("sft"):
        return build_sft(pool, rng, small_talk=name == "sft")
    if name.startswith("preference"):
        return build_preference(pool, rng)
    return build_prompts(pool, rng)


def builtin_path(name: str, cache_dir: str | Path | None = None) -> Path:
    """The JSON-lines file of a part, generated on first use (atomically) and reused after."""
    if name not in PARTS:
        raise UserError(f"unknown builtin dataset '{name}'; choose one of: {', '.join(PARTS)}")
    folder = Path(cache_dir or os.environ.get("HFLLM_CACHE") or Path.home() / ".cache" / "hfllm") / VERSION
    path = folder / f"{name}.jsonl"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        with tmp.open("w") as f:
            for row in build_part(name):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    return path
