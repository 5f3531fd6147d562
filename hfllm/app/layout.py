"""The Gradio playground: ``build_app`` puts the tabs together (each tab's layout and wiring is a function in
hfllm/app/tabs/; what they compute is hfllm.app.handlers').

``hfllm chat`` (launch.py) loads the models and serves what ``build_app`` builds. Votes in the Compare tab append
preference pairs to a JSONL file that ``hfllm dpo --dataset_name runs/tiny/feedback.jsonl`` (or ``hfllm reward``)
trains on.
"""

from pathlib import Path

import gradio as gr

from hfllm.app import models as m
from hfllm.app.insight_tabs import insight_tabs
from hfllm.app.launch import CONCURRENCY
from hfllm.app.tabs.best_of_n import best_of_n_tab
from hfllm.app.tabs.chat import chat_tab
from hfllm.app.tabs.compare import compare_all_tab, compare_tab
from hfllm.app.tabs.data import data_tab
from hfllm.app.tabs.lab import lab_tab
from hfllm.app.tabs.run import run_tab
from hfllm.app.tabs.tokenizer import tokenizer_tab
from hfllm.app.ui import Shared, StopEvents
from hfllm.errors import UserError

QUEUE_SIZE = 64


def build_app(models: dict, reward=None, preference_file: str | Path = "runs/feedback.jsonl",
              concurrency_limit: int = CONCURRENCY, sources: dict | None = None,
              run_dir: str | Path | None = None) -> gr.Blocks:
    """The playground for loaded models: ``models`` maps a name to (model, tokenizer); ``reward`` is a
    hfllm.rewards.RewardModelScorer or None; ``sources`` maps a name to the folder or Hub id it was loaded
    from (the Data tab reads the training data a stage folder records, and Chat opens on the latest stage trained
    to chat); ``run_dir`` the run folder whose report card the Run tab shows."""
    if not models:
        raise UserError("no model to serve")
    names = list(models)
    opening, why = m.chat_opening(models, sources or {})
    with gr.Blocks(title="hfllm playground") as demo:
        gr.Markdown(f"## hfllm playground\nModels: {', '.join(f'`{n}`' for n in names)}"
                    + (" · reward model loaded" if reward is not None else ""))
        model_pick = gr.Dropdown(names, value=opening, label="model", visible=len(names) > 1)
        shared = Shared(models, model_pick, StopEvents())
        with gr.Tabs():
            chat_tab(shared, why)
            lab_tab(shared)
            compare_tab(shared, Path(preference_file))
            compare_all_tab(shared)
            best_of_n_tab(shared, reward)
            insight_tabs(shared.pick, names, reward)
            tokenizer_tab(shared, demo)
            data_tab(shared, sources)
            run_tab(run_dir)
    demo.queue(default_concurrency_limit=concurrency_limit, max_size=QUEUE_SIZE)
    return demo
