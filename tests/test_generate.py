"""Every decoding mode of `hfllm generate`, on a tiny pretrained model."""

import pytest

from conftest import run_cli
from hfllm.errors import UserError
from hfllm.generate import GenerateArguments, generate, next_token_distribution, sampling_kwargs, stream
from hfllm.loading import load_causal_lm, load_tokenizer

PROMPT = "Once upon a time"


@pytest.fixture(scope="module")
def lm(tiny_pretrained):
    return load_causal_lm(tiny_pretrained).eval(), load_tokenizer(tiny_pretrained)


def gen(lm, seed=None, **kw):
    model, tok = lm
    args = GenerateArguments(max_new_tokens=12, **kw)
    return generate(model, tok, PROMPT, sampling_kwargs(args), seed=seed)


def test_greedy_is_deterministic_and_default(lm):
    assert sampling_kwargs(GenerateArguments())["do_sample"] is False
    assert gen(lm) == gen(lm)


def test_seeded_sampling_is_reproducible_and_seeds_differ(lm):
    a = gen(lm, seed=1, temperature=1.5, num_return_sequences=4)
    assert a == gen(lm, seed=1, temperature=1.5, num_return_sequences=4)
    assert a != gen(lm, seed=2, temperature=1.5, num_return_sequences=4)
    assert len(set(a)) > 1  # sampling at high temperature is diverse


def test_top_k_one_equals_greedy(lm):
    assert gen(lm, seed=3, top_k=1, temperature=2.0) == gen(lm)


@pytest.mark.parametrize("kw", [dict(top_p=0.5), dict(min_p=0.2), dict(num_beams=3),
                                dict(repetition_penalty=1.3), dict(temperature=0.7, top_k=10, top_p=0.9)])
def test_other_modes_produce_text(lm, kw):
    out = gen(lm, seed=0, **kw)
    assert len(out) == 1 and out[0].strip()


def test_stream_matches_non_streamed_greedy(lm):
    model, tok = lm
    kwargs = sampling_kwargs(GenerateArguments(max_new_tokens=12))
    assert "".join(stream(model, tok, PROMPT, kwargs)) == generate(model, tok, PROMPT, kwargs)[0]


def test_written_pieces_match_the_completion_and_need_no_thread(lm, tiny_pretrained, monkeypatch, capsys):
    import threading

    def no_thread(*args, **kwargs):
        raise AssertionError("the terminal's streaming started a thread")

    model, tok = lm
    kwargs = sampling_kwargs(GenerateArguments(max_new_tokens=12))
    expected = generate(model, tok, PROMPT, kwargs)[0]
    monkeypatch.setattr(threading.Thread, "start", no_thread)
    pieces = []
    assert generate(model, tok, PROMPT, kwargs, write=pieces.append) == [expected]
    assert "".join(pieces) == expected, pieces
    monkeypatch.undo()  # loading a model may use threads; the command's generation is the call above
    capsys.readouterr()
    assert run_cli("generate", "--model_name_or_path", tiny_pretrained, "--prompt", PROMPT,
                   "--max_new_tokens", "12") == 0  # the command's default streaming, on this thread
    assert capsys.readouterr().out == PROMPT + expected + "\n"


def test_next_token_distribution_follows_the_warpers(lm):
    model, tok = lm
    rows = next_token_distribution(model, tok, PROMPT, top_n=30)
    assert abs(sum(r[2] for r in rows) - 1) < 0.9 and all(r[4] for r in rows)  # nothing filtered
    rows = next_token_distribution(model, tok, PROMPT, top_k=3, top_n=30)
    assert sum(r[4] for r in rows) == 3
    assert abs(sum(r[3] for r in rows) - 1) < 1e-4  # survivors renormalised
    hot = next_token_distribution(model, tok, PROMPT, temperature=5.0, top_n=5)
    cold = next_token_distribution(model, tok, PROMPT, temperature=0.2, top_n=5)
    assert cold[0][3] > rows[0][2] > hot[0][3]  # temperature sharpens or flattens the top token


@pytest.mark.parametrize("kw,pattern", [(dict(temperature=0.0), "temperature must be > 0"),
                                        (dict(top_p=1.5), "top_p must be in"),
                                        (dict(max_new_tokens=0), "max_new_tokens must be >= 1")])
def test_bad_sampling_settings(kw, pattern):
    with pytest.raises(UserError, match=pattern):
        sampling_kwargs(GenerateArguments(**kw))


def test_prompt_longer_than_context_is_refused(lm):
    model, tok = lm
    with pytest.raises(UserError, match="context is 128 tokens"):
        generate(model, tok, "word " * 200, sampling_kwargs(GenerateArguments(max_new_tokens=5)))


def test_command_line_streams_to_terminal(tiny_pretrained, capsys):
    assert run_cli("generate", "--model_name_or_path", tiny_pretrained, "--prompt", PROMPT, "--max_new_tokens", "8") == 0
    assert capsys.readouterr().out.startswith(PROMPT)
    assert run_cli("generate", "--model_name_or_path", tiny_pretrained, "--prompt", "hi", "--chat",
                   "--max_new_tokens", "4", "--seed", "1", "--temperature", "0.9") == 0
