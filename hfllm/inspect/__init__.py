"""hfllm inspect: what a training stage will see, its data as its own code prepares it, with only the tokenizer loaded.

    hfllm inspect --model_name_or_path Qwen/Qwen2.5-0.5B-Instruct --dataset_name chats.jsonl --max_length 2048
    hfllm inspect --stage dpo --config configs/recipes/Qwen2.5-0.5B-Instruct/dpo_lora.yaml --html dpo.html
    hfllm inspect --stage grpo --model_name_or_path runs/tiny/sft --dataset_name builtin:prompts

Every training stage (sft, dpo, orpo, simpo, reward, kto, grpo, rloo, ppo) prints the same report, without
examples and on its first rows, before its model loads (``stage_summary``).
Takes the stage's own flags, config and defaults. Reports the format; rows kept and dropped, with the
reason; token lengths and the share cut at max_length; the share of tokens that carry loss; the template
checks (generation markers or TRL's training copy, prefix-preserving, end-of-turn trained, pad == eos);
and examples with the trained tokens highlighted (colour in a terminal, ``--html FILE`` for a page).
The rows come from the stage's own path (stage_data.py), the measures from checks.py.
"""

from __future__ import annotations

import html as html_lib
import sys
from dataclasses import dataclass, field

from hfllm.errors import UserError

# Every training stage's data (names in hfllm.stages.STAGES), read the way the stage it is like prepares it:
# ORPO and SimPO tokenize pairs as DPO does; RLOO and PPO sample answers to prompts as GRPO does.
INSPECTED_AS = {"sft": "sft", "dpo": "dpo", "orpo": "dpo", "simpo": "dpo", "reward": "reward", "kto": "kto",
                "grpo": "grpo", "rloo": "grpo", "ppo": "grpo"}
STAGES = tuple(INSPECTED_AS)
SUMMARY_ROWS = 500  # enough for percentiles, quick on any dataset
# The trainer options (beside the script arguments, all about data) that change what the summary reports.
DATA_OPTIONS = ("max_length", "packing", "truncation_mode", "chat_template_path", "assistant_only_loss",
                "completion_only_loss", "seed", "max_completion_length", "num_generations")


@dataclass
class InspectArguments:
    stage: str = field(default="sft", metadata={"help": f"the stage whose data to inspect: {', '.join(STAGES)}"})
    num_examples: int = field(default=3, metadata={"help": "rendered examples to show"})
    max_rows: int = field(default=2000, metadata={"help": "inspect at most this many rows (the first ones)"})
    html: str | None = field(default=None, metadata={"help": "also write the report as an HTML page here"})
    color: str = field(default="auto", metadata={"help": "auto (when the output is a terminal), always or never"})


COLORS = {"trained": "\033[1;42;30m", "chosen": "\033[1;42;30m", "rejected": "\033[1;41;30m", "context": ""}
BRACKETS = {"trained": ("[[", "]]"), "chosen": ("[[+", "]]"), "rejected": ("[[-", "]]"), "context": ("", "")}


def render_text(report, color: bool) -> str:
    out = [f"hfllm inspect ({report.stage})"]
    width = max(len(label) for label, _ in report.lines) if report.lines else 0
    out += [f"  {label:<{width}}  {text}" for label, text in report.lines]
    marks = "between [[ ]]" + (" ([[+ chosen, [[- rejected)" if report.stage == "dpo" else "")
    legend = "highlighted" if color else marks
    for title, parts in report.examples:
        out.append(f"\n--- {title}: tokens that carry loss {legend} ---")
        if color:
            out.append("".join(f"{COLORS[k]}{t}\033[0m" if COLORS[k] else t for k, t in parts))
        else:
            out.append("".join(f"{BRACKETS[k][0]}{t}{BRACKETS[k][1]}" for k, t in parts))
    return "\n".join(out)


def render_html(report) -> str:
    style = {"trained": "background:#b7f0b1", "chosen": "background:#b7f0b1", "rejected": "background:#f6b8b8",
             "context": "color:#555"}
    rows = "".join(f"<tr><th>{html_lib.escape(k)}</th><td>{html_lib.escape(v)}</td></tr>" for k, v in report.lines)
    examples = "".join(
        f"<h3>{html_lib.escape(title)}</h3><pre>" + "".join(
            f'<span class="{k}" style="{style[k]}">{html_lib.escape(t)}</span>' for k, t in parts) + "</pre>"
        for title, parts in report.examples)
    return (f"<!doctype html><meta charset=utf-8><title>hfllm inspect: {report.stage}</title>"
            f"<style>pre{{white-space:pre-wrap}}th{{text-align:left;padding-right:1em}}</style>"
            f"<h2>hfllm inspect: {report.stage}</h2><table>{rows}</table>"
            f"<p>Highlighted: the tokens that carry loss (green; red: rejected answers).</p>{examples}")


