"""Run a list of stages from one YAML file, each stage's input the previous stage's output.

    hfllm run configs/tiny/pipeline.yaml
    hfllm run configs/tiny/pipeline.yaml --run_dir runs/other --only pretrain

The file names a run folder and the stages; every stage writes ``<run_dir>/<name>``.
In a stage's ``args``, ``{name}`` stands for the output folder of the stage called
``name``::

    run_dir: runs/tiny
    stages:
      - name: tokenizer
        config: configs/tiny/tokenizer.yaml
      - name: pretrain
        config: configs/tiny/pretrain.yaml
        args: {tokenizer_name_or_path: "{tokenizer}"}

A stage (or the whole file) may name ``evaluate_after: [hfllm_facts, hfllm_preference, ...]``: those
tasks run through ``hfllm eval`` on the stage's model once it is finished (their results go into its
metrics.json, and the run ends with them side by side for every stage).

The run ends with a report card, ``<run_dir>/report.md`` and its PNGs (hfllm.report): what each stage did,
its numbers before and after, its curves, and the answers to ``compare``'s prompts.

A stage whose folder is complete (it has metrics.json) is skipped, so re-running
a pipeline continues where it stopped; a failing stage stops the run with its
error and leaves the finished stages as they are.
"""

from __future__ import annotations

import importlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from hfllm import run_folder
from hfllm.config import load_yaml, parse_args
from hfllm.errors import UserError
from hfllm.eval import check_evaluate_after
from hfllm.report import write_report
from hfllm.stages import STAGES


@dataclass
class PipelineArguments:
    run_dir: str | None = field(default=None, metadata={"help": "override the file's run_dir"})
    only: list[str] = field(default_factory=list, metadata={"help": "run only these stages (by name)"})
    rerun: list[str] = field(default_factory=list, metadata={"help": "run these stages again (replacing them)"})
    seed: int | None = field(default=None, metadata={"help": "override the seed of every stage that has one"})


@dataclass
class Stage:
    name: str
    command: str
    config: str | None
    args: dict
    evaluate_after: list[str] = field(default_factory=list)  # hfllm eval tasks (or data) run on its model

    def argv(self, outputs: dict[str, str]) -> list[str]:
        argv = ["--config", self.config] if self.config else []
        for key, value in self.args.items():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str):
                    item = _substitute(item, outputs, self.name)
                if item is not None:
                    argv += [f"--{key}", str(item).lower() if isinstance(item, bool) else str(item)]
        return argv + ["--output_dir", outputs[self.name]]


def _substitute(text: str, outputs: dict[str, str], stage: str) -> str:
    def repl(match):
        ref = match.group(1)
        if ref not in outputs:
            raise UserError(f"stage '{stage}' refers to '{{{ref}}}', which is not an earlier stage; "
                            f"known: {', '.join(outputs)}")
        return outputs[ref]

    return REFERENCE.sub(repl, text)


