"""`hfllm eval`: models on lm-evaluation-harness tasks, side by side, with the harness's stderr.

    hfllm eval --model_name_or_path runs/tiny/sft runs/tiny/dpo --tasks hfllm
    hfllm eval --model_name_or_path runs/tiny/dpo --dataset_name my_questions.jsonl --log_samples
    hfllm eval --model_name_or_path Qwen/Qwen2.5-0.5B-Instruct --tasks hellaswag arc_easy --limit 200

The harness does the work (``lm_eval.simple_evaluate`` on its HF backend, ``HFLM``); hfllm loads each
model through its one safe loader (safetensors only, a LoRA adapter merged into its base) and hands it
over already loaded. What hfllm adds: its own tasks over local data (``--tasks hfllm``: held-out facts,
arithmetic, preference pairs, perplexity; hfllm/eval_tasks/), so evaluation runs offline; a dataset of
your own as a task (``--dataset_name``: its columns say whether it is questions with an answer key,
preference pairs or text); one table of all models; and the record: an ``eval`` block in a stage
folder's metrics.json (the model card's model-index results and ``hfllm run``'s summary read it), and
``<output_dir>/<model>/results.json`` (+ every example's prompt and output with ``--log_samples``).

hfllm's tasks and your data are asked through the model's chat template (they are questions to an
assistant); the harness's own tasks run as the harness runs them, as plain text, unless
``--apply_chat_template``. Harness tasks download their data from the Hub: where it cannot be reached,
each one says so in one line and the rest run.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from hfllm import run_folder
from hfllm.config import parse_args
from hfllm.errors import UserError, first_line
from hfllm.eval_tasks import BUILTIN_TASKS, KIND_TEMPLATES, TASKS_DIR, describe

GROUP = "hfllm"  # the tag of hfllm's own tasks
TASK_TYPES = {"generate_until": "text-generation", "multiple_choice": "multiple-choice",
              "loglikelihood_rolling": "text-generation", "loglikelihood": "text-generation"}


@dataclass
class EvalArguments:
    model_name_or_path: list[str] = field(default_factory=list, metadata={
        "help": "one or more models: stage folders, HF folders, LoRA adapters, Hub ids"})
    model_revision: str | None = field(default=None, metadata={"help": "Hub revision of every model"})
    tasks: list[str] = field(default_factory=list, metadata={
        "help": f"harness tasks, groups or tags; '{GROUP}' is hfllm's own ({', '.join(BUILTIN_TASKS)})"})
    dataset_name: list[str] = field(default_factory=list, metadata={
        "help": "your data as tasks (a .jsonl, a folder, builtin:<part>): 'prompt'+'answer' questions, "
                "'prompt'+'chosen'+'rejected' pairs, or 'text' for perplexity"})
    include_path: str | None = field(default=None, metadata={"help": "a folder of your own harness task YAMLs"})
    num_fewshot: int | None = field(default=None, metadata={"help": "few-shot examples (default: the task's)"})
    limit: float | None = field(default=None, metadata={"help": "examples per task at most (below 1: a share)"})
    batch_size: int = field(default=16, metadata={"help": "examples per forward pass"})
    apply_chat_template: bool = field(default=False, metadata={
        "help": "ask the harness's own tasks through the chat template too (hfllm's always are)"})
    log_samples: bool = field(default=False, metadata={"help": "keep every example's prompt, output and score"})
    output_dir: str = field(default="runs/eval", metadata={"help": "results.json (and samples) per model here"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow code from the model repo to run"})


@dataclass
class Plan:
    """The tasks to run, checked before any model loads: hfllm's and the user's as harness configs (chat),
    the harness's own by name."""
    chat: list[dict] = field(default_factory=list)  # task configs built from hfllm/eval_tasks/*.yaml
    harness: list[str] = field(default_factory=list)
    manager: object = None  # lm_eval's TaskManager

    def chat_specs(self, answer_suffix: str) -> list[dict]:
        """The configs with what this model's chat template writes after an answer (scored with each choice)."""
        return [{**c, "dataset_kwargs": {**c["dataset_kwargs"], "answer_suffix": answer_suffix}}
                if c["dataset_kwargs"].get("kind") == "choice" else c for c in self.chat]


