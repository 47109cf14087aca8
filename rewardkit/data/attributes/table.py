"""Rating tables with one or more score columns as regression targets (HelpSteer / SteerLM style).

A multi-attribute rating table has one row per rated (prompt, response) and one numeric column per
attribute, e.g. HelpSteer2's ``prompt,response,helpfulness,correctness,coherence,complexity,verbosity``.
This module turns such a table into `RatedResponse` records (one per row) for regression training:

* **Which columns.** ``--score-column a,b,c`` names the attributes, in output order. ``--attributes
  auto`` takes every column but prompt/response whose first non-empty value in the file is a number
  (a later non-numeric value in such a column is then an error, never a reason to drop the column).
  Name the columns explicitly to leave out numeric non-attributes such as an ``id``.
* **Missing values** (empty CSV cell, JSON ``null``, absent key) are ``None``: masked out of the loss
  and the metrics, never imputed and never zero. A row with no value at all is reported as dropped.
* **Bad values** (not a number, not finite, a bool, outside ``--score-range``) make the row a
  `Problem` naming ``file:line`` and the column; by default any problem raises `DataError` (exit 2),
  with ``--skip-invalid`` those rows are skipped and counted, exactly like `rewardkit.data.loading`.
* **Scaling, weights and pairs** are elsewhere: `rewardkit.model.attribute_head` (what the head
  learns), `rewardkit.data.attributes.options` (weights), `rewardkit.data.attributes.pairs`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from rewardkit.data.attributes.options import AUTO, AttributeOptions, parse_columns, resolve_ranges
from rewardkit.data.formats import check_text
from rewardkit.data.loading import split_by_prompt
from rewardkit.data.ratings import PROMPT_COLUMNS, RESPONSE_COLUMNS, find_column
from rewardkit.data.readers import iter_rows
from rewardkit.data.records import Problem, Text, check_usable, text_key
from rewardkit.errors import DataError, RecordError, UsageError, flag


@dataclass
class RatedResponse:
    """One rated row: ``values[k]`` is attribute k's rating, None where the row has none (masked)."""

    prompt: Text
    response: Text
    values: list[float | None]
    where: str  # "file:line"

    def prompt_key(self) -> str:
        return text_key(self.prompt)


@dataclass
class AttributeTable:
    """What `read_attribute_table` produced: records, attribute names, and everything it could not use."""

    attributes: list[str]
    ranges: list[tuple[float, float] | None]
    records: list[RatedResponse]
    problems: list[Problem] = field(default_factory=list)
    dropped: list[Problem] = field(default_factory=list)  # valid rows without any value
    rows: int = 0
    notes: list[str] = field(default_factory=list)

    def observed(self) -> list[int]:
        """Number of rows with a value, per attribute."""
        return [sum(r.values[k] is not None for r in self.records) for k in range(len(self.attributes))]


def _text_columns(columns: list[str], opts: AttributeOptions, where: str) -> tuple[str, str]:
    return (find_column(columns, "prompt", opts.prompt_column, PROMPT_COLUMNS, where),
            find_column(columns, "response", opts.response_column, RESPONSE_COLUMNS, where))


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def parse_value(value: Any, column: str) -> float | None:
    """One cell: None when missing, a finite float, or RecordError naming the column."""
    if _is_missing(value):
        return None
    if isinstance(value, bool):
        raise RecordError(f"field '{column}' must be a number, got bool {value!r}")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise RecordError(f"field '{column}' must be a number, got {value!r}") from None
    else:
        raise RecordError(f"field '{column}' must be a number, got {type(value).__name__}")
    if not math.isfinite(number):
        raise RecordError(f"field '{column}' must be a finite number, got {value!r}")
    return number


def _auto_attributes(rows: list[tuple[str, Any]], skip: set[str]) -> list[str]:
    """Columns (first-seen order) whose first non-empty value parses as a number."""
    decided: dict[str, bool] = {}
    for _, raw in rows:
        if not isinstance(raw, dict):
            continue
        for col, value in raw.items():
            if col in skip or col in decided or _is_missing(value):
                continue
            try:
                decided[col] = parse_value(value, col) is not None
            except RecordError:
                decided[col] = False
    return [c for c, numeric in decided.items() if numeric]


