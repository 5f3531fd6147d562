"""Which models the playground serves, loading them, and what each was trained on (the Data tab).

Sources are stage folders, run folders (every finished model stage inside; the first reward stage
scores best-of-N), HF folders or Hub ids. A stage folder records its stage and options
(hfllm_run.json, hfllm_args.yaml), so its training data can be summarised again, through the model's
own tokenizer, as the stage printed it before training (hfllm.inspect.stage_summary).
"""

from __future__ import annotations

from pathlib import Path

import torch

from hfllm import run_folder
from hfllm.errors import UserError, first_line
from hfllm.stages import CHAT_STAGES, MODEL_STAGES, REWARD_STAGES


def is_run_folder(path: Path) -> bool:
    return (path.is_dir() and not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file()
            and any((path / stage).is_dir() for stage in (*MODEL_STAGES, *REWARD_STAGES)))


def find_models(sources: list[str]) -> tuple[dict[str, str], str | None, Path | None]:
    """Model names -> paths (or Hub ids), the first run folder's reward model, and the first run folder."""
    models, reward, first_run = {}, None, None
    for source in sources:
        path = Path(source).expanduser()
        if is_run_folder(path):
            first_run = first_run or path
            found = [s for s in MODEL_STAGES if run_folder.is_complete(path / s)]
            if not found:
                unfinished = [s for s in MODEL_STAGES if (path / s).is_dir()]
                raise UserError(f"run folder {source} holds no finished model stage"
                                + (f" ({', '.join(unfinished)} not finished: no metrics.json)" if unfinished else ""))
            for stage in found:
                models[_unique(models, f"{path.resolve().name}/{stage}")] = str(path / stage)
            done = [s for s in REWARD_STAGES if run_folder.is_complete(path / s)]
            if reward is None and done:
                reward = str(path / done[0])
        else:
            from hfllm.model_checks import check_model_kind
            from hfllm.loading import check_model_source

            check_model_source(source)  # before any model loads: a typo fails at once
            check_model_kind(source, "causal_lm", None, "chat")
            name = "/".join(path.resolve().parts[-2:]) if path.exists() else source
            models[_unique(models, name)] = source
    return models, reward, first_run


def chat_opening(models: dict, sources: dict[str, str]) -> tuple[str, str]:
    """The model the playground opens on, and one line saying why: the latest stage trained to chat (in pipeline
    order) of the first run that has one, else the first model whose tokenizer came with its own chat template,
    else the first model. ``models`` maps a name to (model, tokenizer), ``sources`` a name to its folder or id."""
    from hfllm.chat_template import CHAT_TEMPLATE

    names = list(models)
    where = {n: Path(sources[n]).expanduser().absolute() for n in names if n in sources}
    stages = {n: run_folder.recorded_stage(where[n]) if n in where and where[n].is_dir() else None for n in names}
    base = [n for n in names if stages[n] in MODEL_STAGES and stages[n] not in CHAT_STAGES]
    others = f"; choose another model above (`{base[0]}` is the base model: it continues text rather than " \
             "answering)" if base and len(names) > 1 else ""
    chat = [n for n in names if stages[n] in CHAT_STAGES]
    if chat:  # a run's stages are sibling folders (not resolved: a stage may be a link to a model elsewhere)
        run = sorted((n for n in chat if where[n].parent == where[chat[0]].parent),
                     key=lambda n: CHAT_STAGES.index(stages[n]))
        order = " → ".join(stages[n] for n in run)
        return run[-1], f"Chat opens on **{run[-1]}**, the latest stage trained to chat ({order}){others}."
    own = [n for n in names if stages[n] is None and models[n][1].chat_template != CHAT_TEMPLATE]
    if own:
        return own[0], f"Chat opens on **{own[0]}**: its tokenizer came with a chat template, so it was tuned to chat."
    if names[0] in base:
        return names[0], (f"Chat opens on **{names[0]}**: no model loaded was trained to chat, so it continues your "
                          "text rather than answering it.")
    return names[0], f"Chat opens on **{names[0]}**, the first model given: none is known to be trained to chat."


