"""The Gradio playground: the layout and launch (layout.py), its logic without Gradio (handlers.py)."""
