"""Dataset formats: each one from a small file, and every malformed-row case's message."""

import json

import pytest

from hfllm.data import formats
from hfllm.data.load import load_dataset
from hfllm.errors import UserError


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path)


def load(tmp_path, rows, kind="sft", name="d.jsonl"):
    path = write_jsonl(tmp_path / name, rows)
    return formats.normalise(load_dataset(path), kind, path)


MSG = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
       {"role": "assistant", "content": "Hello."}]


def test_text(tmp_path):
    ds, fmt, rows = load(tmp_path, [{"text": "a b c"}, {"text": "  "}])
    assert fmt == "text" and len(ds) == 1 and rows.empty == 1 and not rows.skipped


def test_messages_keep_system_prompt_and_answer_key(tmp_path):
    ds, fmt, _ = load(tmp_path, [{"messages": MSG, "answer": "Hello"}])
    assert fmt == "messages" and ds[0]["messages"][0]["role"] == "system" and ds[0]["answer"] == "Hello"


def test_prompt_completion_plain_and_conversational(tmp_path):
    ds, fmt, _ = load(tmp_path, [{"prompt": "2 + 2 =", "completion": " 4"}])
    assert fmt == "prompt_completion" and ds[0]["completion"] == " 4"
    ds, fmt, _ = load(tmp_path, [{"prompt": MSG[:2], "completion": MSG[2:]}], name="c.jsonl")
    assert ds[0]["completion"][0]["role"] == "assistant"


def test_alpaca_becomes_conversational(tmp_path):
    rows = [{"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
            {"instruction": "Say hi.", "input": "", "output": "Hi!"}, {"instruction": "Nothing.", "output": ""}]
    ds, fmt, report = load(tmp_path, rows)
    assert fmt == "alpaca" and report.empty == 1
    assert ds[0]["prompt"] == [{"role": "user", "content": "Add the numbers.\n\n2 and 3"}]
    assert ds[1]["prompt"][0]["content"] == "Say hi." and ds[1]["completion"][0]["content"] == "Hi!"


def test_preference_plain_and_conversational(tmp_path):
    ds, fmt, _ = load(tmp_path, [{"prompt": "Q?", "chosen": "good", "rejected": "bad"}], "preference")
    assert fmt == "preference" and ds[0]["chosen"] == "good"
    rows = [{"prompt": MSG[1:2], "chosen": [MSG[2]], "rejected": [{"role": "assistant", "content": "Go away."}]}]
    ds, fmt, _ = load(tmp_path, rows, "preference", "c.jsonl")
    assert ds[0]["rejected"][0]["content"] == "Go away."


def test_hh_transcripts_split_into_prompt_and_answers(tmp_path):
    shared = "\n\nHuman: What is 2 + 2?\n\nAssistant: Let me think.\n\nHuman: Well?"
    rows = [{"chosen": shared + "\n\nAssistant: It is 4.", "rejected": shared + "\n\nAssistant: No idea."}]
    ds, fmt, _ = load(tmp_path, rows, "preference")
    assert fmt == "implicit_preference"
    assert ds[0]["prompt"] == [{"role": "user", "content": "What is 2 + 2?"},
                               {"role": "assistant", "content": "Let me think."}, {"role": "user", "content": "Well?"}]
    assert ds[0]["chosen"] == [{"role": "assistant", "content": "It is 4."}]
    assert ds[0]["rejected"] == [{"role": "assistant", "content": "No idea."}]


@pytest.mark.parametrize("kind,rows,message", [
    ("sft", [{"text": "ok"}, {"messages": "hello"}], "row 1: 'messages' must be a non-empty list"),
    ("sft", [{"body": "ok"}], "fits no SFT format"),
    ("sft", [{"messages": MSG}, {"messages": [{"role": "user"}]}], "row 2: 'messages'[0] must have 'role' and 'content'"),
    ("sft", [{"messages": [{"role": "robot", "content": "x"}]}], "row 1: 'messages'[0] has role 'robot'"),
    ("sft", [{"messages": MSG[:2]}], "row 1: the last message of 'messages' must be the assistant's answer"),
    ("sft", [{"prompt": "a", "completion": None}], "row 1: 'completion' is missing"),
    ("sft", [{"instruction": "", "output": "x"}], "row 1: 'instruction' must be a non-empty string"),
    ("preference", [{"prompt": "q", "chosen": "same", "rejected": "same"}], "row 1: 'chosen' and 'rejected' are identical"),
    ("preference", [{"prompt": "q", "chosen": "a"}], "is not a preference dataset"),
    ("preference", [{"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: OTHER\n\nAssistant: c"}],
     "must share every turn but the last"),
    ("sft", [{"text": ""}], "has no usable rows (1 had empty answers)"),
])
def test_malformed_rows_name_file_row_and_field(tmp_path, kind, rows, message):
    with pytest.raises(UserError, match=None) as info:
        load(tmp_path, rows, kind)
    assert message in str(info.value)
    assert "d.jsonl" in str(info.value)


def test_other_file_types_and_missing_columns(tmp_path):
    (tmp_path / "a.csv").write_text("prompt,completion\nhi,there\n")
    ds, fmt, _ = formats.normalise(load_dataset(str(tmp_path / "a.csv")), "sft", "a.csv")
    assert fmt == "prompt_completion"
    (tmp_path / "e.jsonl").write_text("")
    with pytest.raises(UserError, match="is empty"):
        load_dataset(str(tmp_path / "e.jsonl"))
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(UserError, match="could not read dataset"):
        load_dataset(str(tmp_path / "bad.jsonl"))
