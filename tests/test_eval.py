"""`hfllm eval`: hfllm's tasks run through lm-evaluation-harness and agree with hfllm's own scoring."""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from conftest import metrics, run_cli

pytest.importorskip("lm_eval")


def samples(folder, task):
    return [json.loads(line) for line in (Path(folder) / f"samples_{task}.jsonl").read_text().splitlines()]


@torch.no_grad()
def rolling_loglikelihood(model, tokenizer, text: str, window: int) -> float:
    """The documented rule of the harness's perplexity, written out: the text's tokens after a prefix token,
    scored in chunks of ``window`` predictions, each chunk seeing the ``window`` tokens before its end."""
    seq = [tokenizer.bos_token_id] + tokenizer(text)["input_ids"]
    total = 0.0
    for start in range(0, len(seq) - 1, window):
        end = min(start + window, len(seq) - 1)  # predicts seq[start + 1 : end + 1]
        inputs = seq[max(0, end - window):end]
        logps = torch.log_softmax(model(torch.tensor([inputs])).logits[0].float(), -1)
        targets = seq[start + 1:end + 1]
        rows = logps[len(inputs) - len(targets):]
        total += float(rows.gather(1, torch.tensor(targets)[:, None]).sum())
    return total


def test_builtin_tasks_agree_with_hfllm_scoring(tiny_sft, tmp_path, capsys):
    """Every built-in task through the harness on the learned SFT model, example by example against hfllm's
    scoring of the same rows. Measured: facts 44.0%, arithmetic 30.6%, preference 92.3%, the same to the
    last example both ways; word perplexity 2.05."""
    from hfllm.data.load import load_dataset
    from hfllm.generate import generate_answers
    from hfllm.loading import load_causal_lm, load_tokenizer
    from hfllm.scoring import answer_accuracy, preference_accuracy, prompt_messages, sequence_logprob

    model_dir = tmp_path / "sft"
    shutil.copytree(tiny_sft, model_dir)  # the eval block goes into its metrics.json: not the shared fixture's
    out = tmp_path / "eval"
    assert run_cli("eval", "--model_name_or_path", model_dir, "--tasks", "hfllm", "--log_samples",
                   "--output_dir", out) == 0
    printed = capsys.readouterr().out
    block = metrics(model_dir)["eval"]
    assert set(block) == {"hfllm_facts", "hfllm_arithmetic", "hfllm_preference", "hfllm_perplexity"}
    assert "| hfllm_facts | acc |" in printed and "±" in printed
    results = next(out.iterdir())  # one model: one folder

    model, tokenizer = load_causal_lm(str(model_dir), dtype="float32"), load_tokenizer(str(model_dir))
    for task, part in (("hfllm_facts", "questions_eval"), ("hfllm_arithmetic", "prompts_eval")):
        rows = list(load_dataset(f"builtin:{part}"))
        mine = generate_answers(model, tokenizer, [prompt_messages(r) for r in rows])
        theirs = {s["doc"]["question"]: s["filtered_resps"][0] for s in samples(results, task)}
        assert len(theirs) == len(rows) == block[task]["samples"]
        for row, answer in zip(rows, mine):  # the same greedy answer, up to the harness's stop at a newline
            assert theirs[prompt_messages(row)[-1]["content"]].strip() == answer.strip().split("\n")[0].strip()
        assert block[task]["acc"] == pytest.approx(answer_accuracy(model, tokenizer, rows, limit=10**6)
                                                   ["answer_accuracy"], abs=1e-4)
        assert 0.1 < block[task]["acc"] < 0.9 and block[task]["acc_stderr"] > 0

    pairs = list(load_dataset("builtin:preference_eval"))
    logged = {s["doc"]["question"] + s["doc"]["choices"][0]: s for s in samples(results, "hfllm_preference")}
    for row in pairs[:40]:  # the harness's log-likelihood margin is hfllm's, pair by pair
        sample = logged[row["prompt"][0]["content"] + row["chosen"][0]["content"] + "<|end|>\n"]
        harness = sample["filtered_resps"][0][0] - sample["filtered_resps"][1][0]
        ours = (sequence_logprob(model, tokenizer, row["prompt"], row["chosen"])
                - sequence_logprob(model, tokenizer, row["prompt"], row["rejected"]))
        assert harness == pytest.approx(ours, abs=1e-3)
    assert block["hfllm_preference"]["acc"] == pytest.approx(
        preference_accuracy(model, tokenizer, pairs, limit=10**6)["preference_accuracy"], abs=1e-4)

    texts = [s["doc"]["text"] for s in samples(results, "hfllm_perplexity")]
    total = sum(rolling_loglikelihood(model, tokenizer, t, model.config.max_position_embeddings) for t in texts)
    words = sum(len(t.split()) for t in texts)
    assert block["hfllm_perplexity"]["word_perplexity"] == pytest.approx(math.exp(-total / words), rel=1e-3)
    assert block["hfllm_perplexity"]["chat_template"] is False and block["hfllm_facts"]["chat_template"] is True


