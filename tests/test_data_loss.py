"""--overwrite replaces only a folder hfllm wrote for the same stage; nothing else is ever removed.

Each case of issue 19's data-loss list: the command is refused with one line saying what is
there (exit 2), and every file under the work folder is as it was, byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
from test_errors import work  # noqa: F401  (a fixture: corpus, tokenizer, tiny model, adapters)

from hfllm import run_folder


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def place(work, tmp_path, monkeypatch):  # noqa: F811
    """A user's folder: the fixtures' model, adapter (on that model), tokenizer and corpus, copied."""
    import shutil

    root = tmp_path / "place"
    for name in ("model", "tok", "corpus.txt"):
        (shutil.copytree if (work / name).is_dir() else shutil.copy)(work / name, root / name)
    shutil.copytree(work / "adapter", root / "adapter")
    config = json.loads((root / "adapter" / "adapter_config.json").read_text())
    (root / "adapter" / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path":
                                                                      str(root / "model")}))
    (root / "data").mkdir()
    (root / "data" / "corpus.txt").write_text((work / "corpus.txt").read_text())
    (root / "mine").mkdir()
    (root / "mine" / "thesis.tex").write_text("years of work\n")
    monkeypatch.chdir(root)
    return root


def refused(capsys, *argv) -> str:
    capsys.readouterr()
    assert run_cli(*argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    return lines[0].split(": error: ", 1)[1]


TOKENIZER = ["tokenizer", "--dataset_name", "corpus.txt", "--vocab_size", "300"]


@pytest.mark.parametrize("argv, message", [
    (["merge", "--model_name_or_path", "adapter", "--output_dir", "adapter", "--overwrite"],
     "output_dir adapter is the model this command reads (--model_name_or_path); choose another --output_dir"),
    (["merge", "--model_name_or_path", "adapter", "--output_dir", "model", "--overwrite"],
     "output_dir model is the base model of the adapter this command reads (--model_name_or_path); choose another "
     "--output_dir"),
    (["sft", "--model_name_or_path", "model", "--output_dir", "model", "--overwrite"],
     "output_dir model is the model this command reads (--model_name_or_path); choose another --output_dir"),
    (["tokenizer", "--dataset_name", "data/corpus.txt", "--vocab_size", "300", "--output_dir", "data", "--overwrite"],
     "output_dir data holds data/corpus.txt, the dataset this command reads (--dataset_name); choose another "
     "--output_dir"),
    ([*TOKENIZER, "--output_dir", "mine", "--overwrite"],
     "output_dir mine is not empty: it holds thesis.tex, which hfllm did not write; choose another --output_dir"),
    ([*TOKENIZER, "--output_dir", ".", "--overwrite"],
     "output_dir . is the working folder; a run writes a folder of its own: choose a new one such as "
     "runs/<name>/tokenizer"),
    ([*TOKENIZER, "--output_dir", "..", "--overwrite"],
     "output_dir .. is the working folder or a folder above it; a run writes a folder of its own: choose a new "
     "one such as runs/<name>/tokenizer"),
    (["pretrain", "--tokenizer_name_or_path", "tok", "--output_dir", "tok", "--overwrite"],
     "output_dir tok is the tokenizer this command reads (--tokenizer_name_or_path); choose another --output_dir"),
    (["sft", "--model_name_or_path", "model", "--output_dir", "tok", "--overwrite"],
     "output_dir tok holds a finished tokenizer run, which hfllm sft may not replace or resume; choose another "
     "--output_dir"),
    (["export", "--model_name_or_path", "model", "--format", "hf", "--output_dir", "mine", "--overwrite"],
     "output_dir mine is not empty: it holds thesis.tex, which hfllm export did not write; choose another "
     "--output_dir"),
], ids=["merge-into-adapter", "merge-into-base", "sft-into-model", "tokenizer-into-data", "users-files", "cwd",
        "parent", "pretrain-into-tokenizer", "another-stage", "export-into-users-files"])
def test_overwrite_never_removes_what_hfllm_did_not_write_for_the_stage(place, capsys, argv, message):
    before = snapshot(place.parent)
    assert refused(capsys, *argv) == message
    assert snapshot(place.parent) == before


def test_export_never_replaces_the_working_folder(place, capsys, monkeypatch):
    (place / "elsewhere" / "deep").mkdir(parents=True)
    (place / "elsewhere" / "deep" / "plan.md").write_text("mine\n")
    monkeypatch.chdir(place / "elsewhere" / "deep")
    before = snapshot(place.parent)
    for out, where in ((".", "the working folder"), ("..", "the working folder or a folder above it")):
        assert refused(capsys, "export", "--model_name_or_path", str(place / "model"), "--format", "hf",
                       "--output_dir", out, "--overwrite") == (
            f"output_dir {out} is {where}; an export writes a folder of its own: choose a new one such as "
            "exports/<name>")
    assert snapshot(place.parent) == before


def test_overwrite_replaces_the_stages_own_run_but_not_files_added_to_it(place, capsys):
    assert run_cli(*TOKENIZER, "--output_dir", "runs/tok") == 0
    assert json.loads((place / "runs/tok/hfllm_run.json").read_text())["stage"] == "tokenizer"
    assert run_cli(*TOKENIZER, "--output_dir", "runs/tok", "--overwrite", "--vocab_size", "290") == 0
    assert run_folder.read_metrics(place / "runs/tok")["vocab_size"] == 290
    (place / "runs/tok/notes.md").write_text("what I learned\n")
    before = snapshot(place)
    assert refused(capsys, *TOKENIZER, "--output_dir", "runs/tok", "--overwrite") == (
        "output_dir runs/tok holds files besides the tokenizer run hfllm wrote there (notes.md); move them away, or "
        "choose another --output_dir")
    assert snapshot(place) == before


def test_a_run_that_fails_on_its_way_leaves_the_folder_as_it_was(place, capsys):
    """Nothing is removed or written until the stage has loaded what it needs: bad data under --overwrite keeps
    the finished run."""
    assert run_cli(*TOKENIZER, "--output_dir", "runs/tok") == 0
    (place / "empty.txt").write_text("")
    before = snapshot(place)
    assert refused(capsys, "tokenizer", "--dataset_name", "empty.txt", "--output_dir", "runs/tok",
                   "--overwrite") == "dataset file empty.txt is empty"
    assert refused(capsys, "tokenizer", "--dataset_name", "empty.txt", "--output_dir", "runs/new") == \
        "dataset file empty.txt is empty"
    assert snapshot(place) == before and not (place / "runs/new").exists()


def interrupted(folder: Path, stage: str, **sources) -> None:
    """What a stage killed after its second checkpoint leaves: the marker and a complete checkpoint."""
    run_folder.Plan(folder, stage, sources).claim()
    (folder / "checkpoint-2").mkdir()
    (folder / "checkpoint-2" / "trainer_state.json").write_text(json.dumps({"global_step": 2}))


def test_a_stage_resumes_only_its_own_run(place, capsys):
    interrupted(place / "runs/x", "pretrain", tokenizer_name_or_path="tok")
    before = snapshot(place)
    assert refused(capsys, "sft", "--model_name_or_path", "model", "--output_dir", "runs/x") == (
        "output_dir runs/x holds an unfinished pretrain run, which hfllm sft may not replace or resume; choose "
        "another --output_dir")
    assert refused(capsys, "sft", "--model_name_or_path", "model", "--output_dir", "runs/x", "--overwrite") == (
        "output_dir runs/x holds an unfinished pretrain run, which hfllm sft may not replace or resume; choose "
        "another --output_dir")
    assert snapshot(place) == before


def test_an_interrupted_run_resumes_only_from_the_same_inputs(place, tmp_path):
    interrupted(place / "runs/sft", "sft", model_name_or_path="model", dataset_name="builtin:sft")
    plan = run_folder.prepare("runs/sft", overwrite=False, stage="sft",
                              sources={"model_name_or_path": str(place / "model"), "dataset_name": "builtin:sft"})
    assert plan.resume_from == "runs/sft/checkpoint-2" and not plan.replace
    with pytest.raises(run_folder.UserError, match="holds an interrupted sft run of --model_name_or_path .*model, "
                                                    "not tok; run it again with the same inputs"):
        run_folder.prepare("runs/sft", overwrite=False, stage="sft", sources={"model_name_or_path": "tok"})
    (place / "runs/old").mkdir(parents=True)  # checkpoints from before the marker: no stage to tell
    (place / "runs/old/checkpoint-2").mkdir()
    (place / "runs/old/checkpoint-2/trainer_state.json").write_text("{}")
    with pytest.raises(run_folder.UserError, match="did not record its stage"):
        run_folder.prepare("runs/old", overwrite=False, stage="sft")


def test_a_folder_holding_only_a_marker_is_a_fresh_start(place):
    """A run that failed after claiming its folder but before writing (the marker alone) is no one's run."""
    run_folder.Plan(place / "runs/a", "pretrain").claim()
    plan = run_folder.prepare("runs/a", overwrite=False, stage="sft")
    assert plan.resume_from is None and not plan.replace


