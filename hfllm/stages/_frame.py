"""The frame every training stage runs in, so that a stage module reads as its own recipe only.

    run = Run.start("dpo", argv, (DPOScriptArguments, DPOConfig, ModelConfig), defaults={...})
    ...                                           # the stage's own checks of its arguments
    run.prepare()                                 # the output folder (resume?), the seed
    train_ds, eval_ds = ...                       # the stage's data
    tokenizer = run.load_tokenizer()
    model = run.load_model(load_causal_lm, tokenizer)
    trainer = DPOTrainer(model=model, args=run.config, ...)
    result = run.train(trainer)
    run.save(trainer, tokenizer)                  # every process
    run.finish({...metrics...}, trainer, plot="DPO loss", lines=[...])   # the main process writes

``Run.start`` parses the flags and YAML (with the per-device defaults), checks every option
(hfllm.checks) and the model sources, and takes the push flag and the Hub token off the trainer's
arguments (the Trainer pickles them into every checkpoint; hfllm pushes once, at the end, with the
model card). ``prepare`` decides what happens to the output folder (run_folder.prepare: resume,
replace, or a one-line refusal) without writing anything, and seeds. ``train`` (or ``claim``) is
when the folder becomes this run's: the main process alone removes a run being replaced and records
the stage and its inputs, then the others go on. So a run refused or failed on its way, on bad data
or a model that does not load, leaves the folder as it was. ``finish`` writes, on the main process
only, the resolved arguments, the loss plot and metrics.json (with the trainer's log history, which hfllm
run's report card draws; last: the folder is then complete),
then pushes when asked and prints the summary.

Ctrl-C or SIGTERM during training saves a checkpoint, then stops (hfllm.stages._signals); running the
same command resumes.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

from transformers import TrainerCallback

from hfllm import run_folder
from hfllm.chat_template import ensure_chat_template, set_stop_tokens
from hfllm.checks import check_options, input_paths, sources
from hfllm.config import config_flag, parse_args, save_config
from hfllm.console import use_console
from hfllm.errors import UserError, first_line
from hfllm.loading import load_tokenizer, quantization_config
from hfllm.model import (FINE_TUNING_LR, fine_tuning_learning_rate, fine_tuning_rule, parameter_count, short,
                         torch_dtype, training_defaults)
from hfllm.stages._signals import SaveOnInterrupt, catch_stop_signals


def stage_defaults(stage: str, defaults: dict | None = None) -> dict:
    """What a stage's options default to: hfllm's for every stage, the stage's own, then the device's."""
    # No progress bar: hfllm.console's line per logging step says the step, the total and the time left.
    return {"output_dir": f"runs/default/{stage}", "report_to": "none", "disable_tqdm": True, **(defaults or {}),
            **training_defaults()}


class Run:
    """One run of a training stage: its parsed arguments, output folder, checkpoint and push settings."""

    def __init__(self, stage: str, parsed: list, explicit: set[str], config_path: str | None = None):
        from trl import ModelConfig

        self.stage, self.parsed, self.explicit, self.config_path = stage, parsed, explicit, config_path
        self.args = parsed[0]  # the stage's script arguments (hfllm.data.load.ScriptArguments)
        self.config = next((p for p in parsed if hasattr(p, "output_dir")), self.args)  # what the trainer reads
        self.model_args = next((p for p in parsed if isinstance(p, ModelConfig)), None)
        self.output_dir = Path(self.config.output_dir)
        # Pushed by hfllm.hub at the end, with the card: never by the Trainer, whose arguments (pickled into
        # training_args.bin in every checkpoint) must not hold the token either.
        self.push, self.hub_token = bool(getattr(self.config, "push_to_hub", False)), None
        if hasattr(self.config, "push_to_hub"):
            self.hub_token, self.config.push_to_hub, self.config.hub_token = self.config.hub_token, False, None
        self.resume_from, self.plan = None, None

    @classmethod
    def start(cls, stage: str, argv: list[str], dataclass_types: list, *, defaults: dict | None = None,
              needs_model: str | None = None) -> "Run":
        """Parse (per-device defaults under the stage's), check every option and model source (hfllm.checks).
        The stage then checks what else it needs and calls ``prepare``."""
        helps = {"learning_rate": f"The initial learning rate for AdamW. When not given, hfllm picks it from the "
                                  f"model's size once it has loaded: {fine_tuning_rule(stage)} (TRL's own default "
                                  f"is %(default)s)"} if stage in FINE_TUNING_LR else None
        parsed, explicit = parse_args(dataclass_types, argv, prog=f"hfllm {stage}",
                                      defaults=stage_defaults(stage, defaults), helps=helps)
        run = cls(stage, parsed, explicit, config_flag(argv))
        run.args.check_supported(f"hfllm {stage}")
        if run.args.evaluate_after:  # its tasks checked now, not once the stage has trained
            from hfllm.eval import check_evaluate_after

            check_evaluate_after(run.args.evaluate_after, "", stage)
        run._liger_where_it_runs()
        if run.model_args is not None and not run.model_args.model_name_or_path:
            raise UserError(needs_model or f"{stage} needs a model: set --model_name_or_path")
        check_options(stage, parsed, explicit)  # before any data or weights are read, and before prepare
        return run

    def _liger_where_it_runs(self) -> None:
        """``use_liger_kernel: true`` (as the GPU recipes have) means Liger where it can run: off, with a note,
        without liger-kernel or a GPU, rather than an ImportError once the model has loaded."""
        import importlib.util

        import torch

        if getattr(self.config, "use_liger_kernel", False) and not (
                torch.cuda.is_available() and importlib.util.find_spec("liger_kernel") is not None):
            self.config.use_liger_kernel = False
            if self.is_main_process:
                print("note: use_liger_kernel is on but liger-kernel cannot run here (it needs a GPU and "
                      "`pip install liger-kernel`); training without it")

    def prepare(self) -> None:
        """Decide what happens to the output folder (resume, replace or refuse; nothing is written yet), then
        seed."""
        from transformers import set_seed

        self.plan = run_folder.prepare(self.output_dir, overwrite=self.args.overwrite, stage=self.stage,
                                       resume=getattr(self.config, "resume", True),
                                       inputs=input_paths(self.parsed, self.config_path), sources=sources(self.parsed))
        self.resume_from = self.plan.resume_from
        set_seed(self.config.seed)  # LoRA and new heads are drawn before a trainer seeds itself

    def claim(self) -> None:
        """The output folder becomes this run's (every process calls it: the main one first, alone removing a
        run being replaced; the others wait for it)."""
        if not self.plan.claimed:
            with main_process_first(self.distributed_state):
                self.plan.claim()

    @property
    def distributed_state(self):
        from accelerate import PartialState

        if hasattr(self.config, "_setup_devices"):  # TrainingArguments sets the processes up itself
            _ = self.config.device
            return self.config.distributed_state or PartialState()
        import torch

        return PartialState(cpu=getattr(self.config, "use_cpu", False) or not torch.cuda.is_available())

    @property
    def is_main_process(self) -> bool:
        return run_folder.is_main_process()

    @property
    def dtype(self) -> str:
        return torch_dtype(self.config)

    @property
    def trust_remote_code(self) -> bool:
        return bool(getattr(self.config, "trust_remote_code", False))

    def load_tokenizer(self, name_or_path: str | None = None):
        """The model's tokenizer (revision and remote code as the flags say), with a chat template; then what the
        stage's data looks like through it (hfllm.inspect.stage_summary), printed by the main process."""
        source = name_or_path or self.model_args.model_name_or_path
        revision = self.model_args.model_revision if self.model_args and not name_or_path else None
        tokenizer = load_tokenizer(source, revision=revision, trust_remote_code=self.trust_remote_code)
        if ensure_chat_template(tokenizer) and self.is_main_process:
            print("note: the model has no chat template; using hfllm's (role markers as plain text)")
        if name_or_path is None:  # the stage's data through it, in a few lines
            from hfllm.inspect import stage_summary

            # On every process: TRL's data preparation, which the summary runs, waits for the other processes
            # (main_process_first); run on the main one alone, the ranks' barriers no longer pair and DDP hangs.
            try:
                lines = stage_summary(self.stage, tokenizer, self.args, self.config, self.explicit)
            except Exception as exc:  # noqa: BLE001  a report: the stage has read its data already, and trains
                lines = [f"note: no data summary ({first_line(exc, with_type=True)})"]
            if self.is_main_process:
                print("\n".join(lines), flush=True)
        return tokenizer

    def load_model(self, loader, tokenizer=None, **kwargs):
        """``loader`` (hfllm.loading's) on the model to start from, in the precision the flags ask for (with
        ``--load_in_4bit`` / ``--load_in_8bit``: its base quantized by bitsandbytes, for QLoRA; the stages that
        cannot train on it were refused in ``start``); a causal LM learns where to stop from ``tokenizer``'s
        end-of-turn tokens."""
        quantized = quantization_config(self.model_args, self.dtype)
        if quantized is not None:
            kwargs["quantization_config"] = quantized
        model = loader(self.model_args.model_name_or_path, revision=self.model_args.model_revision,
                       dtype=self.dtype, trust_remote_code=self.trust_remote_code, **kwargs)
        if self.args.ignore_bias_buffers:  # TRL's DDP workaround for boolean buffers (attention masks)
            import torch

            model._ddp_params_and_buffers_to_ignore = [name for name, buffer in model.named_buffers()
                                                       if buffer.dtype == torch.bool]
        if tokenizer is not None:
            set_stop_tokens(model, tokenizer)
        return model

    def default_learning_rate(self, model) -> None:
        """Unless the user set learning_rate: the stage's default for ``model``'s size, full or LoRA
        (hfllm.model.fine_tuning_learning_rate), said in one line. Before the trainer is built."""
        if "learning_rate" in self.explicit:
            return
        lora = bool(getattr(self.model_args, "use_peft", False))
        parameters = model.num_parameters()
        self.config.learning_rate = rate = fine_tuning_learning_rate(self.stage, parameters, lora)
        if self.is_main_process:
            print(f"learning_rate {short(rate)} (default for a {parameter_count(parameters)}"
                  f"-parameter model, {'LoRA' if lora else 'full fine-tuning'}; --learning_rate to change)")

    def train(self, trainer):
        """Train (resuming when the folder holds a checkpoint); Ctrl-C or SIGTERM: checkpoint, then exit 130 / 143."""
        self.claim()
        use_console(trainer)  # one aligned line per logging step, not the Trainer's dicts
        return train_and_checkpoint_on_signal(trainer, self.resume_from)

    def save(self, trainer, tokenizer=None) -> None:
        """On every process: under FSDP or ZeRO-3 gathering the weights takes them all (the main one writes)."""
        self.claim()
        if tokenizer is not None:
            set_stop_tokens(trainer.model, tokenizer)
        trainer.save_model(str(self.output_dir))

    def finish(self, metrics: dict, trainer=None, *, plot: str | None = None, lines: list[str] = ()) -> None:
        """On the main process: the arguments, the loss plot, metrics.json (the folder is then complete), the
        push when asked, the summary."""
        if not self.is_main_process:
            return
        self.plan.claim()
        repo_id = None
        if self.push:  # recorded, so that a stage trained on this one names it as its base on the Hub
            from hfllm.hub.push import repo_for_stage

            repo_id = repo_for_stage(getattr(self.config, "hub_model_id", None), self.output_dir, self.hub_token)
            self.config.push_to_hub, self.config.hub_model_id = True, repo_id
        save_config(self.output_dir / "hfllm_args.yaml", *self.parsed)
        if plot and trainer is not None:
            run_folder.plot_losses(trainer.state.log_history, self.output_dir / "loss.png", plot)
        history = {"log_history": trainer.state.log_history} if trainer is not None else {}  # the report's curves
        run_folder.write_metrics(self.output_dir, {**metrics, "world_size": self.distributed_state.num_processes,
                                                   **history}, stage=self.stage)
        if self.args.evaluate_after:  # into metrics.json (then the card), before the push; `hfllm run`'s place
            from hfllm.eval import evaluate_after

            evaluate_after(str(self.output_dir), self.args.evaluate_after, str(self.output_dir.parent / "eval"),
                           self.stage)
        if repo_id:
            from hfllm.hub.push import push

            url = push(str(self.output_dir), repo_id, token=self.hub_token, revision=getattr(self.config, "hub_revision",
                       None), private=bool(getattr(self.config, "hub_private_repo", False)))
            print(f"pushed to {url}")
        for line in lines:
            print(line)


