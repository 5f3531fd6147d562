"""A resumed run reports the whole run: its loss and tokens/s cover every step, not the resumed part only, and
a run whose last checkpoint is its last step finishes without training past max_steps."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import QUIET, TINY_MODEL_FLAGS, metrics, run_cli


@pytest.fixture(scope="module")
def finished(tiny_tokenizer, tmp_path_factory):
    """A 6-step pretraining run with checkpoints at steps 3 and 6 (both kept), and the command that made it."""
    out = tmp_path_factory.mktemp("resume") / "pretrain"
    argv = ["pretrain", "--tokenizer_name_or_path", tiny_tokenizer, *TINY_MODEL_FLAGS, "--max_train_samples", "300",
            "--max_steps", "6", "--save_steps", "3", "--save_total_limit", "3", "--logging_steps", "1",
            "--eval_strategy", "no", "--per_device_train_batch_size", "4", "--seed", "0", *QUIET]
    assert run_cli(*argv, "--output_dir", out) == 0
    return out, argv


def copy_without(out, tmp_path, *names):
    """The run as a kill would have left it: without metrics.json (and the named checkpoints)."""
    folder = tmp_path / "pretrain"
    shutil.copytree(out, folder)
    for name in ("metrics.json", *names):
        path = folder / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return folder


def test_resuming_a_run_killed_while_saving_its_result_trains_no_further(finished, tmp_path):
    out, argv = finished
    folder = copy_without(out, tmp_path)
    assert run_cli(*argv, "--output_dir", folder) == 0
    again, first = metrics(folder), metrics(out)
    assert again["global_step"] == 6 and not (folder / "checkpoint-7").exists()
    assert again["train_loss"] == pytest.approx(first["train_loss"], rel=1e-6)
    assert again["train_seconds"] == pytest.approx(first["train_seconds"], rel=0.2, abs=0.5)
    assert again["train_tokens_per_second"] == pytest.approx(first["train_tokens_per_second"], rel=0.3)


def test_a_mid_run_resume_reports_whole_run_figures(finished, tmp_path):
    out, argv = finished
    progress = json.loads((out / "checkpoint-3" / "hfllm_progress.json").read_text())
    assert progress["global_step"] == 3 and progress["train_seconds"] > 0 and progress["loss_sum"] > 0
    folder = copy_without(out, tmp_path, "checkpoint-6")
    assert run_cli(*argv, "--output_dir", folder) == 0
    again, first = metrics(folder), metrics(out)
    assert again["global_step"] == 6
    # Steps 4-6 retrace the first run's (same data order, restored random state): the same whole-run mean.
    assert again["train_loss"] == pytest.approx(first["train_loss"], rel=1e-4)
    # Seconds of both parts: the tokens of 6 steps over the time of 6 steps, not of 3.
    assert again["train_tokens_per_second"] < 1.8 * first["train_tokens_per_second"]
