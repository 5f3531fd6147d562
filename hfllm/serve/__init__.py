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

Not `transformers serve` (5.24, read for this): it takes no API key, refuses `n`, caps neither prompts,
answers nor waiting requests, answers errors as {"detail": ...}, and loads any repo or path a request names.

Limits (the playground's): prompts up to --max_prompt_chars characters, answers up to --max_tokens_cap
tokens and --max_seconds each; --max_concurrency generations at once, those sampling with a seed one at a
time so that the seed reproduces (torch's generator is global), at most --max_queue waiting, then 429. Errors have
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

from hfllm.app.handlers import MAX_NEW_TOKENS, MAX_PROMPT_CHARS, MAX_SECONDS
from hfllm.app.models import find_models, load_model
from hfllm.app.launch import split_positionals
from hfllm.errors import UserError
from hfllm.serve.requests import APIError, Job, cut_at_stop, parse, run

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class ServeArguments:
    host: str = field(default="127.0.0.1", metadata={"help": "address to bind; another than loopback needs --api_key"})
    port: int = field(default=8000, metadata={"help": "port to serve on"})
    api_key: str | None = field(default=None, metadata={"help": "key clients send as a Bearer token (or set "
                                                                "HFLLM_API_KEY)"})
    max_concurrency: int = field(default=4, metadata={"help": "generations at once (as `hfllm chat`)"})
    max_queue: int = field(default=64, metadata={"help": "requests that may wait for a turn; more get 429"})
    max_prompt_chars: int = field(default=MAX_PROMPT_CHARS, metadata={"help": "longest prompt, in characters"})
    max_tokens_cap: int = field(default=MAX_NEW_TOKENS, metadata={"help": "most new tokens a request may ask for"})
    max_seconds: float = field(default=MAX_SECONDS, metadata={"help": "generation time per request"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow code from model repos to run"})


class Slots:
    """At most ``size`` generations at once and ``queue`` waiting; seeded sampling runs one at a time."""

    def __init__(self, size: int, queue: int):
        self.free, self.queue, self.waiting, self.sampling = asyncio.Semaphore(size), queue, 0, asyncio.Lock()

    @asynccontextmanager
    async def turn(self, seeded_sampling: bool):
        if self.waiting >= self.queue:
            raise APIError(429, f"the server is busy: {self.waiting} requests are waiting; retry later",
                           code="server_busy", kind="rate_limit_error")
        self.waiting += 1
        try:
            await self.free.acquire()
        finally:
            self.waiting -= 1
        try:
            if seeded_sampling:
                async with self.sampling:
                    yield
            else:
                yield
        finally:
            self.free.release()


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


async def _events(job: Job, chat: bool):
    """Server-sent events: OpenAI's chunks, one per new piece of text, then the finish reasons and [DONE]."""
    loop, queue, stop = asyncio.get_running_loop(), asyncio.Queue(), threading.Event()
    head = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}", "created": int(time.time()),
            "object": "chat.completion.chunk" if chat else "text_completion", "model": job.name}

    def event(index: int, text: str | None = None, reason: str | None = None, **extra) -> str:
        delta = {"role": "assistant", "content": ""} if text is None and reason is None else \
            ({"content": text} if text is not None else {})
        choices = [{"index": index, "finish_reason": reason, "logprobs": None,
                    **({"delta": delta} if chat else {"text": text or ""})}] if index >= 0 else []
        return f"data: {json.dumps({**head, 'choices': choices, **extra})}\n\n"

    def work():
        put = lambda item: loop.call_soon_threadsafe(queue.put_nowait, item)  # noqa: E731
        try:
            put(("done", run(job, stop, lambda i, text: put(("text", i, text)))))
        except BaseException as exc:  # the stream says so instead of hanging
            put(("error", exc))
    threading.Thread(target=work, daemon=True).start()
    sent: dict[int, int] = {}
    try:
        while True:
            kind, *rest = await queue.get()
            if kind == "error":
                error = APIError(500, f"generation failed: {type(rest[0]).__name__}: {rest[0]}", kind="server_error")
                yield f"data: {json.dumps(error.body)}\n\n"
                return
            updates = [rest] if kind == "text" else [(i, text) for i, (text, _, _) in enumerate(rest[0])]
            for index, text in updates:
                if index not in sent:  # a choice's first chunk gives the role
                    sent[index] = 0
                    if chat:
                        yield event(index)
                cut = cut_at_stop(text, job.stops, final=kind == "done")[0]
                if cut > sent[index]:
                    yield event(index, text[sent[index]:cut])
                    sent[index] = cut
            if kind == "done":
                for index, (_, _, reason) in enumerate(rest[0]):
                    yield event(index, reason=reason)
                if job.include_usage:
                    yield event(-1, usage=_usage(job, rest[0]))
                yield "data: [DONE]\n\n"
                return
    finally:  # the client went away, or all is sent: the generation stops at its next token
        stop.set()


def build_app(models: dict, settings: ServeArguments):
    """The FastAPI app. ``models``: name -> (model, tokenizer). (No `from __future__ import annotations` in
    this module: FastAPI reads the handlers' annotations, and these names are imported here.)"""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.exceptions import HTTPException

    class Stream(StreamingResponse):
        """Gives the generation slot back however the response ends, even if the client left before it began."""

        def __init__(self, events, release):
            super().__init__(events, media_type="text/event-stream")
            self.release = release

        async def __call__(self, scope, receive, send):
            try:
                await super().__call__(scope, receive, send)
            finally:
                await self.release()

    app = FastAPI(title="hfllm serve", docs_url=None, redoc_url=None, openapi_url=None)
    slots = Slots(settings.max_concurrency, settings.max_queue)
    key = settings.api_key

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError):
        return JSONResponse(exc.body, status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return JSONResponse(APIError(exc.status_code, str(exc.detail)).body, status_code=exc.status_code)

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
        turn = slots.turn(job.gen_kwargs["do_sample"] and job.seed is not None)
        await turn.__aenter__()  # waits here, so a full queue is a 429, not a broken stream
        if job.stream:
            return Stream(_events(job, chat), lambda: turn.__aexit__(None, None, None))
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


def main(argv: list[str]) -> int:
    import uvicorn

    from hfllm.config import parse_args

    if any(a in ("-h", "--help") for a in argv):
        print("usage: hfllm serve RUN_OR_MODEL [RUN_OR_MODEL ...] [options]: run folders (every finished model "
              "stage), stage or HF model folders, LoRA adapters or Hub ids\n")
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
