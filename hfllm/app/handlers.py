"""The playground's logic, without Gradio: what each tab of ``hfllm chat`` computes.

Everything here takes loaded models and plain values and returns plain values
(strings, lists of messages, pandas DataFrames), so it is tested without a
browser. Decoding is hfllm.generate's (transformers' own); this module adds the
limits a shared demo needs, context fitting for multi-turn chat, reward scoring
and the preference file. Which models are served, and what they were trained on,
is models.py's.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from hfllm.checks import COUNT, POSITIVE, POSITIVE_REAL, SEED, SHARE, Range, number
from hfllm.errors import UserError
from hfllm.generate import GenerateArguments, encode, format_prompt, generate, next_token_distribution
from hfllm.generate import sampling_kwargs

MAX_PROMPT_CHARS = 8000   # a message longer than this is refused before tokenizing
MAX_NEW_TOKENS = 512      # whatever a client asks for
MAX_SECONDS = 60.0        # generation time per request (transformers' max_time)
MAX_SAMPLES = 16          # best-of-N and "same prompt N times"
MAX_MESSAGES = 400        # messages of a conversation a client sends back (200 turns)
LOCK_WAIT = 4 * MAX_SECONDS  # the longest a sampling request waits for its turn: then "busy", never a hang

# torch's random generator is global: two sampling requests at once would draw from each
# other's stream and a seed would no longer reproduce. Sampling runs one at a time; greedy
# decoding uses no randomness and runs freely. What is held under the lock is bounded: the
# seed is checked at the door, generation stops at MAX_SECONDS, and waiting for the lock too.
SAMPLING_LOCK = threading.Lock()


@contextmanager
def sampling_guard(gen_kwargs: dict):
    if not gen_kwargs.get("do_sample"):
        yield
        return
    if not SAMPLING_LOCK.acquire(timeout=LOCK_WAIT):
        raise UserError("the playground is busy sampling for others; try again in a minute (or use greedy)")
    try:
        yield
    finally:
        SAMPLING_LOCK.release()


@dataclass
class Sampling:
    """The sampling controls of a tab, as the UI gives them (0 or 1 means 'off' for filters)."""
    greedy: bool = False
    temperature: float = 0.8
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    max_new_tokens: int = 64
    seed: int | None = None

    def __post_init__(self):
        """Every control as a client may send it (any JSON): checked at the door, one line per bad value."""
        self.greedy = bool(self.greedy)
        if not self.greedy:
            self.temperature = number("temperature", self.temperature, POSITIVE_REAL)
            self.top_k = number("top_k", self.top_k, COUNT, default=0)
            self.top_p = number("top_p", self.top_p, Range(0, 1, low_open=True), default=1.0)
            self.min_p = number("min_p", self.min_p, SHARE, default=0.0)
        self.repetition_penalty = number("repetition_penalty", self.repetition_penalty, POSITIVE_REAL, default=1.0)
        self.max_new_tokens = min(number("max_new_tokens", self.max_new_tokens, POSITIVE), MAX_NEW_TOKENS)
        self.seed = None if self.seed is None or self.seed == "" else number("seed", self.seed, SEED)

    def generate_args(self) -> GenerateArguments:
        sample = not self.greedy
        return GenerateArguments(
            max_new_tokens=max(1, min(int(self.max_new_tokens), MAX_NEW_TOKENS)), do_sample=sample,
            temperature=float(self.temperature) if sample else None,
            top_k=int(self.top_k) if sample and self.top_k else None,
            top_p=float(self.top_p) if sample and self.top_p is not None and self.top_p < 1 else None,
            min_p=float(self.min_p) if sample and self.min_p else None,
            repetition_penalty=float(self.repetition_penalty or 1.0))

    def kwargs(self, max_new_tokens: int | None = None, n: int = 1) -> dict:
        """generate()'s kwargs, validated by hfllm.generate, with the playground's limits."""
        args = self.generate_args()
        if max_new_tokens is not None:
            args.max_new_tokens = max(1, min(max_new_tokens, MAX_NEW_TOKENS))
        args.num_return_sequences = n
        return {**sampling_kwargs(args), "max_time": MAX_SECONDS}

    @property
    def seed_value(self) -> int | None:
        return self.seed


def check_length(text: str, what: str = "message") -> str:
    if len(text) > MAX_PROMPT_CHARS:
        raise UserError(f"the {what} is too long: {len(text):,} characters; the playground takes at most "
                        f"{MAX_PROMPT_CHARS:,} (shorten it)")
    return text


def content_text(content) -> str:
    """A chat message's text: Gradio 6 gives content as a list of {"type": "text", "text": ...} parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return content.get("text") or ""
    if isinstance(content, (list, tuple)):
        return "".join(content_text(part) for part in content)
    return "" if content is None else str(content)