def quiet_harness() -> None:
    """The harness logs every step at INFO and warns about things hfllm sets on purpose; keep its errors."""
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def task_config(template: str, name: str | None = None, source: str | None = None, kind: str | None = None) -> dict:
    """One of hfllm's task YAMLs as a config dict (the harness's own YAML loader), for a new name and data."""
    from lm_eval.tasks._yaml_loader import load_yaml

    config = load_yaml(TASKS_DIR / f"{template}.yaml", resolve_func=True)
    if name:
        config.update(task=name, tag=[], dataset_kwargs={"source": source, "kind": kind})
    return config


def _task_name(source: str, taken: set[str]) -> str:
    stem = source.split(":", 1)[1] if source.startswith("builtin:") else Path(source).stem
    base = re.sub(r"\W+", "_", stem).strip("_") or "data"
    name, i = base, 2
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    return name


def plan_tasks(args: EvalArguments) -> Plan:
    """Every task named must exist and every dataset must make a task, before a model loads; harness tasks
    whose data cannot be had are dropped with one line each."""
    from hfllm.data.load import load_dataset
    from hfllm.eval_tasks import load_docs

    plan = Plan()
    names = list(dict.fromkeys(t for name in args.tasks for t in (BUILTIN_TASKS if name == GROUP else [name])))
    plan.chat = [task_config(name) for name in names if name in BUILTIN_TASKS]
    taken = set(names)
    for source in args.dataset_name:
        kind = describe(load_dataset(source).column_names)
        name = _task_name(source, taken)
        taken.add(name)
        load_docs(source, kind)  # every row checked now, not after the model has loaded
        plan.chat.append(task_config(KIND_TEMPLATES[kind], name, source, kind))
    others = [n for n in names if n not in BUILTIN_TASKS]
    for name in others:
        if name.startswith(GROUP + "_") and not args.include_path:  # a typo of ours: no need to index the harness
            unknown_task(name, BUILTIN_TASKS)
    plan.manager = task_manager(args.include_path, with_harness_tasks=bool(others))
    for name in others:
        if name not in plan.manager.all_tasks and not name.endswith(".yaml"):
            unknown_task(name, plan.manager.all_tasks)
        try:
            plan.manager.load([name])  # downloads its data now (or finds it in the datasets cache)
        except Exception as exc:  # noqa: BLE001  an unreachable Hub, a dataset gone: this task only
            print(f"hfllm eval: skipped '{name}': its data could not be loaded ({first_line(exc)[:200]}); "
                  "harness tasks download from the Hub")
            continue
        plan.harness.append(name)
    if not plan.chat and not plan.harness:
        raise UserError("no task left to run")
    return plan


def unknown_task(name: str, known) -> None:
    import difflib

    match = difflib.get_close_matches(name, known, n=1)
    raise UserError(f"unknown task '{name}'" + (f"; did you mean '{match[0]}'?" if match else
                                                 " ('lm_eval ls tasks' lists the harness's)"))


def task_manager(include_path: str | None, with_harness_tasks: bool):
    """The harness's task index: its own ~15,000 tasks only when asked for (indexing them takes ~30 s)."""
    from lm_eval.tasks import TaskManager

    if include_path and not Path(include_path).is_dir():
        raise UserError(f"include_path {include_path} is not a folder of task YAMLs")
    return TaskManager(include_path=[p for p in (str(TASKS_DIR), include_path) if p],
                       include_defaults=with_harness_tasks)


def answer_suffix(tokenizer) -> str:
    """What the chat template writes after an assistant's answer ("<|end|>\\n", "<|im_end|>\\n", ...)."""
    marker = "Zq9xanswer"
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant",
                                         "content": marker}], tokenize=False)
    return text.split(marker, 1)[1] if marker in text else ""


def load(source: str, args: EvalArguments):
    """(model, tokenizer) through hfllm's loader: adapters merged, float32 on CPU, on the GPU when there is one."""
    import torch

    from hfllm.chat_template import ensure_chat_template
    from hfllm.loading import load_causal_lm, load_tokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = load_tokenizer(source, revision=args.model_revision, trust_remote_code=args.trust_remote_code)
    model = load_causal_lm(source, revision=args.model_revision, dtype="auto" if device == "cuda" else "float32",
                           trust_remote_code=args.trust_remote_code, merge_adapter=True)
    if ensure_chat_template(tokenizer):
        print(f"note: {source} has no chat template; hfllm's tasks use hfllm's (role markers as plain text)")
    return model.to(device).eval(), tokenizer


