"""The playground's insight tabs: Confidence (the model's own token probabilities on its answer, beside the
held-out truth), Test-time scaling (accuracy against N) and Attention. The layout and wiring; the computing is
hfllm.app.insight's. build_app calls ``insight_tabs`` inside its ``gr.Tabs()``.
"""

from __future__ import annotations

import gradio as gr

from hfllm.app import handlers as h
from hfllm.app import insight as ins
from hfllm.app.ui import ui_errors


def _model_choice(names: list[str]):
    # The last model served is the run's latest stage: the one the lesson is about.
    return gr.Dropdown(names, value=names[-1], label="model", visible=len(names) > 1)


def insight_tabs(pick, names: list[str], reward) -> None:
    """Adds the three tabs to the Blocks being built. ``pick(name)`` gives (model, tokenizer); ``reward`` is a
    RewardModelScorer or None."""
    @ui_errors
    def confidence(prompt, model_name, as_chat, greedy, temperature, seed, max_new_tokens, threshold):
        model, tokenizer = pick(model_name)
        sampling = h.Sampling(greedy=greedy, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
        answer, table, note = ins.answer_confidence(model, tokenizer, prompt, as_chat, sampling)
        return answer, ins.confidence_spans(table, threshold), note, table

    @ui_errors
    def scaling(model_name, which, k, max_n, greedy, temperature, seed, max_new_tokens):
        model, tokenizer = pick(model_name)
        sampling = h.Sampling(greedy=greedy, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
        curve, table, notes = ins.scaling_curve(model, tokenizer, reward, ins.scaling_questions(which, k),
                                                sampling, max_n)
        return "\n\n".join(notes), curve, curve, table

    @ui_errors
    def attend(text, model_name, layer, head):
        model, tokenizer = pick(model_name)
        tokens, weights, next_token, p = ins.attention(model, tokenizer, text, layer, head)
        bars, matrix = ins.attention_tables(tokens, weights)
        note = (f"Predicting the next token (the model's pick: `{next_token}`, {p:.0%}): where layer {int(layer)}, "
                f"head {head} looks from the last token `{tokens[-1]}`. Each row of the table is one position; a "
                "token sees only itself and what came before.")
        return note, bars, matrix

    with gr.Tab("Confidence", id="confidence"):
        gr.Markdown("The model answers; each token is shown with the probability the model itself gave it. "
                    "Tokens under the threshold are marked: where a small model makes things up, it is often "
                    "unsure. Held-out questions (never trained on) come with the truth.")
        examples = ins.held_out_examples()
        with gr.Row():
            held_out = gr.Dropdown(examples, value=examples[0], label="a held-out question", scale=2)
            conf_model = _model_choice(names)
        conf_prompt = gr.Textbox(examples[0], label="prompt", lines=2, elem_id="conf-prompt")
        with gr.Row():
            conf_chat = gr.Checkbox(True, label="as a chat message")
            conf_greedy = gr.Checkbox(True, label="greedy")
            conf_t = gr.Slider(0.05, 2.0, 1.0, step=0.05, label="temperature (when sampling)")
            conf_seed = gr.Number(0, precision=0, label="seed")
            conf_new = gr.Slider(1, 128, 32, step=1, label="max new tokens")
        threshold = gr.Slider(0.0, 1.0, 0.5, step=0.01, label="mark tokens below this probability")
        conf_btn = gr.Button("Answer and show the model's confidence", variant="primary", elem_id="conf-go")
        conf_answer = gr.Textbox(label="answer", interactive=False)
        conf_spans = gr.HighlightedText(label="answer tokens (marked: below the threshold)",
                                        color_map={ins.LOW: "#f87171"}, show_legend=True, elem_id="conf-spans")
        conf_truth = gr.Markdown(elem_id="conf-truth")
        conf_table = gr.Dataframe(label="every answer token", max_height=300)
        held_out.change(lambda q: q, held_out, conf_prompt, api_visibility="private")
        conf_btn.click(confidence, [conf_prompt, conf_model, conf_chat, conf_greedy, conf_t, conf_seed, conf_new,
                                    threshold], [conf_answer, conf_spans, conf_truth, conf_table],
                       api_name="confidence")
        threshold.change(ui_errors(ins.confidence_spans), [conf_table, threshold], conf_spans,
                         api_name="confidence_marks")

    with gr.Tab("Test-time scaling", id="scaling"):
        gr.Markdown("Spend more compute at answer time: sample N answers to each held-out question and keep the "
                    "most common one (majority vote) or the one the reward model scores best (best-of-N). "
                    "'Any of N right' is the ceiling either could reach.")
        if reward is None:
            gr.Markdown("**No reward model loaded**: only majority vote is drawn. Serve a run with a reward stage "
                        "(or pass `--reward_model_name_or_path`) to add best-of-N.", elem_id="scaling-no-reward")
        with gr.Row():
            sc_model = _model_choice(names)
            sc_set = gr.Radio(list(ins.QUESTION_SETS), value="both", label="held-out questions")
            sc_k = gr.Slider(1, ins.MAX_QUESTIONS, 24, step=1, label="K questions")
            sc_n = gr.Dropdown(list(ins.SCALING_NS), value=8, label="largest N")
        with gr.Row():
            sc_greedy = gr.Checkbox(False, label="greedy (N cannot help)")
            sc_t = gr.Slider(0.05, 2.0, 0.7, step=0.05, label="temperature")
            sc_seed = gr.Number(0, precision=0, label="seed (sample i uses seed + i)")
            sc_new = gr.Slider(1, 64, 24, step=1, label="max new tokens")
        sc_btn = gr.Button("Sample and score", variant="primary", elem_id="scaling-go")
        sc_note = gr.Markdown()
        sc_plot = gr.LinePlot(x="N", y="accuracy", color="method", y_lim=[0, 1], title="accuracy against N",
                              elem_id="scaling-plot")
        sc_curve = gr.Dataframe(label="accuracy", max_height=240)
        sc_table = gr.Dataframe(label="each question at the largest N", max_height=320, wrap=True)
        sc_btn.click(scaling, [sc_model, sc_set, sc_k, sc_n, sc_greedy, sc_t, sc_seed, sc_new],
                     [sc_note, sc_plot, sc_curve, sc_table], api_name="scaling")

    layers, heads = map(max, zip(*(ins.model_shape(pick(n)[0]) for n in names)))
    with gr.Tab("Attention", id="attention"):
        gr.Markdown("Which earlier tokens one layer's heads look at when the model predicts the next token "
                    "(computed with eager attention on a weight-sharing copy; the other tabs are untouched).")
        with gr.Row():
            at_text = gr.Textbox("The sky is blue. The grass is green. The sky is", label="text", lines=2, scale=3)
            at_model = _model_choice(names)
        with gr.Row():
            # A slider needs two ends: a one-layer model gets a fixed one (its layer 2 is refused in one line)
            at_layer = gr.Slider(1, max(layers, 2), layers, step=1, label="layer", interactive=layers > 1)
            at_head = gr.Dropdown(["mean", *[str(i + 1) for i in range(heads)]], value="mean", label="head")
        at_btn = gr.Button("Show attention", variant="primary", elem_id="attention-go")
        at_note = gr.Markdown(elem_id="attention-note")
        at_bars = gr.BarPlot(x="token", y="weight", sort="x", x_label_angle=-50, y_lim=[0, 1],
                             title="attention from the last token", elem_id="attention-bars")
        at_matrix = gr.Dataframe(label="every position (rows) over the tokens it sees (columns)", max_height=320)
        at_btn.click(attend, [at_text, at_model, at_layer, at_head], [at_note, at_bars, at_matrix],
                     api_name="attention")
