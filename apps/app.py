"""The hfllm playground (Gradio): python apps/chat.py runs/tiny [--port 7860] ... (same as `hfllm chat`)."""
import sys

from hfllm.cli import main

sys.exit(main(["chat", *sys.argv[1:]]))
