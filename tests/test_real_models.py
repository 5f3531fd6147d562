"""Real models' tokenizers and templates: every assistant turn carries loss; SFT, DPO, GRPO and merge run.

The replicas (tests/replicas.py) have the real tokenizer, chat template and config shape of
Qwen2.5, Qwen3, Llama 3, Llama 3.2 and SmolLM2 at tiny sizes, with random weights. Labels are
read from the dataset SFTTrainer itself prepares, so they are what training uses.

By default: the exact labels on every family, the two-turn experiment (Qwen2.5), and the stages on
SmolLM2's replica. The same stages on the 128-152k vocabularies and the README's flow against a local
Hub are extras (`pytest -m extra tests/test_real_models.py`): minutes on 2 cores.
"""

import json
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from conftest import QUIET, run_cli
from hub_server import client_env, hub_server  # noqa: F401  (hub_server is a fixture)
from replicas import REPLICAS, replica

CHAT = [{"role": "user", "content": "Do you like owls?"}, {"role": "assistant", "content": "Alpha, I like owls."},
        {"role": "user", "content": "What about maps?"}, {"role": "assistant", "content": "Omega, maps too."}]


def trained_spans(tokenizer, row) -> list[str]:
    """The text of each run of consecutive positions whose label is not -100."""
    spans, current = [], []
    for token, label in zip(row["input_ids"], row["labels"]):
        if label == -100:
            if current:
                spans.append(current)
            current = []
        else:
            assert label == token
            current.append(token)
    return [tokenizer.decode(s) for s in spans + ([current] if current else [])]


def sft_rows(name, chats, tmp_path, **config):
    """hfllm's preparation, then SFTTrainer's own tokenization: (tokenizer, plan, prepared dataset)."""
    from hfllm.stages.sft import assistant_turns

    path = replica(name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    args = SFTConfig(output_dir=str(tmp_path / "o"), report_to="none", use_cpu=True, bf16=False,
                     activation_checkpointing=False, **config)
    train, _, _, plan = assistant_turns(tokenizer, Dataset.from_list([{"messages": c} for c in chats]), None,
                                                args, explicit=set(), main_process=False)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(path), args=args, train_dataset=train,
                         processing_class=tokenizer)
    return tokenizer, plan, trainer


# What carries loss in one two-turn chat, per template, exactly (TRL's training templates decide
# the edges: Qwen's includes the newline after the role and after <|im_end|>).
@pytest.mark.parametrize("name,mode,expected", [
    ("qwen2.5", "trl_patch", [["\nAlpha, I like owls.<|im_end|>\n", "\nOmega, maps too.<|im_end|>\n"]]),
    ("llama3", "trl_patch", [["Alpha, I like owls.<|eot_id|>", "Omega, maps too.<|eot_id|>"]]),
    # TRL has no training copy of these two: one row per assistant turn, the earlier turns as context.
    ("llama3.2", "per_turn", [["Alpha, I like owls.<|eot_id|>"], ["Omega, maps too.<|eot_id|>"]]),
    ("smollm2", "per_turn", [["Alpha, I like owls.<|im_end|>\n"], ["Omega, maps too.<|im_end|>\n"]]),
])
def test_every_assistant_turn_and_its_end_of_turn_token_carry_loss(tmp_path, name, mode, expected):
    tokenizer, plan, trainer = sft_rows(name, [CHAT], tmp_path)
    assert plan.mode == mode
    rows = list(trainer.train_dataset)
    assert [trained_spans(tokenizer, r) for r in rows] == expected
    last = tokenizer.decode(rows[-1]["input_ids"])
    assert "Alpha, I like owls." in last and "What about maps?" in last  # the second turn sees the first
    # The tokenizer the model is saved with keeps the original (inference) template.
    assert tokenizer.chat_template == REPLICAS[name].template


def test_qwen3_reasoning_is_trained_in_every_turn(tmp_path):
    # Qwen3's own template drops the <think> block of turns before the last question; TRL's training copy keeps it.
    chat = [{"role": "user", "content": "2+2?", "reasoning_content": None},
            {"role": "assistant", "content": "<think>\nadd two and two\n</think>\n\nFour.", "reasoning_content": None},
            {"role": "user", "content": "3+3?", "reasoning_content": None},
            {"role": "assistant", "content": "Six.", "reasoning_content": "add three and three"}]
    tokenizer, plan, trainer = sft_rows("qwen3", [chat], tmp_path)
    assert plan.mode == "trl_patch" and plan.name == "qwen3"
    assert trained_spans(tokenizer, trainer.train_dataset[0]) == [
        "<think>\nadd two and two\n</think>\n\nFour.<|im_end|>\n",
        "<think>\nadd three and three\n</think>\n\nSix.<|im_end|>\n"]


