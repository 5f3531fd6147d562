"""SFT end to end: learning on held-out questions, LoRA save/reload/merge, architectures, base models."""

import json

import pytest
import torch
from peft import AutoPeftModelForCausalLM
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import QUIET, SFT_FLAGS as SFT, metrics, run_cli



def test_sft_teaches_the_question_answer_behaviour(tiny_sft, learned_pretrained):
    from hfllm.data.builtin import build_part
    from hfllm.scoring import answer_accuracy
    from hfllm.loading import load_causal_lm, load_tokenizer

    m = metrics(tiny_sft)
    assert m["dataset_format"] == "messages" and m["answer_count"] >= 100
    # Held-out facts: never asked in SFT, known only from pretraining. Measured 2026-12-03 on the locked stack:
    # 4.5% -> 36% (seed 0), 4.5% -> 35% (seed 1).
    assert m["answer_accuracy"] >= m["answer_accuracy_before"] + 0.1, m
    taught = build_part("sft")[:150]
    before = answer_accuracy(load_causal_lm(learned_pretrained), load_tokenizer(learned_pretrained), taught)
    after = answer_accuracy(load_causal_lm(tiny_sft), load_tokenizer(tiny_sft), taught)
    assert after["answer_accuracy"] >= before["answer_accuracy"] + 0.2, (before, after)


def test_sft_model_stops_at_the_end_of_its_answer(tiny_sft):
    tok = AutoTokenizer.from_pretrained(tiny_sft)
    model = AutoModelForCausalLM.from_pretrained(tiny_sft)
    assert tok.eos_token_id in list(model.generation_config.eos_token_id)
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                     tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**ids, max_new_tokens=40, do_sample=False)
    new = out[0, ids["input_ids"].shape[1]:].tolist()
    assert tok.eos_token_id in new and len(new) < 40  # it ends, rather than running to the limit


def test_lora_sft_learns_saves_reloads_and_merges(learned_pretrained, tmp_path):
    out = tmp_path / "lora"
    assert run_cli("sft", "--model_name_or_path", learned_pretrained, *SFT, "--num_train_epochs", "1",
                   "--use_peft", "--lora_r", "16", "--lora_alpha", "32", "--learning_rate", "2e-3",
                   "--output_dir", out) == 0
    m = metrics(out)
    assert m["use_peft"] and m["trainable_parameters"] < 0.5 * 1e6
    from hfllm.data.builtin import build_part
    from hfllm.scoring import answer_accuracy
    from hfllm.loading import load_causal_lm, load_tokenizer

    taught = build_part("sft")[:150]
    before = answer_accuracy(load_causal_lm(learned_pretrained), load_tokenizer(learned_pretrained), taught)
    after = answer_accuracy(load_causal_lm(str(out)), load_tokenizer(str(out)), taught)
    assert after["answer_accuracy"] >= before["answer_accuracy"] + 0.15, (before, after)
    assert m["answer_accuracy"] >= m["answer_accuracy_before"] + 0.1, m  # held-out: 4.5% -> 34% (seed 1, 2026-12-03)
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()

    ids = torch.tensor([[5, 17, 42, 99, 7]])
    adapter = AutoPeftModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        expected = adapter(ids).logits
    assert run_cli("merge", "--model_name_or_path", out, "--output_dir", tmp_path / "merged") == 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, expected, atol=1e-4, rtol=1e-4)
    assert not (tmp_path / "merged" / "adapter_config.json").exists()


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "gpt2"])
def test_lora_sft_on_other_architectures(tiny_tokenizer, tmp_path, model_type):
    base = tmp_path / "base"
    assert run_cli("pretrain", "--tokenizer_name_or_path", tiny_tokenizer, "--model_type", model_type,
                   "--hidden_size", "64", "--num_hidden_layers", "2", "--num_attention_heads", "4",
                   "--intermediate_size", "128", "--max_position_embeddings", "128", "--max_train_samples", "200",
                   "--max_steps", "2", "--output_dir", base, *QUIET) == 0
    out = tmp_path / "lora"
    assert run_cli("sft", "--model_name_or_path", base, *SFT, "--max_steps", "3", "--use_peft",
                   "--max_train_samples", "64", "--answer_eval_samples", "8", "--output_dir", out) == 0
    adapter = AutoPeftModelForCausalLM.from_pretrained(out).eval()  # the adapter on the base it names
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    with torch.no_grad():
        base_logits = AutoModelForCausalLM.from_pretrained(base).eval()(ids).logits
        # (peft grows the embedding to the tokenizer's length: Qwen2's tokenizer adds an unknown token)
        tuned = adapter(ids).logits[..., :base_logits.shape[-1]]
        with adapter.disable_adapter():
            plain = adapter(ids).logits[..., :base_logits.shape[-1]]
    assert torch.allclose(plain, base_logits, atol=1e-5)  # the right base, untouched
    assert not torch.allclose(tuned, plain, atol=1e-5)  # and 3 steps of LoRA changed what it computes


