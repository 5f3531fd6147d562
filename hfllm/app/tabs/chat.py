"""The Chat tab: streamed multi-turn replies from the model chosen above the tabs."""

import gradio as gr

from hfllm.app import handlers as h
from hfllm.app.ui import Shared, sampling_controls, ui_errors, warn
from hfllm.errors import UserError
from hfllm.generate import stream


def chat_tab(shared: Shared, opening: str) -> None:
    """``opening``: one line saying which model the chooser opens on, and why."""
    @ui_errors
    def chat(message, history, model_name, system_prompt, greedy, temperature, top_k, top_p, min_p,
             repetition_penalty, max_new_tokens, seed, request: gr.Request):
        message = h.check_length(message or "")
        h.check_length(system_prompt or "", "system prompt")
        if not message.strip():
            raise UserError("type a message first")
        model, tokenizer = shared.pick(model_name)
        sampling = h.Sampling(greedy, temperature, top_k, top_p, min_p, repetition_penalty, max_new_tokens, seed)
        messages = [*h.history_to_messages(history), {"role": "user", "content": message}]
        text, max_new, notes = h.fit_chat(model, tokenizer, messages, system_prompt, sampling.max_new_tokens)
        kwargs = sampling.kwargs(max_new)
        warn(notes)
        shown = [*h.history_to_messages(history), {"role": "user", "content": message},
                 {"role": "assistant", "content": ""}]
        yield "", shown
        event = shared.stops.start(request, "chat")
        try:
            with h.sampling_guard(kwargs):
                for piece in stream(model, tokenizer, text, kwargs, sampling.seed_value, stop_event=event):
                    shown[-1]["content"] += piece
                    yield "", shown
        finally:
            shared.stops.done(request, "chat", event)
        yield "", shown

    with gr.Tab("Chat", id="chat"):
        gr.Markdown(opening, elem_id="chat-opening")
        chatbot = gr.Chatbot(label="conversation", height=380, elem_id="chatbot")
        with gr.Row():
            message = gr.Textbox(placeholder="Type a message and press Enter", show_label=False, scale=6,
                                 elem_id="chat-input")
            send = gr.Button("Send", variant="primary", scale=1, elem_id="chat-send")
            stop = gr.Button("Stop", variant="stop", scale=1, elem_id="chat-stop")
            clear = gr.Button("Clear", scale=1)
        system = gr.Textbox(label="system prompt", placeholder="optional", lines=1)
        knobs = sampling_controls()
        inputs = [message, chatbot, shared.model_pick, system, *knobs]
        send.click(chat, inputs, [message, chatbot], api_name="chat")
        message.submit(chat, inputs, [message, chatbot], api_visibility="private")
        stop.click(shared.stops.stopper("chat"), None, None, api_name="stop_chat", concurrency_limit=None)
        clear.click(lambda: ([], ""), None, [chatbot, message], api_visibility="private")