def run(argv: list[str]):
    """Parse the stage's flags (its ARGUMENTS and DEFAULTS), prepare its data as it would, build the Report."""
    import importlib

    import datasets

    from hfllm.chat_template import ensure_chat_template
    from hfllm.config import parse_args
    from hfllm.inspect.stage_data import Context, Report
    from hfllm.loading import check_model_source, load_tokenizer
    from hfllm.stages import STAGES as ALL_STAGES
    from hfllm.stages._frame import stage_defaults

    stage = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--stage"), "sft")
    stage = next((a.split("=", 1)[1] for a in argv if a.startswith("--stage=")), stage)
    if stage not in STAGES:
        raise UserError(f"--stage {stage!r}: choose one of {', '.join(STAGES)}")
    module = importlib.import_module(ALL_STAGES[stage].module)
    (opts, args, *rest), explicit = parse_args(
        [InspectArguments, *module.ARGUMENTS], argv, prog="hfllm inspect",
        defaults=stage_defaults(stage, {**getattr(module, "DEFAULTS", {}), "output_dir": "runs/inspect"}))
    cfg, model_args = (rest if len(rest) == 2 else (args, *rest))  # ppo: one dataclass holds every option
    if opts.color not in ("auto", "always", "never"):
        raise UserError(f"--color {opts.color!r}: choose auto, always or never")
    if opts.num_examples < 0 or opts.max_rows < 1:
        raise UserError("--num_examples must be >= 0 and --max_rows >= 1")
    if not model_args.model_name_or_path:
        raise UserError("inspect needs the model whose tokenizer and template to use: set --model_name_or_path")
    check_model_source(model_args.model_name_or_path)
    tokenizer = load_tokenizer(model_args.model_name_or_path, revision=model_args.model_revision,
                               trust_remote_code=getattr(cfg, "trust_remote_code", False))
    report = Report(stage, html=opts.html, color=opts.color)
    if ensure_chat_template(tokenizer):
        report.add("note", "the model has no chat template; the stage gives it hfllm's (role markers as plain text)")
    report.add("model", f"{model_args.model_name_or_path} ({type(tokenizer).__name__}, {len(tokenizer)} tokens)")
    ctx = Context(tokenizer, args, cfg, explicit, opts.max_rows, opts.num_examples)
    datasets.disable_progress_bars()  # a report, not a log
    inspect_stage(stage, ctx, report)
    return report


def inspect_stage(stage: str, ctx, report) -> None:
    """Fill ``report`` with the lines on the data of ``stage`` (any training stage; INSPECTED_AS says how)."""
    from hfllm.inspect.stage_data import inspect_grpo, inspect_kto, inspect_preference, inspect_sft

    kind = INSPECTED_AS[stage]
    if kind == "sft":
        inspect_sft(ctx, report)
    elif kind in ("dpo", "reward"):
        inspect_preference(ctx, report, kind)
    elif kind == "kto":
        inspect_kto(ctx, report)
    else:
        inspect_grpo(ctx, report)


def stage_summary(stage: str, tokenizer, args, cfg, explicit: set) -> list[str]:
    """The few lines a training stage prints before its model loads (and the playground's Data tab shows): the
    report of ``hfllm inspect`` on its first SUMMARY_ROWS training rows, without examples. Reads copies: the
    stage's arguments and the tokenizer's template stay as they are. [] for a stage with no such data."""
    import datasets
    from datasets.utils.tqdm import are_progress_bars_disabled

    from hfllm.inspect.stage_data import Context, Report, _copy

    if stage not in INSPECTED_AS:
        return []
    report, template = Report(stage), tokenizer.chat_template
    bars = not are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        inspect_stage(stage, Context(tokenizer, args, _copy(cfg), set(explicit), SUMMARY_ROWS, 0), report)
    finally:
        tokenizer.chat_template = template
        if bars:
            datasets.enable_progress_bars()
    width = max((len(label) for label, _ in report.lines), default=0)
    return [f"data of {stage}, its first {SUMMARY_ROWS} training rows at most (hfllm inspect --stage {stage} "
            "shows more):"] + [f"  {label:<{width}}  {text}" for label, text in report.lines]


def main(argv: list[str]) -> int:
    report = run(argv)
    color = report.color == "always" or (report.color == "auto" and sys.stdout.isatty())
    print(render_text(report, color))
    if report.html:
        from pathlib import Path

        Path(report.html).write_text(render_html(report), encoding="utf-8")
        print(f"\nwrote {report.html}")
    return 0
