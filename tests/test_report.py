"""The report card hfllm run writes at the end of every pipeline (hfllm/report.py)."""

from conftest import metrics, run_cli

from hfllm.report import changes, plain_line


def test_plain_line_says_what_moved():
    m = {"preference_accuracy_before": 0.28, "preference_accuracy": 0.735, "answer_accuracy_before": 0.361,
         "answer_accuracy": 0.308, "answer_count_before": 100, "answer_count": 100,
         "check_friendly_closing_before": 0.0, "check_friendly_closing": 0.9, "beta": 0.1}
    assert [k for k, _, _ in changes(m)] == ["preference_accuracy", "answer_accuracy", "check_friendly_closing"]
    line = plain_line("dpo", "dpo", m)
    assert line.startswith("**dpo** moved the model towards the preferred answers")
    assert "prefers the chosen answer 28.0% -> 73.5%" in line and "answer accuracy 36.1% -> 30.8%" in line
    assert "passing the rule friendly_closing 0.0% -> 90.0%" in line
    assert "count" not in line and "beta" not in line
    # PPO's: what moved comes first, so the sampled closing is told before the greedy one that stayed at 100 %.
    ppo = {"reward_score_sampled_before": 4.99, "reward_score_sampled": 5.81, "reward_score_before": 6.0,
           "reward_score": 6.01, "answer_accuracy_before": 0.23, "answer_accuracy": 0.16,
           "check_friendly_closing_before": 1.0, "check_friendly_closing": 1.0,
           "check_friendly_closing_sampled_before": 0.558, "check_friendly_closing_sampled": 0.862, "kl_final": 1.39}
    line = plain_line("ppo", "ppo", ppo)
    assert "sampled answers passing the rule friendly_closing 55.8% -> 86.2%" in line, line
    assert "greedy answers passing" not in line and "reward of greedy answers 6 -> 6.01" in line, line


def test_pipeline_writes_a_report_card_for_every_stage(tiny_tokenizer, tmp_path, capsys):
    pipeline = tmp_path / "p.yaml"
    tiny = "hidden_size: 64, num_hidden_layers: 2, intermediate_size: 128, max_position_embeddings: 128"
    common = "disable_tqdm: true, logging_steps: 1"
    pipeline.write_text(f"""
run_dir: {tmp_path / 'run'}
stages:
  - name: tokenizer
    args: {{dataset_name: builtin:pretrain, vocab_size: 300, max_train_samples: 300}}
  - name: pretrain
    args: {{tokenizer_name_or_path: {tiny_tokenizer}, {tiny}, max_train_samples: 200, max_steps: 3,
            eval_steps: 100, {common}}}
  - name: sft
    args: {{model_name_or_path: "{{pretrain}}", max_steps: 2, max_train_samples: 32, answer_eval_samples: 4,
            eval_dataset_name: builtin:sft_eval, {common}}}
  - name: reward
    args: {{model_name_or_path: "{{sft}}", dataset_name: builtin:tone, eval_dataset_name: builtin:tone_eval,
            max_steps: 2, max_train_samples: 32, max_length: 64, {common}}}
  - name: dpo
    args: {{model_name_or_path: "{{sft}}", dataset_name: builtin:tone, eval_dataset_name: builtin:tone_eval,
            rule_checks: friendly_closing, max_steps: 2, max_train_samples: 16, eval_samples: 4, max_length: 64,
            per_device_train_batch_size: 4, {common}}}
  - name: ppo
    args: {{model_name_or_path: "{{sft}}", reward_model_name_or_path: "{{reward}}", rule_checks: friendly_closing,
            dataset_name: builtin:tone, eval_dataset_name: builtin:tone_eval, max_steps: 2, eval_samples: 4,
            per_device_train_batch_size: 4, num_mini_batches: 1, response_length: 8, save_steps: 0,
            disable_tqdm: true}}
compare:
  - What colour is a tomato?
  - Where does a fish live?
""")
    assert run_cli("run", pipeline) == 0
    run = tmp_path / "run"
    assert f"report card: {run / 'report.md'}" in capsys.readouterr().out
    report = (run / "report.md").read_text()
    for stage, did in [("tokenizer", "learned a vocabulary"), ("pretrain", "predicting the next token"),
                       ("sft", "chat format"), ("reward", "score the preferred answer"),
                       ("dpo", "towards the preferred answers"), ("ppo", "on a KL leash")]:
        top = report.split("## ", 2)[1]  # its plain line, at the top
        assert did in next(line for line in top.splitlines() if line.startswith(f"- **{stage}** ")), stage
        assert f"## {stage} (hfllm {stage})" in report
    assert "answers passing the rule friendly_closing" in report  # DPO's and PPO's rule check
    # Every image it links is there, and each training stage has its loss curve and before/after bars.
    linked = [line.split("](", 1)[1].rstrip(")") for line in report.splitlines() if line.startswith("![")]
    assert linked and all((run / png).stat().st_size > 1000 for png in linked)
    for stage in ("pretrain", "sft", "reward", "dpo", "ppo"):
        assert f"report-{stage}-loss.png" in linked and f"report-{stage}-before-after.png" in linked, stage
    assert "report-ppo-rl.png" in linked and "report-dpo-margin.png" in linked
    # The answers table: each prompt, each chat stage's answer (as the run printed them).
    table = report.split("## Answers to the same held-out prompts (greedy)", 1)[1]
    assert "| prompt | pretrain | sft | dpo | ppo |" in table
    assert "| What colour is a tomato? |" in table and "| Where does a fish live? |" in table
    assert metrics(run / "sft")["log_history"]  # what the loss curves are drawn from