def history_to_messages(history) -> list[dict]:
    """The chatbot's history as plain {"role", "content"} messages (user/assistant turns only). The client sends
    it back with every message, so it is capped: the newest MAX_MESSAGES, each under the message cap (what the
    app itself puts there); fit_chat then keeps what the model's context holds."""
    if history is not None and not isinstance(history, (list, tuple)):
        raise UserError("the conversation history must be a list of messages")
    out = []
    for message in list(history or [])[-MAX_MESSAGES:]:
        role = message.get("role") if isinstance(message, dict) else getattr(message, "role", None)
        content = message.get("content") if isinstance(message, dict) else getattr(message, "content", "")
        if role in ("user", "assistant"):
            out.append({"role": role, "content": check_length(content_text(content), "earlier message")})
    return out


def context_length(model) -> int | None:
    config = model.config
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


def count_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def fit_chat(model, tokenizer, messages: list[dict], system: str | None, max_new_tokens: int):
    """The prompt text for a conversation, dropping its oldest turns if the context needs room.

    Returns (text, max_new_tokens that fit, notes for the user).
    """
    context, notes, dropped = context_length(model), [], 0
    max_new_tokens = min(max_new_tokens, MAX_NEW_TOKENS)
    if context:  # first the newest messages whose own tokens fit: each counted once, so a long history costs
        keep, total = len(messages), 0  # linear time, not a template render per message dropped
        while keep > 0:
            size = count_tokens(tokenizer, messages[keep - 1]["content"])
            if total + size > context and keep < len(messages):
                break
            total, keep = total + size, keep - 1
        while keep < len(messages) - 1 and messages[keep]["role"] != "user":  # a conversation opens with the user
            keep += 1
        messages, dropped = messages[keep:], keep
    text = format_prompt(tokenizer, messages, True, system or None)
    if not context:
        return text, max_new_tokens, notes
    length = count_tokens(tokenizer, text)
    while length + max_new_tokens > context and len(messages) > 1:
        cut = 2 if len(messages) > 2 and messages[1]["role"] == "assistant" else 1
        messages, dropped = messages[cut:], dropped + cut
        text = format_prompt(tokenizer, messages, True, system or None)
        length = count_tokens(tokenizer, text)
    if dropped:
        notes.append(f"dropped the {dropped} oldest message(s) to fit the model's {context}-token context")
    if length >= context:
        raise UserError(f"the prompt is too long: {length} tokens, and the model's context is {context} tokens "
                        "(shorten the message or the system prompt)")
    if length + max_new_tokens > context:
        max_new_tokens = context - length
        notes.append(f"the answer is limited to {max_new_tokens} new tokens by the model's {context}-token context")
    return text, max_new_tokens, notes


def sample_answers(model, tokenizer, text: str, sampling: Sampling, n: int, max_new_tokens: int,
                   seed: int | None = None) -> list[str]:
    """n answers to one prompt; greedy decoding is run n times (to show that it never varies)."""
    n = min(number("N", n, POSITIVE), MAX_SAMPLES)
    max_new_tokens = min(number("max_new_tokens", max_new_tokens, POSITIVE), MAX_NEW_TOKENS)
    seed = None if seed is None or seed == "" else number("seed", seed, SEED)
    if sampling.greedy:
        kwargs = sampling.kwargs(max_new_tokens)
        return [generate(model, tokenizer, text, kwargs)[0] for _ in range(n)]
    kwargs = sampling.kwargs(max_new_tokens, n=n)
    with sampling_guard(kwargs):
        return generate(model, tokenizer, text, kwargs, seed)


# --- Sampling lab ---------------------------------------------------------------------------

def _show(token: str) -> str:
    return token.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥") or "∅"


