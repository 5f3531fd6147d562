"""Scale out and crash safety: the accelerate configs, 2 synchronised CPU processes, SIGKILL / SIGINT
and resume, and the pipeline re-running only a killed stage.

Training runs here are subprocesses with OMP_NUM_THREADS=1, as `accelerate launch` runs them: on a
busy 2-core machine two OpenMP threads per process made the tiny model ~5x slower.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import pytest
import yaml

from conftest import TINY_MODEL_FLAGS, metrics, run_cli
from hfllm import run_folder

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "accelerate"
QUIET = ["--disable_tqdm", "true", "--report_to", "none"]



def env(**extra) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT), **extra}


def hfllm(*args) -> list[str]:
    return [sys.executable, "-m", "hfllm.cli", *map(str, args)]


def launch(config: str, *args, prepare_log: Path | None = None) -> list[str]:
    """accelerate launch of `hfllm ...`; with ``prepare_log``, through tests/prepare_log.py (PREPARE_LOG set by
    the caller) to record how the processes checked the output folder."""
    target = [str(ROOT / "tests" / "prepare_log.py")] if prepare_log else ["-m", "hfllm.cli"]
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / config),
            *target, *map(str, args)]


def finished_run(folder: Path, stage: str) -> None:
    """What an earlier run of the stage leaves: its marker, a model file and metrics.json (so only --overwrite
    replaces it)."""
    run_folder.Plan(folder, stage).claim()
    (folder / "model.safetensors").write_bytes(b"an earlier run")
    run_folder.write_metrics(folder, {}, stage=stage)


def assert_main_process_checked_first(log: Path) -> None:
    """Under --overwrite the main process alone removed the finished run; the others claimed the folder after it."""
    entries = sorted((json.loads(line) for line in log.read_text().splitlines()), key=lambda e: e["rank"])
    assert [e["rank"] for e in entries] == [0, 1], entries
    main, other = entries
    assert main["saw_finished_run"] and not other["saw_finished_run"], entries
    assert other["start"] >= main["end"], entries


def run(cmd, timeout=600, **extra_env) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env(**extra_env), capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


# ------------------------------------------------------------------ configs/accelerate


def launch_env(config: Path) -> tuple[object, dict, dict]:
    """What `accelerate launch --config_file config` would do, without starting anything:
    accelerate's own config loader and launch-argument checks, then the environment it gives
    the training processes."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import launch as launch_utils

    args = launch_command_parser().parse_args(["--config_file", str(config), "-m", "hfllm.cli", "pretrain"])
    args, defaults, _ = _validate_launch_command(args)
    with mock.patch.object(launch_utils, "is_port_in_use", return_value=False):  # no network check
        if args.use_deepspeed:
            args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
            _, child = launch_utils.prepare_deepspeed_cmd_env(args)
        elif args.multi_gpu or args.use_fsdp:
            child = launch_utils.prepare_multi_gpu_env(args)
        else:
            _, child = launch_utils.prepare_simple_launcher_cmd_env(args)
    return args, defaults, {k: v for k, v in child.items() if os.environ.get(k) != v}


def nested_keys_are_launch_options(config: Path) -> None:
    """accelerate's loader checks top-level keys only; the nested ones become `accelerate launch`
    options (fsdp_config.x -> --fsdp_x, deepspeed_config.x -> --x), so check them against those."""
    from accelerate.commands.launch import launch_command_parser

    options = {a.dest for a in launch_command_parser()._actions}
    raw = yaml.safe_load(config.read_text())
    for section, prefix in (("fsdp_config", "fsdp_"), ("deepspeed_config", "")):
        for key in raw.get(section) or {}:
            name = key if key.startswith(prefix) else prefix + key
            if name not in options:
                raise ValueError(f"{config.name}: unknown key '{key}' in {section}")


@pytest.mark.parametrize("name", ["single_gpu", "ddp", "fsdp2", "deepspeed_zero2", "deepspeed_zero3",
                                  "multi_node", "cpu_ddp"])
