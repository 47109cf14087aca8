"""Rating tables with one or more score columns as regression targets (HelpSteer / SteerLM style).

A multi-attribute rating table has one row per rated (prompt, response) and one numeric column per
attribute, e.g. HelpSteer2's ``prompt,response,helpfulness,correctness,coherence,complexity,verbosity``.
This module turns such a table into `RatedResponse` records (one per row) for regression training,
and into preference pairs for ``--objective bt+regression``:

* **Which columns.** ``--score-column a,b,c`` names the attributes, in output order. ``--attributes
  auto`` takes every column but prompt/response whose first non-empty value in the file is a number
  (a later non-numeric value in such a column is then an error, never a reason to drop the column).
  Name the columns explicitly to leave out numeric non-attributes such as an ``id``.
* **Missing values** (empty CSV cell, JSON ``null``, absent key) are ``None``: masked out of the loss
  and the metrics, never imputed and never zero. A row with no value at all is reported as dropped.
* **Bad values** (not a number, not finite, a bool, outside ``--score-range``) make the row a
  `Problem` naming ``file:line`` and the column; by default any problem raises `DataError` (exit 2),
  with ``--skip-invalid`` those rows are skipped and counted, exactly like `rewardkit.data`.
* **Scaling.** The network regresses ``(value - offset) / scale`` per attribute (`Scaling`):
  ``range`` maps a stated ``--score-range lo:hi`` to [0, 1]; ``standardize`` uses the training
  rows' mean and standard deviation; ``none`` leaves values as they are. ``auto`` (the default) is
  ``range`` when every attribute has a stated range and ``standardize`` otherwise. Scaled targets of
  similar size keep one attribute's large numbers from dominating the summed loss; the offsets and
  scales are stored with the model so scores come back in the original units.
* **Combined reward.** ``--attribute-weights helpfulness=1,verbosity=-0.3`` gives each attribute a
  weight (unlisted attributes weigh 0; no flag at all: the mean of the attributes, 1/K each). The
  combined reward is ``sum_k w_k * value_k`` with ``value_k`` in *original units*, so it is exactly
  what a user computes from `RewardModel.score_attributes`.
* **Pairs from ratings** (``bt+regression``): answers of one prompt are compared on
  ``--pair-attribute`` (default ``combined``: the combined reward of their ratings; or one attribute
  name) through the pairwise converter `rewardkit.ratings.pairs_for`, with the same modes,
  thresholds and margins as a single-score rating table. An answer lacking a value the pair score
  needs cannot be compared and is left out of pairing (counted), while its other values still train
  the regression head.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from .data import split_by_prompt
from .formats import check_text as _check_text
from .options import option, same_option
from .readers import iter_rows
from .records import Loaded, Problem, Text, check_usable
from .errors import DataError, RecordError, UsageError, flag
from .ratings import (PROMPT_COLUMNS, RESPONSE_COLUMNS, SCORE_COLUMNS, Answer, RatedPrompt, RatingOptions, _key,
                      find_column, pairs_for)

AUTO = "auto"
SCALINGS = ("auto", "range", "standardize", "none")
REGRESSION_LOSSES = ("mse", "huber")
COMBINED = "combined"
OBJECTIVES = ("bt", "regression", "bt+regression")


@dataclass
class AttributeOptions:
    """How a multi-attribute rating table becomes regression targets. TrainConfig copies these fields
    (`attribute_field`), so the CLI flags and YAML keys are the field names."""

    prompt_column: str | None = same_option(RatingOptions, "prompt_column")
    response_column: str | None = same_option(RatingOptions, "response_column")
    score_column: str | None = option(
        "Rating tables: the column holding the numeric score (default: the first of "
        + "/".join(SCORE_COLUMNS) + " present), or for --objective regression a comma-separated list "
        "of attribute columns (helpfulness,correctness,...) in output order.", None, group="data")
    attributes: str | None = option(
        "--objective regression: 'auto' takes every column but prompt/response whose first non-empty "
        "value is a number as an attribute (instead of --score-column).", None, group="data", must_match=True)
    score_range: str | None = option(
        "Allowed range of the ratings, LO:HI for all attributes and/or NAME=LO:HI per attribute "
        "(e.g. 0:4,verbosity=0:2). A value outside it is an error naming file:line.", None, group="data",
        must_match=True)
    target_scaling: str = option(
        "What the regression head learns: range maps --score-range to [0, 1], standardize uses the "
        "training mean/std, none keeps raw values; auto = range when every attribute has a range, "
        "else standardize. Scores are always reported in the original units.", "auto", group="training",
        must_match=True, choices=list(SCALINGS))
    attribute_weights: str | None = option(
        "Weights of the combined reward, NAME=W,... (e.g. helpfulness=1,verbosity=-0.3); unlisted "
        "attributes weigh 0. Default: 1/K each (the mean of the attributes).", None, group="training",
        must_match=True)
    pair_attribute: str = option(
        "--objective bt+regression: compare the answers of a prompt on this attribute, or on "
        "'combined' (the weighted combined rating) to derive preference pairs.", COMBINED, group="training",
        must_match=True)
    regression_loss: str = option(
        "Regression loss on scaled targets: mse or huber (see --huber-delta); missing values are masked.",
        "mse", group="training", must_match=True, choices=list(REGRESSION_LOSSES))
    huber_delta: float = option(
        "Huber loss: quadratic below DELTA (in scaled units), linear above.", 1.0, group="training",
        must_match=True)
    pairwise_weight: float = option(
        "--objective bt+regression: loss = regression loss + PAIRWISE_WEIGHT * Bradley-Terry loss of the "
        "combined reward on the pairs derived from the ratings.", 1.0, group="training", must_match=True)

    def validate(self) -> None:
        """Raise UsageError naming the flag of the first bad value (column-independent checks only)."""
        if self.attributes is not None and self.attributes != AUTO:
            raise UsageError(f"{flag('attributes')} must be 'auto' (got {self.attributes!r}); "
                             f"name columns with {flag('score_column')} a,b,c")
        if self.attributes == AUTO and self.score_column is not None:
            raise UsageError(f"give either {flag('attributes')} auto or {flag('score_column')}, not both")
        if self.score_column is not None:
            parse_columns(self.score_column)
        if self.target_scaling not in SCALINGS:
            raise UsageError(f"{flag('target_scaling')} must be one of {', '.join(SCALINGS)} "
                             f"(got {self.target_scaling!r})")
        if self.regression_loss not in REGRESSION_LOSSES:
            raise UsageError(f"{flag('regression_loss')} must be one of {', '.join(REGRESSION_LOSSES)} "
                             f"(got {self.regression_loss!r})")
        if not (math.isfinite(self.huber_delta) and self.huber_delta > 0):
            raise UsageError(f"{flag('huber_delta')} must be a finite number > 0 (got {self.huber_delta!r})")
        if not (math.isfinite(self.pairwise_weight) and self.pairwise_weight >= 0):
            raise UsageError(f"{flag('pairwise_weight')} must be a finite number >= 0 (got {self.pairwise_weight!r})")
        parse_ranges(self.score_range)
        parse_weights(self.attribute_weights)


def attribute_field(name: str, **changes: Any) -> Any:
    """A dataclass field identical to `AttributeOptions.<name>`, so TrainConfig documents it once."""
    return same_option(AttributeOptions, name, **changes)


def attribute_options_from(obj: Any) -> AttributeOptions:
    """The `AttributeOptions` part of any object with the same attribute names (e.g. a TrainConfig)."""
    return AttributeOptions(**{f.name: getattr(obj, f.name) for f in dataclasses.fields(AttributeOptions)})


def check_objective(cfg: Any) -> None:
    """TrainConfig checks for ``--objective`` (UsageError naming the flag).

    Pairwise runs must not be given an attribute list; regression runs need a rating file and
    leave out what only applies to pairwise batches (v1: rankings, per-prompt balancing).
    """
    if cfg.objective == "bt":
        if cfg.score_column and "," in cfg.score_column or cfg.attributes:
            raise UsageError(f"give one {flag('score_column')} for pairwise training "
                             f"(or {flag('objective')} regression for several attributes)")
        return
    if not cfg.train_data:
        raise UsageError(f"{flag('objective')} {cfg.objective} needs {flag('train_data')}: a rating table "
                         "with one column per attribute")
    for ok, name, why in ((cfg.loss == "bt", "loss", "pl"), (cfg.ratings_mode != "ranking", "ratings_mode", "ranking"),
                          (not cfg.balance_per_prompt, "balance_per_prompt", "on")):
        if not ok:
            raise UsageError(f"{flag(name)} {why} does not apply to {flag('objective')} {cfg.objective}")
    attribute_options_from(cfg).validate()


# --------------------------------------------------------------------------------------- flag parsing


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{what}: {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise UsageError(f"{what}: {text.strip()!r} is not a finite number")
    return value


def parse_columns(spec: str) -> list[str]:
    """``"a, b,c"`` -> ["a", "b", "c"]; empty names and repeats are errors naming --score-column."""
    names = [s.strip() for s in spec.split(",")]
    if not spec.strip() or any(not n for n in names):
        raise UsageError(f"{flag('score_column')}: expected NAME or NAME,NAME,... (got {spec!r})")
    dup = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if dup is not None:
        raise UsageError(f"{flag('score_column')}: attribute {dup!r} is listed twice")
    return names


def _parse_range(text: str, what: str) -> tuple[float, float]:
    lo_text, sep, hi_text = text.partition(":")
    if not sep:
        raise UsageError(f"{what}: expected LO:HI, got {text.strip()!r}")
    lo, hi = _number(lo_text, what), _number(hi_text, what)
    if not lo < hi:
        raise UsageError(f"{what}: LO must be below HI (got {text.strip()!r})")
    return lo, hi


def parse_ranges(spec: str | None) -> dict[str | None, tuple[float, float]]:
    """``"0:4,verbosity=0:2"`` -> {None: (0, 4), "verbosity": (0, 2)}; None is every other attribute."""
    if spec is None or not spec.strip():
        return {}
    out: dict[str | None, tuple[float, float]] = {}
    for part in spec.split(","):
        name, eq, rng = part.partition("=")
        key = name.strip() if eq else None
        if eq and not key:
            raise UsageError(f"{flag('score_range')}: missing attribute name in {part.strip()!r}")
        if key in out:
            raise UsageError(f"{flag('score_range')}: {'range for ' + repr(key) if key else 'default range'} "
                             "given twice")
        out[key] = _parse_range(rng if eq else name, flag("score_range"))
    return out


def parse_weights(spec: str | None) -> dict[str, float]:
    """``"helpfulness=1,verbosity=-0.3"`` -> {"helpfulness": 1.0, "verbosity": -0.3}."""
    if spec is None or not spec.strip():
        return {}
    out: dict[str, float] = {}
    for part in spec.split(","):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or not name:
            raise UsageError(f"{flag('attribute_weights')}: expected NAME=WEIGHT, got {part.strip()!r}")
        if name in out:
            raise UsageError(f"{flag('attribute_weights')}: weight for {name!r} given twice")
        out[name] = _number(value, f"{flag('attribute_weights')} {name}")
    return out


def resolve_ranges(spec: str | None, attributes: Sequence[str]) -> list[tuple[float, float] | None]:
    """The stated range of each attribute (None: unbounded); a named unknown attribute is an error."""
    ranges = parse_ranges(spec)
    unknown = sorted(k for k in ranges if k is not None and k not in attributes)
    if unknown:
        raise UsageError(f"{flag('score_range')}: no attribute {', '.join(map(repr, unknown))} "
                         f"(attributes are {', '.join(attributes)})")
    return [ranges.get(a, ranges.get(None)) for a in attributes]


def resolve_weights(spec: str | None, attributes: Sequence[str]) -> list[float]:
    """Weights in attribute order: the flag's values (unlisted: 0), or 1/K each without the flag."""
    weights = parse_weights(spec)
    if not weights:
        return [1.0 / len(attributes)] * len(attributes)
    unknown = sorted(k for k in weights if k not in attributes)
    if unknown:
        raise UsageError(f"{flag('attribute_weights')}: no attribute {', '.join(map(repr, unknown))} "
                         f"(attributes are {', '.join(attributes)})")
    if not any(weights.values()):
        raise UsageError(f"{flag('attribute_weights')}: every weight is 0, the combined reward would be constant")
    return [weights.get(a, 0.0) for a in attributes]


