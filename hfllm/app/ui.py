"""What every tab of the playground shares: errors shown in the page, the Stop buttons' events, the sampling
controls, and the loaded models with the chooser above the tabs."""

from __future__ import annotations

import functools
import inspect
import threading
import traceback
from dataclasses import dataclass

import gradio as gr

from hfllm.app import handlers as h
from hfllm.errors import UserError, first_line, user_line


def ui_errors(fn):
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

    def stopper(self, tab: str):
        """The Stop button's handler for ``tab``."""
        def stop(request: gr.Request):
            self.stop(request, tab)
        return stop


@dataclass
class Shared:
    """The loaded models (name -> (model, tokenizer)), the model chooser above the tabs, the Stop events."""
    models: dict
    model_pick: gr.Dropdown
    stops: StopEvents

    @property
    def names(self) -> list[str]:
        return list(self.models)

    def pick(self, name):
        if name not in self.models:
            raise UserError(f"unknown model '{name}'; loaded: {', '.join(self.models)}")
        return self.models[name]


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


def warn(notes):
    for note in notes:
        gr.Warning(note)
