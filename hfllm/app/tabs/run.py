"""The Run tab: the run's report card, as ``hfllm run`` wrote it."""

import gradio as gr

from hfllm.app.run_report import report_view


def run_tab(run_dir) -> None:
    with gr.Tab("Run", id="run"):
        report_text, pictures = report_view(run_dir)
        gr.Markdown(report_text, elem_id="run-report")
        if pictures:
            gr.Gallery(pictures, label="curves and before/after", columns=2, height="auto", elem_id="run-pictures")