# --------------------------------------------------------------------------------------- records


@dataclass
class RatedResponse:
    """One rated row: ``values[k]`` is attribute k's rating, None where the row has none (masked)."""

    prompt: Text
    response: Text
    values: list[float | None]
    where: str  # "file:line"

    def prompt_key(self) -> str:
        return _key(self.prompt)


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
    prompt = _check_text(raw.get(pcol), pcol)
    response = _check_text(raw.get(rcol), rcol)
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


# --------------------------------------------------------------------------------------- scaling


@dataclass
class Scaling:
    """Per-attribute affine map between original units and what the head regresses.

    ``scaled = (value - offset) / scale``; ``value = offset + scale * scaled``. Stored with the
    model (`to_dict`) so scoring returns original units.
    """

    kind: str  # "range", "standardize" or "none"
    offset: list[float]
    scale: list[float]

    def scale_values(self, values: Sequence[float | None]) -> list[float | None]:
        return [None if v is None else (v - o) / s for v, o, s in zip(values, self.offset, self.scale)]

    def unscale(self, outputs: Sequence[float]) -> list[float]:
        return [o + s * y for y, o, s in zip(outputs, self.offset, self.scale)]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "offset": list(self.offset), "scale": list(self.scale)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Scaling":
        return cls(kind=str(d["kind"]), offset=[float(x) for x in d["offset"]], scale=[float(x) for x in d["scale"]])