def test_merge_lora_saves_a_standalone_model(tiny_pretrained, tmp_path):
    out = tmp_path / "merged"
    assert run_cli("sft", "--model_name_or_path", tiny_pretrained, *SFT, "--max_steps", "3", "--use_peft",
                   "--merge_lora", "--max_train_samples", "64", "--answer_eval_samples", "8", "--output_dir", out) == 0
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    assert not (out / "README.md").exists()  # peft's card for the adapter would tell the Hub it is one
    m = metrics(out)
    assert m["use_peft"] and m["merged"]
    model = AutoModelForCausalLM.from_pretrained(out)  # no peft needed
    assert not any("lora" in name for name, _ in model.named_parameters())
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template
    from hfllm.chat_template import end_of_turn_ids
    from hfllm.loading import load_causal_lm

    assert model.generation_config.eos_token_id == end_of_turn_ids(tokenizer)  # it stops at the end of a turn
    # The same run without --merge_lora gives the adapter; on its base it computes what the merged model does.
    adapter = tmp_path / "adapter"
    assert run_cli("sft", "--model_name_or_path", tiny_pretrained, *SFT, "--max_steps", "3", "--use_peft",
                   "--max_train_samples", "64", "--answer_eval_samples", "8", "--output_dir", adapter) == 0
    ids = torch.tensor([tokenizer("The capital of France is").input_ids])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, load_causal_lm(str(adapter))(ids).logits, atol=1e-5)


def test_base_model_without_chat_template_gets_one(tiny_pretrained, tmp_path, capsys):
    base = tmp_path / "plain"
    model = AutoModelForCausalLM.from_pretrained(tiny_pretrained)
    tok = AutoTokenizer.from_pretrained(tiny_pretrained)
    tok.chat_template = None
    model.save_pretrained(base)
    tok.save_pretrained(base)
    (base / "chat_template.jinja").unlink(missing_ok=True)
    out = tmp_path / "sft"
    assert run_cli("sft", "--model_name_or_path", base, *SFT, "--max_steps", "2", "--max_train_samples", "32",
                   "--answer_eval_samples", "4", "--output_dir", out) == 0
    assert "no chat template" in capsys.readouterr().out
    assert AutoTokenizer.from_pretrained(out).chat_template


def test_alpaca_file_trains(tiny_pretrained, tmp_path):
    rows = [{"instruction": "Add the numbers.", "input": f"{a} and {a}", "output": f"{2 * a}"} for a in range(20)]
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps(rows))
    out = tmp_path / "sft"
    assert run_cli("sft", "--model_name_or_path", tiny_pretrained, "--dataset_name", path, "--max_steps", "2",
                   "--output_dir", out, *QUIET) == 0
    assert metrics(out)["dataset_format"] == "alpaca"


