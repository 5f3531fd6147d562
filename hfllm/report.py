"""The report card of a pipeline run: ``<run_dir>/report.md`` and its PNGs, written at the end of ``hfllm run``.

For every stage, from its folder's metrics.json only (so a stage skipped as finished reports too): one plain line
saying what it did and what moved, a table of its numbers before and after, its loss curve (the Trainer's log
history), bars of each before/after number, the reward and KL per update of an RL stage, the reward margin of a
preference stage that logged one. Then each chat-capable stage's answers to the pipeline's ``compare`` prompts,
side by side. The PNGs are named ``report-<stage>-<what>.png``: a stage folder's name has no dot, so they never
collide with one.
"""

from __future__ import annotations

from pathlib import Path

from hfllm import run_folder
from hfllm.stages import STAGES

REPORT = "report.md"

# What each kind of stage does, in plain words (the line's start).
DID = {
    "clean": "cleaned and deduplicated the corpus",
    "tokenizer": "learned a vocabulary of sub-word tokens from the corpus",
    "pretrain": "learned to continue text by predicting the next token",
    "sft": "learned to answer in the chat format from example conversations",
    "reward": "learned to score the preferred answer of a pair above the other",
    "dpo": "moved the model towards the preferred answers of the pairs",
    "kto": "moved the model towards the answers marked good and away from the bad ones",
    "orpo": "learned the preferred answers and moved away from the others in one loss",
    "simpo": "moved the model towards the preferred answers of the pairs",
    "ppo": "sampled answers and moved the model towards those the reward scored higher, on a KL leash",
    "grpo": "sampled groups of answers and moved the model towards those scored above their group",
    "rloo": "sampled answers and moved the model towards those scored above the others for the same prompt",
}

# Numbers measured before and after, in the words the report uses, most telling first.
LABELS = {
    "perplexity": "held-out perplexity",
    "eval_accuracy": "held-out pairs ranked right",
    "preference_accuracy": "held-out pairs where it prefers the chosen answer",
    "reward_score_sampled": "reward of sampled answers",
    "reward_score": "reward of greedy answers",
    "answer_accuracy": "held-out answer accuracy",
    "reward": "reward during training (first -> last update)",
    "eval_margin": "held-out reward margin",
    "logprob_margin": "held-out log-prob margin (chosen - rejected)",
    "eval_loss": "held-out loss",
}
SHARES = ("accuracy", "check_")  # numbers in [0, 1], shown as percentages


def label(key: str) -> str:
    if key.startswith("check_"):
        name, sampled = key.removeprefix("check_").removesuffix("_sampled"), key.endswith("_sampled")
        return f"{'sampled' if sampled else 'greedy'} answers passing the rule {name}"
    return LABELS.get(key, key.replace("_", " "))


def fmt(key: str, value: float) -> str:
    if any(s in key for s in SHARES):
        return f"{value:.1%}"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def moved(key: str, before: float, after: float) -> bool:
    """Whether a number changed by more than its shown rounding: half a point of a share, 1 % of anything else."""
    if any(s in key for s in SHARES):
        return abs(after - before) >= 0.005
    return abs(after - before) > 0.01 * max(abs(before), abs(after), 1e-12)


def changes(metrics: dict) -> list[tuple[str, float, float]]:
    """(key, before, after) of every number the stage measured twice, in LABELS' order, rule checks after."""
    pairs = {"reward": ("reward_first", "reward_last")}
    for key in metrics:
        for before in (f"{key}_before", f"initial_{key}"):
            if before in metrics and not key.endswith("_count"):
                pairs[key] = (before, key)
    out = []
    for key, (b, a) in pairs.items():
        before, after = metrics.get(b), metrics.get(a)
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (before, after)):
            out.append((key, float(before), float(after)))
    order = list(LABELS)
    return sorted(out, key=lambda c: (order.index(c[0]) if c[0] in order else len(order), c[0]))


def plain_line(name: str, command: str, metrics: dict) -> str:
    """One sentence: what the stage did, and the numbers that show it (at most four)."""
    words = DID.get(command, STAGES[command].card if command in STAGES else command)
    told = [(k, b, a) for k, b, a in changes(metrics) if k in LABELS or k.startswith("check_")]
    # What moved first: PPO's greedy closing at 100% -> 100% says less than its sampled one at 56% -> 86%.
    told.sort(key=lambda c: moved(*c) is False)
    shown = [f"{label(k)} {fmt(k, b)} -> {fmt(k, a)}" for k, b, a in told[:4]]
    if command == "tokenizer" and metrics.get("vocab_size"):
        shown.append(f"{metrics['vocab_size']} tokens, {metrics.get('chars_per_token_held_out')} characters per "
                     "token on held-out text")
    if metrics.get("kl_final") is not None:
        shown.append(f"KL to the starting model {round(metrics['kl_final'], 2) + 0.0:.2f} nats per answer")
    return f"**{name}** {words}" + (": " + "; ".join(shown) if shown else "") + "."


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    _pyplot().close(fig)
    return path