def fit_scaling(kind: str, records: Sequence[RatedResponse], ranges: Sequence[tuple[float, float] | None],
                attributes: Sequence[str], center: bool = True) -> Scaling:
    """The `Scaling` for ``--target-scaling`` (see module doc), fitted on training records only.

    ``center=False`` keeps every offset at 0 (divide only): for heads without a bias (Llama, Qwen,
    GPT-2 ``score``), into which a scale can be folded at export but an offset cannot
    (`rewardkit.regression.fold_scaling`).
    """
    k = len(attributes)
    if kind == "auto":
        kind = "range" if all(r is not None for r in ranges) else "standardize"
    if kind == "none":
        return Scaling("none", [0.0] * k, [1.0] * k)
    if kind == "range":
        missing = [a for a, r in zip(attributes, ranges) if r is None]
        if missing:
            raise UsageError(f"{flag('target_scaling')} range needs {flag('score_range')} for "
                             f"{', '.join(missing)}")
        lows = [r[0] if center else 0.0 for r in ranges]  # type: ignore[index]
        return Scaling("range", lows, [r[1] - r[0] for r in ranges])  # type: ignore[index]
    offset, scale = [], []
    for j, name in enumerate(attributes):
        seen = [r.values[j] for r in records if r.values[j] is not None]
        if not seen:
            raise DataError(f"attribute {name!r} has no value in the training data")
        mean = statistics.fmean(seen)  # type: ignore[arg-type]
        std = statistics.pstdev(seen) if len(seen) > 1 else 0.0  # type: ignore[arg-type]
        offset.append(mean if center else 0.0)
        scale.append(std if std > 0 else 1.0)  # a constant attribute: centre it, do not divide by 0
    return Scaling("standardize", offset, scale)