def read_pipeline(path: str) -> tuple[str, list[Stage], list[str]]:
    spec = load_yaml(path)
    unknown = set(spec) - {"run_dir", "stages", "compare", "evaluate_after"}
    if unknown:
        raise UserError(f"{path}: unknown key '{sorted(unknown)[0]}' (a pipeline has run_dir, stages, compare, "
                        "evaluate_after)")
    if not isinstance(spec.get("stages"), list) or not spec["stages"]:
        raise UserError(f"{path}: 'stages' must be a non-empty list of stages")
    stages, base = [], Path(path).parent
    for i, item in enumerate(spec["stages"], 1):
        if not isinstance(item, dict) or "name" not in item:
            raise UserError(f"{path}: stage {i} must be a mapping with at least a 'name'")
        if not isinstance(item["name"], str) or not STAGE_NAME.fullmatch(item["name"]):
            # The name is a folder under run_dir: '../x' would write outside it, '' into run_dir itself.
            raise UserError(f"{path}: stage {i} has name {item['name']!r}; a stage name is a folder name under "
                            "run_dir: letters, digits, '-' and '_'")
        extra = set(item) - {"name", "command", "config", "args", "evaluate_after"}
        if extra:
            raise UserError(f"{path}: stage '{item['name']}' has unknown key '{sorted(extra)[0]}' "
                            "(use name, command, config, args, evaluate_after)")
        command = item.get("command", item["name"])
        if not isinstance(command, str) or command not in STAGES:
            raise UserError(f"{path}: stage '{item['name']}' has unknown command '{command}'; "
                            f"choose one of {', '.join(STAGES)}")
        config = item.get("config")
        if config is not None and not isinstance(config, str):
            raise UserError(f"{path}: stage '{item['name']}': config must be a path to a YAML file")
        if config and not Path(config).is_file() and (base / Path(config).name).is_file():
            config = str(base / Path(config).name)  # a config next to the pipeline file
        if config and not Path(config).is_file():
            raise UserError(f"{path}: stage '{item['name']}': config file not found: {config}")
        args = item.get("args") or {}
        if not isinstance(args, dict):
            raise UserError(f"{path}: stage '{item['name']}': args must be a mapping of option: value")
        # Tasks for `hfllm eval` after the stage: its own list, else the pipeline's for every model stage.
        tasks = item.get("evaluate_after", spec.get("evaluate_after") if STAGES[command].output == "model" else None)
        if tasks:
            check_evaluate_after(tasks, f"{path}: stage '{item['name']}': ", command)
        stages.append(Stage(item["name"], command, config, args, tasks or []))
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise UserError(f"{path}: stage names must be unique, got {names}")
    for i, stage in enumerate(stages):  # every {name} must be an earlier stage: no stage runs before this is known
        for key, value in stage.args.items():
            for item in value if isinstance(value, list) else [value]:
                for ref in REFERENCE.findall(item) if isinstance(item, str) else []:
                    if ref not in names[:i]:
                        where = "itself" if ref == stage.name else "a later stage" if ref in names else "no stage"
                        raise UserError(f"{path}: stage '{stage.name}' refers to '{{{ref}}}' in {key}, which is "
                                        f"{where}; a stage can refer to the stages before it: "
                                        f"{', '.join(names[:i]) or 'none'}")
    run_dir = spec.get("run_dir")
    if run_dir is not None and (not isinstance(run_dir, str) or not run_dir.strip()):
        raise UserError(f"{path}: run_dir must be a folder path")
    compare = spec.get("compare") or []
    if not isinstance(compare, list) or not all(isinstance(p, str) for p in compare):
        raise UserError(f"{path}: 'compare' must be a list of prompts")
    return run_dir or f"runs/{Path(path).stem}", stages, compare


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        raise UserError("usage: hfllm run PIPELINE.yaml [--run_dir DIR] [--only NAME ...] [--rerun NAME ...] "
                        "[--seed N]")
    (args,), _ = parse_args([PipelineArguments], argv[1:], prog="hfllm run")
    run_dir, stages, compare = read_pipeline(argv[0])
    run_dir = args.run_dir or run_dir
    if Path(run_dir).exists() and not Path(run_dir).is_dir():
        raise UserError(f"run_dir {run_dir} is a file; a run folder holds one folder per stage: choose a folder path")
    outputs = {s.name: str(Path(run_dir) / s.name) for s in stages}
    for name in [*args.only, *args.rerun]:
        if name not in outputs:
            raise UserError(f"no stage named '{name}' in {argv[0]}; stages: {', '.join(outputs)}")

    timings = {}
    say = print if run_folder.is_main_process() else (lambda *a, **k: None)  # one copy of the log
    for stage in stages:
        if args.only and stage.name not in args.only:
            continue
        out = outputs[stage.name]
        stage_argv = stage.argv(outputs) + (["--overwrite"] if stage.name in args.rerun else [])
        if args.seed is not None and _has_option(stage.command, "seed"):
            stage_argv += ["--seed", str(args.seed)]
        # Skipped only when finished by the same command: another's folder is the stage's to refuse.
        if run_folder.is_complete(out) and stage.name not in args.rerun \
                and run_folder.recorded_stage(Path(out)) in (stage.command, None):
            say(f"== {stage.name}: already complete in {out}, skipped")
            evaluate_after(stage, out, run_dir)
            continue
        say(f"\n== {stage.name}: hfllm {stage.command} {' '.join(stage_argv)}", flush=True)
        start = time.perf_counter()
        spec = STAGES[stage.command]
        try:
            importlib.import_module(spec.module).main([*spec.argv, *stage_argv])
        except UserError as exc:
            raise UserError(f"stage '{stage.name}' failed: {exc}") from None
        _wait_for_everyone()
        evaluate_after(stage, out, run_dir)
        timings[stage.name] = time.perf_counter() - start
    if not run_folder.is_main_process():
        return 0
    print_summary(run_dir, stages, timings)
    answers = compare_answers(run_dir, stages, compare) if compare else {}
    compare_evaluations(run_dir, stages)
    print(f"\nreport card: {write_report(run_dir, stages, timings, compare, answers)}")
    print(f"\nchat with these models: hfllm chat {run_dir}")
    return 0