def bars(name: str, changed: list, path: Path) -> Path:
    """One small panel per number: before and after."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(changed), figsize=(2.6 * len(changed), 3.2), dpi=100, squeeze=False)
    for ax, (key, before, after) in zip(axes[0], changed):
        ax.bar(["before", "after"], [before, after], color=["#9aa5b1", "#2f6fb0"])
        ax.set_title(label(key), fontsize=8, wrap=True)
        for x, v in enumerate((before, after)):
            ax.annotate(fmt(key, v), (x, v), ha="center", va="bottom", fontsize=8)
    fig.suptitle(f"{name}: before and after", fontsize=10)
    return _save(fig, path)


def curves(title: str, series: dict[str, list[tuple[float, float]]], path: Path, xlabel: str = "step") -> Path:
    """One panel per named series (y against step)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.2), dpi=100, squeeze=False)
    for ax, (what, points) in zip(axes[0], series.items()):
        ax.plot(*zip(*points), "-" if len(points) > 12 else "o-")
        ax.set_xlabel(xlabel)
        ax.set_title(what, fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _points(log: list[dict], key: str) -> list[tuple[float, float]]:
    return [(r["step"], r[key]) for r in log if isinstance(r.get(key), (int, float)) and "step" in r]


def stage_figures(run_dir: Path, name: str, metrics: dict) -> list[tuple[str, Path]]:
    """(caption, PNG) for each figure the stage's metrics hold the numbers of."""
    log = metrics.get("log_history") or metrics.get("log") or []
    figures = []
    loss = run_folder.plot_losses(log, run_dir / f"report-{name}-loss.png", f"{name}: loss")
    if loss:
        figures.append(("loss", loss))
    ppo_loss = {what: points for what, key in (("policy loss", "pg_loss"), ("value loss", "vf_loss"))
                if (points := _points(metrics.get("log") or [], key))}
    if not loss and ppo_loss:
        figures.append(("loss", curves(f"{name}: loss", ppo_loss, run_dir / f"report-{name}-loss.png")))
    rl = {what: points for what, key in (("reward per update", "score"), ("reward per update", "reward"),
                                         ("KL to the starting model", "kl")) if (points := _points(log, key))}
    if metrics.get("log") and rl:
        figures.append(("reward and KL", curves(f"{name}: reward and KL", rl, run_dir / f"report-{name}-rl.png")))
    margin = {what: points for what, key in (("train reward margin", "rewards/margins"),
                                             ("held-out reward margin", "eval_rewards/margins"))
              if (points := _points(log, key))}
    if margin:
        figures.append(("reward margin (chosen - rejected)",
                        curves(f"{name}: reward margin", margin, run_dir / f"report-{name}-margin.png")))
    changed = changes(metrics)
    if changed:
        figures.append(("before and after", bars(name, changed, run_dir / f"report-{name}-before-after.png")))
    return figures


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")[:120]


def write_report(run_dir: str | Path, stages: list, timings: dict[str, float],
                 prompts: list[str] = (), answers: dict[str, list[str]] | None = None) -> Path:
    """Write ``<run_dir>/report.md`` and its PNGs; ``stages`` are the pipeline's (name, command), ``answers``
    each chat-capable stage's answers to ``prompts``."""
    run_dir = Path(run_dir)
    lines = [f"# Report card: {run_dir}", "", "## What each stage did", ""]
    sections = []
    for stage in stages:
        folder = run_dir / stage.name
        if not run_folder.is_complete(folder):
            lines.append(f"- **{stage.name}** did not run (no finished folder in {folder}).")
            continue
        metrics = run_folder.read_metrics(folder)
        lines.append(f"- {plain_line(stage.name, stage.command, metrics)}")
        took = timings.get(stage.name)
        section = [f"## {stage.name} (hfllm {stage.command})", "",
                   f"Time: {f'{took:.0f} s' if took is not None else 'an earlier run'}"
                   + (f" ({metrics['train_seconds']} s training)" if metrics.get("train_seconds") else "") + ".", ""]
        changed = changes(metrics)
        if changed:
            section += ["| measured | before | after |", "|---|---|---|"]
            section += [f"| {label(k)} | {fmt(k, b)} | {fmt(k, a)} |" for k, b, a in changed] + [""]
        for caption, png in stage_figures(run_dir, stage.name, metrics):
            section += [f"![{stage.name}: {caption}]({png.name})", ""]
        sections += section
    if prompts and answers:
        names = list(answers)
        lines += ["", "## Answers to the same held-out prompts (greedy)", "",
                  "| prompt | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        lines += [f"| {_cell(p)} | " + " | ".join(_cell(answers[n][i]) for n in names) + " |"
                  for i, p in enumerate(prompts)]
    path = run_dir / REPORT
    path.write_text("\n".join([*lines, "", *sections]).rstrip() + "\n", encoding="utf-8")
    return path
