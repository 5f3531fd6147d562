"""The Best-of-N tab: N seeded answers to one prompt, ranked by the reward model when one is loaded."""

import gradio as gr

from hfllm.app import handlers as h
from hfllm.app.ui import Shared, sampling_controls, ui_errors, warn
from hfllm.errors import UserError

NO_REWARD = ("**No reward model loaded.** Answers are sampled but not scored. Train one with "
             "`hfllm reward --model_name_or_path runs/<name>/sft --output_dir runs/<name>/reward` and start "
             "`hfllm chat runs/<name>` (its reward stage is picked up), or pass `--reward_model_name_or_path PATH`.")


def best_of_n_tab(shared: Shared, reward) -> None:
    """``reward``: a hfllm.rewards.RewardModelScorer or None."""
    @ui_errors
    def best_of_n(prompt, model_name, system_prompt, n, expected, greedy, temperature, top_k, top_p, min_p,
                  repetition_penalty, max_new_tokens, seed):
        prompt = h.check_length(prompt or "")
        if not prompt.strip():
            raise UserError("type a prompt first")
        model, tokenizer = shared.pick(model_name)
        sampling = h.Sampling(greedy, temperature, top_k, top_p, min_p, repetition_penalty, max_new_tokens, seed)
        table, notes = h.best_of_n(model, tokenizer, reward, [{"role": "user", "content": prompt}],
                                   system_prompt or None, sampling, n, expected or "")
        warn(notes)
        return table

    with gr.Tab("Best-of-N", id="best"):
        if reward is None:
            gr.Markdown(NO_REWARD, elem_id="no-reward")
        bo_prompt = gr.Textbox(label="prompt", lines=2)
        with gr.Row():
            bo_n = gr.Slider(2, h.MAX_SAMPLES, 4, step=1, label="N answers")
            bo_expected = gr.Textbox(label="expected answer (optional: adds a rule check column)")
        bo_system = gr.Textbox(label="system prompt", placeholder="optional")
        bo_knobs = sampling_controls(seed=0)
        bo_btn = gr.Button("Sample and rank", variant="primary")
        bo_table = gr.Dataframe(headers=["rank", "sample", "score", "answer"] if reward is not None else
                                ["sample", "answer"], label="answers, best first", wrap=True)
        bo_btn.click(best_of_n, [bo_prompt, shared.model_pick, bo_system, bo_n, bo_expected, *bo_knobs], bo_table,
                     api_name="best_of_n")