PIPELINE = "run_dir: runs/p\nstages:\n  - name: {name}\n    command: tokenizer\n    args: {args}\n"
ARGS = "{dataset_name: corpus.txt, vocab_size: 300}"


@pytest.mark.parametrize("name, message", [
    ("'../../x'", "stage 1 has name '../../x'; a stage name is a folder name under run_dir: letters, digits, '-' "
                  "and '_'"),
    ("''", "stage 1 has name ''; a stage name is a folder name under run_dir: letters, digits, '-' and '_'"),
    ("'.'", "stage 1 has name '.'; a stage name is a folder name under run_dir: letters, digits, '-' and '_'"),
    ("3", "stage 1 has name 3; a stage name is a folder name under run_dir: letters, digits, '-' and '_'"),
    ("[a, b]", "stage 1 has name ['a', 'b']; a stage name is a folder name under run_dir: letters, digits, '-' "
               "and '_'"),
], ids=["outside", "empty", "dot", "integer", "list"])
def test_pipeline_stage_names_are_folder_names(place, capsys, name, message):
    (place / "p.yaml").write_text(PIPELINE.format(name=name, args=ARGS))
    before = snapshot(place.parent)
    assert refused(capsys, "run", "p.yaml") == f"p.yaml: {message}"
    assert snapshot(place.parent) == before


