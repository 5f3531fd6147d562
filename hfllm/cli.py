"""One entry point: ``hfllm <command> [--config FILE] [--key value ...]``.

Each command lives in its own module with a ``main(argv)`` function; this file
only dispatches, and turns what the user can fix into one readable line
(hfllm.errors.user_line; ``--debug`` keeps the traceback). Run any training command on many processes with::

    accelerate launch -m hfllm.cli pretrain --config configs/tiny/pretrain.yaml
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

from hfllm.errors import user_line
from hfllm.stages import STAGES

# command -> (module, one-line help): the stages (hfllm.stages.STAGES), then the tools. Modules are
# imported lazily so that `hfllm --help` answers at once and a broken optional extra breaks one command only.
COMMANDS = {
    **{s.name: (s.module, s.help) for s in STAGES.values() if not s.argv},
    "merge": ("hfllm.stages.merge", "merge a LoRA adapter into its base model"),
    "generate": ("hfllm.generate", "sample text from a model"),
    "eval": ("hfllm.eval", "evaluate models side by side on lm-evaluation-harness tasks"),
    "run": ("hfllm.pipeline", "run a pipeline of stages from one YAML file"),
    "chat": ("hfllm.app.launch", "open the Gradio playground on trained models"),
    "push": ("hfllm.hub.push", "push a stage folder to the Hugging Face Hub"),
    "export": ("hfllm.export", "export a model as a serving-ready HF folder, GGUF or Ollama model, with --check"),
    "serve": ("hfllm.serve", "serve models over an OpenAI-compatible HTTP API"),
    "data": ("hfllm.data.clean", STAGES["clean"].help),
    "inspect": ("hfllm.inspect", "show what a stage trains on: rows, lengths, loss tokens, template checks"),
}


def _usage() -> str:
    lines = ["usage: hfllm <command> [--config FILE] [--key value ...]", "", "commands:"]
    for name, (module, text) in COMMANDS.items():
        if importlib.util.find_spec(module) is not None:
            lines.append(f"  {name:<10} {text}")
    lines += ["", "'hfllm <command> --help' lists every option of a command; add --debug for tracebacks."]
    return "\n".join(lines)


def _quiet_replica() -> None:
    """Under ``accelerate launch`` the processes other than the main one show only errors, so the
    log reads as one run's: no second copy of progress bars, library warnings or notes."""
    import warnings

    # Read when the libraries are imported, which has not happened yet.
    for name in ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS"):
        os.environ[name] = "1"
    os.environ["TRANSFORMERS_VERBOSITY"] = os.environ["DATASETS_VERBOSITY"] = "error"
    warnings.filterwarnings("ignore")


# Deprecations one library raises on another's call (TRL reading transformers' old name): nothing a user can act on.
LIBRARY_DEPRECATIONS = (r"`is_gradient_checkpointing` is deprecated",)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("HFLLM_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    if not debug:
        import warnings

        for message in LIBRARY_DEPRECATIONS:
            warnings.filterwarnings("ignore", message=message, category=FutureWarning)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from hfllm import __version__

        print(f"hfllm {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS or importlib.util.find_spec(COMMANDS[command][0]) is None:
        import difflib

        match = difflib.get_close_matches(command, list(COMMANDS), n=1)
        hint = f"; did you mean '{match[0]}'?" if match else " (run 'hfllm --help' for the list)"
        print(f"hfllm: error: unknown command '{command}'{hint}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") != "0":
        _quiet_replica()
    try:
        module = importlib.import_module(COMMANDS[command][0])
        result = module.main(rest)
    except KeyboardInterrupt as exc:
        code = getattr(exc, "exit_code", 130)
        if os.environ.get("RANK", "0") == "0":
            print(f"hfllm {command}: {'terminated' if code == 143 else 'interrupted'}", file=sys.stderr)
        return code
    except Exception as exc:  # the user's to fix (hfllm.errors.user_line): one line; a bug: its traceback
        message = None if debug else user_line(exc)
        if message is None:
            raise
        print(f"hfllm {command}: error: {message}", file=sys.stderr)
        return 2
    finally:
        _close_process_group()
    return int(result or 0)


def _close_process_group() -> None:
    """Under several processes, tear the process group down before exiting: left to interpreter
    shutdown, gloo's threads were seen to abort a finished process (SIGABRT, "terminate called
    without an active exception"), which failed the whole launch. Every collective is behind us here."""
    if "torch.distributed" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    raise SystemExit(main())
