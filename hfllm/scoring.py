"""Scores of a model on held-out rows: answer correctness and preference accuracy.

Answer accuracy: does the model's greedy answer contain the expected key?

Rows are conversational prompts (``messages`` ending with the assistant's answer,
or ``prompt`` as a list of messages) with an ``answer`` column, as the built-in
``sft_eval``, ``preference_eval`` and ``prompts_eval`` parts have. Used by every
post-training stage to report before/after numbers in metrics.json, and by RL as a
rule-based check logged beside the reward.
"""

from __future__ import annotations

import torch

from hfllm.data.builtin import answer_is_correct  # the one rule check, shared with RL rewards
from hfllm.generate import generate_answers


def prompt_messages(row: dict) -> list[dict]:
    """The conversation up to (not including) the answer."""
    if "messages" in row:
        return row["messages"][:-1]
    prompt = row["prompt"]
    return prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]


def answer_accuracy(model, tokenizer, rows, limit: int = 200, max_new_tokens: int = 32, checks=()) -> dict:
    """Share of rows (with a non-empty answer key) whose greedy answer is correct, plus examples, and the
    rule checks' means on the same answers (``rule_checks``)."""
    rows = [r for r in rows if r.get("answer")][:limit]
    if not rows:
        return {}
    prompts = [prompt_messages(r) for r in rows]
    answers = generate_answers(model, tokenizer, prompts, max_new_tokens)
    correct = [answer_is_correct(a, r["answer"]) for a, r in zip(answers, rows)]
    examples = [{"prompt": prompt_messages(r)[-1]["content"], "answer": a, "expected": r["answer"]}
                for r, a in list(zip(rows, answers))[:3]]
    return {"answer_accuracy": round(sum(correct) / len(correct), 4), "answer_count": len(correct),
            "answer_examples": examples, **rule_checks(checks, prompts, answers, rows)}


def rule_checks(checks, prompts, answers, rows, suffix: str = "") -> dict:
    """``check_<name><suffix>``: each rule reward's mean over the answers (for a 0/1 rule, the share that
    passes). Reported beside a learned reward to see whether the preference it was taught is the one learned."""
    columns = {k: [r.get(k) for r in rows] for k in rows[0] if k not in ("prompt", "messages")} if rows else {}
    return {f"check_{func.__name__}{suffix}": round(sum(scores) / len(scores), 4)
            for func in checks if (scores := func(prompts=prompts, completions=answers, **columns))}


def _as_messages(value, role: str) -> list[dict]:
    return value if isinstance(value, list) else [{"role": role, "content": value}]


@torch.no_grad()
def sequence_logprob(model, tokenizer, prompt: list[dict], answer: list[dict]) -> float:
    """Sum of log-probabilities of the answer's tokens given the prompt, under the chat template."""
    prompt_text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full_text = tokenizer.apply_chat_template(prompt + answer, tokenize=False)
    prompt_len = len(tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
    ids = tokenizer(full_text, return_tensors="pt", add_special_tokens=False)["input_ids"].to(model.device)
    logits = model(input_ids=ids).logits[0, :-1].float()
    logps = torch.log_softmax(logits, -1).gather(1, ids[0, 1:, None])[:, 0]
    return float(logps[prompt_len - 1:].sum())


def preference_accuracy(model, tokenizer, rows, limit: int = 200) -> dict:
    """How often the model finds the chosen answer more likely than the rejected one, and by how much.

    Measured on the policy alone (no reference model), so it is comparable before and after DPO.
    """
    rows = list(rows)[:limit]
    if not rows:
        return {}
    was_training = model.training
    model.eval()
    margins = []
    for row in rows:
        if not row.get("prompt") and isinstance(row["chosen"], list):  # whole conversations: split as DPOTrainer does
            from trl.data_utils import extract_prompt

            row = {**row, **extract_prompt(row)}
        prompt = _as_messages(row.get("prompt") or [], "user")
        margins.append(sequence_logprob(model, tokenizer, prompt, _as_messages(row["chosen"], "assistant"))
                       - sequence_logprob(model, tokenizer, prompt, _as_messages(row["rejected"], "assistant")))
    model.train(was_training)
    return {"preference_accuracy": round(sum(m > 0 for m in margins) / len(margins), 4),
            "logprob_margin": round(sum(margins) / len(margins), 4), "preference_count": len(margins)}
