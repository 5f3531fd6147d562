"""The model card (README.md) of a pushed stage: Hub metadata plus what hfllm knows about the run.

Rendered with ``huggingface_hub.ModelCard.from_template`` from ``card.md`` beside this file:
``ModelCardData`` is the YAML header the Hub indexes (license, base_model, datasets, tags,
pipeline_tag, library_name), the template's body holds only facts found in the stage folder and its run: how to use the model, the stage and what it
started from, the important hyperparameters (``hfllm_args.yaml``), the results
(``metrics.json``), the loss curve, and the lineage of the run's other stages. Local paths
are never written out in full (they name the user's folders); tokens never reach it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import yaml

from hfllm.loading import is_local
from hfllm.run_folder import read_metrics
from hfllm.stages import STAGES

TEMPLATE = Path(__file__).with_name("card.md")
# The hyperparameters worth a line in the card, in this order, when the stage recorded them.
HYPERPARAMETERS = ("model_type", "preset", "hidden_size", "num_hidden_layers", "num_attention_heads",
                   "vocab_size", "learning_rate", "lr_scheduler_type", "warmup_ratio", "warmup_steps", "max_steps",
                   "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps", "block_size",
                   "max_length", "beta", "num_generations", "weight_decay", "lora_r", "lora_alpha", "lora_dropout",
                   "lora_target_modules", "seed")
KEY_RESULTS = ("eval_loss", "perplexity", "answer_accuracy", "eval_accuracy", "accuracy", "train_loss")


@dataclass
class CardInfo:
    """What is being pushed, as hub.py worked it out."""
    folder: Path  # the stage folder in the run (the source, never modified)
    stage: str
    kind: str  # "model", "adapter", "merged" or "tokenizer"
    task: str = "text-generation"  # or "text-classification" (reward models)
    base: str | None = None  # Hub id of the model this one was trained from, if any
    base_display: str | None = None  # the same for text, when it is not on the Hub
    chat: bool = False  # the tokenizer has a chat template
    args: dict = field(default_factory=dict)  # hfllm_args.yaml
    metrics: dict = field(default_factory=dict)  # metrics.json


def is_hub_id(name, dataset: bool = False) -> bool:
    """A name that can only mean a Hub repo: not a local path, not builtin:, shaped like user/name."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(name, str) or not name or name.startswith("builtin:") or is_local(name):
        return False
    if dataset and name.count("/") != 1:  # a dataset worth a link is user/name
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def short(name: str | None) -> str:
    """A source for display: Hub ids whole, local paths by their last two parts only."""
    if not name:
        return "-"
    return name if is_hub_id(name) else "/".join(Path(name).parts[-2:])


def read_args(folder: Path) -> dict:
    path = Path(folder) / "hfllm_args.yaml"
    try:
        data = yaml.safe_load(path.read_text()) if path.is_file() else {}
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def source_of(folder: Path) -> str | None:
    """What a stage started from: the adapter's base, or the model_name_or_path it was given."""
    config = Path(folder) / "adapter_config.json"
    if config.is_file():
        return json.loads(config.read_text()).get("base_model_name_or_path")
    return read_metrics(folder).get("model_name_or_path") or read_args(folder).get("model_name_or_path")


def datasets_of(args: dict, metrics: dict) -> list[str]:
    names = [args.get("dataset_name") or metrics.get("dataset_name"), args.get("eval_dataset_name")]
    return list(dict.fromkeys(n for n in names if isinstance(n, str) and n))


def lineage(folder: Path) -> list[dict]:
    """The finished stages of the run that holds ``folder`` (itself included), in pipeline order."""
    folder = Path(folder).resolve()
    siblings = [d for d in folder.parent.iterdir() if d.is_dir() and (d / "metrics.json").is_file()]
    by_path = {d.resolve(): d.name for d in siblings}
    rows = []
    for d in siblings:
        metrics, source = read_metrics(d), source_of(d)
        origin = by_path.get(Path(source).expanduser().resolve()) if source and not is_hub_id(source) else None
        rows.append({"name": d.name, "stage": metrics.get("stage", d.name), "this": d.resolve() == folder,
                     "from": f"`{origin}` stage" if origin else (f"`{short(source)}`" if source else "scratch"),
                     "origin": origin, "datasets": datasets_of(read_args(d), metrics),
                     "finished": metrics.get("finished_at", "-"), "results": _key_results(metrics)})
    order = {s: i for i, s in enumerate(STAGES)}
    return sorted(rows, key=lambda r: (order.get(r["stage"], len(order)), r["finished"]))


def _ancestors(rows: list[dict]) -> list[dict]:
    """This stage and the stages it descends from (following each stage's source)."""
    named = {r["name"]: r for r in rows}
    chain, row = [], next((r for r in rows if r["this"]), None)
    while row is not None and row not in chain:
        chain.append(row)
        row = named.get(row["origin"])
    return chain


def _fmt(value) -> str:
    if isinstance(value, float):
        value = f"{value:.4g}"
    elif isinstance(value, (list, tuple)):
        value = ", ".join(map(str, value))
    return str(value).replace("|", "\\|").replace("\n", " ")


