"""The playground opens on the lesson: Chat on the run's latest stage trained to chat, every stage answering one
prompt side by side, and a sampling lab whose opening prompt has a spread-out next token."""

import json
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home from tests

import pytest
import torch

from conftest import QUIET, run_cli
from hfllm.app import handlers as h
from hfllm.app import models as m
from test_app import SAMPLING, free_port


def components(demo) -> dict:
    return {c["props"].get("elem_id"): c["props"] for c in demo.config["components"] if c["props"].get("elem_id")}


@pytest.fixture(scope="module")
def run(tiny_pretrained, tmp_path_factory):
    """A run folder as `hfllm run` leaves it: a base model, SFT on it, DPO on SFT's model, PPO not finished."""
    root = tmp_path_factory.mktemp("lesson")
    run = root / "tiny"
    run.mkdir()
    (run / "pretrain").symlink_to(tiny_pretrained)
    chats, pairs = root / "chats.jsonl", root / "pairs.jsonl"
    chats.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Say {i}."},
                                                      {"role": "assistant", "content": f"{i}."}]}) + "\n"
                             for i in range(8)))
    pairs.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": f"Say {i}."}],
                                         "chosen": [{"role": "assistant", "content": f"{i}."}],
                                         "rejected": [{"role": "assistant", "content": "No."}]}) + "\n"
                             for i in range(8)))
    assert run_cli("sft", "--model_name_or_path", run / "pretrain", "--dataset_name", chats, "--max_steps", "1",
                   "--max_length", "48", "--answer_eval_samples", "0", "--output_dir", run / "sft", *QUIET) == 0
    assert run_cli("dpo", "--model_name_or_path", run / "sft", "--dataset_name", pairs, "--max_steps", "1",
                   "--eval_split_size", "0", "--per_device_train_batch_size", "2", "--output_dir", run / "dpo",
                   *QUIET) == 0
    (run / "ppo").mkdir()  # started, not finished: no metrics.json
    return run


def test_chat_opens_on_the_latest_stage_trained_to_chat(run, tmp_path):
    from hfllm.app.launch import load_app

    demo, _ = load_app([str(run)], preference_file=str(tmp_path / "f.jsonl"))
    pick = next(c["props"] for c in demo.config["components"] if c["props"].get("label") == "model")
    assert pick["value"] == "tiny/dpo"  # DPO came after SFT; PPO did not finish; the base model does not chat
    assert [choice[0] for choice in pick["choices"]] == ["tiny/pretrain", "tiny/sft", "tiny/dpo"]
    line = components(demo)["chat-opening"]["value"]
    assert "**tiny/dpo**, the latest stage trained to chat (sft → dpo)" in line
    assert "`tiny/pretrain` is the base model" in line

    base_only = tmp_path / "base"
    base_only.mkdir()
    (base_only / "pretrain").symlink_to(run / "pretrain")
    demo, _ = load_app([str(base_only)], preference_file=str(tmp_path / "f.jsonl"))
    assert "Chat opens on **base/pretrain**: no model loaded was trained to chat" in \
        components(demo)["chat-opening"]["value"]


def test_without_a_chat_stage_chat_opens_on_a_model_with_its_own_template(tiny_pretrained):
    import copy

    model, tokenizer = m.load_model(tiny_pretrained)  # hfllm's template, which any base model gets
    instruct = copy.deepcopy(tokenizer)
    instruct.chat_template = "{% for message in messages %}{{ message['content'] }}{% endfor %}"
    name, why = m.chat_opening({"pre": (model, tokenizer), "org/instruct": (model, instruct)},
                               {"pre": tiny_pretrained, "org/instruct": "org/instruct"})
    assert name == "org/instruct" and "came with a chat template" in why
    name, why = m.chat_opening({"a": (model, tokenizer), "b": (model, tokenizer)}, {})
    assert name == "a" and "the first model given: none is known to be trained to chat" in why


@pytest.fixture(scope="module")
def stages(run):
    return {name: m.load_model(str(run / name)) for name in ("pretrain", "sft", "dpo")}


def test_compare_all_answers_with_every_model_and_the_same_seed(stages, tmp_path):
    from gradio_client import Client

    from hfllm.app.layout import build_app
    from hfllm.generate import stream

    demo = build_app(stages, None, tmp_path / "f.jsonl")
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        prompt = components(demo)["all-prompt"]["value"]
        assert prompt.endswith("?")  # small talk from the built-in data, filled in
        *answers, status = client.predict(prompt=prompt, system_prompt="", **SAMPLING, api_name="/compare_all")
        assert len(answers) == 3 and all(a.strip() for a in answers) and "seed 7" in status
        *again, _ = client.predict(prompt=prompt, system_prompt="", **SAMPLING, api_name="/compare_all")
        assert again == answers
        sampling = h.Sampling(**SAMPLING)
        for (model, tokenizer), answer in zip(stages.values(), answers):  # each one drew with the seed itself
            text, max_new, _ = h.fit_chat(model, tokenizer, [{"role": "user", "content": prompt}], None, 12)
            assert "".join(stream(model, tokenizer, text, sampling.kwargs(max_new), 7)) == answer
        *other, _ = client.predict(prompt=prompt, system_prompt="", **{**SAMPLING, "seed": 8},
                                   api_name="/compare_all")
        assert other != answers
    finally:
        demo.close()


def entropy(model, tokenizer, text: str) -> float:
    """The next token's entropy after ``text``, in nats, from one plain forward pass."""
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        p = torch.softmax(model(input_ids=ids).logits[0, -1].float(), -1)
    return float(-(p * torch.log(p.clamp_min(1e-30))).sum())


def test_the_lab_opens_on_a_prompt_with_a_spread_out_next_token(tiny_pretrained, tmp_path):
    from hfllm.app.layout import build_app

    model, tokenizer = m.load_model(tiny_pretrained)
    demo = build_app({"pretrain": (model, tokenizer)}, None, tmp_path / "f.jsonl")
    shown = components(demo)
    prompt = shown["lab-prompt"]["value"]
    chosen, once = entropy(model, tokenizer, prompt), entropy(model, tokenizer, "Once upon a time")
    assert chosen > once + 0.5, (prompt, chosen, once)
    assert f"entropy {chosen:.2f} nats" in shown["lab-note"]["value"]
    assert "greedy" in shown["repeat-note"]["value"].lower() and "top-p" in shown["repeat-note"]["value"]
