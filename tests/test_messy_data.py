"""Real, messy data: rows shaped like public datasets', with their quirks, through the stages.

The HH file mimics Anthropic HH-RLHF: "\\n\\nHuman: ...\\n\\nAssistant: ..." transcripts, a few rows
whose text is malformed (a turn marker without its blank line, so the two transcripts differ
before the last turn), an empty last turn. ShareGPT rows use its role names; OpenAI rows use
content parts and tool calls.
"""

import json

import pytest

from conftest import QUIET, metrics, run_cli
from hfllm.data import formats
from hfllm.data.load import load_dataset
from hfllm.errors import UserError

TINY_RUN = ["--max_steps", "2", "--per_device_train_batch_size", "4", "--max_length", "64",
            "--save_strategy", "no", "--eval_strategy", "no", *QUIET]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def hh_rows(n=40):
    """n transcripts; rows 7 and 23 malformed as in the real file, row 31 with an empty last answer."""
    rows = []
    for i in range(n):
        shared = f"\n\nHuman: What is {i} + {i}?\n\nAssistant: Let me think.\n\nHuman: Well?"
        rows.append({"chosen": f"{shared}\n\nAssistant: It is {2 * i}.", "rejected": f"{shared}\n\nAssistant: No."})
    for i in (6, 22):  # "\nHuman:" lost its blank line in 'rejected': the transcripts now differ earlier
        rows[i]["rejected"] = rows[i]["rejected"].replace("think.\n\nHuman:", "think.\nHuman:")
    rows[30]["chosen"] = rows[30]["chosen"].rsplit("Assistant:", 1)[0] + "Assistant: "
    return rows


@pytest.fixture
def hh_file(tmp_path):
    return write_jsonl(tmp_path / "hh.jsonl", hh_rows())


def test_bad_rows_are_skipped_and_counted(hh_file, capsys):
    ds, fmt, report = formats.normalise(load_dataset(hh_file), "preference", hh_file)
    assert fmt == "implicit_preference" and len(ds) == 37
    assert report.total == 40 and report.skipped == 2 and report.empty == 1
    reason = "'chosen' and 'rejected' transcripts must share every turn but the last"
    assert report.bad == {reason: [7, 23]}
    assert f"{hh_file}: 2 of 40 rows skipped: {reason} (rows 7, 23); --strict refuses them" in capsys.readouterr().out
    assert report.metrics()["rows_skipped"] == 2


def test_strict_and_too_many_bad_rows_refuse(hh_file):
    with pytest.raises(UserError, match=r"row 7: 'chosen' and 'rejected' transcripts must share every turn"):
        formats.normalise(load_dataset(hh_file), "preference", hh_file, strict=True)
    with pytest.raises(UserError, match=r"row 7: .*; 2 of 40 rows fail the checks, more than --max_bad_share "
                                        r"0.01 allows"):
        formats.normalise(load_dataset(hh_file), "preference", hh_file, max_bad_share=0.01)


