"""hfllm inspect: what it reports is what the stage trains on (TRL's own rows), on replicas of real models."""

import json

import pytest
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from conftest import run_cli
from replicas import replica

TURNS = [("Do you like owls?", "Alpha, I like owls."), ("What about maps?", "Omega, maps too.")]


def chat(i: int, turns=TURNS) -> list[dict]:
    out = []
    for user, answer in turns:
        out += [{"role": "user", "content": f"{user} ({i})"}, {"role": "assistant", "content": answer}]
    return out


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("name", ["qwen2.5", "llama3.2"])
def test_inspect_rows_are_the_trainers_rows(tmp_path, name):
    """TRL's SFT tokenization run without a model gives exactly the rows SFTTrainer trains on."""
    from hfllm.inspect.checks import sft_prepare
    from hfllm.stages.sft import assistant_turns

    path = replica(name)
    chats = [chat(i) for i in range(5)] + [chat(9, TURNS + [("And a long one? " * 20, "Yes.")])]
    data = Dataset.from_list([{"messages": c} for c in chats])
    model = AutoModelForCausalLM.from_pretrained(path)  # never trained here: the trainers only prepare rows
    for max_length in (None, 60):
        args = SFTConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, bf16=False, max_length=max_length,
                         activation_checkpointing=False)
        tokenizer = AutoTokenizer.from_pretrained(path)
        train, _, _, _ = assistant_turns(tokenizer, data, None, args, set(), main_process=False)
        ours = sft_prepare(tokenizer, train, args)
        trainer = SFTTrainer(model=model, args=args, train_dataset=train,
                             processing_class=AutoTokenizer.from_pretrained(path))
        theirs = trainer.train_dataset
        assert ours["input_ids"] == theirs["input_ids"] and ours["labels"] == theirs["labels"]


def test_inspect_sft_report(tmp_path, capsys):
    rows = [{"messages": chat(i)} for i in range(6)]
    rows.append({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "  "}]})  # empty
    rows.append({"messages": chat(7, [("Tell me everything. " * 40, "Fine.")])})  # its prompt fills max_length
    data = write_rows(tmp_path / "chats.jsonl", rows)
    page = tmp_path / "report.html"
    assert run_cli("inspect", "--model_name_or_path", replica("qwen2.5"), "--dataset_name", data,
                   "--max_length", "96", "--num_examples", "1", "--html", page, "--color", "never") == 0
    out = capsys.readouterr().out
    assert "messages; 8 rows read, 6 rows to train on" in out
    assert "dropped      1 with an empty answer; 1 with nothing left to train after the cut at max_length 96" in out
    assert "qwen2_5: TRL's training copy (qwen2_5_training) for tokenizing; the model keeps the original" in out
    assert "generation markers: no (TRL training copy used); prefix-preserving with tool calls: yes" in out
    assert "14.3% longer than max_length 96" in out  # 1 of the 7 tokenized rows
    assert "end of turn  trained in 6 of 6 rows (padded as in training); pad '<|endoftext|>' != end of turn" in out
    # Both answers of the first row, each with its <|im_end|>, are marked as trained; nothing else is.
    example = out.split("--- row 1")[1].split("---\n", 1)[1]
    assert example.count("[[") == 2 and "[[\nAlpha, I like owls.<|im_end|>\n]]" in example
    assert "[[\nOmega, maps too.<|im_end|>\n]]" in example and "[[<|im_start|>" not in example
    # The loss share is the trainer's: trained tokens over all tokens of the rows it keeps.
    tokenizer = AutoTokenizer.from_pretrained(replica("qwen2.5"))
    spans = sum(len(tokenizer(f"\n{a}<|im_end|>\n", add_special_tokens=False).input_ids) for _, a in TURNS)
    total = sum(len(tokenizer.apply_chat_template(chat(i), return_dict=True)["input_ids"]) for i in range(6))
    assert f"{spans * 6 / total:.1%} of the {total} tokens carry loss" in out
    html = page.read_text()
    assert '<span class="trained"' in html and "Alpha, I like owls.&lt;|im_end|&gt;" in html


def test_inspect_shows_per_turn_rows_and_the_pad_eos_trap(tmp_path, capsys):
    data = write_rows(tmp_path / "chats.jsonl", [{"messages": chat(i)} for i in range(3)])
    assert run_cli("inspect", "--model_name_or_path", replica("smollm2"), "--dataset_name", data,
                   "--num_examples", "2", "--color", "never") == 0
    out = capsys.readouterr().out
    assert "3 rows read, 6 rows to train on (per_turn: one row per assistant turn)" in out
    assert "custom: each assistant turn its own prompt/completion row" in out
    # SmolLM2's pad is its eos: TRL's collator masks padding by position, so <|im_end|> is still trained.
    assert "trained in 6 of 6 rows (padded as in training); pad '<|im_end|>' == end of turn ['<|im_end|>']" in out
    row1, row2 = (out.split(f"--- row {i}")[1].split("---\n", 1)[1] for i in (1, 2))
    assert "[[Alpha, I like owls.<|im_end|>\n]]" in row1
    assert "Alpha, I like owls.<|im_end|>" in row2.split("[[")[0]  # the first turn is the second's context


