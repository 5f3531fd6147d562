"""The playground's Run tab: the run's report card, as ``hfllm run`` wrote it (``<run_dir>/report.md`` and the
PNGs beside it; hfllm.report)."""

from __future__ import annotations

import re
from pathlib import Path

from hfllm.report import REPORT

IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)\s]+)\)$")  # a line that is one picture, as hfllm.report writes them


def report_view(run_dir: str | Path | None) -> tuple[str, list[tuple[str, str]]]:
    """(the report's text without its picture lines, [(PNG path, caption)] in the report's order), or a note
    saying why there is none."""
    if run_dir is None:
        return "No run folder is open: start the playground on one (`hfllm chat runs/tiny`) to see its report.", []
    path = Path(run_dir) / REPORT
    if not path.is_file():
        return f"No report card in {run_dir} yet: `hfllm run` writes `{path}` when a run ends.", []
    text, pictures = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = IMAGE.match(line.strip())
        if match is None:
            text.append(line)
        elif (Path(run_dir) / match[2]).is_file():  # a picture removed since is left out, not shown broken
            pictures.append((str(Path(run_dir) / match[2]), match[1]))
    return "\n".join(text), pictures