def target_matrix(records: Sequence[RatedResponse], scaling: Scaling) -> tuple[list[list[float]], list[list[bool]]]:
    """Scaled targets [N][K] (0.0 where missing) and the observed mask [N][K], ready for tensors."""
    targets, mask = [], []
    for r in records:
        scaled = scaling.scale_values(r.values)
        targets.append([0.0 if v is None else v for v in scaled])
        mask.append([v is not None for v in scaled])
    return targets, mask


def combine(values: Sequence[float | None], weights: Sequence[float]) -> float | None:
    """``sum_k w_k * value_k`` over weighted attributes; None when a weighted value is missing."""
    total = 0.0
    for v, w in zip(values, weights):
        if w == 0:
            continue
        if v is None:
            return None
        total += w * v
    return total


# --------------------------------------------------------------------------------------- pairs


def pair_score_weights(pair_attribute: str, attributes: Sequence[str], weights: Sequence[float]) -> list[float]:
    """The weights of the score answers are compared on: the combined weights, or one attribute's."""
    if pair_attribute == COMBINED:
        return list(weights)
    if pair_attribute not in attributes:
        raise UsageError(f"{flag('pair_attribute')}: no attribute {pair_attribute!r} "
                         f"(attributes are {', '.join(attributes)}, or 'combined')")
    return [1.0 if a == pair_attribute else 0.0 for a in attributes]


def group_for_pairs(records: Sequence[RatedResponse], pair_weights: Sequence[float]
                    ) -> tuple[list[RatedPrompt], int]:
    """Prompts with their answers scored by ``pair_weights`` (rows re-rating an answer are averaged,
    as in `rewardkit.ratings`); also how many rows lacked a value the score needs."""
    groups: dict[str, RatedPrompt] = {}
    unscored = 0
    for r in records:
        score = combine(r.values, pair_weights)
        if score is None:
            unscored += 1
            continue
        group = groups.setdefault(r.prompt_key(), RatedPrompt(r.prompt, r.where))
        same = next((a for a in group.answers if _key(a.response) == _key(r.response)), None)
        if same is None:
            group.answers.append(Answer(r.response, [score], r.where))
        else:
            same.scores.append(score)
    return list(groups.values()), unscored


