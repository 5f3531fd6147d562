"""PPO update time per sample and where it goes, vs GRPO on the same prompts.

    python bench/bench_rl.py
    python bench/bench_rl.py --quick

`hfllm ppo --config configs/tiny/ppo.yaml` and `hfllm grpo --config configs/tiny/grpo.yaml` run in this
process on the same policy (tiny preset, random weights, saved as a stage folder), the same
reward (a random one-output reward model + the answer_partial rule, weights 1 and 3, as the PPO
recipe), the same prompts (builtin:questions), 16 sampled answers of at most 24 tokens per update
(PPO: 16 prompts; GRPO: 4 prompts x 4 answers), held-out evaluation off.

The time goes into phases by wrapping, from outside, the functions each trainer calls:
generation (transformers' generate), reward (the reward functions), reference (log-probs under
the frozen reference), rollout forwards (PPO: old log-probs and values under no_grad) and the
update (everything else in the step: PPO's 4 epochs x 2 mini-batches or GRPO's one loss, forward,
backward, optimizer). A step runs from one generate call to the next; the first step (warm-up)
and the last (saving follows) are left out; the phases are means over the others.
Per sample = per sampled answer.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

from statistics import mean

from common import QUIET, ROOT, hfllm_cli, load_average, random_model, write_json

SAMPLES = 16  # answers per update, both algorithms


class Phases:
    def __init__(self):
        self.step_starts: list[float] = []
        self.seconds = defaultdict(lambda: defaultdict(float))  # step -> phase -> seconds
        self.calls_this_step = 0

    def wrap(self, name, fn, starts_step=False):
        @functools.wraps(fn)  # the trainers log rewards under their functions' names
        def timed(*args, **kwargs):
            start = time.perf_counter()
            if starts_step:
                self.step_starts.append(start)
                self.calls_this_step = 0
            try:
                return fn(*args, **kwargs)
            finally:
                phase = name(*args) if callable(name) else name
                self.seconds[len(self.step_starts) - 1][phase] += time.perf_counter() - start
        return timed

    def per_sample_ms(self, end: float) -> dict:
        """Mean over the steps between the first and the last (means add up), in ms per sampled answer."""
        starts = self.step_starts + [end]
        steps = range(1, len(self.step_starts) - 1)
        out = {"total": mean([starts[s + 1] - starts[s] for s in steps])}
        for phase in {p for s in steps for p in self.seconds[s]}:
            out[phase] = mean([self.seconds[s][phase] for s in steps])
        out["update"] = out["total"] - sum(v for k, v in out.items() if k not in ("total", "update forwards"))
        return {k: round(1000 * v / SAMPLES, 1) for k, v in out.items()}


@contextmanager
def patched(target, name: str, replacement):
    original = getattr(target, name)
    setattr(target, name, replacement(original))
    try:
        yield
    finally:
        setattr(target, name, original)


def timed_rewards(phases: Phases, build):
    def build_and_time(*args, **kwargs):
        funcs = build(*args, **kwargs)
        return [phases.wrap("reward", f) for f in funcs]
    return build_and_time


def ppo(policy: str, reward: str, steps: int, out: Path) -> dict:
    from transformers import GenerationMixin

    from hfllm.stages.ppo import loop as stage

    phases = Phases()

    def logprob_phase(*args):  # per step: the policy's old log-probs first, then the reference's
        phases.calls_this_step += 1
        return "rollout forwards" if phases.calls_this_step == 1 else "reference"

    import torch
    values = lambda *a: "rollout forwards" if not torch.is_grad_enabled() else "update forwards"  # noqa: E731
    with patched(GenerationMixin, "generate", lambda f: phases.wrap("generation", f, starts_step=True)), \
            patched(stage, "forward_logprobs", lambda f: phases.wrap(logprob_phase, f)), \
            patched(stage, "token_values", lambda f: phases.wrap(values, f)), \
            patched(stage, "build_reward_funcs", lambda f: timed_rewards(phases, f)):
        hfllm_cli("ppo", "--config", ROOT / "configs/tiny/ppo.yaml", "--model_name_or_path", policy,
                  "--reward_model_name_or_path", reward, "--max_steps", steps, "--eval_samples", 0, "--save_steps", 0,
                  "--per_device_train_batch_size", SAMPLES, "--output_dir", out, "--disable_tqdm", "true")
        result = phases.per_sample_ms(time.perf_counter())
    result.pop("update forwards", None)  # inside the update's time, counted there
    return result


def grpo(policy: str, reward: str, steps: int, out: Path) -> dict:
    import torch
    from transformers import GenerationMixin
    from trl import GRPOTrainer

    from hfllm.stages import group_rl

    phases = Phases()

    def logprob_phase(trainer, model, *args):
        if model is trainer.ref_model:
            return "reference"
        return "update forwards" if torch.is_grad_enabled() else "rollout forwards"

    with patched(GenerationMixin, "generate", lambda f: phases.wrap("generation", f, starts_step=True)), \
            patched(GRPOTrainer, "_get_per_token_logps_and_entropies", lambda f: phases.wrap(logprob_phase, f)), \
            patched(group_rl, "build_reward_funcs", lambda f: timed_rewards(phases, f)):
        hfllm_cli("grpo", "--config", ROOT / "configs/tiny/grpo.yaml", "--model_name_or_path", policy,
                  "--reward_model_name_or_path", reward, "--reward_funcs", "answer_partial", "--reward_weights", 1, 3,
                  "--dataset_name", "builtin:questions", "--max_steps", steps, "--eval_samples", 0,
                  "--per_device_train_batch_size", SAMPLES, "--num_generations", 4, "--output_dir", out, *QUIET)
        result = phases.per_sample_ms(time.perf_counter())
    result.pop("update forwards", None)
    return result


def reward_model(work: Path, policy: str) -> str:
    """A one-output sequence classifier of the policy's shape, random weights, saved with its tokenizer."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    out = work / "reward"
    config = AutoConfig.from_pretrained(policy, num_labels=1)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(policy).save_pretrained(out)
    return str(out)


