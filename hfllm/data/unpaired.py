"""KTO's unpaired format: one answer and a thumbs up or down, and the preference pairs that become it.

TRL's unpaired preference format is ``prompt`` / ``completion`` / ``label`` (True: a desirable
answer). A row of preference pairs (``builtin:preference``, the playground's votes in
``feedback.jsonl``, any ``prompt`` / ``chosen`` / ``rejected`` file) gives two rows: the chosen answer
as desirable, the rejected one as undesirable. The rows are shuffled once, by the seed: KTO
estimates its KL term from the other answers of the same batch, and TRL reads the rows in order,
so a batch must not hold one side only (TRL's own unpairing puts all desirable rows first).
"""

from __future__ import annotations

from hfllm.data import formats
from hfllm.errors import UserError

COLUMNS = ("prompt", "completion", "label")


def unpair(pairs, seed: int):
    """Each pair as its desirable and its undesirable row (plus 'answer', when the pairs have one), shuffled."""
    extra = [c for c in ("answer",) if c in pairs.column_names]

    def split(batch):
        n = len(batch["chosen"])
        out = {"prompt": batch["prompt"] * 2, "completion": batch["chosen"] + batch["rejected"],
               "label": [True] * n + [False] * n}
        return {**out, **{c: batch[c] * 2 for c in extra}}

    return pairs.map(split, batched=True, remove_columns=pairs.column_names, desc="unpairing").shuffle(seed=seed)


def check_rows(ds, name: str):
    """Rows already unpaired: prompt and completion as in prompt-completion data, label a yes/no."""
    def usable(row, i):
        where = f"{name}, row {i + 1}"
        if not isinstance(row.get("label"), bool):
            raise UserError(f"{where}: 'label' must be true (a good answer) or false (a bad one), "
                            f"not {row.get('label')!r}")
        return formats.convert_row(row, "prompt_completion", where) is not None

    kept = ds.filter(usable, with_indices=True, desc="checking rows")
    if not len(kept):
        raise UserError(f"dataset '{name}' has no usable rows (every completion is empty)")
    if len(set(kept["label"])) < 2:
        raise UserError(f"dataset '{name}' has only {'desirable' if kept[0]['label'] else 'undesirable'} rows; "
                        "KTO needs some of each (label true and false)")
    return kept.select_columns([c for c in (*COLUMNS, "answer") if c in kept.column_names]), len(ds) - len(kept)


def is_unpaired(columns) -> bool:
    return {"completion", "label"} <= set(columns) and not {"chosen", "rejected"} <= set(columns)


def load_train_eval(args, seed: int):
    """(train rows, eval rows, held-out pairs or None, format, rows dropped) for KTO, from pairs or unpaired rows.

    Pairs are held out before they are split, so no held-out answer is trained on; the held-out pairs also
    serve the before/after preference report. The eval rows come from where ``formats.load_train_eval``
    takes them: ``eval_dataset_name`` / ``dataset_test_split``, or ``eval_split_size`` of the training data.
    """
    from hfllm.data.load import first_rows, load_dataset

    def load_one(name, split, config, limit=None):
        ds = first_rows(load_dataset(name, config=config, split=split), limit)
        if is_unpaired(ds.column_names):
            return (*check_rows(ds, name), "unpaired")
        pairs, fmt, report = formats.normalise(ds, "preference", name, strict=args.strict,
                                               max_bad_share=args.max_bad_share)
        if "prompt" not in pairs.column_names:
            raise UserError(f"dataset '{name}': KTO needs the prompt apart from the answers; give pairs a "
                            "'prompt' column (or transcripts that share all but the last turn)")
        return pairs, report.empty + report.skipped, fmt

    train, dropped, fmt = load_one(args.dataset_name, args.dataset_train_split, args.dataset_config,
                                   args.max_train_samples)
    train, eval_ds = formats.split_eval(args, train, lambda *source: load_one(*source)[0], seed)
    held_out_pairs = eval_ds if eval_ds is not None and "chosen" in eval_ds.column_names else None
    rows = [ds if ds is None or "label" in ds.column_names else unpair(ds, seed) for ds in (train, eval_ds)]
    return rows[0], rows[1], held_out_pairs, fmt, dropped
