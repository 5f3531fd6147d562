"""The Gradio playground: its handlers on a tiny model, then the running app through gradio_client."""

import json
import os
import socket
import threading
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home from tests

import pytest

from conftest import run_cli
from hfllm.app import handlers as h
from hfllm.app import models as m
from hfllm.errors import UserError

PROMPT = "Once upon a time"
SAMPLING = dict(greedy=False, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repetition_penalty=1.0,
                max_new_tokens=12, seed=7)


@pytest.fixture(scope="module")
def lm(tiny_pretrained):
    return m.load_model(tiny_pretrained)


def make_reward(tiny_pretrained, folder: Path) -> str:
    """A reward model with a random (seeded) head on the tiny LM: scores are arbitrary but deterministic."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_pretrained, num_labels=1)
    tokenizer = AutoTokenizer.from_pretrained(tiny_pretrained)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "metrics.json").write_text('{"stage": "reward"}')
    return str(folder)


@pytest.fixture(scope="module")
def reward(tiny_pretrained, tmp_path_factory):
    return m.load_reward(make_reward(tiny_pretrained, tmp_path_factory.mktemp("reward") / "reward"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(models, reward, preference_file):
    """Launch the app on a free local port without blocking; returns (demo, url)."""
    from hfllm.app.layout import build_app

    demo = build_app(models, reward, preference_file)
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
                show_error=True)
    return demo, demo.local_url


@pytest.fixture(scope="module")
def server(lm, reward, tmp_path_factory):
    feedback = tmp_path_factory.mktemp("feedback") / "feedback.jsonl"
    demo, url = serve({"a": lm, "b": lm}, reward, feedback)
    yield url, feedback
    demo.close()


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server[0], verbose=False)


# --- handlers -----------------------------------------------------------------------------------

def test_split_positionals():
    from hfllm.app.launch import split_positionals

    argv = ["runs/a", "--port", "7861", "--share", "runs/b", "--auth=u:p", "--share", "false", "hub/model"]
    sources, flags = split_positionals(argv, {"share"})
    assert sources == ["runs/a", "runs/b", "hub/model"]
    assert flags == ["--port", "7861", "--share", "--auth=u:p", "--share", "false"]


def test_sampling_settings_are_capped_and_validated():
    kwargs = h.Sampling(max_new_tokens=5000, top_k=0, top_p=1.0).kwargs()
    assert kwargs["max_new_tokens"] == h.MAX_NEW_TOKENS and kwargs["max_time"] == h.MAX_SECONDS
    assert kwargs["do_sample"] and kwargs["top_k"] is None and kwargs["top_p"] is None  # 0 / 1 mean off
    greedy = h.Sampling(greedy=True, temperature=1.7, top_k=5).kwargs()
    assert greedy["do_sample"] is False and "temperature" not in greedy
    with pytest.raises(UserError, match="temperature must be a finite number > 0, got 0"):
        h.Sampling(temperature=0).kwargs()


def test_stop_button_events_are_per_session_and_tab():
    from types import SimpleNamespace

    from hfllm.app.layout import StopEvents

    stops, me, other = StopEvents(), SimpleNamespace(session_hash="me"), SimpleNamespace(session_hash="other")
    mine, theirs = stops.start(me, "chat"), stops.start(other, "chat")
    stops.stop(me, "compare")
    assert not mine.is_set()
    stops.stop(me, "chat")
    assert mine.is_set() and not theirs.is_set()
    stops.done(other, "chat", theirs)
    assert theirs.is_set() and not stops._events.get("other:chat")


def test_history_from_gradio_messages():
    history = [{"role": "user", "content": [{"type": "text", "text": "hi"}], "metadata": None},
               {"role": "assistant", "content": "hello"}, {"role": "system", "content": "x"}]
    assert h.history_to_messages(history) == [{"role": "user", "content": "hi"},
                                              {"role": "assistant", "content": "hello"}]


def test_long_chats_drop_old_turns_and_long_prompts_are_refused(lm):
    model, tok = lm
    turns = []
    for i in range(6):
        turns += [{"role": "user", "content": f"question {i} " * 4}, {"role": "assistant", "content": "answer " * 6}]
    text, max_new, notes = h.fit_chat(model, tok, [*turns, {"role": "user", "content": "last one"}], None, 40)
    assert "last one" in text and "question 0" not in text and "oldest" in notes[0]
    assert h.count_tokens(tok, text) + max_new <= 128
    with pytest.raises(UserError, match="too long: .* tokens"):
        h.fit_chat(model, tok, [{"role": "user", "content": "word " * 300}], None, 10)
    with pytest.raises(UserError, match="too long: 9,000 characters"):
        h.check_length("x" * 9000)


def test_distribution_marks_the_surviving_tokens(lm):
    table = h.distribution(*lm, PROMPT, temperature=1.0, top_k=3, top_p=1.0, min_p=0.0, top_n=10)
    assert list(table.columns) == ["token", "id", "before", "after", "status"] and len(table) == 10
    assert (table["status"] == "kept").sum() == 3 and abs(table["after"].sum() - 1) < 1e-3
    assert table["before"].is_monotonic_decreasing and list(table["token"]) == sorted(table["token"])


def test_seeded_steps_are_reproducible(lm):
    def walk():
        text, history = PROMPT, []
        for _ in range(3):
            text, history = h.step(*lm, text, 1.0, 0, 1.0, 0.0, 5, history)
        return text, history
    first = walk()
    assert first == walk() and len(first[1]) == 3 and first[0].startswith(PROMPT)
    assert first[1][0]["p_before"] is not None  # the chosen token is looked up in the distribution


def test_same_prompt_n_times_greedy_is_consistent_sampling_diverse(lm):
    summary, samples = h.repeat(*lm, PROMPT, 4, 6, temperature=1.5, top_k=0, top_p=1.0, seed=1)
    assert summary["mode"].tolist()[0] == "greedy" and summary["distinct outputs"][0] == "1 / 4"
    assert int(summary["distinct outputs"][1].split(" / ")[0]) > 1 and len(samples) == 16


def test_best_of_n_ranks_by_reward_and_checks_answers(lm, reward):
    sampling = h.Sampling(**SAMPLING)
    table, _ = h.best_of_n(*lm, reward, [{"role": "user", "content": "What is 3 + 4?"}], None, sampling, 5, "7")
    assert len(table) == 5 and list(table.columns) == ["rank", "sample", "score", "correct", "answer"]
    assert table["score"].is_monotonic_decreasing and table["rank"].tolist() == [1, 2, 3, 4, 5]
    again, _ = h.best_of_n(*lm, reward, [{"role": "user", "content": "What is 3 + 4?"}], None, sampling, 5, "7")
    assert again.equals(table)  # seeded
    no_reward, _ = h.best_of_n(*lm, None, [{"role": "user", "content": "hi"}], None, sampling, 3)
    assert list(no_reward.columns) == ["sample", "answer"]


def test_reward_score_reads_the_reward_models_own_template(reward):
    import torch

    model, tok = reward.model, reward.tokenizer
    conversation = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}]
    ids = tok(tok.apply_chat_template(conversation, tokenize=False), return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        assert reward([conversation[:1]], ["hello there"])[0] == pytest.approx(float(model(**ids).logits[0, 0]))


def test_tokenizer_view(lm):
    _, tok = lm
    spans, stats = h.token_spans(tok, "Hello world, hello!")
    assert "".join(piece for piece, _ in spans) == "Hello␣world,␣hello!"  # spaces made visible
    assert [int(i) for _, i in spans] == tok("Hello world, hello!", add_special_tokens=False)["input_ids"]
    assert f"**{len(spans)} tokens** · 19 characters · 3 words" in stats
    chat_spans, _ = h.token_spans(tok, "hi", chat=True)
    assert any(piece == "<|user|>" for piece, _ in chat_spans)


def test_preference_rows_append_without_rewriting(tmp_path):
    path = tmp_path / "sub" / "feedback.jsonl"
    prompt = [{"role": "user", "content": "q"}]
    assert h.append_jsonl(path, h.preference_row(prompt, "good", "bad")) == 1
    path.write_text(path.read_text().rstrip("\n"))  # a hand edit that dropped the final newline
    assert h.append_jsonl(path, h.preference_row(prompt, "better", "worse")) == 2
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0]["chosen"] == [{"role": "assistant", "content": "good"}] and rows[1]["rejected"][0]["content"] == "worse"
    with pytest.raises(UserError, match="same"):
        h.preference_row(prompt, "same", "same")


def test_run_folders_are_discovered(tiny_pretrained, tmp_path):
    run = tmp_path / "myrun"
    run.mkdir()
    (run / "pretrain").symlink_to(tiny_pretrained)
    (run / "sft").mkdir()  # unfinished: skipped
    make_reward(tiny_pretrained, run / "reward")
    models, reward_path, first = m.find_models([str(run), tiny_pretrained, "org/some-model"])
    assert len(models) == 3 and "org/some-model" in models and models["org/some-model"] == "org/some-model"
    assert models["myrun/pretrain"] == str(run / "pretrain") and reward_path == str(run / "reward") and first == run
    (run / "pretrain").unlink()
    with pytest.raises(UserError, match="no finished model stage .*sft not finished"):
        m.find_models([str(run)])


def test_main_loads_a_run_and_warns_about_open_hosts(tiny_pretrained, tmp_path, monkeypatch, capsys):
    import gradio as gr

    launched = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: launched.update(kw, demo=self))
    run = tmp_path / "r"
    run.mkdir()
    (run / "sft").symlink_to(tiny_pretrained)
    make_reward(tiny_pretrained, run / "reward")
    assert run_cli("chat", run, "--host", "0.0.0.0", "--port", "7999") == 0
    err = capsys.readouterr().err
    assert "warning: --host 0.0.0.0" in err and "--auth" in err
    assert launched["server_name"] == "0.0.0.0" and launched["server_port"] == 7999 and launched["auth"] is None
    assert run_cli("chat", run / "sft", "--share", "--auth", "me:pw", "--preference_file", tmp_path / "p.jsonl") == 0
    assert launched["share"] is True and launched["auth"] == ("me", "pw") and "warning" not in capsys.readouterr().err


def test_binds_localhost_unless_told_and_warns_when_open_without_auth(tiny_pretrained, monkeypatch, capsys):
    import gradio as gr

    launched = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: launched.update(kw))
    assert run_cli("chat", tiny_pretrained) == 0  # no --host: this machine only, nothing to warn about
    assert launched["server_name"] == "127.0.0.1" and launched["share"] is False and launched["auth"] is None
    assert "warning" not in capsys.readouterr().err
    assert run_cli("chat", tiny_pretrained, "--share") == 0
    assert "warning: --share makes the app public" in capsys.readouterr().err and launched["share"] is True
    assert run_cli("chat", tiny_pretrained, "--host", "0.0.0.0", "--auth", "me:pw") == 0
    assert "warning" not in capsys.readouterr().err and launched["auth"] == ("me", "pw")


def test_generation_time_is_capped(lm, monkeypatch):
    """A request stops at MAX_SECONDS even when the model would go on (eos masked, a slow forward pass)."""
    model, tok = lm
    forward = model.forward

    def slow_endless(*args, **kwargs):
        out = forward(*args, **kwargs)
        out.logits[..., tok.eos_token_id] = -float("inf")  # never stops by itself
        time.sleep(0.02)
        return out

    monkeypatch.setattr(model, "forward", slow_endless)
    monkeypatch.setattr(h, "MAX_SECONDS", 0.2)
    start = time.perf_counter()
    answer = h.sample_answers(model, tok, PROMPT, h.Sampling(greedy=True), 1, 100)[0]
    took = time.perf_counter() - start
    new_tokens = h.count_tokens(tok, answer)
    assert new_tokens < 50 and took < 2.0, (new_tokens, took)  # uncapped: 100 tokens, >= 2 s


@pytest.mark.parametrize("make,pattern", [
    (lambda p: p / "missing", "not found"),
    (lambda p: (p / "broken").mkdir() or (p / "broken" / "config.json").write_text("{oops") or p / "broken",
     "could not load"),
])
def test_bad_models_fail_at_start_with_one_line(tmp_path, capsys, make, pattern):
    assert run_cli("chat", make(tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hfllm chat: error:") and pattern in err and len(err.splitlines()) == 1


# --- the running app, through gradio_client -------------------------------------------------------

def chat_args(message, **over):
    return dict(message=message, history=[], model_name="a", system_prompt="", **{**SAMPLING, **over})


def test_streamed_chat_is_reproducible_with_a_seed(client):
    job = client.submit(**chat_args("Tell me a story"), api_name="/chat")
    final = job.result(timeout=120)
    assert len(job.outputs()) > 3  # the answer arrived in pieces
    answer = h.content_text(final[1][-1]["content"])
    assert final[0] == "" and final[1][0]["role"] == "user" and answer.strip()
    again = client.predict(**chat_args("Tell me a story"), api_name="/chat")
    assert h.content_text(again[1][-1]["content"]) == answer
    other = client.predict(**chat_args("Tell me a story", seed=8), api_name="/chat")
    assert h.content_text(other[1][-1]["content"]) != answer


def test_compare_vote_writes_a_pair_that_dpo_trains_on(client, server, tiny_pretrained, tmp_path):
    _, feedback = server
    left, right, status = client.predict(prompt="What is 2 + 2?", system_prompt="", left_name="a",
                                         right_name="b", **SAMPLING, api_name="/compare")
    assert left.strip() and right.strip() and left != right and "better" in status
    assert "Tie" in client.predict(api_name="/vote_tie") and not feedback.exists()
    before = feedback.read_text() if feedback.exists() else ""
    assert "Saved: right preferred" in client.predict(api_name="/vote_right")
    lines = feedback.read_text()[len(before):].splitlines()
    assert len(lines) == 1
    row = json.loads(lines[0])
    assert row["prompt"] == [{"role": "user", "content": "What is 2 + 2?"}]
    assert row["chosen"] == [{"role": "assistant", "content": right}]
    assert row["rejected"] == [{"role": "assistant", "content": left}]
    with pytest.raises(Exception, match="nothing to vote on"):
        client.predict(api_name="/vote_left")  # one vote per comparison
    client.predict(prompt="What is 5 + 1?", system_prompt="Be brief.", left_name="a", right_name="b",
                   **{**SAMPLING, "seed": 11}, api_name="/compare")
    client.predict(api_name="/vote_left")
    assert len(feedback.read_text().splitlines()) == 2
    assert run_cli("dpo", "--model_name_or_path", tiny_pretrained, "--dataset_name", feedback, "--max_steps", "2",
                   "--eval_split_size", "0", "--output_dir", tmp_path / "dpo", "--report_to", "none",
                   "--disable_tqdm", "true", "--per_device_train_batch_size", "2") == 0


def test_best_of_n_through_the_api(client):
    table = client.predict(prompt="What is 3 + 4?", model_name="a", system_prompt="", n=4, expected="7",
                           **SAMPLING, api_name="/best_of_n")
    scores = [row[table["headers"].index("score")] for row in table["data"]]
    assert len(scores) == 4 and scores == sorted(scores, reverse=True)


def test_too_long_prompt_gets_a_clear_message(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="too long: 25,000 characters"):
        client.predict(**chat_args("word " * 5000), api_name="/chat")
    with pytest.raises(AppError, match="too long: .* tokens, and the model's context is 128"):
        client.predict(**chat_args("word " * 300), api_name="/chat")


def test_lab_and_tokenizer_through_the_api(client):
    before, after, numbers, note = client.predict(text=PROMPT, model_name="a", as_chat=False, temperature=1.0,
                                                  top_k=5, top_p=1.0, min_p=0.0, top_n=12, api_name="/distribution")
    assert "5 of the top 12" in note
    spans, stats = client.predict(text="Hello world", model_name="a", as_chat=False, api_name="/tokenize")
    assert "tokens**" in stats and spans


def test_twenty_concurrent_chats_all_finish(client):
    start = time.time()
    jobs = [client.submit(**chat_args(f"Question number {i}", seed=i, max_new_tokens=16), api_name="/chat")
            for i in range(20)]
    answers = [job.result(timeout=180) for job in jobs]
    assert all(a[1][-1]["role"] == "assistant" for a in answers)
    assert time.time() - start < 180
    assert threading.active_count() < 200


# --- the Data tab: what each loaded model was trained on -----------------------------------------------------

@pytest.fixture(scope="module")
def sft_stage(tiny_pretrained, tmp_path_factory):
    from conftest import QUIET, run_cli

    root = tmp_path_factory.mktemp("data-tab")
    chats = root / "chats.jsonl"
    chats.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Say {i}."},
                                                      {"role": "assistant", "content": f"{i}."}]}) + "\n"
                             for i in range(12)))
    assert run_cli("sft", "--model_name_or_path", tiny_pretrained, "--dataset_name", chats, "--max_steps", "1",
                   "--max_length", "48", "--answer_eval_samples", "0", "--output_dir", root / "sft", *QUIET) == 0
    return root / "sft", chats


def test_data_tab_shows_what_a_stage_folder_trained_on(sft_stage, tiny_pretrained, tmp_path):
    from hfllm.app.layout import build_app

    folder, chats = sft_stage
    lm_sft = m.load_model(str(folder))
    text = m.training_data(str(folder), lm_sft[1])
    assert "data of sft, its first 500 training rows at most" in text
    assert "messages; 12 rows read, 12 rows to train on" in text and "max_length 48" in text
    pretrain = m.training_data(tiny_pretrained, lm_sft[1])
    assert pretrain.endswith("its stage (pretrain) trains on no data hfllm inspect reads, so there is no training "
                             "data to show.")
    demo = build_app({"sft": lm_sft, "hub": lm_sft}, None, tmp_path / "feedback.jsonl",
                     sources={"sft": str(folder), "hub": "org/some-model"})
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        from gradio_client import Client

        client = Client(demo.local_url, verbose=False)
        assert client.predict("sft", api_name="/data") == text
        assert "no hfllm stage folder" in client.predict("hub", api_name="/data")
        chats.rename(chats.with_suffix(".moved"))  # shown once computed; a fresh app says where the data went
        moved = m.training_data(str(folder), lm_sft[1])
        assert moved.startswith(f"{folder} was trained by hfllm sft, but its data cannot be read now: ")
        assert "chats.jsonl" in moved
    finally:
        demo.close()
        if chats.with_suffix(".moved").exists():
            chats.with_suffix(".moved").rename(chats)
