"""KTO, ORPO and SimPO on the built-in pairs; KTO's unpaired rows and the playground's votes."""

import json
import pytest

from conftest import QUIET, metrics, run_cli

PAIR_FLAGS = ["--dataset_name", "builtin:preference", "--eval_dataset_name", "builtin:preference_eval",
              "--max_steps", "60", "--per_device_train_batch_size", "16", "--max_length", "96",
              "--save_strategy", "no", "--eval_samples", "208", "--seed", "0", *QUIET]


# From the pretrained model, which prefers the chosen answer of 75% of the held-out pairs (room to learn:
# the SFT model starts at 92%). Measured on seeds 0 and 1 (60 steps, 2026-12-03): KTO margin +14.4 / +14.4,
# accuracy +1.5 / +2.5 points; KTO with LoRA margin +12.7 / +12.8, accuracy +3.0 / +3.0; ORPO margin
# +2.4 / +2.8, accuracy +5.5 / +7.5; SimPO margin +8.1 / +7.8, accuracy +5.0 / +5.5.
LEARNING = {
    "kto": (["--learning_rate", "1e-4"], 8.0, 0.005),
    "kto_lora": (["--use_peft", "--lora_r", "16", "--learning_rate", "5e-4"], 6.0, 0.01),
    "orpo": (["--learning_rate", "5e-4"], 1.0, 0.025),
    "simpo": (["--learning_rate", "2e-4"], 4.0, 0.025),
}


@pytest.mark.parametrize("case", LEARNING)
def test_prefers_the_chosen_answers_of_held_out_pairs(learned_pretrained, tmp_path, case):
    flags, margin_gain, accuracy_gain = LEARNING[case]
    out = tmp_path / case
    assert run_cli(case.split("_")[0], "--model_name_or_path", learned_pretrained, *PAIR_FLAGS, *flags,
                   "--output_dir", out) == 0
    m = metrics(out)
    print(case, {k: m[k] for k in m if k.startswith(("logprob_margin", "preference_accuracy", "answer_accuracy"))})
    assert m["logprob_margin"] > m["logprob_margin_before"] + margin_gain, m
    assert m["preference_accuracy"] >= m["preference_accuracy_before"] + accuracy_gain, m
    assert m["stage"] == case.split("_")[0] and m["global_step"] == 60
    assert (out / ("adapter_config.json" if "lora" in case else "model.safetensors")).is_file()


def kto_args(dataset_name, **extra):
    from hfllm.stages.kto import KTOScriptArguments

    return KTOScriptArguments(dataset_name=dataset_name, eval_split_size=0.25, **extra)


def test_votes_become_desirable_and_undesirable_rows_mixed_in_every_batch(tmp_path):
    """A vote in feedback.jsonl (as the playground writes it) is a pair: its two answers are one KTO row each,
    and the rows are shuffled, so that a batch (where KTO estimates its KL term) holds both kinds."""
    from hfllm.app.handlers import preference_row
    from hfllm.data.unpaired import load_train_eval

    votes = tmp_path / "feedback.jsonl"
    votes.write_text("".join(json.dumps(preference_row([{"role": "user", "content": f"What is {i} + 1?"}],
                                                       f"The answer is {i + 1}.", "Go away.", chosen_model="a",
                                                       rejected_model="b")) + "\n" for i in range(40)))
    train, eval_rows, held_out, fmt, dropped = load_train_eval(kto_args(str(votes)), seed=0)
    assert fmt == "preference" and dropped == 0
    assert len(train) == 60 and len(eval_rows) == 20 and len(held_out) == 10  # 30 + 10 pairs, split before
    assert sorted(train.column_names) == ["completion", "label", "prompt"]
    assert sum(train["label"]) == 30
    assert all(0 < sum(train["label"][i:i + 16]) < 16 for i in range(0, 48, 16)), train["label"]
    good = [r for r in train if r["label"]]
    assert all(r["completion"][0]["content"].startswith("The answer is") for r in good)
    held = {p[0]["content"] for p in held_out["prompt"]}
    assert not held & {r["prompt"][0]["content"] for r in train}  # no held-out vote is trained on


def test_unpaired_rows_train_as_they_are(tiny_pretrained, tmp_path):
    thumbs = tmp_path / "thumbs.jsonl"
    rows = [{"prompt": f"What does a {a} say?", "completion": f"A {a} says {s}.", "label": True}
            for a, s in [("cow", "moo"), ("dog", "woof"), ("cat", "meow"), ("duck", "quack")]]
    rows += [{"prompt": f"What does a {a} say?", "completion": "Go away.", "label": False}
             for a in ("cow", "dog", "cat", "pig")]
    thumbs.write_text("".join(json.dumps(r) + "\n" for r in rows * 3))
    out = tmp_path / "kto"
    assert run_cli("kto", "--model_name_or_path", tiny_pretrained, "--dataset_name", thumbs, "--max_steps", "2",
                   "--per_device_train_batch_size", "4", "--max_length", "64", "--save_strategy", "no",
                   "--output_dir", out, *QUIET) == 0
    m = metrics(out)
    assert m["dataset_format"] == "unpaired" and m["desirable_rows"] + m["undesirable_rows"] == m["train_rows"]
    assert "preference_accuracy" not in m  # no held-out pairs to compare on, so no pair numbers


@pytest.mark.parametrize("command, rows, flags, message", [
    ("kto", [{"prompt": "hi", "completion": "hello", "label": "yes"}], [],
     "row 1: 'label' must be true (a good answer) or false (a bad one), not 'yes'"),
    ("kto", [{"prompt": "hi", "completion": "hello", "label": True}] * 4, [],
     "has only desirable rows; KTO needs some of each (label true and false)"),
    ("kto", [{"chosen": "Hello!", "rejected": "Go away."}] * 4, [], "KTO needs the prompt apart from the answers"),
    ("simpo", [{"prompt": "hi", "chosen": "Hello!", "rejected": "Go away."}] * 4, ["--loss_type", "sigmoid"],
     "hfllm simpo trains with loss_type simpo (or alphapo), not 'sigmoid'"),
])
def test_bad_preference_inputs_are_one_line(tiny_pretrained, tmp_path, capsys, command, rows, flags, message):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run_cli(command, "--model_name_or_path", tiny_pretrained, "--dataset_name", data, "--eval_split_size", "0",
                   *flags, "--output_dir", tmp_path / "out", *QUIET) == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]
