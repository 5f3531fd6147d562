"""The one validation layer: every option checked by its meaning, before any data or model is loaded.

Each command's parsed arguments go through ``check_options`` (the frame calls it for every training stage;
the tools call it themselves): types are argparse's, ranges and relations are here, in one table of rules
per option name, so that the same option means the same thing in every command. What a folder holds (a
causal LM, a reward model, a LoRA adapter) is read from its config files, never from its weights
(hfllm.model_checks). Every refusal is one ``UserError`` line naming the option.
"""

from __future__ import annotations

import dataclasses
import math

from hfllm.errors import UserError
from hfllm.model_checks import (check_decoder, check_lora_targets, check_model_kind, context_length, existing_path,
                                model_config, model_kind)

# Options that say what a run starts from: recorded in the output folder, compared when it resumes.
SOURCE_OPTIONS = ("model_name_or_path", "tokenizer_name_or_path", "reward_model_name_or_path",
                  "value_model_name_or_path", "dataset_name", "eval_dataset_name")
OUTPUTS = ("output_dir", "logging_dir")


def input_paths(objects, config_path: str | None = None) -> dict[str, str]:
    """Every option of ``objects`` (parsed dataclasses) that names an existing local path, by option name; an
    adapter's base model too. The output folder may be none of these, nor hold one."""
    from hfllm.loading import adapter_base, is_adapter_folder

    found = {"config": config_path} if existing_path(config_path) else {}
    for obj in objects:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name, None)
            if f.name in OUTPUTS or f.name in found:
                continue
            for i, item in enumerate(value if isinstance(value, list) else [value]):
                path = existing_path(item)
                if path is None:
                    continue
                name = f.name if i == 0 else f"{f.name} ({i + 1})"
                found[name] = item
                if path.is_dir() and is_adapter_folder(path):
                    try:
                        base = adapter_base(path)
                    except UserError:
                        continue
                    if existing_path(base):
                        found[f"{f.name} (its base)"] = base
    return found


def sources(objects) -> dict[str, str]:
    """What the run starts from (SOURCE_OPTIONS that are set), as given."""
    out = {}
    for obj in objects:
        for name in SOURCE_OPTIONS:
            value = getattr(obj, name, None)
            if isinstance(value, str) and value and name not in out:
                out[name] = value
    return out


# --- ranges: one rule per option name, the same in every command -------------------------------------------