def test_default_batches_have_few_pads_and_say_so(tiny_pretrained, tmp_path, capsys):
    """No batching option set: on this CPU, chats of similar length share a batch; pads counted as TRL's collator
    builds each batch (random batches: about a third of the positions)."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    counts, collate = [], DataCollatorForLanguageModeling.torch_call

    def counting(self, examples):
        batch = collate(self, examples)
        counts.append((sum(len(e["input_ids"]) for e in examples), batch["input_ids"].numel()))
        return batch

    def pads(*flags):
        counts.clear()
        DataCollatorForLanguageModeling.torch_call = counting
        try:
            assert run_cli("sft", "--model_name_or_path", tiny_pretrained, "--dataset_name", "builtin:sft",
                           "--max_length", "96", "--per_device_train_batch_size", "16", "--max_steps", "8",
                           "--save_strategy", "no", "--seed", "0", *QUIET, *flags,
                           "--output_dir", tmp_path / str(len(flags))) == 0  # no eval set: every batch trains
        finally:
            DataCollatorForLanguageModeling.torch_call = collate
        train = counts[-8:]  # the data summary collates a sample before training; nothing collates after it
        assert len(train) == 8, counts
        return 1 - sum(c[0] for c in train) / sum(c[1] for c in train)

    grouped = pads()
    assert "batches: chats of similar length together, few pads (the default without flash attention" in \
        capsys.readouterr().out
    assert grouped <= 0.02, grouped
    random = pads("--train_sampling_strategy", "random")  # an explicit choice wins, and is not announced
    assert "batches:" not in capsys.readouterr().out
    assert random >= 0.1, random


class FakeModelArgs:
    def __init__(self, attn_implementation):
        self.attn_implementation = attn_implementation


@pytest.mark.parametrize("cuda,attention,max_length,chosen", [
    (False, None, 1024, {"train_sampling_strategy": "group_by_length", "packing": False, "padding_free": False}),
    (False, "flash_attention_2", 1024, {"train_sampling_strategy": "group_by_length", "packing": False}),
    (True, "sdpa", 1024, {"train_sampling_strategy": "group_by_length", "packing": False, "padding_free": False}),
    (True, "flash_attention_2", 1024, {"train_sampling_strategy": "random", "packing": True}),
    (True, "kernels-community/flash-attn2", 1024, {"train_sampling_strategy": "random", "packing": True}),
    (True, "flash_attention_3", None, {"train_sampling_strategy": "random", "packing": False, "padding_free": True}),
])
def test_default_batching_per_device(monkeypatch, cuda, attention, max_length, chosen):
    from trl import SFTConfig

    from hfllm.stages.sft import default_batching

    options = ("train_sampling_strategy", "packing", "padding_free")
    config, *theirs = [SFTConfig(output_dir="unused", max_length=max_length, use_cpu=True, report_to="none")
                       for _ in range(4)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)  # after the configs: TrainingArguments asks too
    assert default_batching(config, FakeModelArgs(attention), set()).startswith("batches: ")
    assert {key: getattr(config, key) for key in chosen} == chosen
    for option, config in zip(options, theirs):  # any one set by the user: theirs, all of it
        assert default_batching(config, FakeModelArgs(attention), {option}) is None
        assert (config.train_sampling_strategy, config.packing, config.padding_free) == ("random", False, False)


def test_a_config_key_for_batches_wins(tmp_path, capsys):
    from hfllm.stages._frame import Run
    from hfllm.stages.sft import ARGUMENTS, DEFAULTS, default_batching

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "c.yaml").write_text("packing: false\n")
    run = Run.start("sft", ["--model_name_or_path", str(model), "--config", str(tmp_path / "c.yaml")], ARGUMENTS,
                    defaults=DEFAULTS)
    assert default_batching(run.config, run.model_args, run.explicit) is None
    assert run.config.train_sampling_strategy == "random"


@pytest.mark.parametrize("flags,message", [
    ([], "sft needs a model"),
    (["--model_name_or_path", "TMP/does-not-exist"], "model not found: TMP/does-not-exist"),
    (["--model_name_or_path", "nobody/no-such-model"], "'nobody/no-such-model' (not a local folder, so the Hub was asked)"),
    (["--model_name_or_path", "MODEL", "--dataset_name", "nothing.jsonl"], "dataset not found: nothing.jsonl"),
    (["--model_name_or_path", "MODEL", "--merge_lora"], "--merge_lora merges a LoRA adapter: add --use_peft"),
])
def test_bad_inputs(tiny_pretrained, tmp_path, capsys, flags, message):
    flags = [tiny_pretrained if f == "MODEL" else f.replace("TMP", str(tmp_path)) for f in flags]
    message = message.replace("TMP", str(tmp_path))
    assert run_cli("sft", *flags, "--output_dir", tmp_path / "o", *QUIET) == 2
    assert message in capsys.readouterr().err