def distribution(model, tokenizer, text: str, temperature: float, top_k: int, top_p: float, min_p: float,
                 top_n: int = 20):
    """The top-n next tokens as a DataFrame: probability before and after the filters, kept or dropped."""
    import pandas as pd

    check_length(text, "prompt")
    temperature, top_k = number("temperature", temperature, POSITIVE_REAL), number("top_k", top_k, COUNT, default=0)
    top_p = number("top_p", top_p, Range(0, 1, low_open=True), default=1.0)
    min_p, top_n = number("min_p", min_p, SHARE, default=0.0), min(number("tokens shown", top_n, POSITIVE), 100)
    rows = next_token_distribution(model, tokenizer, text, temperature=temperature, top_k=top_k or None,
                                   top_p=top_p if top_p < 1 else None, min_p=min_p or None, top_n=top_n)
    width = len(str(len(rows)))
    return pd.DataFrame([{"token": f"{i + 1:0{width}d} {_show(tok)}", "id": tid, "before": round(p0, 5),
                          "after": round(p1, 5), "status": "kept" if kept else "dropped"}
                         for i, (tok, tid, p0, p1, kept) in enumerate(rows)])


def next_token_entropy(model, tokenizer, text: str) -> tuple[float, float]:
    """(entropy in nats, probability of the likeliest token) of the model's whole next-token distribution after
    ``text``, at temperature 1: how much there is for temperature, top-k and top-p to reshape."""
    inputs = encode(model, tokenizer, text, 1)
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1].float()
    probs = torch.softmax(logits, -1)
    return float(torch.distributions.Categorical(probs=probs).entropy()), float(probs.max())


@dataclass
class Opening:
    """The prompt the sampling lab opens on, and what was measured to choose it."""
    prompt: str
    entropy: float
    top: float
    tried: int

    def note(self, model_name: str) -> str:
        return (f"Of {self.tried} story openings from the built-in data, this is the one whose next token "
                f"`{model_name}` is least sure of (entropy {self.entropy:.2f} nats, the likeliest token "
                f"{self.top:.0%}): there is something for temperature, top-k and top-p to reshape.")


def spread_out_prompt(model, tokenizer, stories: int = 4, words: int = 20) -> Opening:
    """The lab's opening prompt: among the first ``words`` words of a few built-in stories, cut at every word, the
    prefix after which the model's next token is least certain. One forward pass per story: the logits at each
    position are the next-token distribution of the prefix ending there."""
    import random

    from hfllm.data.builtin import story

    context, candidates, first = context_length(model) or 1024, [], None
    for seed in range(stories):
        text = " ".join(story(random.Random(seed)).split()[:words])
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][:context]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids], device=model.device)).logits[0].float()
        entropies = torch.distributions.Categorical(logits=logits).entropy().tolist()
        prefixes = [tokenizer.decode(ids[:end]) for end in range(len(ids) + 1)]
        candidates += [(entropies[end - 1], prefixes[end]) for end in range(1, len(ids))  # where a word starts next
                       if prefixes[end + 1][len(prefixes[end]):].startswith(" ")]
        first = first or text
    prompt = max(candidates, default=(None, first))[1]
    return Opening(prompt, *next_token_entropy(model, tokenizer, prompt), len(candidates))


def step(model, tokenizer, text: str, temperature: float, top_k: int, top_p: float, min_p: float,
         seed: int | None, history: list[dict]):
    """Sample one token with the lab's settings; returns (new text, new history)."""
    check_length(text, "prompt")
    table = distribution(model, tokenizer, text, temperature, top_k, top_p, min_p, top_n=100)
    sampling = Sampling(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, max_new_tokens=1)
    kwargs = sampling.kwargs(1)
    with sampling_guard(kwargs):  # a seed per step: the walk is reproducible, the steps differ
        piece = generate(model, tokenizer, text, kwargs, None if seed is None or seed == "" else
                         (number("seed", seed, SEED) + len(history)) % 2**32)[0]
    match = table[table["token"].str.split(" ", n=1).str[1] == _show(piece)]
    row = match.iloc[0] if len(match) else None
    history = [*history, {"step": len(history) + 1, "token": _show(piece) if piece else "(end of text)",
                          "p_before": None if row is None else float(row["before"]),
                          "p_after": None if row is None else float(row["after"])}]
    return text + piece, history


