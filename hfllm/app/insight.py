"""The playground's insight views, without Gradio: how sure the model is of its own answer (beside the held-out
truth), what sampling N answers buys (majority vote and best-of-N against N), and where attention looks.

Each takes a loaded model and plain values and returns plain values (DataFrames, lists), so it is tested without a
browser; insight_tabs.py lays them out. Generation is hfllm.generate's, the questions and their truth are the
built-in world's held-out ones (hfllm.data.builtin), the reward model is hfllm.rewards' scorer.
"""

from __future__ import annotations

import copy
import functools
import itertools
import re
from collections import Counter

import torch

from hfllm.app import handlers as h
from hfllm.checks import POSITIVE, UNIT, number
from hfllm.data.builtin import answer_is_correct, build_part
from hfllm.errors import UserError
from hfllm.generate import encode, format_prompt, generate_answers, generate_scored

HELD_OUT_SHOWN = 10      # held-out questions offered in the hallucination view's dropdown
SCALING_NS = (1, 2, 4, 8, 16)  # the N a test-time scaling curve may be drawn at (16: handlers.MAX_SAMPLES)
MAX_QUESTIONS = 40       # K: questions per scaling run, so a click stays a matter of seconds on a small model
LOW = "low confidence"   # the label of a marked token
QUESTION_SETS = {"arithmetic": ("prompts_eval",), "facts": ("questions_eval",),
                 "both": ("prompts_eval", "questions_eval")}


# --- the held-out truth -------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def held_out_truth() -> dict[str, tuple[str, str]]:
    """Each held-out SFT question -> (the reference reply, the key a correct answer must contain)."""
    truth = {}
    for row in build_part("sft_eval"):
        question = next(m["content"] for m in row["messages"] if m["role"] == "user")
        truth[question] = (row["messages"][-1]["content"], row["answer"])
    return truth


def held_out_examples() -> list[str]:
    return list(held_out_truth())[:HELD_OUT_SHOWN]


def scaling_questions(which: str, k: int) -> list[dict]:
    """k held-out questions with checkable answers ({"prompt": messages, "answer": key}), taken in turn from each
    part of the set, in the parts' fixed (seed 0) order."""
    if which not in QUESTION_SETS:
        raise UserError(f"unknown question set '{which}'; choose one of: {', '.join(QUESTION_SETS)}")
    k = min(number("questions", k, POSITIVE), MAX_QUESTIONS)
    parts = [build_part(name) for name in QUESTION_SETS[which]]
    mixed = [row for group in itertools.zip_longest(*parts) for row in group if row is not None]
    return mixed[:k]


# --- hallucination view: the model's own confidence in its answer ------------------------------------

def answer_confidence(model, tokenizer, prompt: str, as_chat: bool, sampling: h.Sampling):
    """The model answers ``prompt``; returns (answer text, a DataFrame with one row per answer token: its
    probability under the model and the model's own first choice at that step, a Markdown note with the held-out
    truth when the prompt is a held-out question)."""
    import pandas as pd

    prompt = h.check_length(prompt or "", "prompt")
    if not prompt.strip():
        raise UserError("type a prompt first (or pick a held-out question)")
    text = format_prompt(tokenizer, prompt.strip(), True) if as_chat else prompt
    kwargs = sampling.kwargs()
    with h.sampling_guard(kwargs):
        _, answer_ids, logits = generate_scored(model, tokenizer, text, kwargs, sampling.seed_value)
    probs = torch.softmax(logits, -1)
    top_p, top_id = probs.max(-1)
    rows = [{"#": i + 1, "token": h._show(tokenizer.decode([int(t)])), "id": int(t),
             "probability": float(probs[i, t]),
             "model's first choice": h._show(tokenizer.decode([int(top_id[i])])), "its probability": float(top_p[i])}
            for i, t in enumerate(answer_ids)]
    answer = tokenizer.decode(answer_ids, skip_special_tokens=True)
    return answer, pd.DataFrame(rows), truth_note(prompt.strip(), answer)


