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

from hfllm import model as hfllm_model
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
    from hfllm.app import handlers as h

    folder, marker = pickled
    proof = tmp_path / "proof"  # the payload is real: unpickled without weights_only, it runs
    torch.save(_Payload(proof), tmp_path / "proof.bin")
    torch.load(tmp_path / "proof.bin", weights_only=False)
    assert proof.exists()

    words = f"{folder} holds its weights only as a pickle file (pytorch_model.bin), which can run code when loaded"
    assert run_cli("generate", "--model", folder, "--prompt", "the cat") == 2
    assert words in capsys.readouterr().err
    for load in (hfllm_model.load_causal_lm, hfllm_model.load_sequence_classifier, h.load_model, h.load_reward):
        with pytest.raises(UserError, match="hfllm loads safetensors only"):
            load(str(folder))
    assert not marker.exists()


def test_adapter_with_pickled_weights_is_refused(work, tmp_path):  # noqa: F811
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    for name in ("adapter_config.json", "tokenizer.json", "tokenizer_config.json"):
        (adapter / name).write_bytes((work / "adapter" / name).read_bytes())
    from safetensors.torch import load_file

    torch.save(load_file(work / "adapter" / "adapter_model.safetensors"), adapter / "adapter_model.bin")
    with pytest.raises(UserError, match="adapter_model.bin.*hfllm loads safetensors only"):
        hfllm_model.load_causal_lm(str(adapter))


@pytest.fixture
def spy(monkeypatch):
    """Records the keyword arguments every from_pretrained got."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    calls = []
    for cls in (AutoModelForCausalLM, AutoTokenizer):
        original = cls.from_pretrained.__func__

        def recording(klass, name, *args, _original=original, _cls=cls, **kwargs):
            calls.append((_cls.__name__, kwargs))
            return _original(klass, name, *args, **kwargs)
        monkeypatch.setattr(cls, "from_pretrained", classmethod(recording))
    monkeypatch.setattr(hfllm_model, "_warned_remote", set())  # warnings are once per process and repo
    return calls


def test_remote_code_is_off_and_weights_are_safetensors_by_default(work, spy, capsys):  # noqa: F811
    assert run_cli("generate", "--model", work / "model", "--prompt", "the cat", "--max_new_tokens", "2") == 0
    assert {name for name, _ in spy} == {"AutoModelForCausalLM", "AutoTokenizer"}
    assert all(kwargs["trust_remote_code"] is False for _, kwargs in spy)
    assert all(kwargs["use_safetensors"] is True for name, kwargs in spy if name == "AutoModelForCausalLM")
    assert "trust_remote_code" not in capsys.readouterr().err


@pytest.mark.parametrize("how", ["flag", "config"])
def test_remote_code_when_turned_on_is_named_in_one_warning(work, spy, capsys, tmp_path, how):  # noqa: F811
    argv = ["generate", "--model", work / "model", "--prompt", "the cat", "--max_new_tokens", "2"]
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


def test_ppo_checkpoint_state_loads_with_weights_only(tmp_path):
    """What hfllm ppo saves as state.pt loads with weights_only=True, so the change above is safe."""
    layer = torch.nn.Linear(4, 4)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=1e-3, eps=1e-5)
    layer(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    torch.save({"optimizer": optimizer.state_dict(), "step": 7, "kl_coef": 0.05}, tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert state["step"] == 7 and state["optimizer"]["param_groups"][0]["eps"] == 1e-5
    assert json.dumps(state["kl_coef"])