def run(quick: bool = False, work: Path | None = None) -> dict:
    steps = 3 if quick else 6
    with tempfile.TemporaryDirectory(prefix="bench-rl-") as tmp:
        tmp = Path(tmp)
        sizes = dict(hidden_size=64, num_hidden_layers=2, intermediate_size=128) if quick else {}
        policy = random_model(work or tmp, "tiny", **sizes)
        reward = reward_model(tmp, policy)
        res = {"ppo": ppo(policy, reward, steps, tmp / "ppo"), "grpo": grpo(policy, reward, steps, tmp / "grpo"),
               "steps_measured": steps - 2, "samples_per_update": SAMPLES}
    return {"results": res, "markdown": markdown(res)}


def markdown(r: dict) -> str:
    phases = ["generation", "reward", "reference", "rollout forwards", "update", "total"]
    lines = [f"Milliseconds per sampled answer ({r['samples_per_update']} answers per update, mean of "
             f"{r['steps_measured']} updates after a first one):", "",
             "| | " + " | ".join(phases) + " |", "|---|" + "---:|" * len(phases)]
    for algo in ("ppo", "grpo"):
        row = r[algo]
        cells = [f"{row.get(p, 0):.1f} ({row.get(p, 0) / row['total']:.0%})" if p != "total" else f"{row[p]:.1f}"
                 for p in phases]
        lines.append(f"| {'`hfllm ppo`' if algo == 'ppo' else '`hfllm grpo`'} | " + " | ".join(cells) + " |")
    lines.append(f"\nPPO / GRPO time per answer: {r['ppo']['total'] / r['grpo']['total']:.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a toy model, 3 updates")
    parser.add_argument("--json", help="also write the results here")
    opts = parser.parse_args()
    print(f"load average {load_average()}")
    result = run(opts.quick)
    print(result["markdown"])
    write_json(opts.json, result)
