"""What every stage's output folder holds, and the rules that keep it safe.

A stage folder is complete when ``metrics.json`` exists: it is written last, after
the model, so a crash never leaves a folder that a later stage mistakes for
finished. A folder that holds checkpoints but no metrics.json is an interrupted
run and is resumed, by the stage that started it only: ``hfllm_run.json``, written
when a stage starts writing, records the stage and what it started from (and, once
finished, the files it wrote). ``--overwrite`` replaces only such a folder of the
same stage; never an input of the command, the working folder, or anyone's files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from hfllm.errors import UserError

METRICS = "metrics.json"


def is_complete(folder: str | Path) -> bool:
    return (Path(folder) / METRICS).is_file()


def is_main_process() -> bool:
    """True except in the non-main processes of ``accelerate launch`` / torchrun (read from RANK,
    so it answers before any process group exists)."""
    return int(os.environ.get("RANK", "0")) == 0


def checkpoint_is_complete(path: str | Path) -> bool:
    """A checkpoint's last file is there: the Trainer writes ``trainer_state.json`` last (a process
    killed while saving leaves none, or half of one), hfllm ppo writes ``state.pt`` last.
    transformers' SIGTERM checkpoint also leaves a marker file until it is done."""
    path = Path(path)
    if (path / "checkpoint-is-incomplete.txt").exists():
        return False
    if (path / "state.pt").is_file():
        return True
    try:
        json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def last_checkpoint(folder: str | Path) -> str | None:
    """The newest ``checkpoint-N`` folder that the Trainer finished writing, if any.

    transformers' get_last_checkpoint takes the highest N even when that folder is half
    written (a SIGKILL while saving); resuming from it would fail, so it is skipped.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    steps = [(int(m.group(1)), p) for p in folder.iterdir()
             if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and p.is_dir() and checkpoint_is_complete(p)]
    return str(max(steps)[1]) if steps else None


MARKER = "hfllm_run.json"  # written when a stage starts writing: which stage, from which inputs
INPUT_WORDS = {"model_name_or_path": "the model", "tokenizer_name_or_path": "the tokenizer",
               "reward_model_name_or_path": "the reward model", "value_model_name_or_path": "the value model",
               "dataset_name": "the dataset", "eval_dataset_name": "the eval dataset", "config": "the config file"}


def read_marker(folder: str | Path) -> dict:
    try:
        data = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def recorded_stage(folder: Path) -> str | None:
    """The stage that wrote ``folder``: its marker's, else (folders from before the marker) metrics.json's."""
    if stage := read_marker(folder).get("stage"):
        return stage
    metrics = read_metrics(folder) if is_complete(folder) else {}
    return "merge" if "merged_from" in metrics else {"data": "clean"}.get(metrics.get("stage"), metrics.get("stage"))


def _same_input(a, b) -> bool:
    return a == b or (isinstance(a, str) and isinstance(b, str) and _resolved(a) == _resolved(b))


def _resolved(value: str) -> str:
    try:
        path = Path(value).expanduser()
        return str(path.resolve()) if path.exists() else value
    except (OSError, ValueError):  # not a path at all (too long, a NUL byte)
        return value


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


@dataclass
class Plan:
    """What a stage will do with its output folder, decided before anything is written (``prepare``); nothing
    happens to the folder until ``claim``, just before the stage first writes there, so that a run refused
    or failed on its way (bad data, a model that does not load) leaves the folder as it was."""

    folder: Path
    stage: str
    inputs: dict = field(default_factory=dict)  # option -> value: what the run starts from, for the marker
    resume_from: str | None = None              # a checkpoint of this stage's interrupted run
    replace: bool = False                       # --overwrite of this stage's own earlier run
    claimed: bool = False

    def claim(self, into: Path | None = None) -> None:
        """Remove the run being replaced, then record the stage and its inputs: from here on, the folder is this
        stage's. Main process only (the others write nothing here); once. ``into``: a new folder built beside
        the output folder, which takes its place when complete (hfllm data clean); the marker goes there."""
        if self.claimed:
            return
        self.claimed = True  # on every process alike, so that they sync (or not) together
        if not is_main_process():
            return
        if self.replace and into is None and self.folder.is_dir():
            shutil.rmtree(self.folder)
        folder = into or self.folder
        folder.mkdir(parents=True, exist_ok=True)
        marker = {**read_marker(folder), "stage": self.stage,
                  "inputs": {k: _resolved(v) if isinstance(v, str) else v for k, v in self.inputs.items()}}
        marker.setdefault("started_at", time.strftime("%Y-%m-%dT%H:%M:%S"))
        marker.pop("files", None)  # the list of what a finished run wrote comes with metrics.json
        (folder / MARKER).write_text(json.dumps(marker, indent=2) + "\n")


def prepare(folder: str | Path, *, overwrite: bool, stage: str, resume: bool = True, inputs: dict | None = None,
            sources: dict | None = None) -> Plan:
    """Decide what the stage does with its output folder, before any data or model is loaded; write nothing.

    ``inputs`` are every option naming a local path the command reads (hfllm.checks.input_paths), ``sources``
    the ones that say what the run starts from (recorded, and compared when resuming). Refused in one line:
    a file; the working folder or a folder above it; an input of the command or a folder above one; a
    folder holding files hfllm did not write; another stage's run. Allowed: a missing or empty folder (or
    one holding only a marker: a run that failed before writing), this stage's interrupted run with the
    same sources (resumed unless ``resume`` is off), and with ``overwrite`` this stage's own run.
    """
    shown, folder = str(folder), Path(folder).expanduser()
    plan = Plan(folder, stage, dict(sources or {}))
    if folder.exists() and not folder.is_dir():
        raise UserError(f"output_dir {shown} is a file; choose a folder path")
    here = folder.resolve()
    cwd = Path.cwd().resolve()
    if here == cwd or here in cwd.parents:
        raise UserError(f"output_dir {shown} is the working folder{' or a folder above it' if here != cwd else ''}; "
                        f"a run writes a folder of its own: choose a new one such as runs/<name>/{stage}")
    if here == Path.home().resolve():
        raise UserError(f"output_dir {shown} is the home folder; choose a new folder such as runs/<name>/{stage}")
    for option, value in (inputs or {}).items():
        try:
            source = Path(value).expanduser().resolve()
        except (OSError, ValueError):
            continue
        flag = option.split(" ")[0]
        what = "the base model of the adapter" if option.endswith("(its base)") else \
            INPUT_WORDS.get(flag, f"a path given as --{flag}")
        if source == here:
            raise UserError(f"output_dir {shown} is {what} this command reads (--{flag}); choose another --output_dir")
        if here in source.parents:
            raise UserError(f"output_dir {shown} holds {value}, {what} this command reads (--{flag}); choose another "
                            "--output_dir")
    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    if not [n for n in names if n != MARKER]:
        return plan
    other = recorded_stage(folder)
    if other is None and last_checkpoint(folder):
        raise UserError(f"output_dir {shown} holds checkpoints of a run that did not record its stage ({MARKER} is "
                        "missing), so hfllm cannot tell whose they are; choose another --output_dir")
    if other is None:
        raise UserError(f"output_dir {shown} is not empty: it holds {_listing(names)}, which hfllm did not "
                        "write; choose another --output_dir")
    if other != stage:
        state = "a finished" if is_complete(folder) else "an unfinished"
        raise UserError(f"output_dir {shown} holds {state} {other} run, which hfllm {stage} may not replace or "
                        "resume; choose another --output_dir")
    if is_complete(folder):
        if not overwrite:
            raise UserError(f"output_dir {shown} already holds a finished run; pass --overwrite to replace it "
                            "or choose another --output_dir")
        written = read_marker(folder).get("files")
        extra = [n for n in names if n not in (written or names) and n not in (MARKER, METRICS)]
        if extra:
            raise UserError(f"output_dir {shown} holds files besides the {stage} run hfllm wrote there "
                            f"({_listing(extra)}); move them away, or choose another --output_dir")
        plan.replace = True
        return plan
    if overwrite:
        plan.replace = True
        return plan
    checkpoint = last_checkpoint(folder)
    if checkpoint is None or not resume:
        raise UserError(f"output_dir {shown} holds an unfinished {stage} run with no checkpoint to resume; pass "
                        "--overwrite to start it again or choose another --output_dir")
    recorded = read_marker(folder).get("inputs") or {}
    for option, value in (sources or {}).items():
        if not _same_input(recorded.get(option), value):
            raise UserError(f"output_dir {shown} holds an interrupted {stage} run of --{option} "
                            f"{recorded.get(option)}, not {value}; run it again with the same inputs to resume, or "
                            "pass --overwrite to start again")
    if is_main_process():
        print(f"hfllm {stage}: resuming the interrupted run from {checkpoint}")
    plan.resume_from = checkpoint
    return plan


def write_metrics(folder: str | Path, metrics: dict, stage: str) -> Path:
    """Write metrics.json atomically; this marks the stage folder complete."""
    folder = Path(folder)
    if (folder / MARKER).is_file():  # what the run wrote: --overwrite later replaces this, and no one's other files
        marker = read_marker(folder)
        marker["files"] = sorted({p.name for p in folder.iterdir()} | {METRICS})
        (folder / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    data = {"stage": stage, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **metrics}
    tmp = folder / (METRICS + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float) + "\n")
    os.replace(tmp, folder / METRICS)
    return folder / METRICS


def read_metrics(folder: str | Path) -> dict:
    path = Path(folder) / METRICS
    return json.loads(path.read_text()) if path.is_file() else {}


def plot_losses(log_history: list[dict], path: str | Path, title: str) -> Path | None:
    """Save the training (and eval) loss curve from the Trainer's log history as a PNG."""
    train = [(r["step"], r["loss"]) for r in log_history if "loss" in r and "step" in r]
    evals = [(r["step"], r["eval_loss"]) for r in log_history if "eval_loss" in r and "step" in r]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train loss")
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
