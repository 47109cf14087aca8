"""How a multi-attribute rating table becomes regression targets: the options, and their flag values parsed.

``--score-column a,b,c`` (or ``--attributes auto``) names the attributes; ``--score-range`` states
their scales, ``--attribute-weights`` the weights of the combined reward ``sum_k w_k * value_k``
(unlisted attributes weigh 0; no flag: 1/K each), ``--pair-attribute`` what answers are compared on
for ``--objective bt+regression``. Every parse error is a UsageError naming the flag.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

from rewardkit.data.ratings import SCORE_COLUMNS, RatingOptions
from rewardkit.errors import UsageError, flag
from rewardkit.options import option, same_option

AUTO = "auto"
SCALINGS = ("auto", "range", "standardize", "none")
REGRESSION_LOSSES = ("mse", "huber")
COMBINED = "combined"



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