def truth_note(question: str, answer: str) -> str:
    truth = held_out_truth().get(question)
    if truth is None:
        return ("Not a held-out question of the built-in world, so there is no truth to check against: the "
                "colours alone say where the model was unsure.")
    reference, key = truth
    verdict = "**correct**" if answer_is_correct(answer, key) else "**wrong**"
    return (f"Held-out question (never trained on). Truth: *{reference}* (a correct answer says `{key}`). "
            f"The model's answer is {verdict}.")


def confidence_spans(table, threshold: float) -> list[tuple[str, str | None]]:
    """HighlightedText's value: each answer token, labelled when its probability is under ``threshold``."""
    threshold = number("threshold", threshold, UNIT)
    if table is None or len(table) == 0:
        return []
    return [(row["token"], LOW if row["probability"] < threshold else None)
            for row in (table.to_dict("records") if hasattr(table, "to_dict") else table)]


# --- test-time scaling: accuracy against N -------------------------------------------------------

def vote_key(answer: str) -> str:
    """What majority voting counts as 'the same answer': the last number of the first line when it has one (so
    '3 + 4 = 7' and 'The answer is 7.' agree), else the first line, lower-cased, without end punctuation."""
    line = answer.strip().split("\n", 1)[0]
    numbers = re.findall(r"-?\d+", line)
    return numbers[-1] if numbers else " ".join(line.lower().rstrip(".!?").split())


def majority(answers: list[str]) -> str:
    """The answer whose key most answers share; ties go to the one sampled first."""
    key = Counter(vote_key(a) for a in answers).most_common(1)[0][0]
    return next(a for a in answers if vote_key(a) == key)


def sample_many(model, tokenizer, questions: list[dict], sampling: h.Sampling, n: int) -> list[list[str]]:
    """samples[i][q]: the i-th answer to question q. Sample i is one batch of every question, seeded with seed + i,
    so the first sample alone is what one seeded batched run would answer. Greedy decodes once (it never varies)."""
    kwargs = sampling.kwargs()
    max_new = kwargs.pop("max_new_tokens")
    kwargs.pop("max_time", None)  # generate_answers' batches are bounded by K and max_new_tokens instead
    conversations = [q["prompt"] for q in questions]
    if sampling.greedy:
        return [generate_answers(model, tokenizer, conversations, max_new, **kwargs)] * n
    seed = 0 if sampling.seed_value is None else sampling.seed_value
    samples = []
    with h.sampling_guard(kwargs):
        for i in range(n):
            torch.manual_seed((seed + i) % 2**32)
            samples.append(generate_answers(model, tokenizer, conversations, max_new, **kwargs))
    return samples


def scaling_curve(model, tokenizer, reward, questions: list[dict], sampling: h.Sampling, max_n: int = 8):
    """Accuracy against N for majority vote, best-of-N by the reward model (when one is loaded) and pass@N (any
    of the N right: the ceiling both can reach). Returns (curve DataFrame: N, method, accuracy; per-question
    DataFrame at the largest N; notes)."""
    import pandas as pd

    max_n = number("N", max_n, POSITIVE)
    if max_n not in SCALING_NS:
        raise UserError(f"N must be one of {', '.join(map(str, SCALING_NS))}, got {max_n}")
    if not questions:
        raise UserError("no questions to answer: ask for at least one")
    ns = [n for n in SCALING_NS if n <= max_n]
    samples = sample_many(model, tokenizer, questions, sampling, max_n)
    per_q = [[samples[i][q] for i in range(max_n)] for q in range(len(questions))]  # per_q[q][i]
    scores = None
    if reward is not None:
        flat = reward([q["prompt"] for q, answers in zip(questions, per_q) for _ in answers],
                      [a for answers in per_q for a in answers])
        scores = [flat[q * max_n:(q + 1) * max_n] for q in range(len(questions))]
    notes = [] if reward is not None else ["No reward model loaded: best-of-N is not drawn (majority vote needs none)."]
    if sampling.greedy:
        notes.append("Greedy decoding gives the same answer every time: N cannot help. Turn sampling on.")

    def best(q, n):
        return max(range(n), key=lambda i: scores[q][i])  # the first of equal scores

    curve, rows = [], []
    for n in ns:
        right = {"majority vote": [answer_is_correct(majority(per_q[q][:n]), x["answer"])
                                   for q, x in enumerate(questions)],
                 "any of N right (pass@N)": [any(answer_is_correct(a, x["answer"]) for a in per_q[q][:n])
                                             for q, x in enumerate(questions)]}
        if scores is not None:
            right["best-of-N (reward model)"] = [answer_is_correct(per_q[q][best(q, n)], x["answer"])
                                                 for q, x in enumerate(questions)]
        curve += [{"N": n, "method": method, "accuracy": sum(ok) / len(ok)} for method, ok in right.items()]
    for q, x in enumerate(questions):
        voted = majority(per_q[q])
        row = {"question": x["prompt"][-1]["content"], "truth": x["answer"],
               "first sample": per_q[q][0], "right (first)": answer_is_correct(per_q[q][0], x["answer"]),
               f"majority of {max_n}": voted, "right (majority)": answer_is_correct(voted, x["answer"])}
        if scores is not None:
            pick = per_q[q][best(q, max_n)]
            row.update({f"best of {max_n}": pick, "right (best)": answer_is_correct(pick, x["answer"])})
        rows.append(row)
    return pd.DataFrame(curve), pd.DataFrame(rows), notes


