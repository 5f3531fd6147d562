"""The before/after report of the preference stages that follow DPO's (kto, orpo, simpo): the same
numbers (``hfllm.stages.dpo.measure`` on held-out pairs) in the same words."""

from __future__ import annotations

from hfllm.stages.dpo import measure  # noqa: F401  (re-exported: what the stages measure)


def report_lines(before: dict, after: dict) -> list[str]:
    """What changed on the held-out pairs: preference, log-prob margin, answer accuracy (when measured)."""
    lines = []
    if before:
        lines.append(f"\nheld-out pairs: policy prefers chosen {before['preference_accuracy']:.1%} -> "
                     f"{after['preference_accuracy']:.1%}, log-prob margin {before['logprob_margin']:.2f} -> "
                     f"{after['logprob_margin']:.2f}")
    if "answer_accuracy" in before:
        lines.append(f"answer accuracy: {before['answer_accuracy']:.1%} -> {after['answer_accuracy']:.1%}")
    return lines


def before_after(before: dict, after: dict) -> dict:
    """metrics.json's entries: the numbers after, and before under ``<name>_before`` (examples after only)."""
    return {**{f"{k}_before": v for k, v in before.items() if k != "answer_examples"}, **after}
