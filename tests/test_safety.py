"""Safe by default: safetensors only (a pickle is never unpickled), remote code only when asked and
then named in a warning, and torch.load only with weights_only=True."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch

from conftest import run_cli
from test_errors import work  # noqa: F401  (a fixture: tokenizer, tiny model, adapters)

from hfllm import loading
from hfllm.errors import UserError

ROOT = Path(__file__).resolve().parent.parent


class _Payload:
    """Unpickling this creates a file: the proof that a pickle was (not) loaded."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture
def pickled(work, tmp_path):  # noqa: F811
    """A model folder whose only weights are a pickle that runs code when loaded."""
    folder, marker = tmp_path / "pickled", tmp_path / "pwned"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((work / "model" / name).read_bytes())
    from safetensors.torch import load_file

    state = {**load_file(work / "model" / "model.safetensors"), "payload": _Payload(marker)}
    torch.save(state, folder / "pytorch_model.bin")
    return folder, marker


def test_pickle_only_folder_is_refused_and_never_unpickled(pickled, tmp_path, capsys):
    from hfllm.app import models as m

    folder, marker = pickled
    proof = tmp_path / "proof"  # the payload is real: unpickled without weights_only, it runs
    torch.save(_Payload(proof), tmp_path / "proof.bin")
    torch.load(tmp_path / "proof.bin", weights_only=False)
    assert proof.exists()

    words = f"{folder} holds its weights only as a pickle file (pytorch_model.bin), which can run code when loaded"
    assert run_cli("generate", "--model_name_or_path", folder, "--prompt", "the cat") == 2
    assert words in capsys.readouterr().err
    for load in (loading.load_causal_lm, loading.load_sequence_classifier, m.load_model, m.load_reward):
        with pytest.raises(UserError, match="hfllm loads safetensors only"):
            load(str(folder))
    assert not marker.exists()


RL = ["--max_steps", "1", "--per_device_train_batch_size", "2", "--eval_samples", "0", "--report_to", "none"]
# Every command that loads a model, given a pickle-only folder where it loads one ({model} is a safe model).
PICKLE_CASES = {
    "generate": ["generate", "--model_name_or_path", "{pickled}", "--prompt", "the cat"],
    "sft": ["sft", "--model_name_or_path", "{pickled}", "--max_steps", "1", "--report_to", "none"],
    "reward": ["reward", "--model_name_or_path", "{pickled}", "--max_steps", "1", "--report_to", "none"],
    "dpo": ["dpo", "--model_name_or_path", "{pickled}", "--max_steps", "1", "--report_to", "none"],
    "grpo": ["grpo", "--model_name_or_path", "{model}", "--reward_model_name_or_path", "{pickled_reward}",
             "--num_generations", "2", *RL],
    "rloo": ["rloo", "--model_name_or_path", "{model}", "--reward_model_name_or_path", "{pickled_reward}",
             "--num_generations", "2", *RL],
    "ppo-reward": ["ppo", "--model_name_or_path", "{model}", "--reward_model_name_or_path", "{pickled_reward}", *RL],
    "ppo-value": ["ppo", "--model_name_or_path", "{model}", "--reward_funcs", "answer_partial",
                  "--value_model_name_or_path", "{pickled}", *RL],
    "merge": ["merge", "--model_name_or_path", "{adapter}", "--output_dir", "{out}"],
    "push": ["push", "{adapter}", "--merge", "--repo_id", "me/x", "--dry_run", "--output_dir", "{out}"],
}