# --- attention view ------------------------------------------------------------------------------

def _eager(model):
    """The model with eager attention (the only kind that returns its weights): the model itself when it already
    is, else a copy of its modules and config that shares every weight, so what other tabs run is never touched."""
    if model.config._attn_implementation == "eager":
        return model
    shared = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    clone = copy.deepcopy(model, shared)  # the memo maps each weight to itself: no tensor is copied
    try:
        clone.set_attn_implementation("eager")
    except (ValueError, ImportError, KeyError, AttributeError):
        pass
    if clone.config._attn_implementation != "eager":
        raise UserError(f"this model ({type(model).__name__}) cannot switch to eager attention, so it cannot show "
                        "its attention weights; the other tabs still work with it")
    return clone


def attention(model, tokenizer, text: str, layer: int, head: str | int = "mean"):
    """Attention weights of one layer (1-based) and head (1-based, or 'mean' over heads) on ``text``. Returns
    (tokens, weights [query, key] as a list of lists, the predicted next token, its probability)."""
    text = h.check_length(text or "", "text")
    if not text:
        raise UserError("type a text first")
    inputs = encode(model, tokenizer, text, 1)
    probe = _eager(model)
    with torch.no_grad():
        out = probe(**inputs, output_attentions=True)
    if not out.attentions or out.attentions[0] is None:
        raise UserError(f"this model ({type(model).__name__}) returns no attention weights, so there is nothing to "
                        "show; the other tabs still work with it")
    layers, heads = len(out.attentions), out.attentions[0].shape[1]
    layer = number("layer", layer, POSITIVE)
    if layer > layers:
        raise UserError(f"layer {layer} does not exist: this model has {layers} layer(s)")
    weights = out.attentions[layer - 1][0].float()  # [heads, query, key]
    if str(head).strip().lower() == "mean":
        chosen = weights.mean(0)
    else:
        index = number("head", head, POSITIVE)
        if index > heads:
            raise UserError(f"head {index} does not exist: this model has {heads} heads per layer (or pick 'mean')")
        chosen = weights[index - 1]
    tokens = [h._show(tokenizer.decode([int(t)])) for t in inputs["input_ids"][0]]
    probs = torch.softmax(out.logits[0, -1].float(), -1)
    top = int(probs.argmax())
    return tokens, chosen.tolist(), h._show(tokenizer.decode([top])), float(probs[top])


def model_shape(model) -> tuple[int, int]:
    """(layers, heads per layer) from the config, for the view's sliders."""
    config = model.config
    return (getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", 1),
            getattr(config, "num_attention_heads", None) or getattr(config, "n_head", 1))


def attention_tables(tokens: list[str], weights: list[list[float]]):
    """(the last position's row as a bar table: which earlier tokens it looks at; the full matrix as a table)."""
    import pandas as pd

    labels = [f"{i + 1:0{len(str(len(tokens)))}d} {t}" for i, t in enumerate(tokens)]
    bars = pd.DataFrame({"token": labels, "weight": [round(w, 5) for w in weights[-1]]})
    matrix = pd.DataFrame([[round(w, 3) for w in row] for row in weights], columns=labels)
    matrix.insert(0, "query", labels)
    return bars, matrix