def _key_results(metrics: dict) -> str:
    return ", ".join(f"{k} {_fmt(metrics[k])}" for k in KEY_RESULTS if isinstance(metrics.get(k), (int, float)))[:120]


def hyperparameters(args: dict, metrics: dict) -> dict:
    """The short list of settings that matter, from hfllm_args.yaml (and metrics.json for sizes)."""
    table = {}
    for key in HYPERPARAMETERS:
        value = args.get(key, metrics.get(key) if key in ("model_type", "block_size") else None)
        if value is None or value == [] or (key.startswith("lora_") and not args.get("use_peft")):
            continue
        if key == "max_steps" and value <= 0 or key == "num_train_epochs" and (args.get("max_steps") or -1) > 0:
            continue
        if key.startswith("warmup") and not value:
            continue
        table[key] = value
    if "learning_rate" in args:  # a training stage
        table["precision"] = "bf16" if args.get("bf16") else "fp16" if args.get("fp16") else "fp32"
    return table


def result_table(metrics: dict) -> dict:
    """metrics.json's short scalar entries (paths, samples and long values are left out), then the results of
    `hfllm eval` (its ``eval`` block) as "task metric: value ± stderr"."""
    from hfllm.eval import metric_names

    skip = {"stage", "finished_at", "sample", "dataset_name", "dataset_format"}
    table = {k: v for k, v in metrics.items() if k not in skip and not k.endswith("_name_or_path")
             and isinstance(v, (int, float, bool, str)) and len(str(v)) <= 80 and not str(v).startswith(("/", "~"))}
    for task, row in (metrics.get("eval") or {}).items():
        for metric in metric_names(row):
            err = row.get(f"{metric}_stderr")
            table[f"{task} {metric}"] = f"{row[metric]:.4g}" + (f" ± {err:.2g}" if err is not None else "")
    return table


HARNESS_URL = "https://github.com/EleutherAI/lm-evaluation-harness"  # the Hub wants a link with a source name


def eval_results(metrics: dict) -> list:
    """The ``eval`` block as the Hub's model-index results (lm-evaluation-harness's numbers)."""
    from huggingface_hub import EvalResult

    from hfllm.eval import metric_names

    return [EvalResult(task_type=row.get("task_type", "text-generation"), dataset_type=short(row.get("dataset", task)),
                       dataset_name=task, metric_type=metric, metric_value=row[metric],
                       source_name="lm-evaluation-harness", source_url=HARNESS_URL)
            for task, row in (metrics.get("eval") or {}).items() for metric in metric_names(row)]


def _table(rows: dict, head=("name", "value")) -> str:
    lines = [f"| {head[0]} | {head[1]} |", "|---|---|"]
    return "\n".join(lines + [f"| {k} | {_fmt(v)} |" for k, v in rows.items()])


def chat_usage(info: CardInfo) -> bool:
    return info.chat and info.stage not in ("pretrain", "tokenizer")


def usage(info: CardInfo, repo_id: str, revision: str | None) -> str:
    rev = f', revision="{revision}"' if revision and revision != "main" else ""
    tok = f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}"{rev})'
    if info.kind == "tokenizer":
        return f'from transformers import AutoTokenizer\n\n{tok}\nprint(tokenizer("Hello world").input_ids)'
    if info.task == "text-classification":
        lib, auto = ("peft", "AutoPeftModelForSequenceClassification") if info.kind == "adapter" else \
            ("transformers", "AutoModelForSequenceClassification")
        return (f"from {lib} import {auto}\nfrom transformers import AutoTokenizer\n\n{tok}\n"
                f'model = {auto}.from_pretrained("{repo_id}"{rev})\n'
                'inputs = tokenizer("Question: 3 + 4?\\nAnswer: 7", return_tensors="pt")\n'
                "print(model(**inputs).logits[0, 0].item())  # higher = preferred")
    if info.kind == "adapter":
        load = (f"from peft import AutoPeftModelForCausalLM\nfrom transformers import AutoTokenizer\n\n{tok}\n"
                f'# downloads the base model named in adapter_config.json, then applies the adapter\n'
                f'model = AutoPeftModelForCausalLM.from_pretrained("{repo_id}"{rev})\n'
                "model = model.merge_and_unload()  # optional: a plain transformers model, faster\n")
    else:
        load = (f"from transformers import AutoModelForCausalLM, AutoTokenizer\n\n{tok}\n"
                f'model = AutoModelForCausalLM.from_pretrained("{repo_id}"{rev})\n')
    if chat_usage(info):
        run = ('messages = [{"role": "user", "content": "What is 3 + 4?"}]\n'
               "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors=\"pt\","
               " return_dict=True)\nout = model.generate(**inputs, max_new_tokens=64)\n"
               'print(tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))')
    else:
        run = ('inputs = tokenizer("Once upon a time", return_tensors="pt")\n'
               "out = model.generate(**inputs, max_new_tokens=64, do_sample=True, top_p=0.9)\n"
               "print(tokenizer.decode(out[0], skip_special_tokens=True))")
    return load + run


