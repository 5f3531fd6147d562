"""One entry point: ``hfllm <command> [--config FILE] [--key value ...]``.

Each command lives in its own module with a ``main(argv)`` function; this file
only dispatches, and turns a UserError into one readable line (``--debug`` keeps
the traceback). Run any training command on many processes with::

    accelerate launch -m hfllm.cli pretrain --config configs/tiny/pretrain.yaml
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

from hfllm.errors import UserError

# command -> (module, one-line help). Modules are imported lazily so that
# `hfllm --help` answers at once and a broken optional extra breaks one command only.
COMMANDS = {
    "tokenizer": ("hfllm.stages.tokenizer", "train a byte-level BPE tokenizer"),
    "pretrain": ("hfllm.stages.pretrain", "pretrain a decoder-only model built from a config"),
    "sft": ("hfllm.stages.sft", "supervised fine-tuning (full or LoRA) with trl.SFTTrainer"),
    "reward": ("hfllm.stages.reward", "train a reward model on preference pairs"),
    "dpo": ("hfllm.stages.dpo", "direct preference optimisation with trl.DPOTrainer"),
    "ppo": ("hfllm.stages.ppo", "PPO with a reward model or rule rewards"),
    "grpo": ("hfllm.stages.grpo", "GRPO with trl.GRPOTrainer"),
    "rloo": ("hfllm.stages.rloo", "RLOO with trl.RLOOTrainer"),
    "merge": ("hfllm.merge", "merge a LoRA adapter into its base model"),
    "generate": ("hfllm.generate", "sample text from a model"),
    "run": ("hfllm.pipeline", "run a pipeline of stages from one YAML file"),
    "chat": ("hfllm.app", "open the Gradio playground on trained models"),
    "push": ("hfllm.hub", "push a stage folder to the Hugging Face Hub"),
    "data": ("hfllm.dataprep", "clean and deduplicate a text corpus"),
}


def _usage() -> str:
    lines = ["usage: hfllm <command> [--config FILE] [--key value ...]", "", "commands:"]
    for name, (module, text) in COMMANDS.items():
        if importlib.util.find_spec(module) is not None:
            lines.append(f"  {name:<10} {text}")
    lines += ["", "'hfllm <command> --help' lists every option of a command; add --debug for tracebacks."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("HFLLM_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
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
    try:
        module = importlib.import_module(COMMANDS[command][0])
        result = module.main(rest)
    except UserError as exc:
        if debug:
            raise
        print(f"hfllm {command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hfllm {command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
