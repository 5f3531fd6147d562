"""The Sampling lab tab: the next-token distribution before and after the filters, a step-by-step walk, and one
prompt sampled N times under each decoding mode."""

import gradio as gr
import pandas as pd

from hfllm.app import handlers as h
from hfllm.app.ui import Shared, ui_errors
from hfllm.generate import format_prompt

HISTORY = ["step", "token", "p_before", "p_after"]
REPEAT_NOTE = ("Greedy always takes the likeliest token, so it writes the same text every time and tends to loop; "
               "sampling varies, and top-p (nucleus) sampling is the usual choice in practice.")


def lab_tab(shared: Shared) -> None:
    @ui_errors
    def lab_distribution(text, model_name, as_chat, temperature, top_k, top_p, min_p, top_n):
        model, tokenizer = shared.pick(model_name)
        prompt = format_prompt(tokenizer, text, True) if as_chat else text
        table = h.distribution(model, tokenizer, prompt, temperature, top_k, top_p, min_p, top_n)
        kept = int((table["status"] == "kept").sum())
        note = (f"{kept} of the top {len(table)} tokens survive the filters; the 'after' bars are what sampling "
                f"draws from (renormalised).")
        return table, table[table["status"] == "kept"], table, note

    @ui_errors
    def lab_step(text, model_name, as_chat, temperature, top_k, top_p, min_p, top_n, seed, history):
        model, tokenizer = shared.pick(model_name)
        if as_chat and not history:  # the first step turns the message into a chat prompt to continue
            text = format_prompt(tokenizer, text, True)
        new_text, history = h.step(model, tokenizer, text, temperature, top_k, top_p, min_p, seed, history or [])
        table, kept, _, note = lab_distribution(new_text, model_name, False, temperature, top_k, top_p, min_p, top_n)
        return new_text, False, history, pd.DataFrame(history, columns=HISTORY), table, kept, table, note

    @ui_errors
    def lab_repeat(text, model_name, as_chat, n, max_new_tokens, temperature, top_k, top_p, seed):
        model, tokenizer = shared.pick(model_name)
        prompt = format_prompt(tokenizer, text, True) if as_chat else text
        return h.repeat(model, tokenizer, prompt, n, max_new_tokens, temperature, top_k, top_p, seed)

    opening = h.spread_out_prompt(*shared.pick(shared.model_pick.value))  # measured on the model it opens on
    with gr.Tab("Sampling lab", id="lab"):
        with gr.Row():
            lab_text = gr.Textbox(opening.prompt, label="prompt", lines=2, scale=4, elem_id="lab-prompt")
            with gr.Column(scale=1):
                lab_chat = gr.Checkbox(False, label="as a chat message")
                lab_seed = gr.Number(0, precision=0, label="seed")
        with gr.Row():
            lab_t = gr.Slider(0.05, 3.0, 1.0, step=0.05, label="temperature")
            lab_k = gr.Slider(0, 100, 0, step=1, label="top-k (0 = off)", elem_id="lab-top-k")
            lab_p = gr.Slider(0.05, 1.0, 1.0, step=0.01, label="top-p (1 = off)")
            lab_min_p = gr.Slider(0.0, 0.5, 0.0, step=0.01, label="min-p (0 = off)")
            lab_n = gr.Slider(5, 50, 20, step=1, label="tokens shown")
        with gr.Row():
            show = gr.Button("Show next-token distribution", variant="primary", elem_id="lab-show")
            step_btn = gr.Button("Step: sample one token and append it", elem_id="lab-step")
            reset = gr.Button("Reset history")
        lab_note = gr.Markdown(opening.note(shared.model_pick.value), elem_id="lab-note")
        colors = {"kept": "#2563eb", "dropped": "#cbd5e1"}
        with gr.Row():
            before = gr.BarPlot(x="token", y="before", color="status", color_map=colors, sort="x",
                                x_label_angle=-50, title="before the filters", elem_id="plot-before")
            after = gr.BarPlot(x="token", y="after", color="status", color_map=colors, sort="x",
                               x_label_angle=-50, title="after: what sampling draws from", elem_id="plot-after")
        numbers = gr.Dataframe(headers=["token", "id", "before", "after", "status"], label="probabilities",
                               max_height=260)
        history = gr.State([])
        history_table = gr.Dataframe(headers=HISTORY, label="tokens chosen so far", max_height=200)
        settings = [lab_t, lab_k, lab_p, lab_min_p]
        show.click(lab_distribution, [lab_text, shared.model_pick, lab_chat, *settings, lab_n],
                   [before, after, numbers, lab_note], api_name="distribution")
        step_btn.click(lab_step, [lab_text, shared.model_pick, lab_chat, *settings, lab_n, lab_seed, history],
                       [lab_text, lab_chat, history, history_table, before, after, numbers, lab_note],
                       api_name="step")
        reset.click(lambda: ([], pd.DataFrame(columns=HISTORY)), None, [history, history_table],
                    api_visibility="private")
        with gr.Accordion("Same prompt N times: consistency vs diversity", open=True):
            gr.Markdown(REPEAT_NOTE, elem_id="repeat-note")
            with gr.Row():
                rep_n = gr.Slider(2, h.MAX_SAMPLES, 8, step=1, label="N")
                rep_new = gr.Slider(1, 64, 16, step=1, label="max new tokens")
                rep_btn = gr.Button("Run greedy / multinomial / top-k / top-p")
            rep_summary = gr.Dataframe(headers=["mode", "distinct outputs", "most common", "share"],
                                       label="distinct outputs per mode")
            rep_samples = gr.Dataframe(headers=["mode", "#", "output"], label="every output", max_height=300)
        rep_btn.click(lab_repeat, [lab_text, shared.model_pick, lab_chat, rep_n, rep_new, lab_t, lab_k, lab_p,
                                   lab_seed], [rep_summary, rep_samples], api_name="repeat")
