"""`hfllm chat`: find the models named (run folders, model folders, adapters, Hub ids), load them, build the
playground (layout.py) and serve it.

    hfllm chat runs/tiny                                  # every finished stage of a run
    hfllm chat runs/tiny/sft Qwen/Qwen2.5-0.5B-Instruct   # stage folders, HF folders, adapters, Hub ids
    hfllm chat runs/tiny --reward_model_name_or_path runs/other/reward --preference_file runs/tiny/feedback.jsonl
    hfllm chat runs/tiny --host 0.0.0.0 --auth me:secret  # reachable from other machines
    python apps/app.py runs/tiny                         # the same, as a script (or a Gradio Space)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from hfllm.app import models as m
from hfllm.config import renamed
from hfllm.errors import UserError, first_line

CONCURRENCY = 4  # requests generating at once; the rest wait in the queue


@dataclass
class ChatArguments:
    host: str = field(default="127.0.0.1", metadata={"help": "address to bind (0.0.0.0 = every interface)"})
    port: int = field(default=7860, metadata={"help": "port to serve on"})
    share: bool = field(default=False, metadata={"help": "open a public gradio.live link (use with --auth)"})
    auth: str | None = field(default=None, metadata={"help": "require a login, as user:password"})
    reward_model_name_or_path: str | None = field(default=None, metadata=renamed(
        "reward_model", help="reward model folder for best-of-N"))
    preference_file: str | None = field(default=None, metadata={"help": "JSONL file that Compare votes append to"})
    concurrency_limit: int = field(default=CONCURRENCY, metadata={"help": "requests that generate at once"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow code from model repos to run"})


def load_app(sources: list[str], reward_model: str | None = None, preference_file: str | None = None,
             concurrency_limit: int = CONCURRENCY, trust_remote_code: bool = False):
    """The playground on ``sources`` (run folders, model folders, adapters, Hub ids), models loaded:
    (the Blocks, the file Compare votes go to)."""
    if not sources:
        raise UserError("which model? pass a run folder, a model folder or a Hub id: hfllm chat runs/tiny")
    paths, reward_path, first_run = m.find_models(sources)
    reward_path = reward_model or reward_path
    preference_file = Path(preference_file or m.feedback_file(sources, first_run))
    print(f"votes from the Compare tab go to {preference_file}")  # before the (slow) loading: where, said once
    models = {}
    for name, path in paths.items():
        print(f"loading {name} ({path})")
        models[name] = m.load_model(path, trust_remote_code=trust_remote_code)
    reward = None
    if reward_path:
        print(f"loading reward model ({reward_path})")
        reward = m.load_reward(reward_path, trust_remote_code=trust_remote_code)
    from hfllm.app.layout import build_app

    return build_app(models, reward, preference_file, concurrency_limit, sources=paths, run_dir=first_run), \
        preference_file


USAGE = ("usage: hfllm chat RUN_OR_MODEL [RUN_OR_MODEL ...] [--port 7860] [--host 127.0.0.1] [--share] "
         "[--auth user:pass] [--reward_model_name_or_path PATH] [--preference_file FILE]\n\nEach RUN_OR_MODEL is a run folder "
         "(runs/tiny: every finished stage, its reward stage for best-of-N), a stage or HF model folder, a LoRA "
         "adapter folder or a Hub id.\n")


def main(argv: list[str]) -> int:
    from hfllm.config import parse_args

    if any(a in ("-h", "--help") for a in argv):
        print(USAGE)
    sources, flags = split_positionals(argv, bool_flags={"share", "trust_remote_code"})
    (args,), _ = parse_args([ChatArguments], flags, prog="hfllm chat")
    if not sources:
        raise UserError("which model? pass a run folder, a model folder or a Hub id: hfllm chat runs/tiny")
    auth = None
    if args.auth is not None:
        user, sep, password = args.auth.partition(":")
        if not sep or not user or not password:
            raise UserError("--auth takes user:password (both non-empty)")
        auth = (user, password)
    if (args.share or args.host not in ("127.0.0.1", "localhost", "::1")) and auth is None:
        print(f"warning: {'--share makes the app public' if args.share else f'--host {args.host} lets other machines in'}"
              " and anyone who reaches it can run the models; add --auth user:password", file=sys.stderr)
    check_host(args.host)  # before any model loads: a typo in the address is not a port problem

    demo, _ = load_app(sources, args.reward_model_name_or_path, args.preference_file,
                                     args.concurrency_limit, args.trust_remote_code)
    try:
        demo.launch(server_name=args.host, server_port=args.port, share=args.share, auth=auth, show_error=True)
    except OSError as exc:
        raise UserError(f"cannot serve on {args.host}:{args.port}: {first_line(exc, with_type=True)} (try another "
                        "--port)") from None
    return 0


def check_host(host: str) -> None:
    import socket

    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise UserError(f"--host {host!r} is not an address this machine can bind: {first_line(exc)} (use "
                        "127.0.0.1, 0.0.0.0 or a name of this machine)") from None


def split_positionals(argv: list[str], bool_flags: set[str]) -> tuple[list[str], list[str]]:
    """Split `hfllm chat` arguments into model sources and --flags (with their values)."""
    sources, flags, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-") or arg == "-":
            sources.append(arg)
        else:
            flags.append(arg)
            name = arg.lstrip("-").split("=", 1)[0].replace("-", "_")
            takes_value = "=" not in arg and name not in ("h", "help")
            if takes_value and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                value = argv[i + 1]
                if name not in bool_flags or value.lower() in ("true", "false", "yes", "no", "1", "0", "t", "f", "y", "n"):
                    flags.append(value)
                    i += 1
        i += 1
    return sources, flags
