"""`hfllm serve`: trained models behind an OpenAI-compatible HTTP API (a thin FastAPI + uvicorn app).

    hfllm serve runs/tiny                          # every finished model stage, named tiny/sft, tiny/dpo, ...
    hfllm serve runs/tiny/sft Qwen/Qwen2.5-0.5B-Instruct --port 8000
    HFLLM_API_KEY=... hfllm serve runs/tiny/sft --host 0.0.0.0   # another address needs a key (or --api_key)

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    client.chat.completions.create(model="tiny/sft", messages=[{"role": "user", "content": "Hi"}])

GET /v1/models; POST /v1/chat/completions and /v1/completions, streamed or not, with temperature, top_p,
max_tokens, stop, seed and n. Each model answers through its own chat template and with its own
generation_config (greedy unless it says to sample, stopping at eos and the end of a turn); a request's
temperature or top_p turns sampling on, temperature 0 is greedy. Decoding is transformers' generate.

Why not `transformers serve` (transformers 5.24, read for this): it takes no API key, refuses `n`, caps
neither prompts nor answers nor the requests waiting, answers errors as {"detail": ...}, and loads any Hub
repo or local path that a request names (with open /load_model and /reset routes). This module adds those.

Limits (the playground's): prompts up to --max_prompt_chars characters, answers up to --max_tokens_cap
tokens and --max_seconds each; --max_concurrency generations at once, sampling ones one at a time so that
a seed reproduces (torch's generator is global), at most --max_queue waiting, then 429. Errors have
OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
"""

import asyncio
import hmac
import json
import os
import sys
import threading
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import torch

from hfllm.app_handlers import MAX_NEW_TOKENS, MAX_PROMPT_CHARS, MAX_SAMPLES, MAX_SECONDS, find_models, load_model
from hfllm.app_handlers import split_positionals
from hfllm.errors import UserError
from hfllm.export.hf_folder import stop_ids
from hfllm.generate import GenerateArguments, encode, format_prompt, sampling_kwargs

LOOPBACK = ("127.0.0.1", "localhost", "::1")
# Request fields that change nothing here; anything else unknown is refused, as OpenAI does.
IGNORED = {"user", "metadata", "store", "stream_options", "parallel_tool_calls", "service_tier"}
COMMON = {"model", "stream", "n", "max_tokens", "temperature", "top_p", "stop", "seed"}


