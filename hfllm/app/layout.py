"""The Gradio playground's layout: chat, sampling lab, side-by-side compare, best-of-N, tokenizer, data, the
run's report card.

``hfllm chat`` (launch.py) loads the models and serves what ``build_app`` builds. Votes in the Compare tab append preference pairs to a JSONL file that
``hfllm dpo --dataset_name runs/tiny/feedback.jsonl`` (or ``hfllm reward``) trains on.
The logic lives in hfllm.app.handlers (and models.py: what the models were trained on); this file is the
layout and the wiring.
"""

import functools
import inspect
import threading
import traceback
from pathlib import Path

import gradio as gr
import pandas as pd

from hfllm.app import handlers as h
from hfllm.app import models as m
from hfllm.app.insight_tabs import insight_tabs
from hfllm.app.launch import CONCURRENCY
from hfllm.app.run_report import report_view
from hfllm.errors import UserError, first_line, user_line
from hfllm.generate import format_prompt, stream

QUEUE_SIZE = 64
HISTORY = ["step", "token", "p_before", "p_after"]
NO_REWARD = ("**No reward model loaded.** Answers are sampled but not scored. Train one with "
             "`hfllm reward --model_name_or_path runs/<name>/sft --output_dir runs/<name>/reward` and start "
             "`hfllm chat runs/<name>` (its reward stage is picked up), or pass `--reward_model_name_or_path PATH`.")


def _ui_errors(fn):
    """UserError (and any other failure) -> gr.Error, so the UI shows a message instead of a dead spinner."""
    def convert(exc):
        if isinstance(exc, gr.Error):
            return exc
        message = user_line(exc)  # the CLI's mapping: the same words on the page
        if message is not None:
            return gr.Error(message, print_exception=False)
        traceback.print_exc()
        return gr.Error(first_line(exc, with_type=True))

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise convert(exc) from None
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise convert(exc) from None
    return wrapper


class StopEvents:
    """One threading.Event per (browser session, tab): the Stop button ends that session's generation."""

    def __init__(self):
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def start(self, request, tab: str) -> threading.Event:
        event = threading.Event()
        with self._lock:
            self._events[f"{getattr(request, 'session_hash', None)}:{tab}"] = event
        return event

    def stop(self, request, tab: str) -> None:
        with self._lock:
            event = self._events.get(f"{getattr(request, 'session_hash', None)}:{tab}")
        if event is not None:
            event.set()

    def done(self, request, tab: str, event: threading.Event) -> None:
        event.set()  # a closed connection also ends the generation thread
        with self._lock:
            key = f"{getattr(request, 'session_hash', None)}:{tab}"
            if self._events.get(key) is event:
                del self._events[key]


def sampling_controls(max_new_tokens: int = 64, seed: int | None = None, label: str = "Sampling"):
    """The sampling knobs of `hfllm generate`, in Sampling's field order."""
    with gr.Accordion(label, open=False):
        with gr.Row():
            greedy = gr.Checkbox(False, label="greedy (no sampling)")
            seed = gr.Number(seed, precision=0, label="seed (empty = random)")
            max_new = gr.Slider(1, h.MAX_NEW_TOKENS, max_new_tokens, step=1, label="max new tokens")
        with gr.Row():
            temperature = gr.Slider(0.05, 2.0, 0.8, step=0.05, label="temperature")
            top_k = gr.Slider(0, 200, 0, step=1, label="top-k (0 = off)")
            top_p = gr.Slider(0.05, 1.0, 1.0, step=0.01, label="top-p (1 = off)")
            min_p = gr.Slider(0.0, 0.5, 0.0, step=0.01, label="min-p (0 = off)")
            repetition_penalty = gr.Slider(1.0, 2.0, 1.0, step=0.05, label="repetition penalty")
    return [greedy, temperature, top_k, top_p, min_p, repetition_penalty, max_new, seed]


def _warn(notes):
    for note in notes:
        gr.Warning(note)