def test_sharegpt_content_parts_and_tool_calls_convert(tmp_path):
    share = [{"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"},
                                {"from": "gpt", "value": "Hello."}]},
             {"conversations": [{"from": "robot", "value": "x"}, {"from": "gpt", "value": "y"}]}] + \
        [{"conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": f"a{i}"}]} for i in range(9)]
    ds, fmt, report = formats.normalise(load_dataset(write_jsonl(tmp_path / "s.jsonl", share)), "sft", "s.jsonl")
    assert fmt == "sharegpt" and len(ds) == 10 and report.skipped == 1
    assert ds[0]["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                                 {"role": "assistant", "content": "Hello."}]
    assert "is from 'robot'" in next(iter(report.bad))

    parts = [{"messages": [{"role": "user", "content": [{"type": "text", "text": "Look"}, {"type": "text",
                                                                                          "text": "here"}]},
                           {"role": "assistant", "content": [{"type": "text", "text": "Seen."}]}]},
             {"messages": [{"role": "user", "content": [{"type": "image", "image": "x.png"}]},
                           {"role": "assistant", "content": "A cat."}]}]
    with pytest.raises(UserError, match="'messages'\\[0\\] has a 'image' part; hfllm trains on text parts only"):
        formats.normalise(load_dataset(write_jsonl(tmp_path / "p.jsonl", parts)), "sft", "p.jsonl")
    ds, _, _ = formats.normalise(load_dataset(write_jsonl(tmp_path / "p1.jsonl", parts[:1])), "sft", "p1.jsonl")
    assert ds[0]["messages"][0]["content"] == "Look\nhere"

    tools = [{"messages": [{"role": "user", "content": "Weather in Paris?"},
                           {"role": "assistant", "content": None, "tool_calls": [
                               {"type": "function", "function": {"name": "weather", "arguments": {"city": "Paris"}}}]},
                           {"role": "tool", "content": "18 C"}, {"role": "assistant", "content": "18 C in Paris."}]}]
    ds, _, _ = formats.normalise(load_dataset(write_jsonl(tmp_path / "t.jsonl", tools)), "sft", "t.jsonl")
    call = ds[0]["messages"][1]["tool_calls"][0]["function"]
    assert call == {"name": "weather", "arguments": '{"city": "Paris"}'} and ds[0]["messages"][2]["role"] == "tool"


def test_prompts_for_rl_from_pairs_and_conversations(hh_file, tmp_path):
    prompts = formats.prompts_for_rl(load_dataset(hh_file), hh_file)
    assert len(prompts) == 37 and prompts.column_names == ["prompt"]
    assert prompts[0]["prompt"][-1] == {"role": "user", "content": "Well?"}
    chats = [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
                           {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Bye."}]}]
    prompts = formats.prompts_for_rl(load_dataset(write_jsonl(tmp_path / "m.jsonl", chats)), "m.jsonl")
    assert [m["content"] for m in prompts[0]["prompt"]] == ["Hi", "Hello.", "Bye"]
    with pytest.raises(UserError, match="RL takes prompts from 'prompt', 'messages', 'conversations'"):
        formats.prompts_for_rl(load_dataset(write_jsonl(tmp_path / "x.jsonl", [{"text": "a"}])), "x.jsonl")


def test_reward_skips_bad_hh_rows_and_records_them(tiny_pretrained, hh_file, tmp_path, capsys):
    out = tmp_path / "reward"
    assert run_cli("reward", "--model_name_or_path", tiny_pretrained, "--dataset_name", hh_file,
                   "--eval_split_size", "0", *TINY_RUN, "--output_dir", out) == 0
    assert "2 of 40 rows skipped" in capsys.readouterr().out
    m = metrics(out)
    assert (m["rows_total"], m["rows_skipped"], m["rows_empty"], m["train_pairs"]) == (40, 2, 1, 37)
    from hfllm.hub.card import result_table

    assert result_table(m)["rows_skipped"] == 2  # the model card's results table shows the counts


def test_reward_strict_refuses(tiny_pretrained, hh_file, tmp_path, capsys):
    assert run_cli("reward", "--model_name_or_path", tiny_pretrained, "--dataset_name", hh_file, "--strict",
                   "true", *TINY_RUN, "--output_dir", tmp_path / "r") == 2
    assert "row 7: 'chosen' and 'rejected' transcripts must share" in capsys.readouterr().err


def test_sft_on_sharegpt_and_tool_calls(tiny_pretrained, tmp_path, capsys):
    rows = [{"conversations": [{"from": "human", "value": f"What is {i} + 1?"}, {"from": "gpt", "value": f"{i + 1}."}]}
            for i in range(12)]
    out = tmp_path / "sft"
    assert run_cli("sft", "--model_name_or_path", tiny_pretrained, "--dataset_name",
                   write_jsonl(tmp_path / "share.jsonl", rows), *TINY_RUN, "--output_dir", out) == 0
    assert metrics(out)["dataset_format"] == "messages" and metrics(out)["train_rows"] == 12
    # hfllm's own template (the tiny model's) renders no tool calls: those rows go, with a line.
    call = {"type": "function", "function": {"name": "add", "arguments": {"a": 1}}}
    chats = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
             for i in range(10)] + [{"messages": [{"role": "user", "content": "add"},
                                                  {"role": "assistant", "content": "", "tool_calls": [call]},
                                                  {"role": "tool", "content": "2"},
                                                  {"role": "assistant", "content": "2."}]}]
    out = tmp_path / "sft-tools"
    assert run_cli("sft", "--model_name_or_path", tiny_pretrained, "--dataset_name",
                   write_jsonl(tmp_path / "tools.jsonl", chats), *TINY_RUN, "--output_dir", out) == 0
    assert "1 of 11 conversations skipped: they have tool calls" in capsys.readouterr().out
    assert metrics(out)["train_rows"] == 10


def test_grpo_takes_prompts_from_a_preference_file(tiny_pretrained, hh_file, tmp_path):
    out = tmp_path / "grpo"
    assert run_cli("grpo", "--model_name_or_path", tiny_pretrained, "--dataset_name", hh_file,
                   "--eval_dataset_name", hh_file, "--eval_samples", "0", "--reward_funcs", "length_penalty",
                   "--max_steps", "1", "--per_device_train_batch_size", "4", "--num_generations", "2",
                   "--max_completion_length", "8", "--output_dir", out, *QUIET) == 0
    assert metrics(out)["global_step"] == 1


@pytest.fixture
def corpus_with_bad_rows(tmp_path):
    """200 texts of the built-in corpus, with a null, a number and a list in the text column (rows 11, 51, 151)."""
    from hfllm.data.builtin import builtin_path

    rows = [json.loads(line) for line in builtin_path("pretrain").read_text().splitlines()[:200]]
    for i, bad in ((10, None), (50, 5), (150, ["a list"])):
        rows.insert(i, {"text": bad})
    return write_jsonl(tmp_path / "corpus.jsonl", rows)


def test_tokenizer_skips_and_counts_non_text_rows_and_strict_refuses(corpus_with_bad_rows, tmp_path, capsys):
    out = tmp_path / "tok"
    assert run_cli("tokenizer", "--dataset_name", corpus_with_bad_rows, "--vocab_size", "300", "--output_dir", out) == 0
    said = capsys.readouterr().out
    assert f"{corpus_with_bad_rows}: 3 of 203 rows skipped: 1 'text' must be text, not null (row 11); 1 'text' must " \
        "be text, not a number (row 51); 1 'text' must be text, not a list (row 151); --strict refuses them" in said
    m = metrics(out)
    assert (m["rows_total"], m["rows_skipped"], m["train_texts"] + m["held_out_texts"]) == (203, 3, 200)
    assert run_cli("tokenizer", "--dataset_name", corpus_with_bad_rows, "--strict", "true", "--output_dir",
                   tmp_path / "strict") == 2
    assert f"{corpus_with_bad_rows}, row 11: 'text' must be text, not null" in capsys.readouterr().err
    assert not (tmp_path / "strict").exists()
    assert run_cli("tokenizer", "--dataset_name", corpus_with_bad_rows, "--max_bad_share", "0.01", "--output_dir",
                   tmp_path / "share") == 2
    assert "3 of 203 rows fail the checks, more than --max_bad_share 0.01 allows" in capsys.readouterr().err


def test_pretrain_skips_and_counts_non_text_rows_and_strict_refuses(tiny_tokenizer, corpus_with_bad_rows, tmp_path,
                                                                    capsys):
    from conftest import TINY_MODEL_FLAGS

    out = tmp_path / "pre"
    flags = ["pretrain", "--tokenizer_name_or_path", tiny_tokenizer, "--dataset_name", corpus_with_bad_rows,
             *TINY_MODEL_FLAGS, "--eval_split_size", "0", "--save_strategy", "no", *QUIET]
    assert run_cli(*flags, "--max_steps", "1", "--output_dir", out) == 0
    assert "3 of 203 rows skipped: 1 'text' must be text, not null (row 11);" in capsys.readouterr().out
    assert (metrics(out)["rows_total"], metrics(out)["rows_skipped"]) == (203, 3)
    assert run_cli(*flags, "--max_steps", "1", "--strict", "true", "--output_dir", tmp_path / "strict") == 2
    assert f"{corpus_with_bad_rows}, row 11: 'text' must be text, not null" in capsys.readouterr().err
    assert not (tmp_path / "strict").exists()
