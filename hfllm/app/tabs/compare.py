"""The Compare tabs: two models side by side with a vote that writes a preference pair, and every loaded model
answering the same prompt with the same seed."""

from pathlib import Path

import gradio as gr

from hfllm.app import handlers as h
from hfllm.app.ui import Shared, sampling_controls, ui_errors, warn
from hfllm.data.builtin import SMALL_TALK
from hfllm.errors import UserError
from hfllm.generate import stream


def _answers(shared: Shared, names, prompt, system_prompt, sampling: h.Sampling, seeds, event):
    """Each named model's answer to one prompt, one model after the other (a seed stays a seed), streamed: yields
    the answers so far."""
    messages = [{"role": "user", "content": prompt}]
    answers = [""] * len(names)
    for i, (name, seed) in enumerate(zip(names, seeds)):
        model, tokenizer = shared.pick(name)
        text, max_new, notes = h.fit_chat(model, tokenizer, messages, system_prompt, sampling.max_new_tokens)
        warn(notes)
        kwargs = sampling.kwargs(max_new)
        with h.sampling_guard(kwargs):
            for piece in stream(model, tokenizer, text, kwargs, seed, stop_event=event):
                answers[i] += piece
                yield answers


def _checked(prompt, system_prompt) -> str:
    prompt = h.check_length(prompt or "")
    h.check_length(system_prompt or "", "system prompt")
    if not prompt.strip():
        raise UserError("type a prompt first")
    return prompt


def compare_tab(shared: Shared, preference_file: Path) -> None:
    @ui_errors
    def compare(prompt, system_prompt, left_name, right_name, greedy, temperature, top_k, top_p, min_p,
                repetition_penalty, max_new_tokens, seed, request: gr.Request):
        prompt = _checked(prompt, system_prompt)
        sampling = h.Sampling(greedy, temperature, top_k, top_p, min_p, repetition_penalty, max_new_tokens, seed)
        seed = sampling.seed_value
        answers, event = ["", ""], shared.stops.start(request, "compare")
        try:  # the right side draws with the seed + 1: the same model twice still gives two answers to vote on
            for answers in _answers(shared, (left_name, right_name), prompt, system_prompt, sampling,
                                    (seed, None if seed is None else seed + 1), event):
                yield answers[0], answers[1], None, "generating..."
        finally:
            shared.stops.done(request, "compare", event)
        prompt_messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + \
            [{"role": "user", "content": prompt}]
        state = {"prompt": prompt_messages, "left": answers[0], "right": answers[1], "left_model": left_name,
                 "right_model": right_name}
        yield answers[0], answers[1], state, "Which answer is better? Your vote is saved as a preference pair."

    def vote(choice):
        @ui_errors
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

    names = shared.names
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
        cmp_stop.click(shared.stops.stopper("compare"), None, None, api_name="stop_compare", concurrency_limit=None)
        for choice, button in buttons.items():
            button.click(vote(choice), [pair], [vote_status, pair], api_name=f"vote_{choice}")


def compare_all_tab(shared: Shared) -> None:
    """Every loaded model (every stage of a run) answers one prompt, side by side, all with the same seed."""
    @ui_errors
    def compare_all(prompt, system_prompt, greedy, temperature, top_k, top_p, min_p, repetition_penalty,
                    max_new_tokens, seed, request: gr.Request):
        prompt = _checked(prompt, system_prompt)
        sampling = h.Sampling(greedy, temperature, top_k, top_p, min_p, repetition_penalty, max_new_tokens, seed)
        answers, event = [""] * len(names), shared.stops.start(request, "compare_all")
        try:
            for answers in _answers(shared, names, prompt, system_prompt, sampling,
                                    [sampling.seed_value] * len(names), event):
                yield *answers, "generating..."
        finally:
            shared.stops.done(request, "compare_all", event)
        yield *answers, f"{len(names)} answers to the same prompt" + (
            "" if sampling.greedy or sampling.seed_value is None else f", each sampled with seed {sampling.seed_value}")

    names = shared.names
    small_talk = [question for question, _ in SMALL_TALK]
    with gr.Tab("Compare all", id="compare-all"):
        gr.Markdown("One prompt, every loaded model, the same sampling settings and seed: what each stage changed. "
                    "Small talk is what SFT teaches: a base model rambles on where a tuned one answers.")
        all_prompt = gr.Textbox(next(q for q in small_talk if q.endswith("?")), label="prompt", lines=2,
                                elem_id="all-prompt")
        gr.Examples([[q] for q in small_talk], [all_prompt], label="small talk from the built-in data")
        all_system = gr.Textbox(label="system prompt", placeholder="optional")
        all_knobs = sampling_controls(seed=0, label="Sampling (the same seed for every model)")
        with gr.Row():
            go = gr.Button("Answer with every model", variant="primary", elem_id="all-go")
            stop = gr.Button("Stop", variant="stop")
        with gr.Row(equal_height=True):
            outs = [gr.Textbox(label=name, lines=8, interactive=False, min_width=160) for name in names]
        status = gr.Markdown(elem_id="all-status")
        go.click(compare_all, [all_prompt, all_system, *all_knobs], [*outs, status], api_name="compare_all")
        stop.click(shared.stops.stopper("compare_all"), None, None, api_name="stop_compare_all",
                   concurrency_limit=None)