@contextmanager
def main_process_first(state):
    """The main process runs the block first, then the others; also when it fails there (the others then
    meet the same error rather than waiting for it forever)."""
    try:
        if not state.is_main_process:
            state.wait_for_everyone()
        yield
    finally:
        if state.is_main_process:
            state.wait_for_everyone()


class WholeRun(TrainerCallback):
    """Whole-run figures across resumes: the Trainer's train_loss and train_runtime cover only the steps of one
    ``train()`` call. Each checkpoint gets ``hfllm_progress.json`` (seconds and summed loss so far); a resumed
    run adds its own part to the checkpoint's."""

    FILE = "hfllm_progress.json"

    def __init__(self, trainer, checkpoint: str | None):
        import json

        self.trainer, self.start = trainer, time.perf_counter()
        try:
            self.before = json.loads((Path(checkpoint) / self.FILE).read_text()) if checkpoint else {}
        except (OSError, ValueError):
            self.before = {}  # a checkpoint from before this file: its part is estimated from the loss log

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return self.before.get("train_seconds", 0.0) + time.perf_counter() - self.start

    def on_save(self, args, state, control, **kwargs):
        import json

        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        # The Trainer's running sums of this call's losses (drained at each log); absent in other versions.
        loss = getattr(self.trainer, "_total_loss_scalar", None)
        pending = getattr(self.trainer, "_tr_loss", None)
        if run_folder.is_main_process() and folder.is_dir() and loss is not None:
            loss += float(pending) if pending is not None else 0.0
            (folder / self.FILE).write_text(json.dumps({"train_seconds": self.seconds(), "global_step":
                                                        state.global_step, "loss_sum": self.loss_before() + loss}))

    def loss_before(self) -> float:
        """Summed loss of the steps before this call: recorded, or from the loss log (interval means)."""
        if "loss_sum" in self.before:
            return self.before["loss_sum"]
        first, total, last = getattr(self.trainer, "_initial_global_step", 0), 0.0, 0
        for record in self.trainer.state.log_history:
            if "loss" in record and "step" in record and record["step"] <= first:
                total, last = total + record["loss"] * (record["step"] - last), record["step"]
        return total * first / last if last else 0.0

    def result(self, result, steps_now: int):
        """``result`` with train_loss and train_runtime over the whole run."""
        step = result.global_step
        if step and steps_now < step:
            loss = (self.loss_before() + result.training_loss * steps_now) / step
            result = result._replace(training_loss=loss)
        return result._replace(metrics={**result.metrics, "train_runtime": self.seconds()})