def resolve_attributes(rows: list[tuple[str, Any]], opts: AttributeOptions, source: str
                       ) -> tuple[str, str, list[str]]:
    """(prompt column, response column, attribute columns) from the table's first readable row."""
    first = next(((w, r) for w, r in rows if isinstance(r, dict)), None)
    if first is None:
        raise DataError(f"{source}: no readable rows")
    where, raw = first
    columns = list(raw)
    pcol, rcol = _text_columns(columns, opts, where)
    if opts.attributes == AUTO:
        attrs = _auto_attributes(rows, {pcol, rcol})
        if not attrs:
            raise DataError(f"{where}: --attributes auto: no numeric column besides {pcol!r} and {rcol!r}; "
                            f"columns are {columns}")
    elif opts.score_column is not None:
        attrs = parse_columns(opts.score_column)
        absent = [a for a in attrs if a not in columns]
        if absent:
            raise DataError(f"{where}: rating table: --score-column {', '.join(map(repr, absent))} "
                            f"not a column; columns are {columns}")
    else:
        raise UsageError(f"--objective regression needs the attribute columns: {flag('score_column')} a,b,c "
                         f"or {flag('attributes')} auto")
    clash = [a for a in attrs if a in (pcol, rcol)]
    if clash:
        raise UsageError(f"{flag('score_column')}: {clash[0]!r} is the prompt/response column")
    return pcol, rcol, attrs


def _row(raw: Any, pcol: str, rcol: str, attrs: list[str], ranges: list[tuple[float, float] | None],
         range_flag: str) -> tuple[Text, Text, list[float | None]]:
    """Validate one row; RecordError with the reason (the caller adds file:line)."""
    if isinstance(raw, RecordError):
        raise raw
    if not isinstance(raw, dict):
        raise RecordError(f"expected a row of named columns, got {type(raw).__name__}")
    prompt = check_text(raw.get(pcol), pcol)
    response = check_text(raw.get(rcol), rcol)
    values = []
    for name, rng in zip(attrs, ranges):
        v = parse_value(raw.get(name), name)
        if v is not None and rng is not None and not rng[0] <= v <= rng[1]:
            raise RecordError(f"field '{name}' = {v:g} is outside {range_flag} {rng[0]:g}:{rng[1]:g}")
        values.append(v)
    return prompt, response, values


def read_attribute_table(rows: Iterable[tuple[str, Any]], opts: AttributeOptions, source: str = "data"
                         ) -> AttributeTable:
    """Every row -> a `RatedResponse`, a `Problem` (bad row) or a dropped row (no value at all).

    Rows are read into memory once: ``--attributes auto`` must see the first value of every column.
    """
    rows = list(rows)
    pcol, rcol, attrs = resolve_attributes(rows, opts, source)
    ranges = resolve_ranges(opts.score_range, attrs)
    table = AttributeTable(attributes=attrs, ranges=ranges, records=[], rows=len(rows))
    for where, raw in rows:
        try:
            prompt, response, values = _row(raw, pcol, rcol, attrs, ranges, flag("score_range"))
        except RecordError as e:
            table.problems.append(Problem(where, str(e)))
            continue
        if all(v is None for v in values):
            table.dropped.append(Problem(where, f"no value in any attribute column ({', '.join(attrs)})"))
            continue
        table.records.append(RatedResponse(prompt, response, values, where))
    counts = ", ".join(f"{a} {n}" for a, n in zip(attrs, table.observed()))
    how = "auto" if opts.attributes == AUTO else "--score-column"
    table.notes.append(f"rating table {source}: {table.rows} rows -> {len(table.records)} rated responses, "
                       f"{len(attrs)} attributes ({how}); values per attribute: {counts}")
    return table


def load_attribute_table(source: str, opts: AttributeOptions, skip_invalid: bool = False) -> AttributeTable:
    """Read a CSV/JSONL/JSON/parquet rating table; DataError listing problems unless ``skip_invalid``."""
    path = Path(source)
    if not path.is_file():
        raise DataError(f"{source}: no such file")
    table = read_attribute_table(iter_rows(path), opts, source)
    check_usable(table.problems, table.dropped, len(table.records), source, skip_invalid, "no rated responses")
    return table


def split_records(records: Sequence[RatedResponse], fraction: float, seed: int
                  ) -> tuple[list[RatedResponse], list[RatedResponse]]:
    """Seeded, prompt-disjoint (train, eval) split: `rewardkit.data.loading.split_by_prompt` on rated rows."""
    return split_by_prompt(list(records), fraction, seed)  # type: ignore[arg-type]  # duck-typed on prompt_key


