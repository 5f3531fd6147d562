"""OpenAI request bodies -> transformers' generate(): the checks, the defaults, stop strings, streaming.

No HTTP here (hfllm.serve is the app): parse() turns a /v1/chat/completions or /v1/completions body into a
Job or raises APIError, which carries OpenAI's error shape; run() generates a Job's n choices.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch

from hfllm.app.handlers import MAX_SAMPLES
from hfllm.errors import UserError
from hfllm.export.hf_folder import stop_ids
from hfllm.generate import GenerateArguments, encode, format_prompt, sampling_kwargs

# Request fields that change nothing here; anything else unknown is refused, as OpenAI does.
IGNORED = {"user", "metadata", "store", "stream_options", "parallel_tool_calls", "service_tier"}
COMMON = {"model", "stream", "n", "max_tokens", "temperature", "top_p", "stop", "seed"}


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.body = status, {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclass
class Job:
    """One request, checked: the model, the prompt and generate()'s keyword arguments."""
    name: str
    model: object
    tokenizer: object
    text: str
    n: int
    gen_kwargs: dict
    stops: list[str]
    seed: int | None
    stream: bool
    include_usage: bool


def _number(body: dict, key: str, kind, low: float, high: float, default=None):
    value = body.get(key, default)
    if value is None:
        return default
    numeric = isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool)
    if not numeric or not low <= value <= high:
        raise APIError(400, f"'{key}' must be {'a number' if kind is float else 'an integer'} in [{low}, {high}], "
                            f"got {value!r}", param=key)
    return kind(value)


