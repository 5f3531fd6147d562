"""Each stage's data as the stage prepares it, with only the tokenizer loaded: the body of hfllm inspect.

SFT: hfllm.data.formats, then the stage's own assistant_turns (hfllm/stages/sft.py), then TRL's
``SFTTrainer._prepare_dataset`` and collator. DPO and reward: formats, then their trainers'
``_prepare_dataset``. GRPO: the stage's prompts under the chat template.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hfllm.inspect.checks import (end_of_turn_rows, pad_line, percentiles, segments, sft_prepare, share,
                                  template_checks)


@dataclass
class Context:
    """What every stage's inspection reads: the tokenizer, the stage's parsed arguments, the limits."""
    tokenizer: object
    args: object  # the stage's script arguments
    cfg: object  # the stage's trl config
    explicit: set  # keys the user set
    limit: int
    examples: int


@dataclass
class Report:
    stage: str
    html: str | None = None
    color: str = "auto"
    lines: list[tuple[str, str]] = field(default_factory=list)  # (label, text)
    examples: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)  # (title, [(kind, text)])

    def add(self, label: str, text: str) -> None:
        self.lines.append((label, text))


def inspect_sft(ctx: Context, report: Report) -> None:
    from hfllm.chat_template import chat_template_from_path, end_of_turn_ids
    from hfllm.data import formats
    from hfllm.stages.sft import assistant_turns

    tokenizer, cfg = ctx.tokenizer, ctx.cfg
    train, _, fmt, rows = formats.load_train_eval(_train_only(ctx.args, ctx.limit), "sft", cfg.seed)
    read = rows.total
    plan = None
    if cfg.chat_template_path:
        tokenizer.chat_template = chat_template_from_path(cfg.chat_template_path)
        cfg.chat_template_path = None
    if fmt in ("messages", "sharegpt"):
        train, _, fmt, plan = assistant_turns(tokenizer, train, None, cfg, ctx.explicit, main_process=False)
    unlimited = _copy(cfg, max_length=None, packing=False)
    full = sft_prepare(tokenizer, train, unlimited)
    prepared = sft_prepare(tokenizer, train, _copy(cfg, packing=False))
    cut_out = len(full) - len(prepared)

    report.add("data", f"{fmt}; {read} rows read, {len(prepared)} rows to train on"
                       + (f" ({plan.mode}: one row per assistant turn)" if plan and plan.mode == "per_turn" else ""))
    report.add("dropped", f"{rows.empty} with an empty answer;{_skipped(rows)} {cut_out} with nothing left to train after the cut at "
                          f"max_length {cfg.max_length}")
    if plan:
        how = {"markers": "the template marks assistant turns itself",
               "trl_patch": f"TRL's training copy ({plan.name}_training) for tokenizing; the model keeps the original",
               "per_turn": "each assistant turn its own prompt/completion row (TRL has no training copy)",
               "full": "whole conversations, every token (--assistant_only_loss false)"}[plan.mode]
        report.add("template", f"{plan.name or 'custom'}: {how}")
        report.add("checks", template_checks(tokenizer, plan.training_template))
    lengths = [len(r) for r in full["input_ids"]]
    cut = sum(n > cfg.max_length for n in lengths) if cfg.max_length else 0
    kept = "start" if cfg.truncation_mode == "keep_start" else "end"
    report.add("tokens", f"per row {percentiles(lengths)}; " + (
        f"{share(cut, len(lengths))} longer than max_length {cfg.max_length} (cut, keeping the {kept})"
        if cfg.max_length else "no max_length: nothing is cut"))
    total = sum(len(r) for r in prepared["input_ids"])
    trained = sum(sum(label != -100 for label in r) for r in prepared["labels"])
    report.add("loss", f"{share(trained, total)} of the {total} tokens carry loss" + (
        "; packing then fills rows of max_length (padding-free)" if cfg.packing else ""))
    ok, n = end_of_turn_rows(tokenizer, prepared)
    report.add("end of turn", f"trained in {ok} of {n} rows (padded as in training); "
                              f"{pad_line(tokenizer, end_of_turn_ids(tokenizer))}")
    for i in range(min(ctx.examples, len(prepared))):
        row = prepared[i]
        kinds = ["trained" if label != -100 else "context" for label in row["labels"]]
        report.examples.append((f"row {i + 1}", segments(tokenizer, row["input_ids"], kinds)))


def inspect_preference(ctx: Context, report: Report, stage: str) -> None:
    from trl import DPOTrainer, RewardTrainer

    from hfllm.chat_template import end_of_turn_ids
    from hfllm.data import formats

    tokenizer, cfg = ctx.tokenizer, ctx.cfg
    own = stage == "reward" or hasattr(cfg, "truncation_mode")  # ORPO's and CPO's (SimPO) configs have none:
    if not own:  # their pairs are tokenized as DPO does here, nothing dropped, and they cut long pairs their own way
        cfg = _copy(cfg, truncation_mode="keep_end")
    train, _, fmt, rows = formats.load_train_eval(_train_only(ctx.args, ctx.limit), "preference", cfg.seed)
    pairs = formats.pair_columns(train)
    trainer_cls = DPOTrainer if stage == "dpo" else RewardTrainer
    shell = trainer_cls.__new__(trainer_cls)  # _prepare_dataset reads only the tokenizer (DPO) or nothing (reward)
    shell._tokenizer = tokenizer
    full = trainer_cls._prepare_dataset(shell, pairs, tokenizer, _copy(cfg, max_length=None), "inspect")
    prepared = trainer_cls._prepare_dataset(shell, pairs, tokenizer, cfg, "inspect")
    end_ids = end_of_turn_ids(tokenizer)
    report.add("data", f"{fmt}; {rows.total} pairs read, {len(prepared)} to train on")
    why = "whose prompt alone fills" if stage == "dpo" else "longer than"
    report.add("dropped", f"{rows.empty} with an empty answer;{_skipped(rows)} {len(full) - len(prepared)} {why} max_length "
                          f"{cfg.max_length}")
    report.add("checks", template_checks(tokenizer, None) + "; " + pad_line(tokenizer, end_ids))
    if stage == "dpo":
        lengths = [len(r["prompt_ids"]) + max(len(r["chosen_ids"]), len(r["rejected_ids"])) for r in full]
        report.add("tokens", f"prompt + longer answer {percentiles(lengths)}; "
                             f"{share(sum(n > (cfg.max_length or n) for n in lengths), len(lengths))} cut at "
                             f"max_length {cfg.max_length} (" + ("the collator keeps the "
                             + cfg.truncation_mode.removeprefix("keep_") if own else "the trainer's own cut") + ")")
        total = trained = ends = 0
        for r in prepared:
            for answer in (r["chosen_ids"], r["rejected_ids"]):
                room = max(0, (cfg.max_length or 10**9) - len(r["prompt_ids"]))
                total += len(r["prompt_ids"]) + min(len(answer), room)
                trained += min(len(answer), room)
                kept = [t for t in answer[:room] if tokenizer.decode([t]).strip()]
                ends += bool(kept) and kept[-1] in end_ids
        report.add("loss", f"{share(trained, total)} of the {total} tokens (the answers) carry the loss")
        report.add("end of turn", f"each kept answer ends with it: {ends} of {2 * len(prepared)}")
        for i in range(min(ctx.examples, len(prepared))):
            r = prepared[i]
            for name in ("chosen", "rejected"):
                ids = r["prompt_ids"] + r[f"{name}_ids"]
                kinds = ["context"] * len(r["prompt_ids"]) + [name] * len(r[f"{name}_ids"])
                report.examples.append((f"pair {i + 1}, {name}", segments(tokenizer, ids, kinds)))
        return
    lengths = [max(len(r["chosen_ids"]), len(r["rejected_ids"])) for r in full]
    report.add("tokens", f"longer sequence of a pair {percentiles(lengths)}; pairs over max_length are dropped, "
                         "not cut")
    scored = []
    for r in prepared.select(range(min(ctx.examples, len(prepared)))):
        for name in ("chosen", "rejected"):
            ids = r[f"{name}_ids"]
            # The score is read at the last token that is not the pad token (transformers' rule).
            at = max((i for i, t in enumerate(ids) if t != tokenizer.pad_token_id), default=len(ids) - 1)
            scored.append(tokenizer.convert_ids_to_tokens(ids[at]))
            kinds = ["context"] * len(ids)
            kinds[at] = "trained"
            title = f"pair {len(scored) // 2 + len(scored) % 2}, {name}"
            report.examples.append((title, segments(tokenizer, ids, kinds)))
    before_end = sum(r[k][-1] == tokenizer.pad_token_id for r in prepared for k in ("chosen_ids", "rejected_ids"))
    report.add("loss", f"one score per sequence, read at its last token that is not the pad token "
                       f"{tokenizer.pad_token!r}; {before_end} of {2 * len(prepared)} sequences end with it, so their "
                       f"score is read before it" + (f" (in the examples at {sorted(set(scored))})" if scored else ""))


def inspect_kto(ctx: Context, report: Report) -> None:
    """KTO's unpaired rows (pairs split in two, as the stage does): answers to keep and to avoid, and their lengths."""
    from trl.data_utils import maybe_apply_chat_template

    from hfllm.data import unpaired

    tokenizer, cfg = ctx.tokenizer, ctx.cfg
    train, _, _, fmt, dropped = unpaired.load_train_eval(_train_only(ctx.args, ctx.limit), cfg.seed)
    desirable = sum(train["label"])
    report.add("data", f"{fmt}; {len(train)} rows to train on: {desirable} desirable, {len(train) - desirable} "
                       "undesirable")
    report.add("dropped", f"{dropped} bad or empty")
    lengths, answers = [], []
    for row in train:
        text = maybe_apply_chat_template({"prompt": row["prompt"], "completion": row["completion"]}, tokenizer)
        count = [len(tokenizer(text[k], add_special_tokens=False)["input_ids"]) for k in ("prompt", "completion")]
        lengths.append(sum(count))
        answers.append(count[1])
    cut = sum(n > cfg.max_length for n in lengths) if cfg.max_length else 0
    report.add("tokens", f"prompt + answer {percentiles(lengths)}; {share(cut, len(lengths))} longer than "
                         f"max_length {cfg.max_length}")
    report.add("loss", f"{share(sum(answers), sum(lengths))} of the tokens (the answers) carry the loss")


