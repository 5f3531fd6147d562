"""The hfllm playground as a Gradio app: the entry point of a Hugging Face Space, or a script.

    python apps/app.py runs/tiny --port 7861             # the same as `hfllm chat runs/tiny --port 7861`
    HFLLM_MODELS="you/tiny-chat" gradio apps/app.py       # gradio's reload mode serves `demo`

As a Space (README metadata ``sdk: gradio``, ``app_file: apps/app.py``, and hfllm in
requirements.txt), set the Space variable HFLLM_MODELS to what it serves: Hub ids, or folders
in the Space's repo, separated by spaces; HFLLM_REWARD_MODEL adds best-of-N ranking. The Space
runs this file with no arguments, and gradio serves ``demo`` on the address the Space gives it.
"""

import os
import sys

if __name__ == "__main__" and len(sys.argv) > 1:  # a command line: exactly `hfllm chat`
    from hfllm.cli import main

    sys.exit(main(["chat", *sys.argv[1:]]))

from hfllm.app.launch import load_app  # noqa: E402
from hfllm.errors import UserError  # noqa: E402

try:
    demo, _ = load_app(os.environ.get("HFLLM_MODELS", "").split(), os.environ.get("HFLLM_REWARD_MODEL") or None,
                       os.environ.get("HFLLM_PREFERENCE_FILE") or None)
except UserError as exc:
    sys.exit(f"apps/app.py: error: {exc} (set HFLLM_MODELS, or pass models as arguments)")

if __name__ == "__main__":
    demo.launch()
