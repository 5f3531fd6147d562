"""QLoRA in every stage that can train on a quantized base: ``--load_in_4bit`` / ``--load_in_8bit`` reach the
model the trainer trains (bitsandbytes quantizes on a CPU too), a LoRA adapter trains on it, and the stages
that cannot (ppo, no --use_peft, an adapter as the base) refuse in one line before anything loads
(tests/test_errors.py has those lines)."""

import pytest

from conftest import QUIET, metrics, run_cli

pytest.importorskip("bitsandbytes")

COMMON = ["--use_peft", "--max_steps", "2", "--per_device_train_batch_size", "2", "--max_train_samples", "16",
          "--save_strategy", "no", *QUIET]
OWN = {  # each stage's sizes, small
    "sft": ["--max_length", "64", "--answer_eval_samples", "0"],
    "dpo": ["--max_length", "64", "--eval_samples", "2"], "orpo": ["--max_length", "64", "--eval_samples", "2"],
    "simpo": ["--max_length", "64", "--eval_samples", "2"], "kto": ["--max_length", "64", "--eval_samples", "2"],
    "reward": ["--max_length", "64"],
    "grpo": ["--reward_funcs", "length_penalty", "--num_generations", "2", "--max_completion_length", "6",
             "--eval_samples", "2"],
    "rloo": ["--reward_funcs", "length_penalty", "--num_generations", "2", "--max_completion_length", "6",
             "--eval_samples", "2"],
}


@pytest.fixture
def trained_models(monkeypatch):
    """The model each trainer trains, as it starts training (the frame's one call into the trainer)."""
    from hfllm.stages import _frame

    seen, original = [], _frame.train_and_checkpoint_on_signal

    def recording(trainer, *args, **kwargs):
        seen.append(trainer.model)
        return original(trainer, *args, **kwargs)
    monkeypatch.setattr(_frame, "train_and_checkpoint_on_signal", recording)
    return seen


def quantized_layers(model, bits: int) -> int:
    import bitsandbytes as bnb

    kind = bnb.nn.Linear4bit if bits == 4 else bnb.nn.Linear8bitLt
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize("stage,bits", [(s, 4) for s in OWN] + [("sft", 8)])
def test_stage_trains_lora_on_a_quantized_base(stage, bits, tiny_pretrained, trained_models, tmp_path):
    out = tmp_path / stage
    assert run_cli(stage, "--model_name_or_path", tiny_pretrained, f"--load_in_{bits}bit", "--output_dir", out,
                   *COMMON, *OWN[stage]) == 0
    (model,) = trained_models
    # Every linear layer of the tiny Llama's 2 blocks (q, k, v, o, gate, up, down) is quantized.
    assert quantized_layers(model, bits) == 14
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "score" in n for n in trainable)
    assert metrics(out)["global_step"] == 2 and (out / "adapter_config.json").is_file()


def test_without_the_flag_nothing_is_quantized(tiny_pretrained, trained_models, tmp_path):
    assert run_cli("dpo", "--model_name_or_path", tiny_pretrained, "--output_dir", tmp_path / "dpo",
                   *COMMON, *OWN["dpo"]) == 0
    assert quantized_layers(trained_models[0], 4) == 0