def test_accelerate_config_is_what_accelerate_reads(name):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    path = CONFIGS / f"{name}.yaml"
    config = load_config_from_file(str(path))  # raises on an unknown top-level key
    assert isinstance(config, ClusterConfig)
    nested_keys_are_launch_options(path)
    args, _, child = launch_env(path)
    kind = config.distributed_type.value

    if name == "single_gpu":
        assert kind == "NO" and config.num_processes == 1
    elif name in ("ddp", "cpu_ddp"):
        assert kind == "MULTI_GPU" and args.multi_gpu and args.num_machines == 1
        assert args.nproc_per_node == ("2" if name == "cpu_ddp" else "8")
    elif name == "fsdp2":
        assert kind == "FSDP" and child["FSDP_VERSION"] == "2" and child["FSDP_RESHARD_AFTER_FORWARD"] == "true"
        assert child["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"
        assert "FSDP_TRANSFORMER_CLS_TO_WRAP" not in child  # left to the model's _no_split_modules
        assert child["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"  # save_model writes a from_pretrained folder
        from accelerate.utils import FullyShardedDataParallelPlugin
        from transformers import LlamaConfig, LlamaForCausalLM

        with mock.patch.dict(os.environ, child):
            plugin = FullyShardedDataParallelPlugin()
        assert plugin.fsdp_version == 2
        model = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=2, vocab_size=64))
        plugin.set_auto_wrap_policy(model)
        assert plugin.transformer_cls_names_to_wrap == ["LlamaDecoderLayer"]
        layers = [m for m in model.modules() if plugin.auto_wrap_policy(m, recurse=False, nonwrapped_numel=0)]
        assert len(layers) == 2 and all(type(m).__name__ == "LlamaDecoderLayer" for m in layers)
    elif name.startswith("deepspeed"):
        stage = name[-1]
        assert kind == "DEEPSPEED" and child["ACCELERATE_USE_DEEPSPEED"] == "true"
        assert child["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == stage
        if stage == "3":  # without it save_model writes DeepSpeed shards, not a from_pretrained folder
            assert child["ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL"] == "true"
    elif name == "multi_node":
        assert kind == "MULTI_GPU" and args.num_machines == 2 and args.nproc_per_node == "8"
        assert args.node_rank == 0 and args.rdzv_endpoint == "10.0.0.1:29500"


@pytest.mark.parametrize("text,message", [
    ("distributed_type: MULTI_GPU\nnum_process: 2\n", "unknown keys (['num_process'])"),
    ("distributed_type: FSDP\nfsdp_config:\n  fsdp_verison: 2\n", "unknown key 'fsdp_verison'"),
    ("distributed_type: DEEPSPEED\ndeepspeed_config:\n  zero_stag: 3\n", "unknown key 'zero_stag'"),
])
def test_a_typo_in_an_accelerate_config_fails(tmp_path, text, message):
    from accelerate.commands.config.config_args import load_config_from_file

    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_config_from_file(str(path))
        nested_keys_are_launch_options(path)


# ------------------------------------------------------------------ 2 processes on the CPU


@pytest.fixture(scope="module")
def pretrained(tiny_tokenizer, tmp_path_factory) -> str:
    """A tiny model to fine-tune, trained in a subprocess (one thread: the in-process fixture took
    minutes when other jobs shared the 2 cores)."""
    out = tmp_path_factory.mktemp("scale") / "pretrain"
    run(hfllm("pretrain", "--tokenizer_name_or_path", tiny_tokenizer, *TINY_MODEL_FLAGS, "--max_train_samples", "2000",
              "--max_steps", "60", "--learning_rate", "3e-3", "--per_device_train_batch_size", "16",
              "--eval_steps", "1000", "--save_strategy", "no", "--output_dir", out, *QUIET))
    return str(out)


def count_lines(text: str, needle: str) -> int:
    return sum(needle in line for line in text.replace("\r", "\n").splitlines())


def test_pretrain_on_two_processes_matches_one_with_the_same_global_batch(tiny_tokenizer, tmp_path):
    """2 processes x batch 2 against 1 process x batch 4: same blocks per step, so the same model,
    if and only if the gradients are really averaged across the processes. Measured: train loss
    6.0698611 vs 6.0698607 after 30 steps, eval loss equal to all digits (eval batch 1, so no
    process pads its last batch with a repeated block). Unsynchronised copies were 0.08 apart in train loss
    and 0.1 in eval loss, so the tolerance 1e-3 tells the two apart."""
    common = ["pretrain", "--tokenizer_name_or_path", tiny_tokenizer, *TINY_MODEL_FLAGS, "--max_train_samples", "600",
              "--max_steps", "30", "--learning_rate", "2e-3", "--save_steps", "1000", "--eval_steps", "1000",
              "--per_device_eval_batch_size", "1", "--logging_steps", "10", "--seed", "7", *QUIET]
    one = run(hfllm(*common, "--per_device_train_batch_size", "4", "--output_dir", tmp_path / "one"),
              HF_DATASETS_CACHE=str(tmp_path / "cache1"))
    two = run(launch("cpu_ddp.yaml", *common, "--per_device_train_batch_size", "2", "--output_dir", tmp_path / "two"),
              HF_DATASETS_CACHE=str(tmp_path / "cache2"))
    m1, m2 = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    print({k: (m1[k], m2[k]) for k in ("train_loss", "initial_eval_loss", "eval_loss")})
    assert (m1["world_size"], m2["world_size"]) == (1, 2)
    assert m2["global_step"] == m1["global_step"] == 30
    assert m2["train_loss"] == pytest.approx(m1["train_loss"], abs=1e-3)
    assert m2["initial_eval_loss"] == pytest.approx(m1["initial_eval_loss"], abs=1e-4)
    assert m2["eval_loss"] == pytest.approx(m1["eval_loss"], abs=1e-3)
    assert m2["eval_loss"] < m2["initial_eval_loss"] - 1.0  # it did learn

    # One set of outputs, written once; one copy of hfllm's lines and of the Trainer's logs.
    out = two.stdout + two.stderr
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    assert count_lines(out, "model: llama") == 1 and count_lines(out, "); saved to") == 1
    assert count_lines(out, "ETA ") == 3  # a console line per logging step: logging_steps 10 of 30
    assert "parallel_mode != ParallelMode.DISTRIBUTED" not in out and "find_unused_parameters" not in out
    # Tokenized and packed by the main process, then read from its cache: the second process adds no
    # cache files of its own (a differing fingerprint would).
    files = lambda root: sorted(p.name for p in Path(root).rglob("cache-*.arrow"))  # noqa: E731
    assert files(tmp_path / "cache2") == files(tmp_path / "cache1") != []


@pytest.mark.parametrize("lora", [[], ["--use_peft", "--lora_r", "8", "--lora_dropout", "0", "--merge_lora"]],
                         ids=["full", "lora-merged"])
def test_sft_on_two_processes_matches_one_with_the_same_global_batch(pretrained, tmp_path, lora):
    """Padded chat batches: the loss is averaged over tokens across processes
    (average_tokens_across_devices), so 2 x 2 equals 1 x 4. Measured: train loss equal to all
    digits (3.6072578), eval loss 3.3750842 vs 3.3750839; tolerance 1e-3. With LoRA merged, every
    process saves the adapter and the main process alone merges it; LoRA dropout is off, because each
    process draws its own dropout masks (with the default 0.05: train loss 3.9855 vs 3.9833)."""
    common = ["sft", "--model_name_or_path", pretrained, "--dataset_name", "builtin:sft", "--max_train_samples",
              "200", "--eval_split_size", "16", "--answer_eval_samples", "0", "--max_length", "96", "--max_steps",
              "10", "--learning_rate", "1e-3", "--save_strategy", "no", "--per_device_eval_batch_size", "1",
              "--logging_steps", "5", "--seed", "0", *QUIET,
              # grouping by length draws from mega-batches sized by the per-process batch: 2 x 2 and 1 x 4
              # would see different rows; random order gives both the same global batches
              "--train_sampling_strategy", "random", *lora]
    run(hfllm(*common, "--per_device_train_batch_size", "4", "--output_dir", tmp_path / "one"))
    two = run(launch("cpu_ddp.yaml", *common, "--per_device_train_batch_size", "2", "--output_dir", tmp_path / "two"))
    m1, m2 = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    print({k: (m1[k], m2[k]) for k in ("train_loss", "eval_loss")})
    assert (m1["world_size"], m2["world_size"]) == (1, 2)
    assert m2["train_loss"] == pytest.approx(m1["train_loss"], abs=1e-3)
    assert m2["eval_loss"] == pytest.approx(m1["eval_loss"], abs=1e-3)
    out = two.stdout + two.stderr
    assert count_lines(out, "sft: messages data") == 1 and count_lines(out, "saved model to") == 1
    # The second process shows no progress bars (the main one loads twice to merge).
    assert count_lines(out, "Loading weights: 100%") <= (2 if lora else 1)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    assert not list((tmp_path / "two").glob("adapter_*"))


PAIRS = ["--dataset_name", "builtin:preference", "--max_train_samples", "80", "--eval_split_size", "16",
         "--max_length", "64", "--per_device_eval_batch_size", "1"]


@pytest.mark.parametrize("stage, flags, saved, compare", [
    ("reward", [*PAIRS, "--learning_rate", "1e-3"], "saved reward model", ("train_loss", "eval_loss")),
    ("dpo", [*PAIRS, "--learning_rate", "1e-4", "--eval_samples", "0"], "saved model", ("train_loss", "reward_margin")),
    ("grpo", ["--reward_funcs", "answer_partial", "--num_generations", "2", "--max_completion_length", "8",
              "--eval_samples", "4"], "saved model", ()),
])
def test_post_training_stage_on_two_processes(pretrained, tmp_path, stage, flags, saved, compare):
    """Every process takes part in saving (FSDP and ZeRO-3 need that to gather the weights); the
    main process alone writes the metrics, config and loss plot, and prints the summary once.
    Reward and DPO: 2 x 2 pairs per step equal 1 x 4, as pretraining and SFT do. Measured: train
    loss 0.6829833 vs 0.6829833 (reward), 0.6819294 both (DPO), after moving 0.01 from ln 2 in
    5 steps; tolerance 1e-4. GRPO samples its completions on each process, so it is not compared.
    The run replaces a finished one (--overwrite): the main process claims the folder first (these
    three stages once let every process remove it at the same time)."""
    common = [stage, "--model_name_or_path", pretrained, *flags, "--max_steps", "5", "--save_strategy", "no",
              "--logging_steps", "1", "--seed", "0", *QUIET]
    out, log = tmp_path / stage, tmp_path / "prepare.jsonl"
    finished_run(out, stage)
    proc = run(launch("cpu_ddp.yaml", *common, "--per_device_train_batch_size", "2", "--output_dir", out,
                      "--overwrite", prepare_log=log), PREPARE_LOG=str(log))
    assert_main_process_checked_first(log)
    m = metrics(out)
    assert m["world_size"] == 2 and m["global_step"] == 5
    assert count_lines(proc.stdout + proc.stderr, saved) == 1
    assert (out / "model.safetensors").is_file() and (out / "hfllm_args.yaml").is_file()
    assert not list(out.glob("checkpoint-*"))
    if compare:
        run(hfllm(*common, "--per_device_train_batch_size", "4", "--output_dir", tmp_path / "one"))
        one = metrics(tmp_path / "one")
        print({k: (one[k], m[k]) for k in compare})
        for key in compare:
            assert m[key] == pytest.approx(one[key], abs=1e-4), key
        assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())