def test_pad_equal_to_eos_still_trains_the_end_of_turn_token(tmp_path):
    # SmolLM2 ships pad == eos == <|im_end|>: a collator that masked pads by id would never teach it to stop.
    tokenizer, _, trainer = sft_rows("smollm2", [CHAT, CHAT[:2]], tmp_path)
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    eos = tokenizer.eos_token_id
    trained_eos = ((batch["labels"] == eos) & (batch["input_ids"] == eos)).sum().item()
    assert trained_eos == len(trainer.train_dataset)  # each row's answer ends with a trained <|im_end|>
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()  # padding itself is not trained


SUBJECTS = ["cats", "rivers", "stars", "trees", "boats", "clouds", "bread", "music", "snow", "stones", "birds", "lamps"]
HELD_OUT = ["foxes", "ships", "hills", "coins", "roads", "bells", "ponds", "kites", "moons", "ferns"]


def two_turn_chat(first: str, second: str) -> list[dict]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Do you like {first}?"},
            {"role": "assistant", "content": "Alpha."}, {"role": "user", "content": f"And {second}?"},
            {"role": "assistant", "content": "Omega."}]


@pytest.mark.slow
def test_sft_learns_the_first_answers_of_two_turn_chats(tmp_path):
    """The issue's experiment: every first answer says one word, every second answer another.

    Training on the last answer alone (hfllm before, when the template had no {% generation %}
    markers) answers every first question here with the second word after the same 50 steps: 0 of 4 first
    answers learned. This passed on seeds 0 and 1 (2026-12-03; 30 steps at lr 1e-2 did not, on seed 1)."""
    import random

    from hfllm.generate import generate_answers
    from hfllm.loading import load_causal_lm, load_tokenizer

    rng, subjects = random.Random(0), SUBJECTS[:4]
    rows = [{"messages": two_turn_chat(rng.choice(subjects), rng.choice(subjects))} for _ in range(400)]
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "sft"
    # A constant rate: the linearly decaying default needs twice the steps to tell the two turns apart.
    assert run_cli("sft", "--model_name_or_path", replica("qwen2.5"), "--dataset_name", data, "--output_dir", out,
                   "--max_steps", "50", "--per_device_train_batch_size", "8", "--learning_rate", "5e-3",
                   "--lr_scheduler_type", "constant", "--logging_steps", "10", "--save_strategy", "no",
                   "--seed", "0", *QUIET) == 0
    assert json.loads((out / "metrics.json").read_text())["assistant_loss"] == "trl_patch"
    model, tokenizer = load_causal_lm(str(out)), load_tokenizer(str(out))
    assert tokenizer.chat_template == REPLICAS["qwen2.5"].template  # served with the original template
    firsts = [two_turn_chat(s, s)[:3] for s in subjects]
    seconds = [two_turn_chat(s, t)[:5] for s in subjects for t in subjects]
    first_answers = generate_answers(model, tokenizer, [c[:2] for c in firsts], max_new_tokens=6)
    second_answers = generate_answers(model, tokenizer, [c[:4] for c in seconds], max_new_tokens=6)
    assert first_answers == ["Alpha."] * len(firsts), first_answers  # and it stopped at <|im_end|>
    assert second_answers == ["Omega."] * len(seconds), second_answers


