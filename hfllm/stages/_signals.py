"""Stopping a training run on Ctrl-C or SIGTERM with a checkpoint, so that the same command resumes it.

Ctrl-C (or SIGTERM) during training saves a checkpoint, then stops; running the same command
resumes. The first SIGINT only raises a flag. At the end of the optimizer step under way a
TrainerCallback sets ``should_save`` and ``should_training_stop``, so the Trainer writes
``checkpoint-N`` and leaves its loop; then KeyboardInterrupt carries on up to hfllm.cli, which
exits with 130 (143 for SIGTERM) and no metrics.json, so the folder reads as interrupted and is
resumed next time. A second signal stops at once. SIGTERM, what schedulers and ``kill`` send
before SIGKILL, is passed on to a handler set before ours (transformers'
``--enable_jit_checkpoint``), whose stop would otherwise look like the end of training and mark
the stage complete. ``catch_stop_signals`` serves loops of our own (hfllm ppo) the same way: they
read ``request.signum`` between updates, save, and call ``request.stop()``.

Under several processes every rank must stop at the same step, or the others would wait
forever in the next collective. The flags are summed over a CPU (gloo) group without
blocking: the sum started at step k is read at step k+1, so a signal that reached any
rank stops them all one step later, and the GPU is never made to wait for it.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager

from transformers import TrainerCallback

from hfllm import run_folder


class Terminated(KeyboardInterrupt):
    """Training stopped for SIGTERM; hfllm.cli exits with 143 for it."""

    exit_code = 143


class StopRequest:
    signum = 0  # the first SIGINT or SIGTERM received, on this process only

    def stop(self, checkpoint: str):
        """Report the checkpoint just saved, then leave as the signal asks (KeyboardInterrupt / Terminated)."""
        if run_folder.is_main_process():
            print(f"checkpoint saved in {checkpoint}; run the same command again to resume", file=sys.stderr,
                  flush=True)
        raise Terminated if self.signum == signal.SIGTERM else KeyboardInterrupt


@contextmanager
def catch_stop_signals():
    """While inside, a first SIGINT or SIGTERM only sets ``request.signum``; a second one raises at once."""
    request, chained = StopRequest(), {}

    def on_signal(signum, frame):
        if request.signum:
            raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        request.signum = signum
        if callable(chained.get(signum)):
            chained[signum](signum, frame)
        if run_folder.is_main_process():
            name = "interrupted" if signum == signal.SIGINT else "terminated"
            print(f"\n{name}: saving a checkpoint at the end of this step (Ctrl-C again to quit at once)",
                  file=sys.stderr, flush=True)

    # Signal handlers can only be set from the main thread (the app runs stages elsewhere).
    main_thread = threading.current_thread() is threading.main_thread()
    previous = {}
    if main_thread:
        chained[signal.SIGTERM] = signal.getsignal(signal.SIGTERM)  # transformers' JIT checkpoint, if on
        previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for signum, handler in previous.items():
            if signal.getsignal(signum) is on_signal:  # the JIT callback restores SIGTERM itself
                signal.signal(signum, handler)


class SaveOnInterrupt(TrainerCallback):
    def __init__(self, request: StopRequest):
        self.request = request
        self.stopped = False  # set when training was stopped for it, on every process alike
        self._group = self._work = self._flag = None

    def on_train_begin(self, args, state, control, **kwargs):
        import torch.distributed as dist

        if args.world_size > 1 and dist.is_available() and dist.is_initialized():
            self._group = dist.new_group(backend="gloo")  # collective: every rank gets here

    def on_step_end(self, args, state, control, **kwargs):
        if self._group is None:
            stop = bool(self.request.signum)
        else:
            import torch
            import torch.distributed as dist

            stop = False
            if self._work is not None:
                self._work.wait()
                stop = bool(self._flag.item())
            self._flag = torch.tensor([int(bool(self.request.signum))])
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
