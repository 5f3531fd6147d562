"""The playground's Run tab: the report card hfllm run wrote (hfllm/app/run_report.py)."""

import shutil
from pathlib import Path

from hfllm.app import models as m
from hfllm.app.run_report import report_view



def write_run(folder: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True)
    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 1])
    fig.savefig(folder / "report-sft-loss.png")
    plt.close(fig)
    (folder / "report.md").write_text("# Report card: x\n\n## What each stage did\n\n- **sft** learned to answer.\n\n"
                                      "## sft (hfllm sft)\n\n![sft: loss](report-sft-loss.png)\n\n"
                                      "![sft: before and after](report-sft-before-after.png)\n")
    return folder


def test_report_view_splits_text_and_pictures(tmp_path):
    run = write_run(tmp_path / "run")
    text, pictures = report_view(run)
    assert "- **sft** learned to answer." in text and "![" not in text
    assert pictures == [(str(run / "report-sft-loss.png"), "sft: loss")]  # the missing PNG is left out
    assert "hfllm chat runs/tiny" in report_view(None)[0]
    assert "No report card in" in report_view(tmp_path)[0] and report_view(tmp_path)[1] == []


def test_run_tab_shows_the_report_card(tiny_pretrained, tmp_path):
    from hfllm.app.layout import build_app

    run = write_run(tmp_path / "run")
    shutil.copytree(tiny_pretrained, run / "sft")
    models, _, first_run = m.find_models([str(run)])
    assert first_run == run
    demo = build_app({name: m.load_model(path) for name, path in models.items()}, None, tmp_path / "f.jsonl",
                     run_dir=first_run)
    components = {c.get("props", {}).get("elem_id"): c["props"] for c in demo.config["components"]}
    assert "learned to answer" in components["run-report"]["value"]
    assert len(components["run-pictures"]["value"]) == 1
    assert any(c["props"].get("label") == "Run" for c in demo.config["components"] if c.get("type") == "tabitem")
