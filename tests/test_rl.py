"""End-to-end RL on the tiny model: hfllm ppo (rule rewards, reward model, LoRA, resume, 2 processes),
hfllm grpo / rloo, and the reward functions. A few updates each, seconds on 2 CPU cores."""


import pytest

from conftest import QUIET, metrics, run_cli
from hfllm import rewards
from hfllm.errors import UserError

SMALL = ["--per_device_train_batch_size", "4", "--response_length", "8", "--num_ppo_epochs", "1",
         "--eval_samples", "4", "--disable_tqdm", "true"]
LOG_KEYS = {"step", "score", "rule_accuracy", "kl", "entropy", "clipfrac", "approxkl", "vf_loss",
            "explained_variance", "response_length"}



@pytest.fixture(scope="module")
def tiny_reward_model(tiny_pretrained, tmp_path_factory) -> str:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path_factory.mktemp("rm") / "reward"
    AutoModelForSequenceClassification.from_pretrained(tiny_pretrained, num_labels=1).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_pretrained).save_pretrained(out)
    return str(out)


def test_rule_rewards_and_resolution():
    done = [[{"role": "assistant", "content": "The answer is 7."}]]
    assert rewards.exact_answer(None, done, answer=["7"]) == [1.0]
    assert rewards.exact_answer(None, ["It is 17."], answer=["7"]) == [0.0]
    close, far, right = rewards.answer_partial(None, ["It is 8.", "It is 80.", "It is 7."], answer=["7"] * 3)
    assert right > close > far > 0
    assert rewards.format_sentence(None, ["Seven.", "seven " * 30]) == [1.0, 0.0]
    assert rewards.length_penalty(None, ["a " * 10, "a " * 22]) == [0.0, -0.5]
    assert rewards.friendly_closing(None, ["A cow says moo. Happy to help! ", "Happy to help! A cow says moo.",
                                           "A cow says moo."]) == [1.0, 0.0, 0.0]
    assert rewards.resolve_reward_funcs(["exact_answer", "hfllm.rewards:format_sentence",
                                         "hfllm.rewards.length_penalty"])[1] is rewards.format_sentence
    with pytest.raises(UserError, match="exact_answer"):
        rewards.resolve_reward_funcs(["no_such_reward"])


def test_ppo_rule_reward_writes_model_and_logs(tiny_pretrained, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "ppo"
    assert run_cli("ppo", "--model_name_or_path", tiny_pretrained, "--reward_funcs", "answer_partial",
                   "--max_steps", "2", "--num_mini_batches", "2", *SMALL, "--output_dir", out) == 0
    m = metrics(out)
    assert m["global_step"] == 2 and len(m["log"]) == 2 and LOG_KEYS <= set(m["log"][0])
    assert "answer_accuracy" in m and "answer_accuracy_before" in m and m["kl_final"] is not None
    assert AutoModelForCausalLM.from_pretrained(out).generation_config.eos_token_id
    assert not list(out.glob("checkpoint-*"))


def test_ppo_with_reward_model_and_weights(tiny_pretrained, tiny_reward_model, tmp_path):
    out = tmp_path / "ppo_rm"
    assert run_cli("ppo", "--model_name_or_path", tiny_pretrained, "--reward_model_name_or_path",
                   tiny_reward_model, "--reward_funcs", "exact_answer", "--reward_weights", "1", "0.5",
                   "--max_steps", "1", *SMALL, "--output_dir", out) == 0
    m = metrics(out)
    assert "reward_score_before" in m and "reward_score" in m and m["reward_weights"] == [1.0, 0.5]


def test_ppo_lora_saves_an_adapter(tiny_pretrained, tmp_path):
    out = tmp_path / "ppo_lora"
    assert run_cli("ppo", "--model_name_or_path", tiny_pretrained, "--reward_funcs", "format_sentence",
                   "--use_peft", "true", "--lora_r", "4", "--max_steps", "1", *SMALL, "--output_dir", out) == 0
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
    assert metrics(out)["use_peft"] is True


def test_ppo_resumes_from_its_checkpoint(tiny_pretrained, tmp_path, monkeypatch):
    from hfllm import run_folder

    out = tmp_path / "ppo_resume"
    flags = ["ppo", "--model_name_or_path", tiny_pretrained, "--reward_funcs", "answer_partial", *SMALL,
             "--save_steps", "1", "--output_dir", out]

    def crash(*a, **k):
        raise RuntimeError("simulated crash before the run finished")

    with monkeypatch.context() as m:
        m.setattr(run_folder, "write_metrics", crash)
        with pytest.raises(RuntimeError):
            run_cli(*flags, "--max_steps", "2")
    assert (out / "checkpoint-1" / "state.pt").is_file() and not (out / "metrics.json").exists()
    assert run_cli(*flags, "--max_steps", "3") == 0  # resumed automatically
    m = metrics(out)
    assert m["resumed_from_step"] == 1 and m["global_step"] == 3
    assert [r["step"] for r in m["log"]] == [2, 3]
    assert not list(out.glob("checkpoint-*"))


def test_bad_reward_name_is_a_clear_error(tiny_pretrained, tmp_path, capsys):
    assert run_cli("ppo", "--model_name_or_path", tiny_pretrained, "--reward_funcs", "exactt_answer",
                   "--output_dir", tmp_path / "x") == 2
    err = capsys.readouterr().err
    assert "exactt_answer" in err and "answer_partial" in err


@pytest.mark.parametrize("stage", ["grpo", "rloo"])
def test_grpo_and_rloo_run_two_steps(stage, tiny_pretrained, tmp_path):
    out = tmp_path / stage
    assert run_cli(stage, "--model_name_or_path", tiny_pretrained, "--reward_funcs", "answer_partial",
                   "exact_answer", "--reward_weights", "1", "1", "--max_steps", "2",
                   "--per_device_train_batch_size", "4", "--num_generations", "2", "--max_completion_length", "8",
                   "--eval_samples", "4", "--logging_steps", "1", "--output_dir", out, *QUIET) == 0
    m = metrics(out)
    assert m["global_step"] == 2 and "answer_accuracy" in m and "answer_accuracy_before" in m
    assert (out / "model.safetensors").is_file()


@pytest.mark.parametrize("stage", ["grpo", "ppo"])
def test_revision_and_remote_code_reach_the_tokenizer_and_the_policy(stage, tiny_pretrained, tmp_path, spy):
    """--model_revision and --trust_remote_code once reached the model but not the tokenizer (grpo, rloo), or
    neither (ppo, which had no --trust_remote_code)."""
    flags = ["--num_generations", "2", "--max_completion_length", "4", "--logging_steps", "1", *QUIET] \
        if stage == "grpo" else ["--response_length", "4", "--num_ppo_epochs", "1", "--disable_tqdm", "true"]
    assert run_cli(stage, "--model_name_or_path", tiny_pretrained, "--model_revision", "main",
                   "--trust_remote_code", "true", "--reward_funcs", "answer_partial", "--max_steps", "1",
                   "--per_device_train_batch_size", "2", "--eval_samples", "0", *flags,
                   "--output_dir", tmp_path / stage) == 0
    ours = [(name, kwargs) for name, kwargs in spy if "use_safetensors" in kwargs or name == "AutoTokenizer"]
    assert {name for name, _ in ours} == {"AutoModelForCausalLM", "AutoTokenizer"}
    assert all(kwargs["revision"] == "main" and kwargs["trust_remote_code"] is True for _, kwargs in ours), ours