def _text(content, where: str) -> str:
    """Message content: a string, or a list of text parts (other parts, images and such, are refused)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(str(p.get("text", "")) for p in content)
    raise APIError(400, f"{where} must be a string or a list of text parts", param=where)


def parse(body, models: dict, settings, chat: bool) -> Job:
    """A request body -> a Job, or an APIError naming the bad field. ``settings``: hfllm.serve.ServeArguments."""
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    allowed = COMMON | IGNORED | ({"messages", "max_completion_tokens"} if chat else {"prompt"})
    for key in body:
        if key not in allowed and body[key] is not None:
            raise APIError(400, f"Unrecognized request argument supplied: {key}", param=key)
    name = body.get("model")
    if name not in models:
        raise APIError(404, f"The model '{name}' does not exist; this server has: {', '.join(models)}",
                       param="model", code="model_not_found")
    model, tokenizer = models[name]
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise APIError(400, "'messages' must be a non-empty list of {role, content} objects", param="messages")
        for i, m in enumerate(messages):
            if m.get("role") not in ("system", "user", "assistant"):
                raise APIError(400, f"messages[{i}].role must be system, user or assistant, got {m.get('role')!r}",
                               param=f"messages[{i}].role")
        messages = [{"role": m["role"], "content": _text(m.get("content"), f"messages[{i}].content")}
                    for i, m in enumerate(messages)]
        size = sum(len(m["content"]) for m in messages)
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise APIError(400, "'prompt' must be a string (one prompt per request)", param="prompt")
        size = len(prompt)
    if size > settings.max_prompt_chars:
        raise APIError(400, f"the prompt is too long: {size:,} characters; this server takes at most "
                            f"{settings.max_prompt_chars:,}", param="messages" if chat else "prompt",
                       code="prompt_too_long")
    n = _number(body, "n", int, 1, MAX_SAMPLES, 1)
    key = "max_completion_tokens" if chat and body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _number(body, key, int, 1, settings.max_tokens_cap, settings.max_tokens_cap)
    temperature = _number(body, "temperature", float, 0, 2)
    top_p = _number(body, "top_p", float, 0, 1)
    if top_p == 0:  # transformers keeps at least the top token only for top_p > 0
        raise APIError(400, "'top_p' must be in (0, 1]; for the most likely token only, use temperature 0",
                       param="top_p")
    stops = body.get("stop") or []
    stops = [stops] if isinstance(stops, str) else stops
    if not isinstance(stops, list) or len(stops) > 4 or not all(isinstance(s, str) and s for s in stops):
        raise APIError(400, "'stop' must be a string or a list of up to 4 non-empty strings", param="stop")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise APIError(400, f"'seed' must be an integer, got {seed!r}", param="seed")
    options = body.get("stream_options") or {}
    # The model's generation_config is the default; a temperature or top_p asks for sampling.
    config = model.generation_config
    sample = bool(config.do_sample) if temperature is None and top_p is None else temperature != 0
    args = GenerateArguments(max_new_tokens=max_tokens, do_sample=sample, num_return_sequences=n if sample else 1)
    if sample:
        args.temperature = temperature or (config.temperature if config.do_sample else None)
        args.top_p = top_p if top_p is not None else (config.top_p if config.do_sample else None)
        args.top_k = config.top_k if config.do_sample else None
    try:
        gen_kwargs = {**sampling_kwargs(args), "max_time": settings.max_seconds}
        text = format_prompt(tokenizer, messages, chat=True) if chat else prompt
        encode(model, tokenizer, text, max_tokens)  # an empty prompt, or one with no room for the answer
    except UserError as exc:
        raise APIError(400, str(exc), code="context_length_exceeded" if "context" in str(exc) else None) from None
    if stops:
        gen_kwargs.update(stop_strings=stops, tokenizer=tokenizer)
    return Job(name, model, tokenizer, text, n, gen_kwargs, stops, seed, bool(body.get("stream")),
               bool(options.get("include_usage")) if isinstance(options, dict) else False)


def cut_at_stop(text: str, stops: list[str], final: bool) -> tuple[int, bool]:
    """How much of ``text`` may be sent: up to the first stop string (which is never sent), and, while
    generation goes on, not the tail that could be the start of one."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    if found:
        return min(found), True
    if final:
        return len(text), False
    hold = max((k for s in stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
    return len(text) - max(hold, int(text.endswith("\ufffd"))), False  # nor half a character


class Pieces:
    """A generate() streamer: after each new token, on_text(index, the answer's text so far)."""

    def __init__(self, tokenizer, index: int, on_text):
        self.tokenizer, self.index, self.on_text, self.ids, self.prompt = tokenizer, index, on_text, [], True

    def put(self, value):
        if self.prompt:  # generate hands over the prompt first
            self.prompt = False
            return
        self.ids += value.reshape(-1).tolist()
        self.on_text(self.index, self.tokenizer.decode(self.ids, skip_special_tokens=True))

    def end(self):
        pass


def run(job: Job, stop_event: threading.Event | None = None, on_text=None) -> list[tuple[str, int, str]]:
    """Generate, in the calling thread: [(text, completion tokens, finish_reason)] for each of the n choices.
    With ``on_text``, choices are streamed one after the other (see Pieces)."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Stop(StoppingCriteria):  # a client that went away ends its generation
        def __call__(self, input_ids, scores, **kwargs):
            return bool(stop_event is not None and stop_event.is_set())

    model, tokenizer = job.model, job.tokenizer
    inputs = encode(model, tokenizer, job.text, job.gen_kwargs["max_new_tokens"])
    ends = stop_ids(model, tokenizer)

    def generate(**extra):
        with torch.no_grad():
            return model.generate(**inputs, **{**job.gen_kwargs, **extra}, eos_token_id=ends,
                                  pad_token_id=tokenizer.pad_token_id, stopping_criteria=StoppingCriteriaList([Stop()]))

    if job.seed is not None:
        torch.manual_seed(job.seed)
    if on_text is None:
        sequences = list(generate())  # n samples at once; greedy gives one, repeated below
    else:
        sequences = [generate(num_return_sequences=1, streamer=Pieces(tokenizer, i, on_text))[0] for i in range(job.n)]
    results = []
    for seq in sequences:
        new = seq[inputs["input_ids"].shape[1]:].tolist()
        text = tokenizer.decode(new, skip_special_tokens=True)
        cut, stopped = cut_at_stop(text, job.stops, final=True)
        results.append((text[:cut], len(new), "stop" if stopped or (new and new[-1] in ends) else "length"))
    return results * job.n if len(results) == 1 and job.n > 1 else results
