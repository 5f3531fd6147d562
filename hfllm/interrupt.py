"""Ctrl-C during training saves a checkpoint, then stops; running the same command resumes.

The first SIGINT only raises a flag. At the end of the optimizer step under way a
TrainerCallback sets ``should_save`` and ``should_training_stop``, so the Trainer writes
``checkpoint-N`` and leaves its loop; then KeyboardInterrupt carries on up to hfllm.cli,
which exits with 130 and no metrics.json, so the folder reads as interrupted and is resumed
next time. A second Ctrl-C stops at once. (transformers' ``--enable_jit_checkpoint`` does
the like for SIGTERM.)

Under several processes every rank must stop at the same step, or the others would wait
forever in the next collective. The flags are summed over a CPU (gloo) group without
blocking: the sum started at step k is read at step k+1, so a Ctrl-C that reached any
rank stops them all one step later, and the GPU is never made to wait for it.
"""

from __future__ import annotations

import signal
import sys
import threading

from transformers import TrainerCallback

from hfllm import run_folder


class SaveOnInterrupt(TrainerCallback):
    def __init__(self):
        self.requested = False  # set by the signal handler, on this process only
        self.stopped = False  # set when training was stopped for it, on every process alike
        self._group = self._work = self._flag = None

    def on_train_begin(self, args, state, control, **kwargs):
        import torch.distributed as dist

        if args.world_size > 1 and dist.is_available() and dist.is_initialized():
            self._group = dist.new_group(backend="gloo")  # collective: every rank gets here

    def on_step_end(self, args, state, control, **kwargs):
        if self._group is None:
            stop = self.requested
        else:
            import torch
            import torch.distributed as dist

            stop = False
            if self._work is not None:
                self._work.wait()
                stop = bool(self._flag.item())
            self._flag = torch.tensor([int(self.requested)])
            self._work = dist.all_reduce(self._flag, group=self._group, async_op=True)
        if stop:
            self.stopped = True
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self._group is not None:
            import torch.distributed as dist

            if self._work is not None:  # every rank started the same number of reductions: finish the last
                self._work.wait()
            dist.destroy_process_group(self._group)
            self._group = self._work = None


def train(trainer, resume_from_checkpoint=None):
    """``trainer.train(...)``; a first Ctrl-C saves a checkpoint and then raises KeyboardInterrupt."""
    callback = SaveOnInterrupt()
    trainer.add_callback(callback)

    def on_sigint(signum, frame):
        if callback.requested:
            raise KeyboardInterrupt
        callback.requested = True
        if run_folder.is_main_process():
            print("\ninterrupted: saving a checkpoint at the end of this step (Ctrl-C again to quit at once)",
                  file=sys.stderr, flush=True)

    # Signal handlers can only be set from the main thread (the app runs stages elsewhere).
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if main_thread else None
    try:
        result = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)
        trainer.remove_callback(callback)
    # A Ctrl-C after the last step stopped nothing: the run is done, so the stage finishes it.
    if callback.stopped:
        if trainer.is_world_process_zero():
            print(f"checkpoint saved in {trainer.args.output_dir}/checkpoint-{trainer.state.global_step}; "
                  "run the same command again to resume", file=sys.stderr, flush=True)
        raise KeyboardInterrupt
    return result