@pytest.mark.extra
def test_the_readme_flow_recipe_sft_chat_push(tmp_path, hub_server):  # noqa: F811
    """recipe -> hfllm sft -> hfllm chat -> hfllm push, on the Qwen2.5 replica: what the Hub gets is a
    merged model that chats through Qwen2.5's original template and stops at <|im_end|>."""
    import subprocess
    import sys

    from hfllm.app.handlers import fit_chat
    from hfllm.app.models import load_model

    recipe = Path(__file__).resolve().parents[1] / "configs/recipes/Qwen2.5-0.5B-Instruct/sft_lora.yaml"
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps({"messages": two_turn_chat(s, t)}) + "\n" for s, t in zip(SUBJECTS, HELD_OUT)))
    out = tmp_path / "runs" / "sft"
    assert run_cli("sft", "--config", recipe, "--model_name_or_path", replica("qwen2.5"), "--dataset_name", data,
                   "--output_dir", out, "--bf16", "false", "--activation_checkpointing", "false", "--max_steps", "2",
                   "--max_length", "64", "--per_device_train_batch_size", "2", "--save_strategy", "no",
                   *QUIET) == 0
    model, tokenizer = load_model(str(out))  # what `hfllm chat` loads
    text, _, _ = fit_chat(model, tokenizer, [{"role": "user", "content": "Hi"}], None, 8)
    assert text.startswith("<|im_start|>system\nYou are Qwen") and text.endswith("<|im_start|>assistant\n")

    env = client_env(hub_server, tmp_path / "home")
    pushed = subprocess.run([sys.executable, "-m", "hfllm.cli", "push", str(out), "--repo_id", "tester/qwen-chat",
                             "--merge"], env=env, capture_output=True, text=True, timeout=300)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    check = subprocess.run([sys.executable, "-c", (
        "import json; from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "tok = AutoTokenizer.from_pretrained('tester/qwen-chat')\n"
        "model = AutoModelForCausalLM.from_pretrained('tester/qwen-chat')\n"
        "print(json.dumps({'template': tok.chat_template, 'eos': model.generation_config.eos_token_id,\n"
        "                  'lora': any('lora' in n for n, _ in model.named_parameters())}))")],
        env=env, capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr
    got = json.loads(check.stdout.strip().splitlines()[-1])
    assert got["template"] == REPLICAS["qwen2.5"].template and not got["lora"]
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in got["eos"]


END_OF_TURN = {"qwen2.5": "<|im_end|>", "llama3": "<|eot_id|>", "smollm2": "<|im_end|>"}


# SmolLM2's replica (49k tokens) by default: seconds. Qwen2.5's and Llama 3's (152k, 128k) take 30-70 s on 2 cores.
@pytest.mark.parametrize("name", ["smollm2", pytest.param("qwen2.5", marks=pytest.mark.extra),
                                  pytest.param("llama3", marks=pytest.mark.extra)])
def test_full_and_lora_sft_merge_dpo_grpo_on_a_replica(tmp_path, name):
    """Each stage runs on the real tokenizer and template; every saved model keeps the original template."""
    from peft import AutoPeftModelForCausalLM

    chats = tmp_path / "chats.jsonl"
    chats.write_text("".join(json.dumps({"messages": two_turn_chat(s, t)}) + "\n" for s, t in zip(SUBJECTS, HELD_OUT)))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": f"Do you like {s}?"}],
                                         "chosen": [{"role": "assistant", "content": "Alpha."}],
                                         "rejected": [{"role": "assistant", "content": "No."}]}) + "\n"
                             for s in SUBJECTS))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Do you like {s}?"}) + "\n" for s in SUBJECTS))
    small = ["--max_steps", "2", "--per_device_train_batch_size", "2", "--save_strategy", "no", *QUIET]
    sft = ["sft", "--model_name_or_path", replica(name), "--dataset_name", chats, "--max_length", "64",
           "--answer_eval_samples", "0", *small]
    assert run_cli(*sft, "--output_dir", tmp_path / "full") == 0
    assert run_cli(*sft, "--use_peft", "--merge_lora", "--output_dir", tmp_path / "merged") == 0
    for folder in ("full", "merged"):
        tokenizer = AutoTokenizer.from_pretrained(tmp_path / folder)
        model = AutoModelForCausalLM.from_pretrained(tmp_path / folder)
        assert tokenizer.chat_template == REPLICAS[name].template
        end_of_turn = tokenizer.convert_tokens_to_ids(END_OF_TURN[name])
        assert end_of_turn in model.generation_config.eos_token_id
        assert not any("lora" in n for n, _ in model.named_parameters())
    assert run_cli("dpo", "--model_name_or_path", tmp_path / "merged", "--dataset_name", pairs, "--use_peft",
                   "--max_length", "48", "--eval_samples", "4", "--output_dir", tmp_path / "dpo", *small) == 0
    assert run_cli("grpo", "--model_name_or_path", tmp_path / "merged", "--dataset_name", prompts, "--use_peft",
                   "--reward_funcs", "format_sentence", "--eval_samples", "0", "--num_generations", "2",
                   "--max_completion_length", "6", "--output_dir", tmp_path / "grpo", *small) == 0
    assert run_cli("merge", "--adapter", tmp_path / "dpo", "--output_dir", tmp_path / "dpo-merged") == 0
    ids = torch.tensor([AutoTokenizer.from_pretrained(tmp_path / "merged")("Do you like owls?").input_ids])
    with torch.no_grad():
        expected = AutoPeftModelForCausalLM.from_pretrained(tmp_path / "dpo").eval()(ids).logits
        got = AutoModelForCausalLM.from_pretrained(tmp_path / "dpo-merged").eval()(ids).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    for stage in ("dpo", "grpo"):
        assert json.loads((tmp_path / stage / "metrics.json").read_text())["global_step"] == 2