def test_inspect_dpo_and_reward(tmp_path, capsys):
    rows = [{"chosen": chat(i, TURNS[:1]), "rejected": chat(i, [(TURNS[0][0], "No.")])} for i in range(4)]
    data = write_rows(tmp_path / "pairs.jsonl", rows)
    path = replica("llama3.2")
    assert run_cli("inspect", "--stage", "dpo", "--model_name_or_path", path, "--dataset_name", data,
                   "--max_length", "512", "--num_examples", "1", "--color", "never") == 0
    out = capsys.readouterr().out
    assert "implicit_preference; 4 pairs read, 4 to train on" in out
    assert "each kept answer ends with it: 8 of 8" in out
    assert "[[+Alpha, I like owls.<|eot_id|>]]" in out and "[[-No.<|eot_id|>]]" in out
    assert run_cli("inspect", "--stage", "reward", "--model_name_or_path", path, "--dataset_name", data,
                   "--max_length", "512", "--num_examples", "1", "--color", "never") == 0
    out = capsys.readouterr().out
    # Llama 3.2 has no pad token; hfllm pads with eos (<|eot_id|>), so the score is read before it.
    assert "8 of 8 sequences end with it, so their score is read before it" in out
    assert "Alpha, I like owls[[.]]<|eot_id|>" in out


def test_inspect_grpo_uses_hfllm_grpo_defaults(tmp_path, capsys):
    data = write_rows(tmp_path / "prompts.jsonl", [{"prompt": [{"role": "user", "content": "1+1?"}], "solution": "2"}])
    assert run_cli("inspect", "--stage", "grpo", "--model_name_or_path", replica("qwen3"), "--dataset_name", data,
                   "--color", "never") == 0
    out = capsys.readouterr().out
    assert "extra columns for the rewards: solution" in out
    assert "answers up to max_completion_length 32, 4 per prompt" in out  # hfllm grpo's defaults, not TRL's
    assert "generation stops at ['<|im_end|>']" in out
    assert out.rstrip().endswith("<|im_start|>assistant")


@pytest.mark.parametrize("flags,message", [
    (["--stage", "pretrain"], "--stage 'pretrain': choose one of sft, dpo, orpo, simpo, reward, kto, grpo, rloo, ppo"),
    ([], "inspect needs the model whose tokenizer and template to use"),
    (["--model_name_or_path", "MODEL", "--color", "pink"], "--color 'pink': choose auto, always or never"),
    (["--model_name_or_path", "MODEL", "--max_lenght", "9"],
     "unknown option '--max_lenght'; did you mean 'max_length'?"),
])
def test_inspect_bad_inputs(capsys, flags, message):
    flags = [str(replica("qwen2.5")) if f == "MODEL" else f for f in flags]
    assert run_cli("inspect", *flags) == 2
    assert message in capsys.readouterr().err


# --- the summary every training stage prints before its model loads ------------------------------------------

SUMMARY_SEEN = {  # what each stage's data (its built-in default, first 30 rows) reads as
    "sft": "30 rows read, 30 rows to train on", "dpo": "30 pairs read, 30 to train on",
    "orpo": "30 pairs read, 30 to train on", "simpo": "30 pairs read, 30 to train on",
    "reward": "30 pairs read, 30 to train on", "kto": "60 rows to train on: 30 desirable, 30 undesirable",
    "grpo": "prompts; 30 read, all used", "rloo": "prompts; 30 read, all used", "ppo": "prompts; 30 read, all used"}


@pytest.mark.parametrize("stage", list(SUMMARY_SEEN))
def test_every_training_stage_has_a_data_summary(stage, tiny_pretrained):
    import dataclasses
    import importlib

    from hfllm.config import parse_args
    from hfllm.inspect import INSPECTED_AS, stage_summary
    from hfllm.loading import load_tokenizer
    from hfllm.stages import STAGES
    from hfllm.stages._frame import stage_defaults

    assert set(SUMMARY_SEEN) == set(INSPECTED_AS)  # every training stage but pretrain (plain text)
    module = importlib.import_module(STAGES[stage].module)
    parsed, explicit = parse_args(module.ARGUMENTS, ["--model_name_or_path", tiny_pretrained, "--max_train_samples",
                                                     "30", "--max_length" if stage not in ("grpo", "rloo", "ppo")
                                                     else "--seed", "64"], defaults=stage_defaults(stage))
    cfg = next((p for p in parsed if hasattr(p, "output_dir")), parsed[0])
    options = lambda: {f.name: repr(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}  # noqa: E731
    before = options()
    tokenizer = load_tokenizer(tiny_pretrained)
    template = tokenizer.chat_template
    lines = stage_summary(stage, tokenizer, parsed[0], cfg, explicit)
    assert lines[0] == (f"data of {stage}, its first 500 training rows at most (hfllm inspect --stage {stage} "
                        "shows more):")
    assert 4 <= len(lines) <= 8 and SUMMARY_SEEN[stage] in lines[1]  # a few lines, the first on the rows
    if stage not in ("grpo", "rloo", "ppo"):
        assert "max_length 64" in "\n".join(lines)
    assert options() == before and tokenizer.chat_template == template  # the stage's own are left as they were


def test_a_stage_prints_its_data_summary_before_loading_the_model(tiny_pretrained, tmp_path, capsys):
    from conftest import QUIET

    assert run_cli("orpo", "--model_name_or_path", tiny_pretrained, "--max_train_samples", "12", "--max_steps", "1",
                   "--max_length", "64", "--eval_samples", "2", "--per_device_train_batch_size", "2",
                   "--output_dir", tmp_path / "orpo", *QUIET) == 0
    out = capsys.readouterr().out
    summary = out.split("data of orpo, its first 500 training rows at most")[1]
    assert "preference; 12 pairs read, 12 to train on" in summary.splitlines()[1]
    assert "of the tokens (the answers) carry the loss" in summary or "tokens (the answers) carry the loss" in summary
