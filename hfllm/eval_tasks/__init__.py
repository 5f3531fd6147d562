"""hfllm's own tasks for lm-evaluation-harness: the YAML files beside this module, over local data.

    hfllm eval --model_name_or_path runs/tiny/sft --tasks hfllm          # all four
    lm_eval --model hf --model_args pretrained=runs/tiny/sft --include_path hfllm/eval_tasks --tasks hfllm_facts

Each YAML names a loader here as its ``custom_dataset`` (the harness calls it with the task's
``dataset_kwargs`` and metadata) and, for the answer tasks, ``process_results`` below, so the harness
does the prompting, batching, generation, log-likelihoods and stderr, and hfllm only says what a
row is and when an answer is right:

- ``hfllm_facts``, ``hfllm_arithmetic``: held-out questions (``builtin:questions_eval``,
  ``builtin:prompts_eval``), greedy answers checked by hfllm's one rule
  (``hfllm.data.builtin.answer_is_correct``), as every stage's ``answer_accuracy`` is;
- ``hfllm_preference``: held-out pairs (``builtin:preference_eval``) as two-way multiple choice: the
  model is right when it gives the chosen answer the higher log-likelihood, as in
  ``hfllm.scoring.preference_accuracy``;
- ``hfllm_perplexity``: rolling log-likelihood of stories never trained on (the pretraining
  generator's stories under another seed).

A user's JSONL becomes one of these kinds by its columns (``describe``); ``hfllm eval --dataset_name``.
"""

from __future__ import annotations

from pathlib import Path

from hfllm.errors import UserError

TASKS_DIR = Path(__file__).parent
BUILTIN_TASKS = ("hfllm_facts", "hfllm_arithmetic", "hfllm_preference", "hfllm_perplexity")
KIND_TEMPLATES = {"answer": "hfllm_facts", "choice": "hfllm_preference", "text": "hfllm_perplexity"}
HELD_OUT_SEED = 1  # builtin:pretrain is drawn with seed 0; these stories come from the same generator, seed 1


def describe(columns) -> str:
    """Which kind of task a dataset makes: 'choice' (preference pairs), 'answer' (questions with an answer key)
    or 'text' (perplexity)."""
    cols = set(columns)
    if {"chosen", "rejected"} <= cols:
        if "prompt" not in cols:
            raise UserError("preference pairs make a multiple-choice task only with a 'prompt' column")
        return "choice"
    if "answer" in cols and ({"prompt"} <= cols or {"messages"} <= cols):
        return "answer"
    if "text" in cols:
        return "text"
    raise UserError(f"an eval dataset needs 'prompt' (or 'messages') + 'answer' columns (questions), "
                    f"'prompt' + 'chosen' + 'rejected' (pairs) or 'text' (perplexity); it has "
                    f"{', '.join(sorted(map(str, cols))) or 'none'}")


def _question(row: dict, where: str) -> tuple[str, str]:
    """(system prompt, question) of a row: the harness asks one user turn, after an optional system turn."""
    turns = row["messages"][:-1] if "messages" in row else row["prompt"]
    if isinstance(turns, str):
        return "", turns
    if not isinstance(turns, list) or not turns or any(not isinstance(t, dict) for t in turns):
        raise UserError(f"{where}: the prompt must be text or a list of {{role, content}} messages")
    system = [t["content"] for t in turns if t.get("role") == "system"]
    users = [t for t in turns if t.get("role") != "system"]
    if len(users) != 1 or users[0].get("role") != "user":
        raise UserError(f"{where}: the harness asks one user turn (after an optional system turn); "
                        f"this prompt has {len(users)} other turns")
    return "\n".join(system), users[0]["content"]


def _text(value) -> str:
    return value if isinstance(value, str) else "".join(m["content"] for m in value)


def rows_for(rows, kind: str, name: str, answer_suffix: str = "") -> list[dict]:
    """The harness's documents for ``kind`` from a dataset's rows. ``answer_suffix`` (what the chat template
    writes after an answer, e.g. "<|end|>\\n") is scored with each choice, as hfllm's preference accuracy does."""
    docs = []
    for i, row in enumerate(rows):
        where = f"{name}, row {i + 1}"
        if kind == "text":
            if isinstance(row.get("text"), str) and row["text"].strip():
                docs.append({"text": row["text"]})
            continue
        system, question = _question(row, where)
        if kind == "answer":
            docs.append({"system": system, "question": question, "answer": str(row["answer"])})
        else:
            choices = [_text(row["chosen"]) + answer_suffix, _text(row["rejected"]) + answer_suffix]
            docs.append({"system": system, "question": question, "choices": choices, "gold": 0})
    if not docs:
        raise UserError(f"dataset '{name}' has no rows to evaluate on")
    return docs


def load_docs(source: str, kind: str, answer_suffix: str = "", **_metadata):
    """``custom_dataset`` of every hfllm task: ``source`` through hfllm's one loader (``builtin:<part>``, a
    local file or folder, a saved dataset), as a ``test`` split of harness documents."""
    import datasets

    from hfllm.data.load import load_dataset

    ds = load_dataset(source)
    if kind != describe(ds.column_names):
        raise UserError(f"dataset '{source}' makes a '{describe(ds.column_names)}' task, not '{kind}'")
    docs = rows_for(ds, kind, source, answer_suffix)
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})


def held_out_stories(n: int = 200, **_metadata):
    """``custom_dataset`` of hfllm_perplexity: ``n`` stories from the pretraining generator under another seed
    (about 1 s to draw), so no text the built-in pretraining saw, in the same style."""
    import datasets

    from hfllm.data.builtin import build_part

    stories = [r["text"] for r in build_part("pretrain", seed=HELD_OUT_SEED) if r["text"].startswith("Once upon")]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list([{"text": t} for t in stories[:n]])})


def answer_results(doc: dict, results: list[str]) -> dict:
    """``process_results`` of the answer tasks: hfllm's rule (the key, as a word, in the first line)."""
    from hfllm.data.builtin import answer_is_correct

    return {"acc": float(answer_is_correct(results[0], doc["answer"]))}