def _has_option(command: str, name: str) -> bool:
    import dataclasses

    module = importlib.import_module(STAGES[command].module)
    return any(f.name == name for cls in getattr(module, "ARGUMENTS", ()) for f in dataclasses.fields(cls))


def _wait_for_everyone() -> None:
    """Under accelerate launch only the main process writes a stage's folder: the others must not
    start the next stage, which reads it, before it is written."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def evaluate_after(stage: Stage, folder: str, run_dir: str) -> None:
    """`hfllm eval` on the stage's model for its evaluate_after tasks not yet in its metrics.json (main process)."""
    if stage.evaluate_after and run_folder.is_main_process():
        from hfllm.eval import evaluate_after as run_eval

        run_eval(folder, stage.evaluate_after, str(Path(run_dir) / "eval"), stage.name)


def compare_evaluations(run_dir: str, stages: list[Stage]) -> None:
    """The evaluate_after results of every model stage in one table, side by side."""
    from hfllm.eval import format_table

    blocks = {s.name: run_folder.read_metrics(Path(run_dir) / s.name).get("eval") for s in stages}
    blocks = {name: block for name, block in blocks.items() if block}
    if blocks:
        print(f"\n== evaluation (lm-evaluation-harness; {run_dir}/eval holds the details)\n{format_table(blocks)}")


def compare_answers(run_dir: str, stages: list[Stage], prompts: list[str]) -> dict[str, list[str]]:
    """Each chat-capable stage's greedy answer to the same prompts, side by side (printed and returned)."""
    from hfllm.generate import generate_answers
    from hfllm.loading import load_causal_lm, load_tokenizer

    chat_stages = [s for s in stages if STAGES[s.command].output == "model"
                   and run_folder.is_complete(Path(run_dir) / s.name)]
    answers = {}
    for stage in chat_stages:
        folder = str(Path(run_dir) / stage.name)
        tokenizer = load_tokenizer(folder)
        model = load_causal_lm(folder)
        answers[stage.name] = generate_answers(model, tokenizer, [[{"role": "user", "content": p}] for p in prompts])
    print("\n== answers to held-out questions (greedy)")
    for i, prompt in enumerate(prompts):
        print(f"  {prompt}")
        for name, outs in answers.items():
            print(f"    {name:<9} {outs[i].strip()[:100]!r}")
    return answers


def print_summary(run_dir: str, stages: list[Stage], timings: dict[str, float]) -> None:
    print(f"\n== run folder: {run_dir}")
    for stage in stages:
        m = run_folder.read_metrics(Path(run_dir) / stage.name)
        took = f"{timings[stage.name]:.0f} s" if stage.name in timings else "earlier"
        headline = ", ".join(f"{k}={v}" for k, v in m.items() if k in HEADLINES or k.startswith("check_"))
        print(f"  {stage.name:<10} {took:>8}  {headline}")
        if m.get("sample"):
            print(f"  {'':<10} sample: {m['sample']!r}")
        if m.get("eval"):
            from hfllm.eval import headline

            print(f"  {'':<10} eval: {headline(m['eval'])}")


STAGE_NAME = re.compile(r"[A-Za-z0-9_-]+")  # what a {reference} can name
REFERENCE = re.compile(r"\{([A-Za-z0-9_-]+)\}")

# Metrics worth a line in the summary, per stage kind.
HEADLINES = ("vocab_size", "chars_per_token_held_out", "num_parameters", "eval_loss", "perplexity",
             "answer_accuracy", "eval_accuracy", "preference_accuracy", "reward_margin", "reward_score", "kl_final")
