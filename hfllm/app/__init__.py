"""The Gradio playground: `hfllm chat` (launch.py), the layout (layout.py), its logic without Gradio (handlers.py)."""