@dataclass
class ServeArguments:
    host: str = field(default="127.0.0.1", metadata={"help": "address to bind; another than loopback needs --api_key"})
    port: int = field(default=8000, metadata={"help": "port to serve on"})
    api_key: str | None = field(default=None, metadata={"help": "key clients send as a Bearer token (or set "
                                                                "HFLLM_API_KEY)"})
    max_concurrency: int = field(default=1, metadata={"help": "generations at once"})
    max_queue: int = field(default=64, metadata={"help": "requests that may wait for a turn; more get 429"})
    max_prompt_chars: int = field(default=MAX_PROMPT_CHARS, metadata={"help": "longest prompt, in characters"})
    max_tokens_cap: int = field(default=MAX_NEW_TOKENS, metadata={"help": "most new tokens a request may ask for"})
    max_seconds: float = field(default=MAX_SECONDS, metadata={"help": "generation time per request"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow code from model repos to run"})


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


class Slots:
    """At most ``size`` generations at once and ``queue`` waiting; sampling runs one at a time."""

    def __init__(self, size: int, queue: int):
        self.free, self.queue, self.waiting, self.sampling = asyncio.Semaphore(size), queue, 0, asyncio.Lock()

    @asynccontextmanager
    async def turn(self, sampling: bool):
        if self.waiting >= self.queue:
            raise APIError(429, f"the server is busy: {self.waiting} requests are waiting; retry later",
                           code="server_busy", kind="rate_limit_error")
        self.waiting += 1
        try:
            await self.free.acquire()
        finally:
            self.waiting -= 1
        try:
            if sampling:
                async with self.sampling:
                    yield
            else:
                yield
        finally:
            self.free.release()


def _number(body: dict, key: str, kind, low: float, high: float, default=None):
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int) or not low <= value <= high:
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


def parse(body, models: dict, settings: ServeArguments, chat: bool) -> Job:
    """A request body -> a Job, or an APIError naming the bad field."""
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
        args.top_p = None if args.top_p == 0 else args.top_p
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


def _cut(text: str, stops: list[str], final: bool) -> tuple[int, bool]:
    """How much of ``text`` may be sent: up to the first stop string (which is never sent), and, while
    generation goes on, not the tail that could be the start of one."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    if found:
        return min(found), True
    if final:
        return len(text), False
    hold = max((k for s in stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
    return len(text) - hold, False


def run(job: Job, stop_event: threading.Event | None = None, on_text=None) -> list[tuple[str, int, str]]:
    """Generate, in the calling thread: [(text, completion tokens, finish_reason)] for each of the n choices.
    With ``on_text``, choices are streamed one after the other: on_text(index, text so far)."""
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

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
        sequences = []
        for index in range(job.n):
            streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
            box: dict = {}

            def work():
                try:
                    box["out"] = generate(num_return_sequences=1, streamer=streamer)
                except BaseException as exc:  # ends the stream below instead of leaving it waiting
                    box["error"] = exc
                    streamer.end()
            worker = threading.Thread(target=work, daemon=True)
            worker.start()
            text = ""
            for piece in streamer:
                text += piece
                on_text(index, text)
            worker.join()
            if "error" in box:
                raise box["error"]
            sequences.append(box["out"][0])
    results = []
    for seq in sequences:
        new = seq[inputs["input_ids"].shape[1]:].tolist()
        text = tokenizer.decode(new, skip_special_tokens=True)
        cut, stopped = _cut(text, job.stops, final=True)
        results.append((text[:cut], len(new), "stop" if stopped or (new and new[-1] in ends) else "length"))
    return results * job.n if len(results) == 1 and job.n > 1 else results


# --- the HTTP app -------------------------------------------------------------------------------------------

def _usage(job: Job, results) -> dict:
    prompt = len(job.tokenizer(job.text, add_special_tokens=False)["input_ids"])
    completion = sum(tokens for _, tokens, _ in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _response(job: Job, results, chat: bool) -> dict:
    kind = "chat.completion" if chat else "text_completion"
    choices = [{"index": i, "finish_reason": reason, "logprobs": None,
                **({"message": {"role": "assistant", "content": text}} if chat else {"text": text})}
               for i, (text, _, reason) in enumerate(results)]
    return {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()),
            "model": job.name, "choices": choices, "usage": _usage(job, results)}


async def _events(job: Job, chat: bool, release):
    """Server-sent events: OpenAI's chunks, one per new piece of text, then the finish reasons and [DONE]."""
    loop, queue, stop = asyncio.get_running_loop(), asyncio.Queue(), threading.Event()
    ident, created = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}", int(time.time())

    def chunk(index: int, text: str | None = None, reason: str | None = None, first: bool = False) -> str:
        delta = {"role": "assistant", "content": ""} if first else ({"content": text} if text is not None else {})
        choice = {"index": index, "finish_reason": reason, "logprobs": None,
                  **({"delta": delta} if chat else {"text": text or ""})}
        return "data: " + json.dumps({"id": ident, "object": "chat.completion.chunk" if chat else "text_completion",
                                      "created": created, "model": job.name, "choices": [choice]}) + "\n\n"

    def work():
        put = lambda item: loop.call_soon_threadsafe(queue.put_nowait, item)  # noqa: E731
        try:
            put(("done", run(job, stop, lambda i, text: put(("text", i, text)))))
        except BaseException as exc:
            put(("error", exc))
    threading.Thread(target=work, daemon=True).start()
    sent: dict[int, int] = {}
    try:
        while True:
            kind, *rest = await queue.get()
            if kind == "error":
                error = APIError(500, f"generation failed: {type(rest[0]).__name__}: {rest[0]}", kind="server_error")
                yield "data: " + json.dumps(error.body) + "\n\n"
                return
            if kind == "text":
                index, text = rest
                if index not in sent:
                    sent[index] = 0
                    if chat:
                        yield chunk(index, first=True)
                cut, _ = _cut(text, job.stops, final=False)
                if cut > sent[index]:
                    yield chunk(index, text[sent[index]:cut])
                    sent[index] = cut
                continue
            for index, (text, _, reason) in enumerate(rest[0]):
                if index not in sent and chat:
                    yield chunk(index, first=True)
                if len(text) > sent.get(index, 0):
                    yield chunk(index, text[sent.get(index, 0):])
                yield chunk(index, reason=reason)
            if job.include_usage:
                yield "data: " + json.dumps({"id": ident, "object": "chat.completion.chunk" if chat else
                                             "text_completion", "created": created, "model": job.name, "choices": [],
                                             "usage": _usage(job, rest[0])}) + "\n\n"
            yield "data: [DONE]\n\n"
            return
    finally:
        stop.set()
        await release()


