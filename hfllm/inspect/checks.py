"""What hfllm inspect measures (and every training stage, in its summary before training).

Everything here reads rows as the stage's own code prepared them (TRL's ``_prepare_dataset`` and
collators), so the numbers are the trainer's.
"""

from __future__ import annotations


def percentiles(values: list[int]) -> str:
    if not values:
        return "none"
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return f"p50 {pick(0.5)}, p90 {pick(0.9)}, p99 {pick(0.99)}, max {ordered[-1]}"


def share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "n/a"


def segments(tokenizer, ids: list[int], kinds: list[str]) -> list[tuple[str, str]]:
    """Runs of tokens of one kind, each decoded as a whole (a lone token may be half a character)."""
    out: list[tuple[str, str]] = []
    start = 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or kinds[i] != kinds[start]:
            out.append((kinds[start], tokenizer.decode(ids[start:i])))
            start = i
    return out


def template_checks(tokenizer, training_template: str | None) -> str:
    """TRL's own probes of the chat template, in one line."""
    from trl.chat_template_utils import (has_generation_markers, is_chat_template_prefix_preserving,
                                         supports_tool_calling)

    markers = has_generation_markers(tokenizer.chat_template or "")
    try:
        prefix = is_chat_template_prefix_preserving(tokenizer) if supports_tool_calling(tokenizer) else None
    except Exception:  # noqa: BLE001  (a template that cannot render TRL's tool probe)
        prefix = None
    prefix_text = "n/a (no tool calls)" if prefix is None else "yes" if prefix else "no"
    return (f"generation markers: {'yes' if markers else 'no'}"
            f"{'' if markers or not training_template else ' (TRL training copy used)'}; "
            f"prefix-preserving with tool calls: {prefix_text}")


def pad_line(tokenizer, end_ids: list[int]) -> str:
    pad, eos = tokenizer.pad_token, tokenizer.eos_token
    same = tokenizer.pad_token_id in end_ids
    return (f"pad {pad!r} {'==' if same else '!='} end of turn {[tokenizer.convert_ids_to_tokens(i) for i in end_ids]}"
            f" (eos {eos!r})")


def trained_end_of_turn(collator, rows: list[dict], end_ids: list[int], key: str = "labels") -> tuple[int, int]:
    """Rows whose batch, as the stage's collator pads it, trains an end-of-turn token: (rows, of rows).

    Measured on a padded batch, so a collator that masks pads by id when pad == eos would show 0."""
    import torch

    if not rows:
        return 0, 0
    batch = collator(rows)
    labels, ids = batch[key], batch["input_ids"]
    trained = torch.zeros(labels.shape[0], dtype=torch.bool)
    for token in end_ids:
        trained |= ((labels == token) & (ids == token)).any(-1)
    return int(trained.sum()), len(rows)


def end_of_turn_rows(tokenizer, prepared) -> tuple[int, int]:
    """trained_end_of_turn on the first 64 prepared SFT rows, padded by TRL's own collator."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from hfllm.chat_template import end_of_turn_ids

    first = prepared.select(range(min(64, len(prepared))))
    rows = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in first]
    collator = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)
    return trained_end_of_turn(collator, rows, end_of_turn_ids(tokenizer))


def sft_prepare(tokenizer, dataset, args):
    """TRL's own SFT tokenization (SFTTrainer._prepare_dataset), without a model.

    The three attributes it reads are set as SFTTrainer.__init__ sets them; a test checks the rows
    are the trainer's, so a TRL change that breaks this fails there rather than misleading here."""
    from trl import SFTTrainer, get_training_chat_template
    from trl.chat_template_utils import has_generation_markers

    shell = SFTTrainer.__new__(SFTTrainer)
    shell._tokenizer = tokenizer
    patch = args.assistant_only_loss and not has_generation_markers(tokenizer.chat_template or "")
    shell.chat_template = get_training_chat_template(tokenizer) if patch else None
    sample = dataset[0]
    shell.completion_only_loss = args.completion_only_loss if args.completion_only_loss is not None else (
        "prompt" in sample and "completion" in sample)
    return SFTTrainer._prepare_dataset(shell, dataset, tokenizer, args, packing=False, formatting_func=None,
                                       dataset_name="inspect")
