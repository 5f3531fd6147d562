"""What every stage's output folder holds, and the rules that keep it safe.

A stage folder is complete when ``metrics.json`` exists: it is written last, after
the model, so a crash never leaves a folder that a later stage mistakes for
finished. A folder that holds checkpoints but no metrics.json is an interrupted
run and is resumed. Nothing the user made is replaced without ``--overwrite``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
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


def prepare(folder: str | Path, *, overwrite: bool, stage: str, resume: bool = True) -> str | None:
    """Check the output folder before any model is loaded; return a checkpoint to resume from.

    - missing or empty folder: fine;
    - a finished run: refused unless ``overwrite`` (then removed);
    - an interrupted run with checkpoints: resumed (unless ``overwrite`` or not ``resume``);
    - anything else (files we did not write): refused unless ``overwrite``.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"output_dir {folder} is a file; choose a folder path")
    if not folder.exists() or not any(folder.iterdir()):
        return None
    if overwrite:
        shutil.rmtree(folder)
        return None
    if is_complete(folder):
        raise UserError(f"output_dir {folder} already holds a finished run; pass --overwrite to replace it "
                        "or choose another --output_dir")
    checkpoint = last_checkpoint(folder)
    if checkpoint and resume:
        if is_main_process():
            print(f"hfllm {stage}: resuming the interrupted run from {checkpoint}")
        return checkpoint
    raise UserError(f"output_dir {folder} is not empty and holds no finished {stage} run; "
                    "pass --overwrite to replace it or choose another --output_dir")


def write_metrics(folder: str | Path, metrics: dict, stage: str) -> Path:
    """Write metrics.json atomically; this marks the stage folder complete."""
    folder = Path(folder)
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