@dataclasses.dataclass(frozen=True)
class Range:
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    note: str = ""  # what the bounds mean, when it helps

    def holds(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return True  # not a number: argparse has judged the type already (None = unset)
        if not math.isfinite(value) or (self.integer and value != int(value)):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or (value < self.high or (not self.high_open and value == self.high))

    def words(self) -> str:
        low, high = _number(self.low), _number(self.high)
        if self.integer and self.low == 1 and self.high is None:
            return "a positive integer"
        if self.integer and self.high is None:
            return f"an integer >= {low}"
        if self.high is None:
            return f"a finite number {'>' if self.low_open else '>='} {low}"
        if self.integer:
            return f"an integer in [{low}, {high}]"
        return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"


def _number(x) -> str:
    return "" if x is None else str(int(x)) if x == int(x) else f"{x:g}"


POSITIVE, COUNT = Range(1, integer=True), Range(0, integer=True)
NON_NEGATIVE, POSITIVE_REAL = Range(0), Range(0, low_open=True)
SHARE, UNIT = Range(0, 1, high_open=True), Range(0, 1)
SEED = Range(0, 2**32 - 1, integer=True, note=" (what numpy's and torch's generators take)")

RULES = {
    **dict.fromkeys(("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                     "max_train_samples", "model_max_length", "max_prompt_length", "max_completion_length",
                     "num_generations", "num_mini_batches", "num_ppo_epochs", "response_length", "lora_r",
                     "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                     "intermediate_size", "max_position_embeddings", "max_new_tokens", "num_beams",
                     "num_return_sequences", "num_proc", "batch_size", "min_frequency", "total_episodes",
                     "concurrency_limit", "vocab_size", "max_concurrency", "max_queue", "max_prompt_chars",
                     "max_tokens_cap", "check_max_new_tokens"), POSITIVE),
    **dict.fromkeys(("eval_samples", "answer_eval_samples", "dataloader_num_workers", "min_words", "top_k"), COUNT),
    # save_steps and warmup_steps may be shares of the run (below 1) in TrainingArguments
    **dict.fromkeys(("learning_rate", "weight_decay", "max_grad_norm", "num_train_epochs", "eval_split_size",
                     "kl_coef", "vf_coef", "beta", "save_steps", "warmup_steps"), NON_NEGATIVE),
    **dict.fromkeys(("temperature", "repetition_penalty", "lora_alpha", "cliprange", "cliprange_value",
                     "target_kl", "max_seconds"), POSITIVE_REAL),
    **dict.fromkeys(("seed", "data_seed"), SEED),
    "lora_dropout": SHARE, "min_p": SHARE, "top_p": Range(0, 1, low_open=True), "gamma": UNIT, "lam": UNIT,
    # One token of context and one to predict: below that every loss is empty (0 or NaN).
    "block_size": Range(2, integer=True, note=" (a token and the next one to predict)"),
    "max_length": Range(2, integer=True, note=" (a prompt token and one to learn)"),
    "port": Range(1, 65535, integer=True),
}
# Where a command gives an option a narrower meaning.
COMMAND_RULES = {
    ("dpo", "beta"): Range(0, low_open=True, note=" (the strength of the pull toward the reference)"),
    ("grpo", "num_generations"): Range(2, integer=True, note=" (answers to one prompt are compared)"),
    ("rloo", "num_generations"): Range(2, integer=True, note=" (answers to one prompt are compared)"),
    ("ppo", "max_steps"): POSITIVE,
    ("generate", "top_k"): POSITIVE,
    ("generate", "temperature"): Range(0, low_open=True, note=" (for deterministic output use greedy decoding: "
                                                              "--do_sample false)"),
}
DTYPES = ("auto", "float32", "float16", "bfloat16")


def check_values(values: dict, command: str, explicit: set[str]) -> None:
    """Every option's value by its name's rule (before the libraries' dataclasses see them: their own checks
    then never meet nonsense such as a modulo by zero). Floats set by the user must be finite."""
    for name, value in values.items():
        if name in explicit and isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{name} must be a finite number, got {value}")
        rule = COMMAND_RULES.get((command, name)) or RULES.get(name)
        if rule is not None and value is not None and not rule.holds(value):
            raise UserError(f"{name} must be {rule.words()}{rule.note}, got {value}")
    steps = values.get("max_steps")  # -1 (TrainingArguments' default): as many steps as num_train_epochs make
    if "max_steps" in explicit and isinstance(steps, int) and steps < 1 and (steps != -1 or command == "ppo"):
        also = "" if command == "ppo" else " (or -1: train for num_train_epochs)"
        raise UserError(f"max_steps must be a positive number of steps{also}, got {steps}")
    split = values.get("eval_split_size")
    if isinstance(split, float) and split >= 1 and split != int(split):
        raise UserError(f"eval_split_size must be a share below 1 (0.1) or a whole count of rows (200), got {split}")
    if values.get("num_train_epochs") == 0 and isinstance(steps, int) and steps <= 0:
        raise UserError("num_train_epochs is 0 and max_steps is not set: nothing would be trained; "
                        "set --num_train_epochs or --max_steps")
    if command == "merge" and values.get("dtype") not in (None, *DTYPES):
        raise UserError(f"dtype must be one of {', '.join(DTYPES)}, got '{values['dtype']}'")


def check_split(rows: int, size: float, dataset_name: str) -> None:
    """eval_split_size (a share below 1 or a count) must leave rows on both sides, as datasets counts them."""
    held_out = int(size) if size >= 1 else math.ceil(size * rows)
    if held_out >= rows:
        raise UserError(f"eval_split_size {size:g} holds out all {rows} rows of {dataset_name}, leaving none to train "
                        "on; lower it (a share such as 0.1, or a count)")


# --- relations, and the model options of every stage -------------------------------------------------------

# Where stages name models: checked before any data or weights are read. (option, what it is called, need)
MODEL_OPTIONS = (("model_name_or_path", "model", "causal_lm"), ("tokenizer_name_or_path", "tokenizer", None),
                 ("reward_model_name_or_path", "reward model", "reward"),
                 ("value_model_name_or_path", "value model", None))
NEEDS_FULL_MODEL = ("reward",)  # starts from a whole model: a classification head goes on top of it
# The stages whose trainer takes a base quantized by bitsandbytes with a LoRA adapter on it (QLoRA). Not ppo:
# its own loop trains a value model beside the policy in full precision.
QUANTIZED_BASE = ("sft", "dpo", "orpo", "simpo", "kto", "reward", "grpo", "rloo")


def check_quantization(command: str, values: dict) -> None:
    """``--load_in_4bit`` / ``--load_in_8bit`` only where a LoRA adapter trains on the quantized base, from a full
    model (an adapter would be merged into, or stacked on, 4-bit weights), with bitsandbytes installed."""
    import importlib.util

    bits = 4 if values.get("load_in_4bit") else 8
    flag = f"--load_in_{bits}bit"
    if command not in QUANTIZED_BASE:
        raise UserError(f"hfllm {command} cannot train on a quantized base (QLoRA is for "
                        f"{', '.join(QUANTIZED_BASE)}); drop {flag}")
    if not values.get("use_peft"):
        raise UserError(f"{flag} loads the base in {bits} bits, which only a LoRA adapter can train on (QLoRA): "
                        f"add --use_peft, or drop {flag}")
    model = values.get("model_name_or_path")
    if model and model_kind(model) in ("adapter", "reward adapter"):
        raise UserError(f"{model} is a LoRA adapter; {flag} quantizes a full model: merge it first (hfllm merge "
                        f"--model_name_or_path {model} --output_dir {model}-merged), or drop {flag}")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise UserError(f"{flag} needs bitsandbytes: pip install bitsandbytes (or drop {flag})")


def check_options(command: str, parsed: list, explicit: set[str]) -> None:
    """A stage's options together, once parsed: the models they name exist and are of the right kind, and what
    depends on a model's config (its context) fits, all before any weights are read."""
    from hfllm.loading import check_model_source

    values = {}
    for obj in parsed:
        for f in dataclasses.fields(obj):
            values.setdefault(f.name, getattr(obj, f.name))
    for option, what, need in MODEL_OPTIONS:
        value = values.get(option)
        if not value:
            continue
        check_model_source(value, what)
        if option == "model_name_or_path" and command in NEEDS_FULL_MODEL:
            need = "full"
        if need:
            check_model_kind(value, need, option, command)
    model = values.get("model_name_or_path")
    context = context_length(model_config(model)) if model else None
    name = {"ppo": "response_length", "grpo": "max_completion_length", "rloo": "max_completion_length"}.get(command)
    if context and name and isinstance(values.get(name), int) and values[name] >= context:
        raise UserError(f"{name} {values[name]} leaves no room for the prompt in the model's {context}-token "
                        f"context; lower --{name}")
    if context and "max_length" in explicit and isinstance(values.get("max_length"), int) \
            and values["max_length"] > context:
        raise UserError(f"max_length {values['max_length']} is longer than the model's context {context}; "
                        f"lower --max_length")
    if values.get("load_in_4bit") or values.get("load_in_8bit"):
        check_quantization(command, values)
    if values.get("use_peft") and model:
        check_lora_targets(model, values.get("lora_target_modules"))
    if command == "pretrain" and not model and isinstance(values.get("model_type"), str):
        check_decoder(values["model_type"])


def number(name: str, value, rule: Range, default=None):
    """A number a client sent (the app's inputs, whatever JSON they hold): converted and in its rule's range,
    or one UserError naming it."""
    if value is None or value == "":
        if default is not None:
            return default
        raise UserError(f"{name} is required")
    try:
        converted = float(value)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"{name} must be a number, got {str(value)[:40]!r}") from None
    if not rule.holds(converted):
        raise UserError(f"{name} must be {rule.words()}{rule.note}, got {value}")
    return int(converted) if rule.integer else converted