@pytest.mark.parametrize("case", list(PICKLE_CASES))
def test_every_command_refuses_a_pickle_before_unpickling_it(case, pickled, work, tmp_path, capsys):  # noqa: F811
    """The reward and value models of the RL stages went around the check once (from_pretrained directly)."""
    from hfllm.run_folder import write_metrics

    folder, marker = pickled
    adapter = tmp_path / "adapter-on-pickle"  # an adapter whose base is the pickle-only folder
    adapter.mkdir()
    for name in ("adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        (adapter / name).write_bytes((work / "adapter" / name).read_bytes())
    config = json.loads((work / "adapter" / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": str(folder)}))
    write_metrics(adapter, {}, stage="sft")
    reward = tmp_path / "pickled-reward"  # the same pickle, as a reward model (one-score classifier)
    reward.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "pytorch_model.bin"):
        (reward / name).write_bytes((folder / name).read_bytes())
    config = json.loads((folder / "config.json").read_text())
    (reward / "config.json").write_text(json.dumps({**config, "architectures": ["LlamaForSequenceClassification"],
                                                    "num_labels": 1}))
    values = {"pickled": folder, "pickled_reward": reward, "model": work / "model", "adapter": adapter,
              "out": tmp_path / "out"}
    folder = reward if "{pickled_reward}" in PICKLE_CASES[case] else folder
    argv = [a.format(**{k: str(v) for k, v in values.items()}) for a in PICKLE_CASES[case]]
    if argv[0] not in ("generate", "merge", "push"):
        argv += ["--output_dir", str(tmp_path / "out")]
    assert run_cli(*argv) == 2
    assert f"{folder} holds its weights only as a pickle file (pytorch_model.bin)" in capsys.readouterr().err
    assert not marker.exists()


def test_adapter_with_pickled_weights_is_refused(work, tmp_path):  # noqa: F811
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    for name in ("adapter_config.json", "tokenizer.json", "tokenizer_config.json"):
        (adapter / name).write_bytes((work / "adapter" / name).read_bytes())
    from safetensors.torch import load_file

    torch.save(load_file(work / "adapter" / "adapter_model.safetensors"), adapter / "adapter_model.bin")
    with pytest.raises(UserError, match="adapter_model.bin.*hfllm loads safetensors only"):
        loading.load_causal_lm(str(adapter))


def test_remote_code_is_off_and_weights_are_safetensors_by_default(work, spy, capsys):  # noqa: F811
    assert run_cli("generate", "--model_name_or_path", work / "model", "--prompt", "the cat", "--max_new_tokens", "2") == 0
    assert {name for name, _ in spy} == {"AutoModelForCausalLM", "AutoTokenizer"}
    assert all(kwargs["trust_remote_code"] is False for _, kwargs in spy)
    assert all(kwargs["use_safetensors"] is True for name, kwargs in spy if name == "AutoModelForCausalLM")
    assert "trust_remote_code" not in capsys.readouterr().err


@pytest.mark.parametrize("how", ["flag", "config"])
def test_remote_code_when_turned_on_is_named_in_one_warning(work, spy, capsys, tmp_path, how):  # noqa: F811
    argv = ["generate", "--model_name_or_path", work / "model", "--prompt", "the cat", "--max_new_tokens", "2"]
    if how == "flag":
        argv += ["--trust_remote_code", "true"]
    else:
        (tmp_path / "gen.yaml").write_text("trust_remote_code: true\n")
        argv += ["--config", tmp_path / "gen.yaml"]
    assert run_cli(*argv) == 0
    assert spy and all(kwargs["trust_remote_code"] is True for _, kwargs in spy)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "trust_remote_code" in line]
    assert warnings == [f"warning: trust_remote_code is on: Python code from '{(work / 'model').resolve()}' will run "
                        "on this machine; turn it on only for repos you trust"]


def _torch_loads(path: Path):
    """(line, weights_only value) of every torch.load call in a file."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
            flag = next((k.value for k in node.keywords if k.arg == "weights_only"), None)
            yield node.lineno, flag.value if isinstance(flag, ast.Constant) else flag


KNOWN_UNSAFE: set[str] = set()  # ppo.py's state.pt now loads with weights_only=True too


def test_every_torch_load_is_weights_only(tmp_path):
    sample = tmp_path / "sample.py"  # the walker sees every form of the call
    sample.write_text("import torch\ntorch.load('a', weights_only=True)\ntorch.load('b')\n"
                      "torch.load('c', weights_only=False)\nx = dict(load=1)\n")
    assert list(_torch_loads(sample)) == [(2, True), (3, None), (4, False)]
    unsafe = {}
    for path in sorted((ROOT / "hfllm").rglob("*.py")):
        bad = [line for line, flag in _torch_loads(path) if flag is not True]
        if bad:
            unsafe[str(path.relative_to(ROOT))] = bad
    assert set(unsafe) <= KNOWN_UNSAFE, f"torch.load without weights_only=True: {unsafe}"


def test_ppo_checkpoint_state_loads_with_weights_only(work, tmp_path):  # noqa: F811
    """What hfllm ppo's save_checkpoint writes (after a real optimizer step through accelerate) is complete,
    its state.pt loads with weights_only=True, and its policy and value model load through the safe loader."""
    from accelerate import Accelerator
    from transformers import AutoTokenizer

    from hfllm import run_folder
    from hfllm.stages.ppo import core
    from hfllm.stages.ppo.models import PolicyAndValue, save_checkpoint

    tokenizer = AutoTokenizer.from_pretrained(work / "model")
    policy = loading.load_causal_lm(str(work / "model"), dtype="float32")
    value = loading.load_sequence_classifier(str(work / "model"), num_labels=1, dtype="float32")
    value.config.pad_token_id = tokenizer.pad_token_id
    acc = Accelerator(cpu=True)
    wrapper, optimizer = acc.prepare(PolicyAndValue(policy, value),
                                     torch.optim.AdamW([p for p in policy.parameters()], lr=1e-3, eps=1e-5))
    ids = torch.tensor([[5, 6, 7, 8]])
    logits, values = wrapper(ids, torch.ones_like(ids), torch.arange(4)[None])
    (logits.mean() + values.mean()).backward()
    optimizer.step()
    kl_ctl = core.AdaptiveKLController(0.05, None)
    save_checkpoint(tmp_path, acc, wrapper, optimizer, 7, kl_ctl, tokenizer)

    folder = tmp_path / "checkpoint-7"
    assert run_folder.checkpoint_is_complete(folder) and run_folder.last_checkpoint(tmp_path) == str(folder)
    state = torch.load(folder / "state.pt", weights_only=True)
    assert state["step"] == 7 and state["kl_coef"] == 0.05 and state["optimizer"]["param_groups"][0]["eps"] == 1e-5
    optimizer.load_state_dict(state["optimizer"])  # what a resumed run does with it
    again = loading.load_causal_lm(str(folder / "policy"))
    assert torch.equal(again.model.embed_tokens.weight, policy.model.embed_tokens.weight)
    assert loading.load_sequence_classifier(str(folder / "value")).config.num_labels == 1


@pytest.mark.parametrize("name, text, line", [
    ("train.log", "step 1 loss 2.3\nstep 2 loss 2.1\nHF_TOKEN=hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789 set\n", 3),
    ("train.sh", "#!/bin/sh\nexport HF_TOKEN=hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789\nhfllm sft\n", 2),
    ("notes.jsonl", '{"token": "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"}\n', 1),
])
def test_push_refuses_a_token_in_any_file_it_would_upload(work, tmp_path, capsys, name, text, line):  # noqa: F811
    """Whatever the file's name: every file staged for upload is read."""
    import shutil

    from hfllm.run_folder import write_metrics

    stage = tmp_path / "runs" / "x" / "pretrain"
    shutil.copytree(work / "model", stage)
    (stage / name).write_text(text)
    (stage / "hfllm_run.json").write_text(json.dumps({"stage": "pretrain", "inputs": {"dataset_name": "/home/me"}}))
    write_metrics(stage, {}, stage="pretrain")
    out = tmp_path / "preview"
    assert run_cli("push", stage, "--repo_id", "me/x", "--dry_run", "--output_dir", out) == 2
    err = capsys.readouterr().err
    assert f"hfllm push: error: refusing to push: {name} line {line} holds what looks like a Hugging Face token; " \
           "remove it from the folder first" in err and "hf_AbCd" not in err
    assert not out.exists() and not list(tmp_path.glob(".preview*"))
    (stage / name).write_text("no secrets here\n")
    assert run_cli("push", stage, "--repo_id", "me/x", "--dry_run", "--output_dir", out) == 0
    assert (out / name).is_file() and not (out / "hfllm_run.json").exists()