def test_two_models_side_by_side_on_a_users_jsonl(tiny_pretrained, tiny_sft, tmp_path, capsys):
    """A JSONL of one's own is a task with one flag; its columns say which kind; both models in one table."""
    questions = tmp_path / "my_questions.jsonl"
    questions.write_text("\n".join(json.dumps({"prompt": q, "answer": a}) for q, a in [
        ("What is the capital of France?", "Paris"), ("What does a cow say?", "moo"),
        ("What colour is snow?", "white"), ("What is 2 + 2?", "4")]) + "\n")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": [{"role": "system", "content": "Be brief."},
                                            {"role": "user", "content": "Hi!"}],
                                 "chosen": "Hello! How can I help?", "rejected": "Go away."}) + "\n")
    assert run_cli("eval", "--model_name_or_path", tiny_pretrained, tiny_sft, "--dataset_name", questions, pairs,
                   "--tasks", "hfllm_perplexity", "--limit", "8", "--output_dir", tmp_path / "out") == 0
    table = capsys.readouterr().out.split("| task |", 1)[1]
    header = table.splitlines()[0]
    for model in (tiny_pretrained, tiny_sft):  # each model named by the last two parts of its path
        assert "/".join(Path(model).parts[-2:]) in header
    for row in ("| my_questions | acc |", "| pairs | acc |", "| hfllm_perplexity | word_perplexity |"):
        assert row in table
    folders = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(folders) == 2 and all((tmp_path / "out" / f / "results.json").is_file() for f in folders)
    results = [json.loads((tmp_path / "out" / f / "results.json").read_text()) for f in folders]
    ppl = {r["model_name_or_path"]: r["eval"]["hfllm_perplexity"] for r in results}
    assert all(p["samples"] == 8 for p in ppl.values())
    # the longer-trained model reads held-out stories far better than the 60-step one (measured: 2.2 and 119)
    assert ppl[str(tiny_sft)]["word_perplexity"] < ppl[str(tiny_pretrained)]["word_perplexity"] / 5, ppl


@pytest.mark.parametrize("argv, message", [
    (["--tasks", "hfllm_fact"], "unknown task 'hfllm_fact'; did you mean 'hfllm_facts'?"),
    (["--dataset_name", "{tmp}/rows.jsonl"], "an eval dataset needs 'prompt' (or 'messages') + 'answer' columns"),
    (["--dataset_name", "{tmp}/turns.jsonl"], "the harness asks one user turn"),
    (["--dataset_name", "{tmp}/missing.jsonl"], "dataset not found"),
    ([], "nothing to evaluate on: set --tasks"),
])
def test_bad_eval_inputs_are_one_line_before_loading(tiny_pretrained, tmp_path, capsys, argv, message, spy):
    (tmp_path / "rows.jsonl").write_text(json.dumps({"question": "q", "label": 1}) + "\n")
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
             {"role": "user", "content": "and?"}]
    (tmp_path / "turns.jsonl").write_text(json.dumps({"prompt": turns, "answer": "x"}) + "\n")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert run_cli("eval", "--model_name_or_path", tiny_pretrained, *argv) == 2
    err = capsys.readouterr().err  # datasets' progress bars may come first
    assert message in err.strip().splitlines()[-1] and err.count("error:") == 1, err
    assert not spy  # refused before any model or tokenizer loaded


def test_a_hub_task_that_cannot_download_is_skipped_in_one_line(tiny_pretrained, tmp_path, capsys):
    """Harness tasks fetch their data from the Hub; offline (as here) each says so and the local ones run."""
    assert run_cli("eval", "--model_name_or_path", tiny_pretrained, "--tasks", "hellaswag", "hfllm_facts",
                   "--limit", "4", "--output_dir", tmp_path) == 0
    out = capsys.readouterr().out
    assert "skipped 'hellaswag': its data could not be loaded" in out
    assert "| hfllm_facts | acc |" in out and "hellaswag |" not in out


