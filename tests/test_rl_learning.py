"""RL that learns, on the tiny SFT model (a few minutes on 2 CPU cores).

- PPO against the tone reward model, from the DPO model (the demo's recipe): the held-out reward score
  rises and so does a string rule of the same preference (answers ending with the friendly closing).
- PPO against the fact-pairs reward model, on fact questions: the held-out reward score rises while
  the KL to the SFT model stays bounded and the rule check (exact answers) does not collapse.
- GRPO with the arithmetic rule rewards raises held-out exact-answer accuracy.
"""


from conftest import QUIET, metrics, run_cli

# Measured: PPO sampled score 0.358 -> 0.809, greedy 0.713 -> 1.166, KL 1.09, accuracy 44.0% -> 38.1% (seed 0);
# 0.347 -> 0.701, greedy 0.713 -> 1.063, KL 0.70, accuracy 44.0% -> 36.9% (seed 1, 2026-12-03, locked stack).



def test_ppo_raises_the_tone_reward_and_its_rule_check(tiny_tone_dpo, tiny_tone_reward, tmp_path):
    """From the DPO model (the SFT model never samples the closing: PPO from it left the score flat). Measured
    2026-12-03 on the locked stack, seeds 0 and 1: sampled reward score -2.23 -> 3.48 and -2.64 -> 3.68; sampled
    answers ending with the closing 7.8% -> 77.2% and 68.5% (greedy 57% -> 98% and 97%); KL 2.96 and 2.80.
    Held-out answer accuracy fell, 36% -> 20% and 30%: this reward model judges tone, not facts."""
    out = tmp_path / "ppo"
    assert run_cli("ppo", "--model_name_or_path", tiny_tone_dpo, "--reward_model_name_or_path", tiny_tone_reward,
                   "--rule_checks", "friendly_closing", "--dataset_name", "builtin:tone",
                   "--eval_dataset_name", "builtin:tone_eval", "--max_steps", "30", "--per_device_train_batch_size",
                   "16", "--response_length", "24", "--learning_rate", "2e-5", "--kl_coef", "0.2",
                   "--num_ppo_epochs", "4", "--num_mini_batches", "2", "--save_steps", "0", "--seed", "0",
                   "--disable_tqdm", "true", "--output_dir", out) == 0
    m = metrics(out)
    assert m["reward_score_sampled"] >= m["reward_score_sampled_before"] + 3.0, m
    # The rule never trained on: the share of sampled answers that end with the closing.
    assert m["check_friendly_closing_sampled"] >= m["check_friendly_closing_sampled_before"] + 0.4, m
    assert 0 <= m["kl_final"] < 4.0, m


def test_ppo_raises_the_reward_score_on_a_leash(tiny_sft, tiny_reward, tmp_path):
    out = tmp_path / "ppo"
    assert run_cli("ppo", "--model_name_or_path", tiny_sft, "--reward_model_name_or_path", tiny_reward,
                   "--reward_funcs", "answer_partial",
                   "--dataset_name", "builtin:questions", "--eval_dataset_name", "builtin:questions_eval",
                   "--max_steps", "100", "--per_device_train_batch_size", "16", "--response_length", "16",
                   "--learning_rate", "2e-5", "--kl_coef", "0.1", "--num_ppo_epochs", "4", "--num_mini_batches", "2",
                   "--save_steps", "0", "--seed", "0", "--disable_tqdm", "true", "--output_dir", out) == 0
    m = metrics(out)
    # The score PPO maximises (answers sampled as in the rollouts) and the greedy one both rise.
    assert m["reward_score_sampled"] >= m["reward_score_sampled_before"] + 0.1, m
    assert m["reward_score"] >= m["reward_score_before"] + 0.05, m
    assert 0 <= m["kl_final"] < 2.0, m  # nats per answer: the leash holds
    # Accuracy is not what PPO raises here: the tiny reward model ranks a wrong fact below the right
    # one only at chance (48% of such held-out pairs), so the 84 greedy answers drift: 44.0 -> 41.7%
    # with another initial reward head, 38.1% with this one, 33.3% with kl_coef 0.2, 36.9% with half
    # the learning rate. The guard catches a collapse (answers that stop naming facts), not drift.
    assert m["answer_accuracy"] >= m["answer_accuracy_before"] - 0.1, m


def test_grpo_raises_arithmetic_accuracy(tiny_sft, tmp_path):
    out = tmp_path / "grpo"
    assert run_cli("grpo", "--model_name_or_path", tiny_sft, "--reward_funcs", "answer_partial", "exact_answer",
                   "--dataset_name", "builtin:prompts", "--eval_dataset_name", "builtin:prompts_eval",
                   "--max_steps", "150", "--per_device_train_batch_size", "32", "--num_generations", "4",
                   "--max_completion_length", "16", "--learning_rate", "1e-4", "--beta", "0.04",
                   "--logging_steps", "5", "--save_strategy", "no", "--seed", "0", "--output_dir", out, *QUIET) == 0
    m = metrics(out)
    # Held-out arithmetic, 100 prompts, greedy (2026-12-03, locked stack): 32% -> 43% (seed 0), 32% -> 37% (seed 1).
    assert m["answer_accuracy"] >= m["answer_accuracy_before"] + 0.04, m