def test_ppo_on_two_processes_logs_once_per_update_and_records_the_world_size(pretrained, tmp_path):
    """hfllm ppo's own loop under accelerate: one log line per update, metrics.json's world_size (as every
    stage writes it; ppo once wrote num_processes), and the folder claimed by the main process first."""
    out, log = tmp_path / "ppo", tmp_path / "prepare.jsonl"
    finished_run(out, "ppo")
    proc = run(launch("cpu_ddp.yaml", "ppo", "--model_name_or_path", pretrained, "--reward_funcs", "answer_partial",
                      "--max_steps", "2", "--per_device_train_batch_size", "4", "--response_length", "8",
                      "--num_ppo_epochs", "1", "--eval_samples", "4", "--disable_tqdm", "true", "--output_dir", out,
                      "--overwrite", prepare_log=log), PREPARE_LOG=str(log))
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("step ")]
    assert len(lines) == 2, proc.stdout[-2000:]
    m = metrics(out)
    assert m["world_size"] == 2 and "num_processes" not in m and len(m["log"]) == 2
    assert_main_process_checked_first(log)


# ------------------------------------------------------------------ crash safety


def wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 300):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (code {proc.returncode}) before {what}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"timed out waiting for {what}")


def complete_checkpoints(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("checkpoint-*") if run_folder.checkpoint_is_complete(p))


