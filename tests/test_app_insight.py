"""The playground's insight views (hfllm.app.insight) on the tiny model, checked against the model computed
another way, then each view through the running app's API."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest
import torch

from hfllm.app import handlers as h
from hfllm.app import insight as ins
from hfllm.app import models as m
from hfllm.data.builtin import answer_is_correct
from hfllm.errors import UserError
from hfllm.generate import format_prompt, generate_answers
from test_app import make_reward, serve

OFF = dict(top_k=None, top_p=None, min_p=None)  # what Sampling sends for filters left off


@pytest.fixture(scope="module")
def lm(tiny_pretrained):
    return m.load_model(tiny_pretrained)


@pytest.fixture(scope="module")
def reward(tiny_pretrained, tmp_path_factory):
    return m.load_reward(make_reward(tiny_pretrained, tmp_path_factory.mktemp("reward") / "reward"))


def forward_probabilities(model, tokenizer, text, answer_ids):
    """exp(log-softmax) of each answer token, from one forward pass over prompt + answer."""
    prompt = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    ids = torch.cat([prompt, torch.tensor([answer_ids])], 1)
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].float(), -1)
    start = prompt.shape[1]
    return [float(logp[start - 1 + i, t].exp()) for i, t in enumerate(answer_ids)]


@pytest.mark.parametrize("greedy", [True, False])
def test_token_probabilities_are_the_models_own(lm, greedy):
    model, tokenizer = lm
    question = ins.held_out_examples()[0]
    sampling = h.Sampling(greedy=greedy, temperature=1.3, max_new_tokens=16, seed=5)
    answer, table, note = ins.answer_confidence(model, tokenizer, question, True, sampling)
    ids = table["id"].tolist()
    assert len(ids) >= 1 and tokenizer.decode(ids, skip_special_tokens=True) == answer
    direct = forward_probabilities(model, tokenizer, format_prompt(tokenizer, question, True), ids)
    assert table["probability"].tolist() == pytest.approx(direct, abs=1e-4)
    if greedy:  # greedy takes the model's first choice at every step
        assert (table["token"] == table["model's first choice"]).all()
    reference, key = ins.held_out_truth()[question]
    assert reference in note and ("**correct**" in note) == answer_is_correct(answer, key)
    assert "no truth" in ins.truth_note("Tell me a story", answer)
    marks = ins.confidence_spans(table, 0.5)
    assert [t for t, _ in marks] == table["token"].tolist()
    assert [label == ins.LOW for _, label in marks] == (table["probability"] < 0.5).tolist()
    assert all(label is None for _, label in ins.confidence_spans(table, 0.0))


def test_majority_votes_count_the_final_number():
    assert ins.vote_key("3 + 4 = 7.") == ins.vote_key("The answer is 7!") == "7"
    assert ins.vote_key("A cow says moo.\nmore") == ins.vote_key("a cow  says MOO") == "a cow says moo"
    assert ins.majority(["It is 5.", "It is 6.", "6", "5"]) == "It is 5."  # a tie: the first sampled
    assert ins.majority(["It is 5.", "It is 6.", "6"]) == "It is 6."


def test_scaling_at_n1_is_the_single_answer_accuracy(lm, reward):
    model, tokenizer = lm
    questions = ins.scaling_questions("both", 8)
    assert {q["prompt"][-1]["content"] for q in questions} and len(questions) == 8
    sampling = h.Sampling(temperature=1.0, max_new_tokens=12, seed=3)
    curve, table, notes = ins.scaling_curve(model, tokenizer, reward, questions, sampling, 4)
    at = {(r["N"], r["method"]): r["accuracy"] for r in curve.to_dict("records")}
    assert sorted({n for n, _ in at}) == [1, 2, 4] and len(table) == 8 and not notes

    torch.manual_seed(3)  # what one seeded sampled batch answers, computed apart from the view
    single = generate_answers(model, tokenizer, [q["prompt"] for q in questions], 12, do_sample=True,
                              temperature=1.0, **OFF)
    accuracy = sum(answer_is_correct(a, q["answer"]) for a, q in zip(single, questions)) / len(questions)
    assert at[(1, "majority vote")] == at[(1, "best-of-N (reward model)")] == at[(1, "any of N right (pass@N)")]
    assert at[(1, "majority vote")] == accuracy
    assert table["first sample"].tolist() == single
    passes = [at[(n, "any of N right (pass@N)")] for n in (1, 2, 4)]
    assert passes == sorted(passes) and all(at[(n, m)] <= at[(n, "any of N right (pass@N)")]
                                            for n, m in at)

    greedy = h.Sampling(greedy=True, max_new_tokens=12)
    curve, _, notes = ins.scaling_curve(model, tokenizer, None, questions, greedy, 2)
    plain = generate_answers(model, tokenizer, [q["prompt"] for q in questions], 12)
    expected = sum(answer_is_correct(a, q["answer"]) for a, q in zip(plain, questions)) / len(questions)
    assert set(curve["method"]) == {"majority vote", "any of N right (pass@N)"}
    assert (curve["accuracy"] == expected).all() and any("No reward model" in n for n in notes)
    with pytest.raises(UserError, match="N must be one of 1, 2, 4, 8, 16, got 3"):
        ins.scaling_curve(model, tokenizer, None, questions, greedy, 3)
    with pytest.raises(UserError, match="unknown question set 'maths'"):
        ins.scaling_questions("maths", 4)


def test_attention_looks_only_backwards_and_leaves_the_model_alone(lm, monkeypatch):
    model, tokenizer = lm
    implementation = model.config._attn_implementation
    assert implementation != "eager"  # the copy is what switches
    text = "The sky is blue. The grass is"
    layers, heads = ins.model_shape(model)
    for layer, head in [(1, "mean"), (layers, str(heads)), (1, 1)]:
        tokens, weights, next_token, p = ins.attention(model, tokenizer, text, layer, head)
        assert len(weights) == len(tokens) == len(weights[0])
        for i, row in enumerate(weights):
            assert sum(row[:i + 1]) == pytest.approx(1.0, abs=1e-5)
            assert all(w == 0 for w in row[i + 1:])
    assert model.config._attn_implementation == implementation
    clone = ins._eager(model)
    assert clone.config._attn_implementation == "eager"
    assert all(a is b for a, b in zip(clone.parameters(), model.parameters()))  # no weight copied
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1]
    assert next_token == h._show(tokenizer.decode([int(logits.argmax())]))
    assert p == pytest.approx(float(torch.softmax(logits.float(), -1).max()), abs=1e-4)
    bars, matrix = ins.attention_tables(tokens, weights)
    assert bars["weight"].sum() == pytest.approx(1.0, abs=1e-3) and matrix.shape == (len(tokens), len(tokens) + 1)
    with pytest.raises(UserError, match=f"layer 99 does not exist: this model has {layers} layer"):
        ins.attention(model, tokenizer, text, 99)
    with pytest.raises(UserError, match=f"head 9 does not exist: this model has {heads} heads"):
        ins.attention(model, tokenizer, text, 1, 9)
    monkeypatch.setattr(type(model), "_can_set_attn_implementation", classmethod(lambda cls: False))
    with pytest.raises(UserError, match="cannot switch to eager attention"):
        ins.attention(model, tokenizer, text, 1)


# --- through the running app ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(lm, reward, tmp_path_factory):
    from gradio_client import Client

    demo, url = serve({"a": lm}, reward, tmp_path_factory.mktemp("feedback") / "feedback.jsonl")
    yield Client(url, verbose=False)
    demo.close()


def test_insight_views_through_the_api(client, lm):
    from gradio_client.exceptions import AppError

    question = ins.held_out_examples()[1]
    answer, spans, note, table = client.predict(prompt=question, model_name="a", as_chat=True, greedy=True,
                                                temperature=1.0, seed=0, max_new_tokens=12, threshold=0.5,
                                                api_name="/confidence")
    _, expected, _ = ins.answer_confidence(*lm, question, True, h.Sampling(greedy=True, max_new_tokens=12))
    probs = [row[table["headers"].index("probability")] for row in table["data"]]
    assert probs == pytest.approx(expected["probability"].tolist(), abs=1e-6) and "Truth:" in note
    assert len(spans) == len(probs) and answer
    marked = client.predict(table=table, threshold=1.0, api_name="/confidence_marks")
    assert all(span["class_or_confidence"] == ins.LOW for span in marked)

    note, plot, curve, per_question = client.predict(model_name="a", which="arithmetic", k=3, max_n=2, greedy=False,
                                                     temperature=1.0, seed=1, max_new_tokens=8, api_name="/scaling")
    methods = {row[curve["headers"].index("method")] for row in curve["data"]}
    assert "best-of-N (reward model)" in methods and len(curve["data"]) == 6 and len(per_question["data"]) == 3

    note, bars, matrix = client.predict(text="A cow says moo. A dog says", model_name="a", layer=2, head="mean",
                                        api_name="/attention")
    weights = [row[bars["columns"].index("weight")] if "columns" in bars else row[1] for row in bars["data"]]
    assert sum(weights) == pytest.approx(1.0, abs=1e-3) and "layer 2" in note
    with pytest.raises(AppError, match="type a text first"):
        client.predict(text="", model_name="a", layer=1, head="mean", api_name="/attention")


# --- on replicas of real models: their tokenizers, chat templates, GQA and 128-152k vocabularies -----------------

@pytest.mark.parametrize("name", ["qwen2.5", "llama3.2"])
def test_insight_views_on_real_model_replicas(name):
    from replicas import replica

    model, tokenizer = m.load_model(str(replica(name)))
    question = ins.held_out_examples()[0]
    answer, table, note = ins.answer_confidence(model, tokenizer, question, True,
                                                h.Sampling(greedy=False, max_new_tokens=8, seed=3))
    ids = table["id"].tolist()
    direct = forward_probabilities(model, tokenizer, format_prompt(tokenizer, question, True), ids)
    assert len(ids) >= 1 and table["probability"].tolist() == pytest.approx(direct, abs=1e-4)
    assert "Truth:" in note

    layers, heads = ins.model_shape(model)
    assert heads == model.config.num_attention_heads != model.config.num_key_value_heads  # GQA: query heads shown
    tokens, weights, _, _ = ins.attention(model, tokenizer, "The sky is blue. The grass is", layers, str(heads))
    assert len(weights) == len(tokens)
    assert all(sum(row[:i + 1]) == pytest.approx(1.0, abs=1e-5) for i, row in enumerate(weights))

    questions = ins.scaling_questions("arithmetic", 3)
    curve, per_question, notes = ins.scaling_curve(model, tokenizer, None, questions,
                                                   h.Sampling(greedy=False, max_new_tokens=6, seed=0), 2)
    assert len(curve) == 4 and len(per_question) == 3 and "best-of-N is not drawn" in notes[0]
    assert all(isinstance(a, str) for a in per_question["first sample"])
