"""The Data tab: what the chosen model's stage trained on, as it summarised it before training."""

import gradio as gr

from hfllm.app import models as m
from hfllm.app.ui import Shared, ui_errors


def data_tab(shared: Shared, sources: dict | None) -> None:
    """``sources`` maps a model's name to the folder or Hub id it was loaded from."""
    shown: dict[str, str] = {}

    @ui_errors
    def data(model_name):
        tokenizer = shared.pick(model_name)[1]
        if model_name not in shown:  # a second or two of tokenizing: once per model
            source = (sources or {}).get(model_name)
            shown[model_name] = m.training_data(source, tokenizer) if source else (
                f"{model_name}: the folder it was loaded from is not known here, so neither is its training data.")
        return shown[model_name]

    with gr.Tab("Data", id="data"):
        gr.Markdown("What the model's stage trained on, as it summarised it before training: its first "
                    "500 rows through the model's tokenizer (`hfllm inspect` shows more).")
        data_btn = gr.Button("Show the training data", variant="primary")
        data_out = gr.Markdown(elem_id="data-summary")
        data_btn.click(data, [shared.model_pick], data_out, api_name="data")
