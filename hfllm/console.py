"""What training prints: one aligned line per logging step, not the dicts of strings transformers prints.

    step   40/200  loss   2.3456  lr 1.00e-04  grad    0.812  acc   0.7500   21,334 tok/s  ETA 0:01:12
    eval   40/200  loss   2.1234  acc   0.8000
    done  200/200  loss   2.0011  in 0:04:31

``Console`` (a TrainerCallback) takes the place of the Trainer's PrinterCallback / ProgressCallback in
every Trainer-based stage (``use_console``, from the shared frame); the PPO loop prints its updates with
``format_line`` too. Progress bars are off by default (hfllm sets ``disable_tqdm``): the line already says
the step, the total and the time left, and a bar redrawn with carriage returns garbles every log that is
not a terminal (``hfllm run`` piped to a file, the app's log, a scheduler's output). ``--disable_tqdm
false`` brings the Trainer's bar back, without its dicts.
"""

from __future__ import annotations

import math
import time

from transformers import TrainerCallback

# The Trainer's and TRL's log keys worth a column, in this order, with a short label and a format.
COLUMNS = {
    "loss": ("loss", "{:.4f}"), "learning_rate": ("lr", "{:.2e}"), "grad_norm": ("grad", "{:.3g}"),
    "mean_token_accuracy": ("tok acc", "{:.4f}"),  # SFT
    "rewards/accuracies": ("acc", "{:.4f}"), "rewards/margins": ("margin", "{:.4f}"),  # DPO and its kin
    "accuracy": ("acc", "{:.4f}"), "margin": ("margin", "{:.4f}"),  # reward
    "reward": ("reward", "{:.4f}"), "score": ("score", "{:.4f}"),  # RL
    "rule_accuracy": ("answers ok", "{:.4f}"),  # PPO: the sampled answers that are right (builtin.answer_is_correct)
    "kl": ("kl", "{:.4f}"), "entropy": ("entropy", "{:.4f}"), "response_length": ("length", "{:.1f}"),
}
WIDTH = 8  # each value right-aligned in this many characters, so columns line up from line to line


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def format_line(kind: str, step: int, total: int, values: dict, *, tokens_per_second: float | None = None,
                eta: float | None = None) -> str:
    """``kind`` (step, eval, done) at step/total, then each known value of ``values`` (log keys, as in
    COLUMNS), the throughput and the time left where known."""
    width = len(str(total))
    parts = [f"{kind:<5} {step:>{width}}/{total}"]
    for key, (label, fmt) in COLUMNS.items():
        value = values.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            text = fmt.format(value) if math.isfinite(value) else str(value)
            parts.append(f"{label} {text:>{WIDTH}}")
    if tokens_per_second is not None:
        parts.append(f"{tokens_per_second:>9,.0f} tok/s")
    if eta is not None:
        parts.append(f"ETA {duration(eta)}")
    return "  ".join(parts)


def write(line: str) -> None:
    """Print above a progress bar when there is one (tqdm.write prints plainly otherwise)."""
    import sys

    from tqdm.auto import tqdm

    tqdm.write(line)
    sys.stdout.flush()  # a line as it happens, also into a pipe (hfllm run, the app, a scheduler's log)


class Progress:
    """Tokens per second between two lines and the time left, from the steps done since training (re)started."""

    def __init__(self, step: int, tokens: float | None = None):
        self.start = self.last_time = time.perf_counter()
        self.first_step, self.last_tokens = step, tokens

    def rates(self, step: int, total: int, tokens: float | None) -> tuple[float | None, float | None]:
        now = time.perf_counter()
        speed = None
        if tokens is not None and self.last_tokens is not None and tokens > self.last_tokens and now > self.last_time:
            speed = (tokens - self.last_tokens) / (now - self.last_time)
        self.last_time, self.last_tokens = now, tokens
        done = step - self.first_step
        eta = (now - self.start) / done * max(total - step, 0) if done > 0 else None
        return speed, eta


class Console(TrainerCallback):
    """The Trainer's logs as format_line lines, on the main process."""

    def __init__(self):
        self.progress = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.progress = Progress(state.global_step, state.num_input_tokens_seen or 0)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        total = state.max_steps or state.global_step
        if any(k.startswith("eval_") for k in logs):
            values = {k[len("eval_"):]: v for k, v in logs.items() if k.startswith("eval_")}
            write(format_line("eval", state.global_step, total, values))
        elif "train_loss" in logs:  # the Trainer's closing record: the mean loss of this call
            write(format_line("done", state.global_step, total, {"loss": logs.get("train_loss")})
                  + f"  in {duration(logs['train_runtime'])}")
        else:
            tokens = logs.get("num_tokens", logs.get("num_input_tokens_seen"))
            speed, eta = self.progress.rates(state.global_step, total, tokens) if self.progress else (None, None)
            write(format_line("step", state.global_step, total, logs, tokens_per_second=speed, eta=eta))


def use_console(trainer) -> None:
    """Console in place of the Trainer's printing callbacks; with ``disable_tqdm`` false, its bar without dicts."""
    from transformers.trainer import DEFAULT_PROGRESS_CALLBACK
    from transformers.trainer_callback import PrinterCallback

    for callback in (PrinterCallback, DEFAULT_PROGRESS_CALLBACK, Console):
        trainer.remove_callback(callback)
    if not trainer.args.disable_tqdm:
        trainer.add_callback(type("Bar", (DEFAULT_PROGRESS_CALLBACK,), {"on_log": lambda *a, **k: None}))
    trainer.add_callback(Console())
