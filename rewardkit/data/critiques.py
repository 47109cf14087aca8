"""Preference pairs with a written critique of each response, for critique-out-loud reward models
(``--objective critique``, after Ankner et al., "Critique-out-loud reward models").

A row is any pair shape rewardkit reads (``prompt``/``chosen``/``rejected``, chat messages, a shared
transcript) plus ``chosen_critique`` and ``rejected_critique``: the text a good judge would write about each
response before scoring it. A rating table (prompt, response, score) gives its pairs by the usual rating
options, each answer's critique read from its row's ``critique`` column. A critique is plain text (a chat answer's critique is still text: the model
writes it after the conversation). Every row needs both critiques: a missing or empty one is a
`RecordError` naming the field, and the loader adds ``file:line``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardkit.data.formats import check_text, parse_record
from rewardkit.data.loading import is_rating_table
from rewardkit.data.ratings import RatingOptions, load_ratings, resolve_columns
from rewardkit.data.readers import iter_rows
from rewardkit.data.records import Comparison, Problem, check_usable, text_key
from rewardkit.errors import DataError, RecordError

CRITIQUE_FIELDS = ("chosen_critique", "rejected_critique")
RATED_CRITIQUE = "critique"  # a rating table's column
DEFAULT_TEMPLATE = "\nCritique:"  # --critique-template
DEFAULT_MAX_TOKENS = 128  # --max-critique-tokens


@dataclass
class CritiquedPair:
    """A preference pair and the reference critique of each response (chosen first)."""

    comparison: Comparison
    critiques: tuple[str, str]


def _critique(raw: dict[str, Any], name: str) -> str:
    value = raw.get(name)
    if value is None:
        raise RecordError(f"field '{name}' is missing: --objective critique learns to write a critique of "
                          "each response, so every row needs one")
    if not isinstance(value, str) or not value.strip():
        raise RecordError(f"field '{name}' must be a non-empty string, got "
                          f"{'an empty string' if isinstance(value, str) else type(value).__name__}")
    return value.strip()


def parse_critiqued(raw: Any, where: str = "") -> CritiquedPair:
    """One row as a `CritiquedPair` (RecordError naming the field for anything unusable)."""
    comps = parse_record(raw, "auto", where)
    if len(comps) != 1 or len(comps[0].responses) != 2:
        raise RecordError("a critiqued row is one preference pair (prompt, chosen, rejected) with "
                          f"{' and '.join(CRITIQUE_FIELDS)}; rankings and votes have no place for critiques")
    return CritiquedPair(comps[0], (_critique(raw, CRITIQUE_FIELDS[0]), _critique(raw, CRITIQUE_FIELDS[1])))


def load_rated_critiques(source: str, opts: RatingOptions) -> tuple[list[CritiquedPair], list[Problem]]:
    """A rating table's pairs (`rewardkit.data.ratings.load_ratings`), each answer with its row's critique."""
    critiques: dict[tuple[str, str], str] = {}
    problems: list[Problem] = []
    columns: tuple[str, str, str] | None = None
    for where, raw in iter_rows(source):
        try:
            if isinstance(raw, RecordError):
                raise raw
            columns = columns or resolve_columns(list(raw), opts, where)
            key = (text_key(check_text(raw.get(columns[0]), columns[0])),
                   text_key(check_text(raw.get(columns[1]), columns[1])))
            critiques.setdefault(key, _critique(raw, RATED_CRITIQUE))
        except RecordError as e:
            problems.append(Problem(where, str(e)))
    loaded = load_ratings(iter_rows(source), source, opts)
    seen = {p.where for p in problems}
    problems += [p for p in loaded.problems if p.where not in seen]
    pairs = [CritiquedPair(c, (critiques[(c.prompt_key(), text_key(c.responses[0]))],
                               critiques[(c.prompt_key(), text_key(c.responses[1]))]))
             for c in loaded.comparisons
             if all((c.prompt_key(), text_key(r)) in critiques for r in c.responses)]
    return pairs, problems


def load_critiqued(source: str, skip_invalid: bool = False, ratings: RatingOptions | None = None
                   ) -> tuple[list[CritiquedPair], list[Problem]]:
    """Every row of a critiqued pair file (or rating table); DataError listing the first bad rows unless
    ``skip_invalid``."""
    if not Path(source).is_file():
        raise DataError(f"{source}: no such file (--objective critique reads a local file of pairs with "
                        f"{' and '.join(CRITIQUE_FIELDS)})")
    if is_rating_table(source, "auto", ratings):
        pairs, problems = load_rated_critiques(source, ratings or RatingOptions())
        check_usable(problems, [], len(pairs), source, skip_invalid, "no usable critiqued pairs")
        return pairs, problems
    pairs, problems = [], []
    for where, raw in iter_rows(source):
        try:
            if isinstance(raw, RecordError):
                raise raw
            pairs.append(parse_critiqued(raw, where))
        except RecordError as e:
            problems.append(Problem(where, str(e)))
    check_usable(problems, [], len(pairs), source, skip_invalid, "no usable critiqued pairs")
    return pairs, problems
