"""Bad rows are skipped and counted, not fatal: real datasets carry a few malformed rows.

``check_rows`` runs a row check over a dataset, keeps the rows that pass, and returns a
``RowReport``: how many rows there were, how many had an empty answer, and which failed which
check. It refuses (today's one-line message, naming the first bad row) only when asked
(``--strict``), when no row passes, or when more than ``--max_bad_share`` of the rows fail:
then the data is probably not in the format it looks like, and skipping would hide that.

The check's verdict is stored in a column by ``Dataset.map`` (cached with the data), not
collected as a side effect, so a second run over the same file reports the same counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hfllm.errors import UserError

STATUS = "__hfllm_row_status"  # "ok", "empty", or the failed check's message
SHOWN_ROWS = 3  # row numbers named per reason in the summary line


@dataclass
class RowReport:
    total: int = 0
    empty: int = 0
    bad: dict[str, list[int]] = field(default_factory=dict)  # reason -> 1-based row numbers

    @property
    def skipped(self) -> int:
        return sum(len(rows) for rows in self.bad.values())

    def summary(self, strict_hint: bool = True) -> str | None:
        """'5 of 2,312 rows skipped: <reason> (rows 1255, ...); --strict refuses them', or None."""
        if not self.bad:
            return None
        parts = []
        for reason, rows in sorted(self.bad.items(), key=lambda kv: -len(kv[1])):
            shown = ", ".join(map(str, rows[:SHOWN_ROWS])) + (", ..." if len(rows) > SHOWN_ROWS else "")
            count = f"{len(rows):,} " if len(self.bad) > 1 else ""
            parts.append(f"{count}{reason} (row{'s' if len(rows) > 1 else ''} {shown})")
        hint = "; --strict refuses them" if strict_hint else ""
        return f"{self.skipped:,} of {self.total:,} rows skipped: {'; '.join(parts)}{hint}"

    def metrics(self) -> dict:
        """The counts for metrics.json (and the model card, which reads them there)."""
        return {"rows_total": self.total, "rows_skipped": self.skipped, "rows_empty": self.empty,
                "rows_skipped_by_reason": {reason: len(rows) for reason, rows in self.bad.items()}}

    def __add__(self, other: "RowReport") -> "RowReport":
        bad = {k: list(v) for k, v in self.bad.items()}
        for reason, rows in other.bad.items():
            bad.setdefault(reason, []).extend(rows)
        return RowReport(self.total + other.total, self.empty + other.empty, bad)


def check_rows(ds, check, where, *, strict: bool = False, max_bad_share: float = 0.1):
    """Keep the rows ``check(row, place)`` accepts; returns (kept dataset, RowReport).

    ``check`` returns True (usable), False (an empty answer: dropped, counted apart) or raises
    UserError whose message starts with ``place`` (``where(i)``, naming the row).
    """
    if not 0 <= max_bad_share <= 1:
        raise UserError(f"max_bad_share must be in [0, 1], got {max_bad_share}")

    def verdict(row, i):
        place = where(i)
        try:
            return {STATUS: "ok" if check(row, place) else "empty"}
        except UserError as exc:
            return {STATUS: str(exc)}

    # Only the verdicts are written (one short string a row), not a second copy of the data.
    checked = ds.map(verdict, with_indices=True, remove_columns=ds.column_names, desc="checking rows")
    report, first, usable = RowReport(total=len(ds)), None, []
    start = 0
    for batch in checked.iter(batch_size=10_000):
        for i, status in enumerate(batch[STATUS], start):
            if status == "ok":
                usable.append(i)
            elif status == "empty":
                report.empty += 1
            elif status != "ok":
                first = first or status
                prefix = where(i) + ": "
                reason = status[len(prefix):] if status.startswith(prefix) else status
                report.bad.setdefault(reason, []).append(i + 1)
        start += len(batch[STATUS])
    if first is not None:
        if strict:
            raise UserError(first)
        if report.skipped == report.total:
            raise UserError(f"{first}; no row passes the checks")
        if report.skipped > max_bad_share * report.total:
            raise UserError(f"{first}; {report.skipped:,} of {report.total:,} rows fail the checks, more than "
                            f"--max_bad_share {max_bad_share:g} allows")
    return (ds if len(usable) == len(ds) else ds.select(usable)), report


def check_text_rows(ds, column: str, dataset_name: str, *, strict: bool = False, max_bad_share: float = 0.1):
    """A corpus's text column (pretrain, tokenizer): rows whose value is not a string (null, a number, a list)
    are skipped and counted like any stage's bad rows; returns (kept dataset, RowReport). A column Arrow
    already holds as text without nulls has nothing to skip, and is not read row by row."""
    from hfllm.data.load import require_columns

    require_columns(ds, [column], dataset_name, "choose it with --dataset_text_field")
    if getattr(ds.features[column], "dtype", None) in ("string", "large_string") and \
            not ds.data.column(column).null_count:
        return ds, RowReport(total=len(ds))

    def is_text(row, where):
        value = row[column]
        if not isinstance(value, str):
            shown = "null" if value is None else {"int": "a number", "float": "a number", "list": "a list", "dict":
                                                  "an object", "bool": "true/false"}.get(type(value).__name__, "text")
            raise UserError(f"{where}: '{column}' must be text, not {shown}")
        return True

    kept, report = check_rows(ds, is_text, lambda i: f"{dataset_name}, row {i + 1}", strict=strict,
                              max_bad_share=max_bad_share)
    if report.bad:
        print(f"{dataset_name}: {report.summary()}")
    return kept, report
