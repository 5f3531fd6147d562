"""Model presets and loading: from-config models of several architectures, saved and reloaded."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from hfllm.errors import UserError
from hfllm.model import PRESETS, build_config, check_model_source, count_parameters, load_causal_lm

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


def test_tiny_preset_is_about_five_million_parameters():
    model = AutoModelForCausalLM.from_config(build_config("llama", "tiny", 4096, SPECIAL))
    assert 4e6 < count_parameters(model) < 6.5e6
    assert set(PRESETS) >= {"tiny", "small", "gpt2-124m"}


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