def test_sigkill_mid_pretraining_resumes_to_the_same_loss(tiny_tokenizer, tmp_path):
    """Killed after its first checkpoint, the same command resumes and ends where an uninterrupted run
    ends. Measured: eval loss equal to 1e-6 or better; tolerance 1e-3, as the in-process resume test."""
    cmd = lambda out: hfllm("pretrain", "--tokenizer_name_or_path", tiny_tokenizer, *TINY_MODEL_FLAGS,  # noqa: E731
                            "--max_train_samples", "600", "--max_steps", "80", "--per_device_train_batch_size", "4",
                            "--learning_rate", "2e-3", "--save_steps", "10", "--eval_steps", "1000", "--seed", "7",
                            "--output_dir", out, *QUIET)
    run(cmd(tmp_path / "full"))
    cut = tmp_path / "cut"
    proc = subprocess.Popen(cmd(cut), env=env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: complete_checkpoints(cut), proc, "a checkpoint")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not run_folder.is_complete(cut)
    killed_at = complete_checkpoints(cut)[-1]
    # A newer checkpoint half written when the process died (no trainer_state.json yet) is passed over.
    (cut / "checkpoint-79").mkdir()
    (cut / "checkpoint-79" / "trainer_state.json").write_text('{"global_step": 7')

    resumed = run(cmd(cut))
    assert f"resuming the interrupted run from {cut / killed_at}" in resumed.stdout
    full, again = metrics(tmp_path / "full"), metrics(cut)
    print("killed at", killed_at, {k: (full[k], again[k]) for k in ("initial_eval_loss", "eval_loss")})
    assert again["global_step"] == full["global_step"] == 80
    assert again["eval_loss"] == pytest.approx(full["eval_loss"], abs=1e-3)
    assert again["initial_eval_loss"] == pytest.approx(full["initial_eval_loss"], abs=1e-6)