def feedback_file(sources: list[str], first_run: Path | None) -> Path:
    """Where Compare votes go: beside the run (the run folder given, or the one around a stage folder given);
    runs/feedback.jsonl when only Hub ids or other folders are served."""
    if first_run is not None:
        return first_run / "feedback.jsonl"
    for source in sources:
        path = Path(source).expanduser()
        if (path / run_folder.METRICS).is_file() or (path / run_folder.MARKER).is_file():  # an hfllm stage folder
            return path.resolve().parent / "feedback.jsonl"
    return Path("runs/feedback.jsonl")


def _unique(taken: dict, name: str) -> str:
    out, i = name, 2
    while out in taken:
        out, i = f"{name} ({i})", i + 1
    return out


def _device():
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(source: str, trust_remote_code: bool = False):
    """(model, tokenizer) ready for generation; any failure is a one-line UserError."""
    from hfllm.chat_template import ensure_chat_template
    from hfllm.loading import check_model_source, load_causal_lm, load_tokenizer

    check_model_source(source)
    try:
        tokenizer = load_tokenizer(source, trust_remote_code=trust_remote_code)
        model = load_causal_lm(source, trust_remote_code=trust_remote_code).to(_device()).eval()
    except UserError:
        raise
    except Exception as exc:  # safetensors, json, shape mismatches: one line, not a traceback
        raise UserError(f"could not load model '{source}': {first_line(exc, with_type=True)}") from None
    if ensure_chat_template(tokenizer):
        print(f"note: {source} has no chat template; the chat tab uses hfllm's (role markers as plain text)")
    return model, tokenizer


def load_reward(source: str, trust_remote_code: bool = False):
    """The reward model as hfllm.rewards' scorer: conversations in, one score each."""
    from hfllm.rewards import RewardModelScorer

    try:
        return RewardModelScorer(source, device=_device(), dtype="auto", trust_remote_code=trust_remote_code)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"could not load reward model '{source}': {first_line(exc, with_type=True)}") from None


def training_data(source: str, tokenizer) -> str:
    """What the model in ``source`` was trained on, as its stage summarised it before training (Markdown); a
    line saying why not for a model that is not an hfllm stage folder, or whose data cannot be read now."""
    import copy
    import dataclasses
    import importlib

    from hfllm.config import load_yaml, parse_args
    from hfllm.inspect import DATA_OPTIONS, INSPECTED_AS, stage_summary
    from hfllm.stages import STAGES
    from hfllm.stages._frame import stage_defaults

    folder = Path(source).expanduser()
    stage = run_folder.recorded_stage(folder) if folder.is_dir() else None
    recorded = folder / "hfllm_args.yaml"
    if stage not in INSPECTED_AS or not recorded.is_file():
        why = f"its stage ({stage}) trains on no data hfllm inspect reads" if stage else "no hfllm stage folder"
        return f"{source}: {why}, so there is no training data to show."
    module = importlib.import_module(STAGES[stage].module)
    try:
        # The options that shape the data, as recorded (the others resolved at run time, e.g. report_to: [], do
        # not all parse again): the stage's script arguments, and its config's DATA_OPTIONS.
        script = {f.name for f in dataclasses.fields(module.ARGUMENTS[0])}
        kept = {k: v for k, v in (load_yaml(str(recorded)) or {}).items()
                if v is not None and (k in script or k in DATA_OPTIONS)}
        if run_folder.read_metrics(folder).get("assistant_loss") != "full":  # recorded as the stage's plan set
            kept.pop("assistant_only_loss", None)  # it, not as asked: the plan is made again, as it was
        parsed, explicit = parse_args(module.ARGUMENTS, [], prog=f"hfllm {stage}", config=kept,
                                      defaults=stage_defaults(stage, getattr(module, "DEFAULTS", {})))
        config = next((p for p in parsed if hasattr(p, "output_dir")), parsed[0])
        # A copy: tokenizing may set the tokenizer's truncation while other tabs generate with it
        lines = stage_summary(stage, copy.deepcopy(tokenizer), parsed[0], config, explicit)
    except UserError as exc:  # the dataset moved, or a Hub dataset while offline
        return f"{source} was trained by hfllm {stage}, but its data cannot be read now: {exc}"
    return "\n".join(["```", *lines, "```"])
