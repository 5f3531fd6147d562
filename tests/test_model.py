"""Model presets and loading: from-config models of several architectures, saved and reloaded."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from hfllm.errors import UserError
from hfllm.loading import check_model_source, is_local, load_causal_lm
from hfllm.model import PRESETS, build_config

SPECIAL = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
             max_position_embeddings=64)


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "gpt2", "mistral"])
def test_architectures_build_save_and_reload(tmp_path, model_type):
    config = build_config(model_type, "tiny", 300, SPECIAL, **SMALL)
    model = AutoModelForCausalLM.from_config(config).eval()  # eval: GPT-2 has dropout
    assert model.config.model_type == model_type
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 2
    model.save_pretrained(tmp_path / "m")
    again = load_causal_lm(str(tmp_path / "m"))
    ids = torch.tensor([[3, 4, 5, 6]])
    torch.testing.assert_close(model(ids).logits, again(ids).logits)


@pytest.mark.parametrize("preset, model_type, vocab, low, high", [
    ("tiny", "llama", 4096, 4e6, 6.5e6),       # "~5 M parameters"
    ("small", "llama", 4096, 18e6, 25e6),      # "~20 M parameters"
    ("gpt2-124m", "gpt2", 50257, 123e6, 126e6),  # "GPT-2 small's shape (124 M with GPT-2's 50 k vocabulary)"
])
def test_presets_have_the_sizes_their_comments_promise(preset, model_type, vocab, low, high):
    with torch.device("meta"):  # counted, never allocated
        model = AutoModelForCausalLM.from_config(build_config(model_type, preset, vocab, SPECIAL))
    assert low < model.num_parameters() < high, model.num_parameters()
    assert model.config.max_position_embeddings == PRESETS[preset]["max_position_embeddings"]


def test_grouped_query_attention_override():
    config = build_config("qwen2", "tiny", 300, SPECIAL, num_key_value_heads=2)
    assert config.num_key_value_heads == 2 and config.num_attention_heads == 4


@pytest.mark.parametrize("overrides,pattern", [
    ({"hidden_size": 100, "num_attention_heads": 3}, "not divisible by num_attention_heads"),
    ({"num_key_value_heads": 3}, "not divisible by num_key_value_heads"),
    ({"num_hidden_layers": 0}, "num_hidden_layers must be a positive integer"),
])
def test_bad_sizes(overrides, pattern):
    with pytest.raises(UserError, match=pattern):
        build_config("llama", "tiny", 300, SPECIAL, **overrides)


def test_unknown_type_and_preset_suggest():
    with pytest.raises(UserError, match="did you mean 'llama'"):
        build_config("lama", "tiny", 300, SPECIAL)
    with pytest.raises(UserError, match="unknown preset 'huge'"):
        build_config("llama", "huge", 300, SPECIAL)


def test_model_paths_are_checked_before_loading(tmp_path):
    with pytest.raises(UserError, match="model not found"):
        check_model_source(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="is not a model folder"):
        check_model_source(str(tmp_path / "empty"))
    check_model_source("someone/some-model")  # a Hub id is checked when loaded


def test_local_path_or_hub_id_has_one_answer(tmp_path, monkeypatch):
    """Models, datasets and the card ask the same question; "user/name" is local when user/ is a folder."""
    monkeypatch.chdir(tmp_path)
    assert not is_local("someone/some-model") and not is_local("gpt2")
    (tmp_path / "someone").mkdir()
    assert is_local("someone/some-model")  # a folder under ./someone, not the Hub
    with pytest.raises(UserError, match="model not found: someone/some-model"):
        check_model_source("someone/some-model")
    assert all(is_local(name) for name in ("./x", "/x", "~/x", "a/b/c", "corpus.jsonl", "notes.txt"))
    from hfllm.data.load import load_dataset
    from hfllm.hub.card import is_hub_id

    with pytest.raises(UserError, match="dataset not found: someone/some-data"):
        load_dataset("someone/some-data")
    assert not is_hub_id("someone/some-model") and is_hub_id("other/some-model")