def interrupt_then_resume(cmd, out: Path, signum=signal.SIGINT, log_line="ETA "
                          ) -> tuple[str, subprocess.CompletedProcess]:
    """Start cmd, press Ctrl-C (or send signum) once the second training log line is out, return the
    checkpoint it left and the result of running cmd again."""
    proc = subprocess.Popen(cmd, env=env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if sum(log_line in x for x in seen) == 2:
            proc.send_signal(signum)
            break
    rest, _ = proc.communicate(timeout=300)
    log = "".join(seen) + rest
    name, code = ("interrupted", 130) if signum == signal.SIGINT else ("terminated", 143)
    assert proc.returncode == code, log[-3000:]
    assert f"{name}: saving a checkpoint" in log and "run the same command again to resume" in log
    assert not run_folder.is_complete(out)
    checkpoints = complete_checkpoints(out)
    assert len(checkpoints) == 1, (checkpoints, log[-2000:])  # save_steps is far away: this one is Ctrl-C's
    return checkpoints[0], run(cmd)


@pytest.mark.parametrize("signum, jit", [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGTERM, True)],
                         ids=["ctrl-c", "sigterm", "sigterm-with-jit-checkpoint"])
def test_ctrl_c_or_sigterm_during_pretraining_saves_a_checkpoint_and_resumes(tiny_tokenizer, tmp_path, signum, jit):
    """SIGTERM as Ctrl-C, also with transformers' JIT checkpoint on: alone, its stop would read as
    the end of training and the stage would write metrics.json for a quarter-trained model."""
    out = tmp_path / "pre"
    cmd = hfllm("pretrain", "--tokenizer_name_or_path", tiny_tokenizer, *TINY_MODEL_FLAGS, "--max_train_samples", "600",
                "--max_steps", "150", "--per_device_train_batch_size", "4", "--save_steps", "100000",
                "--eval_steps", "100000", "--logging_steps", "1", "--output_dir", out, *QUIET,
                *(["--enable_jit_checkpoint", "true"] if jit else []))
    checkpoint, again = interrupt_then_resume(cmd, out, signum)
    step = int(checkpoint.split("-")[1])
    assert 2 <= step < 150
    assert f"resuming the interrupted run from {out / checkpoint}" in again.stdout
    assert metrics(out)["global_step"] == 150


