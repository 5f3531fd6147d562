"""hfllm serve, driven by the official `openai` client: models, chat and text completions, streaming,
sampling controls, limits, keys and OpenAI-shaped errors. The server runs in a thread on a free port."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import openai
import pytest

from conftest import run_cli

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@contextmanager
def serving(models: dict, **settings):
    import uvicorn

    from hfllm.serve import ServeArguments, build_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(build_app(models, ServeArguments(port=port, **settings)),
                                          host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def models(tiny_sft, tiny_pretrained):
    from hfllm.serve import load

    return load([tiny_sft, tiny_pretrained])


@pytest.fixture(scope="module")
def client(models):
    with serving(models) as url:
        yield openai.OpenAI(base_url=url, api_key="unused", max_retries=0)


def names(models):
    sft, pretrained = list(models)
    return sft, pretrained


def test_models_are_listed_by_name(client, models):
    # named as the playground names them: the folder and its parent
    assert [m.id for m in client.models.list()] == list(models) and len(models) == 2
    assert all(name.endswith(("/sft", "/pretrain")) for name in models)


def test_chat_answers_as_hfllm_generate_does(client, models):
    """Greedy by default (the model's generation_config), through the model's own chat template."""
    from hfllm.generate import GenerateArguments, format_prompt, generate, sampling_kwargs

    sft, _ = names(models)
    model, tokenizer = models[sft]
    reply = client.chat.completions.create(model=sft, messages=QUESTION, max_tokens=40)
    expected = generate(model, tokenizer, format_prompt(tokenizer, QUESTION, chat=True),
                        sampling_kwargs(GenerateArguments(max_new_tokens=40)))[0]
    assert reply.choices[0].message.content == expected and expected
    assert reply.choices[0].finish_reason == "stop"  # the SFT model ends its answer with <|end|>
    assert reply.usage.completion_tokens < 40 and reply.usage.prompt_tokens > 5
    assert reply.object == "chat.completion" and reply.model == sft


def test_streaming_gives_the_same_answer(client, models):
    sft, _ = names(models)
    whole = client.chat.completions.create(model=sft, messages=QUESTION, max_tokens=40)
    chunks = list(client.chat.completions.create(model=sft, messages=QUESTION, max_tokens=40, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_text_completions_stream_and_max_tokens(client, models):
    _, pretrained = names(models)
    whole = client.completions.create(model=pretrained, prompt="Once upon a time", max_tokens=5)
    assert whole.choices[0].finish_reason == "length" and whole.usage.completion_tokens == 5
    pieces = [c.choices[0].text for c in client.completions.create(model=pretrained, prompt="Once upon a time",
                                                                   max_tokens=5, stream=True) if c.choices]
    assert "".join(pieces) == whole.choices[0].text


def test_stop_strings_end_the_answer_before_them(client, models):
    _, pretrained = names(models)
    full = client.completions.create(model=pretrained, prompt="Once upon a time", max_tokens=30).choices[0].text
    stop = full[len(full) // 2:][:3]  # any text the answer holds, even across tokens
    cut = full[:full.index(stop)]
    assert stop.strip()
    reply = client.completions.create(model=pretrained, prompt="Once upon a time", max_tokens=30, stop=[stop])
    assert reply.choices[0].text == cut and reply.choices[0].finish_reason == "stop"
    streamed = client.completions.create(model=pretrained, prompt="Once upon a time", max_tokens=30, stop=stop,
                                         stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == cut


def test_sampling_n_and_seed(client, models):
    sft, _ = names(models)
    ask = dict(model=sft, messages=QUESTION, max_tokens=12, temperature=1.0, top_p=0.95, n=3, seed=7)
    first, again = client.chat.completions.create(**ask), client.chat.completions.create(**ask)
    texts = [c.message.content for c in first.choices]
    assert len(texts) == 3 and [c.index for c in first.choices] == [0, 1, 2]
    assert texts == [c.message.content for c in again.choices]  # the seed reproduces
    assert len(set(texts)) > 1  # sampled, not greedy
    other = client.chat.completions.create(**{**ask, "seed": 8})
    assert [c.message.content for c in other.choices] != texts
    greedy = client.chat.completions.create(model=sft, messages=QUESTION, max_tokens=12, temperature=0, n=2)
    assert greedy.choices[0].message.content == greedy.choices[1].message.content


@pytest.mark.parametrize("ask, status, param", [
    (dict(model="nope", messages=QUESTION), 404, "model"),
    (dict(messages=QUESTION, temperature=5), 400, "temperature"),
    (dict(messages=QUESTION, max_tokens=100000), 400, "max_tokens"),
    (dict(messages=QUESTION, n=0), 400, "n"),
    (dict(messages=[{"role": "robot", "content": "hi"}]), 400, "messages[0].role"),
    (dict(messages=[{"role": "user", "content": "x" * 9000}]), 400, "messages"),
    (dict(messages=QUESTION, tools=[{"type": "function", "function": {"name": "f"}}]), 400, "tools"),
])
def test_errors_have_openai_shape(client, models, ask, status, param):
    sft, _ = names(models)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(**{"model": sft, **ask})
    assert info.value.status_code == status
    error = info.value.body  # the client hands over the "error" object
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param and error["message"]


def test_prompt_longer_than_the_context(client, models):
    _, pretrained = names(models)
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=pretrained, prompt="the cat sat on a mat " * 40, max_tokens=8)
    assert info.value.body["code"] == "context_length_exceeded"
    assert "the model's context is 128 tokens" in info.value.body["message"]


def test_api_key_is_required_when_set(models):
    with serving(models, api_key="s3cret") as url:
        sft, _ = names(models)
        with pytest.raises(openai.AuthenticationError) as info:
            openai.OpenAI(base_url=url, api_key="wrong", max_retries=0).models.list()
        assert info.value.body["code"] == "invalid_api_key"
        good = openai.OpenAI(base_url=url, api_key="s3cret", max_retries=0)
        assert good.chat.completions.create(model=sft, messages=QUESTION, max_tokens=3).choices


def test_a_full_queue_answers_429(models):
    """One generation at a time and one waiting: of four requests at once, the last ones are turned away."""
    _, pretrained = names(models)
    with serving(models, max_concurrency=1, max_queue=1) as url:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)

        def ask(_):
            try:
                client.completions.create(model=pretrained, prompt="Once upon a time", max_tokens=100)
                return 200
            except openai.RateLimitError as exc:
                assert exc.body["type"] == "rate_limit_error"
                return 429
        with ThreadPoolExecutor(4) as pool:
            codes = sorted(pool.map(ask, range(4)))
    assert codes.count(200) >= 2 and codes.count(429) >= 1


def test_binding_beyond_loopback_needs_a_key(tiny_pretrained, capsys, monkeypatch):
    monkeypatch.delenv("HFLLM_API_KEY", raising=False)
    assert run_cli("serve", tiny_pretrained, "--host", "0.0.0.0") == 2
    assert capsys.readouterr().err.strip() == ("hfllm serve: error: --host 0.0.0.0 lets other machines in: pass "
                                               "--api_key KEY (or set HFLLM_API_KEY), which clients send as their "
                                               "API key")