def inspect_grpo(ctx: Context, report: Report) -> None:
    from hfllm.chat_template import end_of_turn_ids
    from hfllm.rewards import load_prompts

    tokenizer, args, cfg = ctx.tokenizer, ctx.args, ctx.cfg
    prompts, _ = load_prompts(_train_only(args, ctx.limit), limit_eval=0)
    ids = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
           for p in prompts["prompt"]]
    end_ids = end_of_turn_ids(tokenizer)
    report.add("data", f"prompts; {len(prompts)} read, all used; extra columns for the rewards: "
                       f"{', '.join(c for c in prompts.column_names if c != 'prompt') or 'none'}")
    # PPO's answer length is its response_length, one answer a prompt
    length = ("max_completion_length", cfg.max_completion_length) if hasattr(cfg, "max_completion_length") else \
        ("response_length", cfg.response_length)
    report.add("tokens", f"prompt {percentiles([len(i) for i in ids])}; answers up to {length[0]} {length[1]}, "
                         f"{getattr(cfg, 'num_generations', 1)} per prompt")
    report.add("loss", "on the sampled answers' tokens, up to and including the stop token")
    report.add("end of turn", f"generation stops at {[tokenizer.convert_ids_to_tokens(i) for i in end_ids]}; "
                              + pad_line(tokenizer, end_ids))
    for i in range(min(ctx.examples, len(ids))):
        report.examples.append((f"prompt {i + 1} (the answer follows)",
                                segments(tokenizer, ids[i], ["context"] * len(ids[i]))))


def _copy(cfg, **changes):
    import copy

    out = copy.copy(cfg)  # not dataclasses.replace: TrainingArguments' __post_init__ would run again
    vars(out).update(changes)
    return out


def _train_only(args, limit: int):
    """The stage's script arguments, training split only, at most ``limit`` rows."""
    out = _copy(args, max_train_samples=min(limit, args.max_train_samples or limit))
    for name in ("eval_dataset_name", "dataset_test_split"):
        if hasattr(out, name):
            setattr(out, name, None)
    if hasattr(out, "eval_split_size"):
        out.eval_split_size = 0
    return out


def _skipped(rows) -> str:
    """The stage's own line on bad rows (hfllm.data.rows), when there are any."""
    return f" {rows.summary(strict_hint=False)};" if rows.skipped else ""