def finished_checkpoint(checkpoint: str | None):
    """The TrainerState of a checkpoint saved at the run's last step (killed while saving the result), else None:
    resuming from it would train one step past max_steps."""
    from transformers import TrainerState

    try:
        state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json")) if checkpoint else None
    except (OSError, ValueError):
        return None
    return state if state and state.max_steps and state.global_step >= state.max_steps else None


def train_and_checkpoint_on_signal(trainer, resume_from_checkpoint=None):
    """``trainer.train(...)``; a first Ctrl-C or SIGTERM saves a checkpoint and then raises KeyboardInterrupt.
    Loss and time are the whole run's, resumed or not."""
    from transformers.trainer_utils import TrainOutput

    whole = WholeRun(trainer, resume_from_checkpoint)
    done = finished_checkpoint(resume_from_checkpoint)
    if done is not None and not (trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled):
        trainer._load_from_checkpoint(resume_from_checkpoint)  # what train() does first when resuming
        trainer.state = done
        trainer._initial_global_step = done.global_step
        return whole.result(TrainOutput(done.global_step, 0.0, {}), steps_now=0)
    with catch_stop_signals() as request:
        callback = SaveOnInterrupt(request)
        trainer.add_callback(callback)
        trainer.add_callback(whole)
        try:
            result = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
        finally:
            trainer.remove_callback(callback)
            trainer.remove_callback(whole)
    # A signal after the last step stopped nothing: the run is done, so the stage finishes it.
    if callback.stopped:
        request.stop(f"{trainer.args.output_dir}/checkpoint-{trainer.state.global_step}")
    return whole.result(result, steps_now=result.global_step - getattr(trainer, "_initial_global_step", 0))