def build_app(models: dict, reward=None, preference_file: str | Path = "runs/feedback.jsonl",
              concurrency_limit: int = CONCURRENCY, sources: dict | None = None,
              run_dir: str | Path | None = None) -> gr.Blocks:
    """The playground for loaded models: ``models`` maps a name to (model, tokenizer); ``reward`` is a
    hfllm.rewards.RewardModelScorer or None; ``sources`` maps a name to the folder or Hub id it was loaded
    from (the Data tab reads the training data a stage folder records); ``run_dir`` the run folder whose report
    card the Run tab shows."""
    if not models:
        raise UserError("no model to serve")
    names = list(models)
    preference_file = Path(preference_file)
    stops = StopEvents()

    def pick(name):
        if name not in models:
            raise UserError(f"unknown model '{name}'; loaded: {', '.join(names)}")
        return models[name]

    # --- Chat ----------------------------------------------------------------------------------
    @_ui_errors
    def chat(message, history, model_name, system_prompt, greedy, temperature, top_k, top_p, min_p,
             repetition_penalty, max_new_tokens, seed, request: gr.Request):
        message = h.check_length(message or "")
        h.check_length(system_prompt or "", "system prompt")
        if not message.strip():
            raise UserError("type a message first")
        model, tokenizer = pick(model_name)
        sampling = h.Sampling(greedy, temperature, top_k, top_p, min_p, repetition_penalty, max_new_tokens, seed)
        messages = [*h.history_to_messages(history), {"role": "user", "content": message}]
        text, max_new, notes = h.fit_chat(model, tokenizer, messages, system_prompt, sampling.max_new_tokens)
        kwargs = sampling.kwargs(max_new)
        _warn(notes)
        shown = [*h.history_to_messages(history), {"role": "user", "content": message},
                 {"role": "assistant", "content": ""}]
        yield "", shown
        event = stops.start(request, "chat")
        try:
            with h.sampling_guard(kwargs):
                for piece in stream(model, tokenizer, text, kwargs, sampling.seed_value, stop_event=event):
                    shown[-1]["content"] += piece
                    yield "", shown
        finally:
            stops.done(request, "chat", event)
        yield "", shown

    # --- Compare -------------------------------------------------------------------------------
    @_ui_errors
    def compare(prompt, system_prompt, left_name, right_name, greedy, temperature, top_k, top_p, min_p,
                repetition_penalty, max_new_tokens, seed, request: gr.Request):
        prompt = h.check_length(prompt or "")
        h.check_length(system_prompt or "", "system prompt")
        if not prompt.strip():
            raise UserError("type a prompt first")
        sampling = h.Sampling(greedy, temperature, top_k, top_p, min_p, repetition_penalty, max_new_tokens, seed)
        messages = [{"role": "user", "content": prompt}]
        answers, state = ["", ""], None
        event = stops.start(request, "compare")
        try:
            for side, name in enumerate((left_name, right_name)):  # one after the other: a seed stays a seed
                model, tokenizer = pick(name)
                text, max_new, notes = h.fit_chat(model, tokenizer, messages, system_prompt, sampling.max_new_tokens)
                _warn(notes)
                kwargs = sampling.kwargs(max_new)
                seed_value = None if sampling.seed_value is None else sampling.seed_value + side
                with h.sampling_guard(kwargs):
                    for piece in stream(model, tokenizer, text, kwargs, seed_value, stop_event=event):
                        answers[side] += piece
                        yield answers[0], answers[1], state, "generating..."
        finally:
            stops.done(request, "compare", event)
        prompt_messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + messages
        state = {"prompt": prompt_messages, "left": answers[0], "right": answers[1], "left_model": left_name,
                 "right_model": right_name}
        yield answers[0], answers[1], state, "Which answer is better? Your vote is saved as a preference pair."

    def vote(choice):
        @_ui_errors
        def handler(state):
            if not state:
                raise UserError("nothing to vote on: answer a prompt with both models first (or you already voted)")
            if choice == "tie":
                return "Tie: nothing written (a pair needs a better and a worse answer).", state
            other = "right" if choice == "left" else "left"
            row = h.preference_row(state["prompt"], state[choice], state[other],
                                   chosen_model=state[f"{choice}_model"], rejected_model=state[f"{other}_model"])
            count = h.append_jsonl(preference_file, row)
            return (f"Saved: {choice} preferred. `{preference_file}` now holds {count} pair(s); train on it with "
                    f"`hfllm dpo --dataset_name {preference_file}`."), None
        handler.__name__ = f"vote_{choice}"
        return handler

    # --- Best-of-N, sampling lab, tokenizer ----------------------------------------------------
    @_ui_errors
    def best_of_n(prompt, model_name, system_prompt, n, expected, greedy, temperature, top_k, top_p, min_p,
                  repetition_penalty, max_new_tokens, seed):
        prompt = h.check_length(prompt or "")
        if not prompt.strip():
            raise UserError("type a prompt first")
        model, tokenizer = pick(model_name)
        sampling = h.Sampling(greedy, temperature, top_k, top_p, min_p, repetition_penalty, max_new_tokens, seed)
        table, notes = h.best_of_n(model, tokenizer, reward, [{"role": "user", "content": prompt}],
                                   system_prompt or None, sampling, n, expected or "")
        _warn(notes)
        return table

    @_ui_errors
    def lab_distribution(text, model_name, as_chat, temperature, top_k, top_p, min_p, top_n):
        model, tokenizer = pick(model_name)
        prompt = format_prompt(tokenizer, text, True) if as_chat else text
        table = h.distribution(model, tokenizer, prompt, temperature, top_k, top_p, min_p, top_n)
        kept = int((table["status"] == "kept").sum())
        note = (f"{kept} of the top {len(table)} tokens survive the filters; the 'after' bars are what sampling "
                f"draws from (renormalised).")
        return table, table[table["status"] == "kept"], table, note

    @_ui_errors
    def lab_step(text, model_name, as_chat, temperature, top_k, top_p, min_p, top_n, seed, history):
        model, tokenizer = pick(model_name)
        if as_chat and not history:  # the first step turns the message into a chat prompt to continue
            text = format_prompt(tokenizer, text, True)
        new_text, history = h.step(model, tokenizer, text, temperature, top_k, top_p, min_p, seed, history or [])
        table, kept, _, note = lab_distribution(new_text, model_name, False, temperature, top_k, top_p, min_p, top_n)
        return new_text, False, history, pd.DataFrame(history, columns=HISTORY), table, kept, table, note

    @_ui_errors
    def lab_repeat(text, model_name, as_chat, n, max_new_tokens, temperature, top_k, top_p, seed):
        model, tokenizer = pick(model_name)
        prompt = format_prompt(tokenizer, text, True) if as_chat else text
        return h.repeat(model, tokenizer, prompt, n, max_new_tokens, temperature, top_k, top_p, seed)

    def stops_for(tab):
        def stop(request: gr.Request):
            stops.stop(request, tab)
        return stop

    data_shown: dict[str, str] = {}

    @_ui_errors
    def data(model_name):
        tokenizer = pick(model_name)[1]
        if model_name not in data_shown:  # a second or two of tokenizing: once per model
            source = (sources or {}).get(model_name)
            data_shown[model_name] = m.training_data(source, tokenizer) if source else (
                f"{model_name}: the folder it was loaded from is not known here, so neither is its training data.")
        return data_shown[model_name]

    @_ui_errors
    def tokenize(text, model_name, as_chat):
        return h.token_spans(pick(model_name)[1], text or "", bool(as_chat))

    with gr.Blocks(title="hfllm playground") as demo:
        gr.Markdown(f"## hfllm playground\nModels: {', '.join(f'`{n}`' for n in names)}"
                    + (" · reward model loaded" if reward is not None else ""))
        model_pick = gr.Dropdown(names, value=names[0], label="model", visible=len(names) > 1)
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                chatbot = gr.Chatbot(label="conversation", height=380, elem_id="chatbot")
                with gr.Row():
                    message = gr.Textbox(placeholder="Type a message and press Enter", show_label=False, scale=6,
                                         elem_id="chat-input")
                    send = gr.Button("Send", variant="primary", scale=1, elem_id="chat-send")
                    stop = gr.Button("Stop", variant="stop", scale=1, elem_id="chat-stop")
                    clear = gr.Button("Clear", scale=1)
                system = gr.Textbox(label="system prompt", placeholder="optional", lines=1)
                knobs = sampling_controls()
                inputs = [message, chatbot, model_pick, system, *knobs]
                send.click(chat, inputs, [message, chatbot], api_name="chat")
                message.submit(chat, inputs, [message, chatbot], api_visibility="private")
                stop.click(stops_for("chat"), None, None, api_name="stop_chat", concurrency_limit=None)
                clear.click(lambda: ([], ""), None, [chatbot, message], api_visibility="private")

            with gr.Tab("Sampling lab", id="lab"):
                with gr.Row():
                    lab_text = gr.Textbox("Once upon a time", label="prompt", lines=2, scale=4)
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
                lab_note = gr.Markdown()
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
                show.click(lab_distribution, [lab_text, model_pick, lab_chat, *settings, lab_n],
                           [before, after, numbers, lab_note], api_name="distribution")
                step_btn.click(lab_step, [lab_text, model_pick, lab_chat, *settings, lab_n, lab_seed, history],
                               [lab_text, lab_chat, history, history_table, before, after, numbers, lab_note],
                               api_name="step")
                reset.click(lambda: ([], pd.DataFrame(columns=HISTORY)), None, [history, history_table],
                            api_visibility="private")
                with gr.Accordion("Same prompt N times: consistency vs diversity", open=True):
                    with gr.Row():
                        rep_n = gr.Slider(2, h.MAX_SAMPLES, 8, step=1, label="N")
                        rep_new = gr.Slider(1, 64, 16, step=1, label="max new tokens")
                        rep_btn = gr.Button("Run greedy / multinomial / top-k / top-p")
                    rep_summary = gr.Dataframe(headers=["mode", "distinct outputs", "most common", "share"],
                                               label="distinct outputs per mode")
                    rep_samples = gr.Dataframe(headers=["mode", "#", "output"], label="every output", max_height=300)
                rep_btn.click(lab_repeat, [lab_text, model_pick, lab_chat, rep_n, rep_new, lab_t, lab_k, lab_p, lab_seed],
                              [rep_summary, rep_samples], api_name="repeat")

            with gr.Tab("Compare", id="compare"):
                cmp_prompt = gr.Textbox(label="prompt", lines=2, elem_id="cmp-prompt")
                cmp_system = gr.Textbox(label="system prompt", placeholder="optional")
                with gr.Row():
                    left_pick = gr.Dropdown(names, value=names[0], label="left model")
                    right_pick = gr.Dropdown(names, value=names[min(1, len(names) - 1)], label="right model")
                cmp_knobs = sampling_controls(seed=0, label="Sampling (left uses the seed, right the seed + 1)")
                with gr.Row():
                    go = gr.Button("Answer with both", variant="primary", elem_id="cmp-go")
                    cmp_stop = gr.Button("Stop", variant="stop")
                with gr.Row():
                    left_out = gr.Textbox(label="left", lines=8, interactive=False, elem_id="cmp-left")
                    right_out = gr.Textbox(label="right", lines=8, interactive=False, elem_id="cmp-right")
                with gr.Row():
                    buttons = {"left": gr.Button("← left is better", elem_id="vote-left"),
                               "tie": gr.Button("tie", elem_id="vote-tie"),
                               "right": gr.Button("right is better →", elem_id="vote-right")}
                vote_status = gr.Markdown(f"Votes are appended to `{preference_file}`.", elem_id="vote-status")
                pair = gr.State(None)
                go.click(compare, [cmp_prompt, cmp_system, left_pick, right_pick, *cmp_knobs],
                         [left_out, right_out, pair, vote_status], api_name="compare")
                cmp_stop.click(stops_for("compare"), None, None, api_name="stop_compare", concurrency_limit=None)
                for choice, button in buttons.items():
                    button.click(vote(choice), [pair], [vote_status, pair], api_name=f"vote_{choice}")

            with gr.Tab("Best-of-N", id="best"):
                if reward is None:
                    gr.Markdown(NO_REWARD, elem_id="no-reward")
                bo_prompt = gr.Textbox(label="prompt", lines=2)
                with gr.Row():
                    bo_n = gr.Slider(2, h.MAX_SAMPLES, 4, step=1, label="N answers")
                    bo_expected = gr.Textbox(label="expected answer (optional: adds a rule check column)")
                bo_system = gr.Textbox(label="system prompt", placeholder="optional")
                bo_knobs = sampling_controls(seed=0)
                bo_btn = gr.Button("Sample and rank", variant="primary")
                bo_table = gr.Dataframe(headers=["rank", "sample", "score", "answer"] if reward is not None else
                                        ["sample", "answer"], label="answers, best first", wrap=True)
                bo_btn.click(best_of_n, [bo_prompt, model_pick, bo_system, bo_n, bo_expected, *bo_knobs], bo_table,
                             api_name="best_of_n")

            insight_tabs(pick, names, reward)
            with gr.Tab("Tokenizer", id="tokenizer"):
                tok_text = gr.Textbox("Tokenizers split text into pieces: 3 + 4 = 7, unbelievably!",
                                      label="text", lines=3)
                tok_chat = gr.Checkbox(False, label="as a chat message (show the chat template's tokens)")
                tok_btn = gr.Button("Tokenize", variant="primary")
                tok_stats = gr.Markdown(elem_id="tok-stats")
                spans = gr.HighlightedText(label="tokens (the id beside each piece)", show_legend=False,
                                           elem_id="tok-spans")
                tok_io = ([tok_text, model_pick, tok_chat], [spans, tok_stats])
                tok_btn.click(tokenize, *tok_io, api_name="tokenize")
                for trigger in (tok_text.submit, tok_chat.change, model_pick.change, demo.load):
                    trigger(tokenize, *tok_io, api_visibility="private")

            with gr.Tab("Data", id="data"):
                gr.Markdown("What the model's stage trained on, as it summarised it before training: its first "
                            "500 rows through the model's tokenizer (`hfllm inspect` shows more).")
                data_btn = gr.Button("Show the training data", variant="primary")
                data_out = gr.Markdown(elem_id="data-summary")
                data_btn.click(data, [model_pick], data_out, api_name="data")

            with gr.Tab("Run", id="run"):
                report_text, pictures = report_view(run_dir)
                gr.Markdown(report_text, elem_id="run-report")
                if pictures:
                    gr.Gallery(pictures, label="curves and before/after", columns=2, height="auto",
                               elem_id="run-pictures")
    demo.queue(default_concurrency_limit=concurrency_limit, max_size=QUEUE_SIZE)
    return demo
