"""The playground cannot be stalled (issue 19): every number a client sends is checked at the door, the
sampling lock is never waited on without end, a history a client sends back is capped and costs linear
time, and votes go beside the run served. `hfllm generate --seed` with a seed torch cannot take is one line."""

from __future__ import annotations

import os
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest

from conftest import run_cli
from hfllm import run_folder
from hfllm.app import handlers as h
from hfllm.app import models as m
from hfllm.errors import UserError


@pytest.fixture(scope="module")
def lm(tiny_pretrained):
    return m.load_model(tiny_pretrained)


@pytest.mark.parametrize("field, value, message", [
    ("seed", 10**30, "seed must be an integer in [0, 4294967295] (what numpy's and torch's generators take), got "
                     + str(10**30)),
    ("seed", -1, "seed must be an integer in [0, 4294967295]"),
    ("seed", "abc", "seed must be a number, got 'abc'"),
    ("temperature", float("nan"), "temperature must be a finite number > 0, got nan"),
    ("temperature", 0, "temperature must be a finite number > 0, got 0"),
    ("top_k", -3, "top_k must be an integer >= 0, got -3"),
    ("top_p", 1.5, "top_p must be in (0, 1], got 1.5"),
    ("repetition_penalty", 0, "repetition_penalty must be a finite number > 0, got 0"),
    ("max_new_tokens", 0, "max_new_tokens must be a positive integer, got 0"),
    ("max_new_tokens", [1], "max_new_tokens must be a number, got '[1]'"),
])
def test_every_number_a_client_sends_is_checked_at_the_door(field, value, message):
    with pytest.raises(UserError) as info:
        h.Sampling(**{field: value})
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_numbers_are_converted_and_capped():
    sampling = h.Sampling(temperature="0.7", top_k=5.0, max_new_tokens=10**9, seed="12")
    assert (sampling.temperature, sampling.top_k, sampling.max_new_tokens, sampling.seed_value) == \
        (0.7, 5, h.MAX_NEW_TOKENS, 12)


def test_sampling_lock_is_never_waited_on_without_end(monkeypatch):
    """A request that finds the lock held too long is told the app is busy; greedy decoding never waits."""
    monkeypatch.setattr(h, "LOCK_WAIT", 0.2)
    with h.SAMPLING_LOCK:
        start = time.perf_counter()
        with pytest.raises(UserError, match="busy sampling for others"):
            with h.sampling_guard({"do_sample": True}):
                pass
        assert time.perf_counter() - start < 2
        with h.sampling_guard({"do_sample": False}):
            pass
    with h.sampling_guard({"do_sample": True}):
        assert h.SAMPLING_LOCK.locked()
    assert not h.SAMPLING_LOCK.locked()


def test_history_is_capped():
    history = [{"role": ("user", "assistant")[i % 2], "content": f"turn {i}"} for i in range(5 * h.MAX_MESSAGES)]
    messages = h.history_to_messages(history)
    assert len(messages) == h.MAX_MESSAGES and messages[-1]["content"] == f"turn {5 * h.MAX_MESSAGES - 1}"
    with pytest.raises(UserError, match="the earlier message is too long"):
        h.history_to_messages([{"role": "user", "content": "x" * (h.MAX_PROMPT_CHARS + 1)}])
    with pytest.raises(UserError, match="must be a list of messages"):
        h.history_to_messages("not a list")


def test_a_long_history_costs_linear_time(lm):
    """240 turns of 8,000 characters took 62 s of server CPU: the oldest are dropped, each counted once."""
    model, tokenizer = lm
    turn = "the cat sat on the mat " * 340  # under the 8,000-character message cap
    messages = [{"role": ("user", "assistant")[i % 2], "content": f"{i} {turn}"} for i in range(239)]
    messages.append({"role": "user", "content": "and now?"})
    start = time.perf_counter()
    text, max_new, notes = h.fit_chat(model, tokenizer, messages, None, 16)
    assert time.perf_counter() - start < 10
    assert "and now?" in text and "0 the cat" not in text and max_new >= 1


def test_votes_go_beside_the_run(tmp_path):
    stage = tmp_path / "runs" / "tiny" / "sft"
    stage.mkdir(parents=True)
    run_folder.write_metrics(stage, {}, stage="sft")
    assert m.feedback_file([str(stage)], None) == (tmp_path / "runs" / "tiny").resolve() / "feedback.jsonl"
    assert m.feedback_file([str(stage)], tmp_path / "runs" / "tiny") == tmp_path / "runs" / "tiny" / "feedback.jsonl"
    assert m.feedback_file(["someone/model"], None) == run_folder.Path("runs/feedback.jsonl")


def test_generate_with_a_seed_torch_cannot_take_is_one_line(capsys):
    start = time.perf_counter()
    assert run_cli("generate", "--model_name_or_path", "model", "--prompt", "hi", "--seed",
                   "99999999999999999999999") == 2
    assert time.perf_counter() - start < 30
    err = capsys.readouterr().err.strip()
    assert err == ("hfllm generate: error: seed must be an integer in [0, 4294967295] (what numpy's and torch's "
                   "generators take), got 99999999999999999999999")
