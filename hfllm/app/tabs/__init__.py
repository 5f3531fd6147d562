"""The playground's tabs, one function each: its layout and its wiring (layout.py's build_app calls them in
order inside its ``gr.Tabs()``). The logic they call is hfllm.app.handlers'."""