def pairs_from_records(records: Sequence[RatedResponse], attributes: Sequence[str], weights: Sequence[float],
                       pair_attribute: str, ratings: RatingOptions) -> Loaded:
    """Preference pairs for ``bt+regression`` from the same rows (see module doc), via `pairs_for`.

    Call it on each side of a split separately (`split_records`): pairs never cross prompts, so the
    pairs of the training rows and of the held-out rows stay prompt-disjoint. ``ratings_mode`` must
    be best-worst or all-pairs; prompts that yield no pair are `dropped` with their reason.
    """
    if ratings.ratings_mode == "ranking":
        raise UsageError(f"{flag('ratings_mode')} ranking does not apply to --objective bt+regression "
                         "(use best-worst or all-pairs)")
    pw = pair_score_weights(pair_attribute, attributes, weights)
    groups, unscored = group_for_pairs(records, pw)
    out = Loaded(comparisons=[], records=len(records))
    for g in groups:
        comps, why = pairs_for(g, ratings)
        out.comparisons.extend(comps)
        if why is not None:
            out.dropped.append(Problem(g.where, why))
    note = (f"pairs from ratings on {pair_attribute}: {len(groups)} prompts -> {len(out.comparisons)} pairs "
            f"({ratings.describe()}); {len(out.dropped)} prompts gave none")
    if unscored:
        note += f"; {unscored} rows lack a value {pair_attribute!r} needs and were not paired"
    out.notes.append(note)
    return out


def split_records(records: Sequence[RatedResponse], fraction: float, seed: int
                  ) -> tuple[list[RatedResponse], list[RatedResponse]]:
    """Seeded, prompt-disjoint (train, eval) split: `rewardkit.data.split_by_prompt` on rated rows."""
    return split_by_prompt(list(records), fraction, seed)  # type: ignore[arg-type]  # duck-typed on prompt_key


# --------------------------------------------------------------------------------------- model metadata


def head_config(attributes: Sequence[str]) -> dict[str, Any]:
    """The transformers config fields of a K-attribute regression head (``AutoConfig`` kwargs).

    Plain transformers then knows the outputs are regression values and what each one is called.
    """
    return {"num_labels": len(attributes), "problem_type": "regression",
            "id2label": {i: a for i, a in enumerate(attributes)},
            "label2id": {a: i for i, a in enumerate(attributes)}}


@dataclass
class RegressionMeta:
    """What a regression model stores under ``config.rewardkit`` to score like it was trained.

    ``scaling`` is what the head learned; ``folded`` says the export rewrote the output layer
    (`rewardkit.regression.fold_scaling`) so the saved logits are already in original units.
    """

    attributes: list[str]
    weights: list[float]
    scaling: Scaling
    folded: bool = False
    objective: str = "regression"
    pair_attribute: str = COMBINED

    def to_meta(self) -> dict[str, Any]:
        return {"objective": self.objective, "attributes": list(self.attributes),
                "attribute_weights": dict(zip(self.attributes, self.weights)),
                "scaling": {**self.scaling.to_dict(), "folded": self.folded},
                "pair_attribute": self.pair_attribute}

    @classmethod
    def from_meta(cls, meta: dict[str, Any], num_labels: int, where: str) -> "RegressionMeta | None":
        """None for a pairwise model; UsageError naming ``where`` for inconsistent settings."""
        attrs = meta.get("attributes")
        if not attrs:
            return None
        weights = meta.get("attribute_weights") or {}
        if len(attrs) != num_labels or set(weights) - set(attrs):
            raise UsageError(f"{where}: config.rewardkit names attributes {attrs} (weights for {sorted(weights)}) "
                             f"but the head has {num_labels} outputs")
        scaling = meta.get("scaling") or {"kind": "none", "offset": [0.0] * num_labels, "scale": [1.0] * num_labels}
        return cls(attributes=list(attrs), weights=[float(weights.get(a, 0.0)) for a in attrs],
                   scaling=Scaling.from_dict(scaling), folded=bool(scaling.get("folded", False)),
                   objective=str(meta.get("objective", "regression")),
                   pair_attribute=str(meta.get("pair_attribute", COMBINED)))

    def values(self, outputs: Sequence[float]) -> list[float]:
        """Head outputs -> ratings in original units (identity once the scaling is folded)."""
        return list(outputs) if self.folded else self.scaling.unscale(outputs)

    def reward(self, outputs: Sequence[float]) -> float:
        """The combined reward of one response's head outputs: ``sum_k w_k * value_k``."""
        return math.fsum(w * v for w, v in zip(self.weights, self.values(outputs)))

    def as_dict(self, outputs: Sequence[float]) -> dict[str, float]:
        """{attribute: value} in original units: what `RewardModel.score_attributes` returns per response."""
        return dict(zip(self.attributes, self.values(outputs)))