def evaluate_model(source: str, plan: Plan, args: EvalArguments) -> dict:
    """The harness's results for one model: {"results", "n-samples", "configs", "samples"} over all its tasks."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    model, tokenizer = load(source, args)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=args.batch_size)
    merged = {"results": {}, "n-samples": {}, "configs": {}, "samples": {}, "chat": set()}
    for tasks, chat in ((plan.chat_specs(answer_suffix(tokenizer)), True),
                        (plan.harness, args.apply_chat_template)):
        if not tasks:
            continue
        out = simple_evaluate(model=lm, tasks=tasks, task_manager=plan.manager, num_fewshot=args.num_fewshot,
                              limit=args.limit, log_samples=args.log_samples, apply_chat_template=chat,
                              fewshot_as_multiturn=chat)
        for key in ("results", "n-samples", "configs", "samples"):
            merged[key].update(out.get(key) or {})
        merged["chat"] |= set(out["results"]) if chat else set()
    return merged


def eval_block(out: dict, limit: float | None) -> dict:
    """The harness's results in metrics.json's terms: {task: {metric: value, metric_stderr: value, samples,
    num_fewshot, dataset, task_type}} (filters other than the default are kept in the metric's name)."""
    block = {}
    for task, values in out["results"].items():
        row = {}
        for key, value in values.items():
            if "," not in key:
                continue
            metric, filt = key.split(",", 1)
            name = metric if filt == "none" else f"{metric}/{filt}"
            row[name] = value if isinstance(value, (int, float)) else None  # "N/A": no stderr for it
        config = out["configs"].get(task, {})
        kwargs = config.get("dataset_kwargs") or {}
        rolling = config.get("output_type") == "loglikelihood_rolling"  # raw text: no template applies
        row.update(samples=(out["n-samples"].get(task) or {}).get("effective"), num_fewshot=config.get("num_fewshot"),
                   dataset=kwargs.get("source") or config.get("dataset_path") or task,
                   task_type=TASK_TYPES.get(config.get("output_type"), "text-generation"),
                   chat_template=task in out["chat"] and not rolling, limit=limit)
        block[task] = {k: v for k, v in row.items() if v is not None}
    return block


def metric_names(row: dict) -> list[str]:
    skip = {"samples", "num_fewshot", "dataset", "task_type", "chat_template", "limit"}
    return [k for k in row if k not in skip and not k.endswith("_stderr") and isinstance(row[k], (int, float))]


def format_table(blocks: dict[str, dict]) -> str:
    """A markdown table: one row per task and metric, one column per model, "value ± stderr"."""
    names = list(blocks)
    rows = list(dict.fromkeys((t, m) for b in blocks.values() for t, r in b.items() for m in metric_names(r)))
    lines = ["| task | metric | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for task, metric in rows:
        cells = []
        for name in names:
            row = blocks[name].get(task, {})
            value, err = row.get(metric), row.get(f"{metric}_stderr")
            cells.append("-" if value is None else f"{value:.4g}" + (f" ± {err:.2g}" if err is not None else ""))
        lines.append(f"| {task} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def headline(block: dict) -> str:
    """One line for a run summary: each task's first metric."""
    return ", ".join(f"{task} {names[0]} {row[names[0]]:.4g}" for task, row in block.items()
                     if (names := metric_names(row)))


def task_names(items: list[str]) -> list[str]:
    """The names the results of --tasks / --dataset_name items are recorded under."""
    from hfllm.loading import is_local

    return [name for item in items for name in (BUILTIN_TASKS if item == GROUP else
            [_task_name(item, set())] if item.startswith("builtin:") or is_local(item) else [item])]


def display_name(source: str) -> str:
    path = Path(source).expanduser()
    return "/".join(path.resolve().parts[-2:]) if path.exists() else source


def record(source: str, out: dict, block: dict, output_dir: Path) -> Path:
    """results.json (and the samples) under output_dir; a finished stage folder also gets the block in its
    metrics.json, beside what earlier evaluations of other tasks put there."""
    from lm_eval.utils import handle_non_serializable

    output_dir.mkdir(parents=True, exist_ok=True)
    results = {"model_name_or_path": source, "eval": block, "harness_configs": out["configs"]}
    (output_dir / "results.json").write_text(json.dumps(results, indent=2, default=handle_non_serializable))
    for task, samples in out["samples"].items():
        with open(output_dir / f"samples_{task}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(s, default=handle_non_serializable, ensure_ascii=False) + "\n" for s in samples)
    if run_folder.is_complete(source):
        metrics = run_folder.read_metrics(source)
        metrics["eval"] = {**(metrics.get("eval") or {}), **block}
        tmp = Path(source) / "metrics.json.tmp"  # written whole, then renamed: the folder stays complete
        tmp.write_text(json.dumps(metrics, indent=2, default=float) + "\n")
        os.replace(tmp, Path(source) / "metrics.json")
    return output_dir


def evaluate(args: EvalArguments) -> dict[str, dict]:
    """Every model on every task: {display name: eval block}; records as ``record`` says."""
    from hfllm.loading import check_model_source

    if not args.model_name_or_path:
        raise UserError("which models? set --model_name_or_path (one or more stage folders, HF folders or Hub ids)")
    if not args.tasks and not args.dataset_name:
        raise UserError(f"nothing to evaluate on: set --tasks (e.g. {GROUP}, or a harness task) or --dataset_name")
    if args.batch_size < 1:
        raise UserError(f"batch_size must be a positive integer, got {args.batch_size}")
    for source in args.model_name_or_path:  # every model checked before the first one loads
        check_model_source(source)
    if importlib.util.find_spec("lm_eval") is None:
        raise UserError("hfllm eval runs lm-evaluation-harness, which is not installed: pip install 'hfllm[eval]'")
    quiet_harness()
    plan = plan_tasks(args)
    blocks, folders = {}, set()
    for source in args.model_name_or_path:
        name = display_name(source)
        out = evaluate_model(source, plan, args)
        blocks[name] = eval_block(out, args.limit)
        folder = re.sub(r"[^\w.-]+", "-", name).strip("-")
        while folder in folders:
            folder += "-2"
        folders.add(folder)
        where = record(source, out, blocks[name], Path(args.output_dir) / folder)
        print(f"{name}: results in {where}" + (" and its metrics.json" if run_folder.is_complete(source) else ""))
    return blocks


def check_evaluate_after(tasks, where: str, stage: str) -> None:  # where: "" or "<file>: stage '<name>': "
    """evaluate_after (a stage's option, or a pipeline's key): a list of tasks, for a stage that makes a causal
    LM; a typo in hfllm's own task names fails now, not after the stage has trained."""
    from hfllm.stages import STAGES

    if STAGES[stage].output != "model" or not isinstance(tasks, list) or \
            not all(isinstance(t, str) and t for t in tasks):
        raise UserError(f"{where}evaluate_after is a list of tasks, for stages that make a causal LM")
    for task in tasks:
        if task.startswith(GROUP + "_") and task not in BUILTIN_TASKS:
            try:
                unknown_task(task, BUILTIN_TASKS)
            except UserError as exc:
                raise UserError(f"{where}evaluate_after: {exc}") from None


def evaluate_after(folder: str, tasks: list[str], output_dir: str, label: str) -> None:
    """`hfllm eval` on a finished stage folder for those of ``tasks`` not yet in its metrics.json: the ``eval``
    block goes into metrics.json (the model card reads it there), the details under ``output_dir``."""
    from hfllm.loading import is_local

    done = run_folder.read_metrics(folder).get("eval") or {}
    todo = [t for t in tasks if not set(task_names([t])) <= set(done)]
    if todo:
        print(f"\n== {label}: hfllm eval {' '.join(todo)}", flush=True)
        data = [t for t in todo if t.startswith("builtin:") or is_local(t)]
        evaluate(EvalArguments(model_name_or_path=[folder], tasks=[t for t in todo if t not in data], dataset_name=data,
                               output_dir=output_dir))


def main(argv: list[str]) -> int:
    (args,), _ = parse_args([EvalArguments], argv, prog="hfllm eval")
    blocks = evaluate(args)
    print("\n" + format_table(blocks))
    return 0
