"""The Tokenizer tab: a text as the chosen model's tokens, with their ids."""

import gradio as gr

from hfllm.app import handlers as h
from hfllm.app.ui import Shared, ui_errors


def tokenizer_tab(shared: Shared, demo: gr.Blocks) -> None:
    @ui_errors
    def tokenize(text, model_name, as_chat):
        return h.token_spans(shared.pick(model_name)[1], text or "", bool(as_chat))

    with gr.Tab("Tokenizer", id="tokenizer"):
        tok_text = gr.Textbox("Tokenizers split text into pieces: 3 + 4 = 7, unbelievably!", label="text", lines=3)
        tok_chat = gr.Checkbox(False, label="as a chat message (show the chat template's tokens)")
        tok_btn = gr.Button("Tokenize", variant="primary")
        tok_stats = gr.Markdown(elem_id="tok-stats")
        spans = gr.HighlightedText(label="tokens (the id beside each piece)", show_legend=False, elem_id="tok-spans")
        tok_io = ([tok_text, shared.model_pick, tok_chat], [spans, tok_stats])
        tok_btn.click(tokenize, *tok_io, api_name="tokenize")
        for trigger in (tok_text.submit, tok_chat.change, shared.model_pick.change, demo.load):
            trigger(tokenize, *tok_io, api_visibility="private")