def test_pipeline_evaluates_after_stages_and_the_card_shows_it(tiny_pretrained, tmp_path, capsys):
    """evaluate_after (for the whole file, or one stage's own) runs hfllm eval on each finished model stage once;
    the run ends with the stages side by side, and a pushed card carries the numbers as model-index results."""
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(f"""
run_dir: {tmp_path / 'run'}
evaluate_after: [hfllm_facts]
stages:
  - name: sft
    args: {{model_name_or_path: {tiny_pretrained}, max_steps: 2, max_train_samples: 32, answer_eval_samples: 4,
            eval_dataset_name: builtin:sft_eval, disable_tqdm: true}}
  - name: kto
    args: {{model_name_or_path: "{{sft}}", max_steps: 1, max_train_samples: 16, eval_samples: 4, max_length: 64,
            per_device_train_batch_size: 4, disable_tqdm: true}}
    evaluate_after: [hfllm_facts, hfllm_preference]
""")
    assert run_cli("run", pipeline) == 0
    out = capsys.readouterr().out
    run = tmp_path / "run"
    assert set(metrics(run / "sft")["eval"]) == {"hfllm_facts"}
    assert set(metrics(run / "kto")["eval"]) == {"hfllm_facts", "hfllm_preference"}
    closing = out.split("== evaluation (lm-evaluation-harness", 1)[1]
    assert "| task | metric | sft | kto |" in closing and "| hfllm_preference | acc | - |" in closing
    assert "eval: hfllm_facts acc" in out  # the per-stage summary line
    assert (run / "eval").is_dir()

    first = (run / "kto" / "metrics.json").stat().st_mtime_ns
    assert run_cli("run", pipeline) == 0  # finished and evaluated: nothing runs again
    assert "hfllm eval" not in capsys.readouterr().out
    assert (run / "kto" / "metrics.json").stat().st_mtime_ns == first

    from huggingface_hub import ModelCard

    assert run_cli("push", run / "kto", "--repo_id", "me/tiny-kto", "--dry_run", "--output_dir", tmp_path / "card") == 0
    card = ModelCard.load(tmp_path / "card" / "README.md")
    results = card.data.to_dict()["model-index"][0]["results"]
    found = {(r["dataset"]["name"], m["type"]) for r in results for m in r["metrics"]}
    assert {("hfllm_facts", "acc"), ("hfllm_preference", "acc"), ("hfllm_preference", "acc_norm")} <= found
    assert "| hfllm_preference acc |" in card.text


def test_a_stage_evaluates_after_itself_from_its_flags_or_config(tiny_pretrained, tmp_path, capsys):
    """--evaluate_after (or the key in a stage's YAML) runs hfllm eval on the saved model before the stage ends:
    the eval block in its metrics.json (as `hfllm run` writes it) and in the card; the details beside the run."""
    out = tmp_path / "run" / "sft"
    assert run_cli("sft", "--model_name_or_path", tiny_pretrained, "--max_steps", "1", "--max_train_samples", "16",
                   "--answer_eval_samples", "0", "--save_strategy", "no", "--evaluate_after", "hfllm_facts",
                   "--output_dir", out) == 0
    assert "== sft: hfllm eval hfllm_facts" in capsys.readouterr().out
    block = metrics(out)["eval"]
    assert set(block) == {"hfllm_facts"} and 0 <= block["hfllm_facts"]["acc"] <= 1
    assert (tmp_path / "run" / "eval").is_dir()

    config = tmp_path / "kto.yaml"
    config.write_text(f"model_name_or_path: {out}\nmax_steps: 1\nmax_train_samples: 16\neval_samples: 4\n"
                      f"max_length: 64\nper_device_train_batch_size: 4\nevaluate_after: [hfllm_preference]\n")
    assert run_cli("kto", "--config", config, "--output_dir", tmp_path / "run" / "kto") == 0
    assert set(metrics(tmp_path / "run" / "kto")["eval"]) == {"hfllm_preference"}

    from huggingface_hub import ModelCard

    assert run_cli("push", out, "--repo_id", "me/tiny-sft", "--dry_run", "--output_dir", tmp_path / "card") == 0
    results = ModelCard.load(tmp_path / "card" / "README.md").data.to_dict()["model-index"][0]["results"]
    assert ("hfllm_facts", "acc") in {(r["dataset"]["name"], m["type"]) for r in results for m in r["metrics"]}