def repeat(model, tokenizer, text: str, n: int, max_new_tokens: int, temperature: float, top_k: int,
           top_p: float, seed: int | None):
    """The same prompt n times under greedy / multinomial / top-k / top-p: (summary, samples) DataFrames."""
    import pandas as pd

    check_length(text, "prompt")
    temperature, top_k = number("temperature", temperature, POSITIVE_REAL), number("top_k", top_k, COUNT, default=0)
    top_p = number("top_p", top_p, Range(0, 1, low_open=True), default=1.0)
    modes = {"greedy": Sampling(greedy=True), f"multinomial (T={temperature})": Sampling(temperature=temperature),
             f"top-k (k={top_k or 10}, T={temperature})": Sampling(temperature=temperature, top_k=top_k or 10),
             f"top-p (p={top_p if top_p < 1 else 0.9}, T={temperature})":
                 Sampling(temperature=temperature, top_p=top_p if top_p < 1 else 0.9)}
    summary, samples = [], []
    for mode, sampling in modes.items():
        answers = sample_answers(model, tokenizer, text, sampling, n, max_new_tokens, seed)
        counts = Counter(answers)
        summary.append({"mode": mode, "distinct outputs": f"{len(counts)} / {len(answers)}",
                        "most common": counts.most_common(1)[0][0], "share": counts.most_common(1)[0][1] / len(answers)})
        samples += [{"mode": mode, "#": i + 1, "output": a} for i, a in enumerate(answers)]
    return pd.DataFrame(summary), pd.DataFrame(samples)


# --- Best-of-N -------------------------------------------------------------------------------

def best_of_n(model, tokenizer, reward, messages: list[dict], system: str | None, sampling: Sampling, n: int,
              expected: str = ""):
    """n seeded samples, scored by the reward model (a RewardModelScorer), best first; with a rule check when
    ``expected`` is set."""
    import pandas as pd

    from hfllm.data.builtin import answer_is_correct

    for m in messages:
        check_length(m["content"])
    text, max_new, notes = fit_chat(model, tokenizer, messages, system, sampling.max_new_tokens)
    answers = sample_answers(model, tokenizer, text, sampling, n, max_new, sampling.seed_value)
    prefix = ([{"role": "system", "content": system}] if system else []) + messages
    scores = reward([prefix] * len(answers), answers) if reward is not None else None
    rows = []
    for i, answer in enumerate(answers):
        row = {"sample": i + 1}
        if scores is not None:
            row["score"] = round(scores[i], 4)
        if expected and expected.strip():
            row["correct"] = answer_is_correct(answer, expected)
        row["answer"] = answer
        rows.append(row)
    table = pd.DataFrame(rows)
    if reward is not None:
        table = table.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
        table.insert(0, "rank", range(1, len(table) + 1))
    return table, notes


# --- Tokenizer -------------------------------------------------------------------------------

def token_spans(tokenizer, text: str, chat: bool = False):
    """(spans [(piece, id)], stats line) for a text, or for it as a user message in the chat template."""
    check_length(text, "text")
    if chat:
        text = format_prompt(tokenizer, text, True)
    if not text:
        return [], "0 tokens"
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
    except (NotImplementedError, ValueError, TypeError):  # slow tokenizers have no offsets
        enc, offsets = tokenizer(text, add_special_tokens=False), None
    ids, spans, end = enc["input_ids"], [], 0
    for i, token_id in enumerate(ids):
        piece = ""
        if offsets is not None:
            start, stop = offsets[i]
            piece, end = text[max(start, end):stop], max(end, stop)
        spans.append((_show(piece or tokenizer.decode([token_id])), str(token_id)))  # spaces shown as ␣
    words = len(text.split())
    ratio = f", {len(text) / len(ids):.2f} characters per token" if ids else ""
    return spans, f"**{len(ids)} tokens** · {len(text)} characters · {words} words (split on whitespace){ratio}"


# --- Compare: the preference file --------------------------------------------------------------

_FILE_LOCK = threading.Lock()


def preference_row(prompt: list[dict], chosen: str, rejected: str, **extra) -> dict:
    """One pair in the conversational preference format that ``hfllm reward`` and ``hfllm dpo`` read."""
    if not chosen.strip() or not rejected.strip():
        raise UserError("one of the answers is empty; generate both answers before voting")
    if chosen == rejected:
        raise UserError("both answers are the same: there is nothing to prefer (sample again with another seed)")
    return {"prompt": prompt, "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}], **extra}


def append_jsonl(path: str | Path, row: dict) -> int:
    """Append one JSON line (never rewriting what is there) and flush it to disk; returns the line count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(row, ensure_ascii=False) + "\n"
    with _FILE_LOCK:
        with open(path, "a+b") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:  # a file edited by hand may lack its final newline
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    line = "\n" + line
            f.write(line.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        with open(path, "rb") as f:
            return sum(1 for raw in f if raw.strip())