def test_ctrl_c_during_sft_saves_a_checkpoint_and_resumes(pretrained, tmp_path):
    out = tmp_path / "sft"
    cmd = hfllm("sft", "--model_name_or_path", pretrained, "--dataset_name", "builtin:sft", "--max_length", "96",
                "--max_steps", "120", "--per_device_train_batch_size", "4", "--save_steps", "100000",
                "--logging_steps", "1", "--output_dir", out, *QUIET)
    checkpoint, again = interrupt_then_resume(cmd, out)
    assert f"resuming the interrupted run from {out / checkpoint}" in again.stdout
    assert metrics(out)["global_step"] == 120


def test_ctrl_c_during_grpo_and_ppo_saves_a_checkpoint_and_resumes(pretrained, tmp_path):
    """The RL stages too: GRPO through the Trainer, PPO between its own updates."""
    rl = ["--model_name_or_path", pretrained, "--reward_funcs", "answer_partial", "--per_device_train_batch_size", "4",
          "--eval_samples", "0", "--save_steps", "100000", *QUIET]
    out = tmp_path / "grpo"
    cmd = hfllm("grpo", *rl, "--logging_steps", "1", "--num_generations", "2", "--max_completion_length", "8", "--max_steps", "40",
                "--output_dir", out)
    checkpoint, again = interrupt_then_resume(cmd, out)
    assert f"resuming the interrupted run from {out / checkpoint}" in again.stdout
    assert metrics(out)["global_step"] == 40

    out = tmp_path / "ppo"
    cmd = hfllm("ppo", *rl, "--response_length", "8", "--num_ppo_epochs", "1", "--max_steps", "30",
                "--output_dir", out)
    checkpoint, again = interrupt_then_resume(cmd, out, signal.SIGTERM, log_line="ETA ")
    step = int(checkpoint.split("-")[1])
    assert metrics(out)["resumed_from_step"] == step and metrics(out)["global_step"] == 30


def test_pipeline_reruns_only_the_stage_that_was_killed(tiny_tokenizer, tmp_path):
    run_dir = tmp_path / "run"
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(f"""
run_dir: {run_dir}
stages:
  - name: pretrain
    args: {{tokenizer_name_or_path: {tiny_tokenizer}, hidden_size: 64, num_hidden_layers: 2,
            intermediate_size: 128, max_position_embeddings: 128, max_train_samples: 200, max_steps: 4,
            disable_tqdm: true}}
  - name: sft
    args: {{model_name_or_path: "{{pretrain}}", max_steps: 150, save_steps: 5, max_length: 96,
            max_train_samples: 600, answer_eval_samples: 0, disable_tqdm: true}}
""")
    proc = subprocess.Popen(hfllm("run", pipeline), env=env(), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: complete_checkpoints(run_dir / "sft"), proc, "an SFT checkpoint")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert run_folder.is_complete(run_dir / "pretrain") and not run_folder.is_complete(run_dir / "sft")
    pretrained_at = (run_dir / "pretrain" / "metrics.json").stat().st_mtime_ns

    again = run(hfllm("run", pipeline))
    assert "pretrain: already complete" in again.stdout
    assert "hfllm sft: resuming the interrupted run from" in again.stdout
    assert (run_dir / "pretrain" / "metrics.json").stat().st_mtime_ns == pretrained_at
    assert metrics(run_dir / "sft")["global_step"] == 150
    assert run_cli("run", pipeline) == 0  # and now there is nothing left to do