def build_app(models: dict, settings: ServeArguments):
    """The FastAPI app. ``models``: name -> (model, tokenizer). (No `from __future__ import annotations` in
    this module: FastAPI reads the handlers' annotations, and these names are imported here.)"""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.exceptions import HTTPException

    app = FastAPI(title="hfllm serve", docs_url=None, redoc_url=None, openapi_url=None)
    slots = Slots(settings.max_concurrency, settings.max_queue)
    key = settings.api_key

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError):
        return JSONResponse(exc.body, status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return JSONResponse(APIError(exc.status_code, str(exc.detail)).body, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return JSONResponse(APIError(400, f"invalid request: {exc.errors()[:1]}").body, status_code=400)

    @app.middleware("http")
    async def authorise(request: Request, call_next):
        given = request.headers.get("authorization", "")
        if key and not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
            error = APIError(401, "Incorrect API key provided", code="invalid_api_key")
            return JSONResponse(error.body, status_code=401)
        return await call_next(request)

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "hfllm"}
                                           for name in models]}

    async def complete(request: Request, chat: bool):
        try:
            body = await request.json()
        except ValueError:
            raise APIError(400, "the request body is not valid JSON") from None
        job = parse(body, models, settings, chat)
        turn = slots.turn(job.gen_kwargs["do_sample"])
        await turn.__aenter__()  # waits here, so a full queue is a 429, not a broken stream
        if job.stream:
            return StreamingResponse(_events(job, chat, lambda: turn.__aexit__(None, None, None)),
                                     media_type="text/event-stream")
        try:
            results = await asyncio.to_thread(run, job)
        finally:
            await turn.__aexit__(None, None, None)
        return _response(job, results, chat)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await complete(request, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await complete(request, chat=False)

    return app


def load(sources: list[str], trust_remote_code: bool = False) -> dict:
    paths, _, _ = find_models(sources)
    models = {}
    for name, path in paths.items():
        print(f"hfllm serve: loading {name} ({path})", flush=True)
        models[name] = load_model(path, trust_remote_code=trust_remote_code)
    return models


def check_settings(args: ServeArguments) -> None:
    args.api_key = args.api_key or os.environ.get("HFLLM_API_KEY") or None
    if args.host not in LOOPBACK and not args.api_key:
        raise UserError(f"--host {args.host} lets other machines in: pass --api_key KEY (or set HFLLM_API_KEY), "
                        "which clients send as their API key")
    for name in ("max_concurrency", "max_queue", "max_prompt_chars", "max_tokens_cap"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.max_seconds <= 0:
        raise UserError(f"--max_seconds must be > 0, got {args.max_seconds}")


def main(argv: list[str]) -> int:
    import uvicorn

    from hfllm.config import parse_args

    sources, flags = split_positionals(argv, bool_flags={"trust_remote_code"})
    (args,), _ = parse_args([ServeArguments], flags, prog="hfllm serve")
    if not sources:
        raise UserError("which model? pass run folders, model folders or Hub ids: hfllm serve runs/tiny")
    check_settings(args)
    app = build_app(load(sources, args.trust_remote_code), args)
    print(f"hfllm serve: OpenAI-compatible API on http://{args.host}:{args.port}/v1", file=sys.stderr, flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    except OSError as exc:
        raise UserError(f"cannot serve on {args.host}:{args.port}: {exc} (try another --port)") from None
    return 0
