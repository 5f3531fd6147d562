"""The Gradio playground: `hfllm chat` (launch.py), build_app (layout.py) putting the tabs (tabs/) together, their
logic without Gradio (handlers.py), the models served (models.py)."""