def _versions(info: CardInfo) -> str:
    names = ["hfllm", "transformers", "torch", "huggingface_hub"]
    names += ["peft"] if info.kind in ("adapter", "merged") or info.args.get("use_peft") else []
    names += ["trl"] if info.stage in STAGES and STAGES[info.stage].trl else []
    lines = []
    for name in names:
        try:
            lines.append(f"- {name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return "\n".join(lines)


def _data_lines(used: list[tuple[str, str]], hub_datasets: list[str], endpoint: str) -> list[str]:
    lines = []
    for stage, name in used:
        if name.startswith("builtin:"):
            text = f"hfllm's built-in synthetic `{name.split(':', 1)[1]}` data (generated locally, not a Hub dataset)"
        elif name in hub_datasets:
            text = f"[{name}]({endpoint}/datasets/{name})"
        else:
            text = f"a local dataset (`{short(name)}`)"
        lines.append(f"{stage} data: {text}")
    return lines


def _lineage_table(rows: list[dict]) -> str:
    lines = ["| stage | started from | data | finished | results |", "|---|---|---|---|---|"]
    for r in rows:
        data = ", ".join(d if d.startswith("builtin:") else short(d) for d in r["datasets"]) or "-"
        cells = [_fmt(c) for c in (r["name"], r["from"], data, r["finished"], r["results"] or "-")]
        cells[0] = f"**{cells[0]}**" if r["this"] else cells[0]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build_card(info: CardInfo, repo_id: str, *, license: str = "apache-2.0", revision: str | None = None,
               endpoint: str = "https://huggingface.co", has_loss_plot: bool = False):
    """The ModelCard for ``info``; ``endpoint`` (HF_ENDPOINT) is only used for links in the text."""
    from huggingface_hub import ModelCard, ModelCardData

    rows = lineage(info.folder)
    chain = _ancestors(rows) or [{"stage": info.stage, "datasets": datasets_of(info.args, info.metrics)}]
    used = list(dict.fromkeys((r["stage"], name) for r in reversed(chain) for name in r["datasets"]))
    hub_datasets = list(dict.fromkeys(name for _, name in used if is_hub_id(name, dataset=True)))
    lora = info.kind in ("adapter", "merged") or bool(info.args.get("use_peft"))
    tags = ["hfllm", info.stage] + ["lora"] * lora + ["merged"] * (info.kind == "merged")
    tags += ["reward-model"] * (info.stage == "reward") + ([info.task] if info.kind != "tokenizer" else [])
    evals = eval_results(info.metrics)
    data = ModelCardData(license=license, base_model=info.base, datasets=hub_datasets or None,
                         tags=list(dict.fromkeys(tags)), pipeline_tag=None if info.kind == "tokenizer" else info.task,
                         library_name="peft" if info.kind == "adapter" else "transformers",
                         model_name=repo_id.split("/")[-1] if evals else None, eval_results=evals or None)

    base = f"[{info.base}]({endpoint}/{info.base})" if info.base else f"`{short(info.base_display)}`"
    what = {"model": "a full model (weights + tokenizer)", "tokenizer": "a tokenizer",
            "adapter": f"a LoRA adapter: load it on top of its base model {base}",
            "merged": f"a standalone model: the LoRA adapter trained in this stage merged into its base {base}"}
    generate_command = None
    if info.kind != "tokenizer" and info.task == "text-generation":
        prompt = '--chat --prompt "What is 3 + 4?"' if chat_usage(info) else '--prompt "Once upon a time"'
        generate_command = f"hfllm generate --model_name_or_path {repo_id} {prompt}"
    hyper, results = hyperparameters(info.args, info.metrics), result_table(info.metrics)
    sample = info.metrics.get("sample")
    return ModelCard.from_template(
        data, template_path=str(TEMPLATE), name=repo_id.split("/")[-1], stage=info.stage,
        run=info.folder.resolve().parent.name, stage_text=STAGES[info.stage].card if info.stage in STAGES else
        info.stage, what=what[info.kind], usage=usage(info, repo_id, revision), generate_command=generate_command,
        started_from=None if info.kind == "tokenizer" else base if info.base or info.base_display else
        "scratch (a new model)", data_lines=_data_lines(used, hub_datasets, endpoint),
        hyperparameters=_table(hyper) if hyper else None,
        results=_table(results, ("metric", "value")) if results else None, loss_plot=has_loss_plot,
        sample=sample.replace("`", "'") if isinstance(sample, str) else None,  # cannot close the code block
        lineage=_lineage_table(rows) if len(rows) > 1 else None, versions=_versions(info))


def check_card(path: str | Path) -> dict:
    """Parse a written README.md back; return its metadata (raises ValueError when it does not parse)."""
    from huggingface_hub import ModelCard

    card = ModelCard.load(Path(path))
    meta = card.data.to_dict()
    for key in ("license", "library_name", "tags"):
        if not meta.get(key):
            raise ValueError(f"model card metadata misses '{key}'")
    return meta