def test_rerun_of_no_stage_removes_nothing(place, capsys):
    (place / "p.yaml").write_text(PIPELINE.format(name="tok", args=ARGS))
    assert run_cli("run", "p.yaml") == 0
    before = snapshot(place)
    assert refused(capsys, "run", "p.yaml", "--rerun", "") == "no stage named '' in p.yaml; stages: tok"
    assert snapshot(place) == before
    assert run_cli("run", "p.yaml", "--rerun", "tok") == 0  # --rerun of the stage replaces it (its own run)


@pytest.mark.parametrize("args, message", [
    ("{dataset_name: '{later}/clean.jsonl'}", "stage 'tok' refers to '{later}' in dataset_name, which is a later "
                                              "stage; a stage can refer to the stages before it: none"),
    ("{dataset_name: '{tok}/x.txt'}", "stage 'tok' refers to '{tok}' in dataset_name, which is itself; a stage can "
                                      "refer to the stages before it: none"),
    ("{dataset_name: '{nothere}'}", "stage 'tok' refers to '{nothere}' in dataset_name, which is no stage; a stage "
                                    "can refer to the stages before it: none"),
], ids=["later", "itself", "unknown"])
def test_pipeline_references_are_checked_before_any_stage_runs(place, capsys, args, message):
    (place / "p.yaml").write_text(PIPELINE.format(name="tok", args=args) + "  - name: later\n    command: tokenizer\n")
    assert refused(capsys, "run", "p.yaml") == f"p.yaml: {message}"
    assert not (place / "runs").exists()


def test_pipeline_run_dir_that_is_a_file(place, capsys):
    (place / "p.yaml").write_text(PIPELINE.format(name="tok", args=ARGS))
    (place / "afile").write_text("x")
    assert refused(capsys, "run", "p.yaml", "--run_dir", "afile") == (
        "run_dir afile is a file; a run folder holds one folder per stage: choose a folder path")
