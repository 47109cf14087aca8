"""Evaluation metrics for multi-attribute (regression) reward models, from numbers alone.

Per attribute, over the responses that have a rating for it (missing ratings are skipped, never
counted as 0): RMSE in the attribute's original units, Pearson's r, and Spearman's rho (Pearson's
r of the ranks, ties given their average rank, as scipy.stats.spearmanr does). A correlation is
undefined (None, "n/a" in reports) with fewer than two values or when either side is constant.

The combined reward is judged like any reward model, on pairs: the share of (better, worse) pairs
it orders correctly, ties counting as wrong (rewardkit.evaluation.held_out's convention).

Pure Python (no numpy or scipy needed), so eval stays light; tests check against numpy/scipy.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from rewardkit.data.records import Comparison, text_key


def average_ranks(xs: Sequence[float]) -> list[float]:
    """1-based ranks, tied values sharing the mean of the ranks they span: [10, 20, 20, 5] -> [2, 3.5, 3.5, 1]."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        shared = (i + j) / 2 + 1  # mean of the 1-based ranks i+1 .. j+1
        for t in range(i, j + 1):
            ranks[order[t]] = shared
        i = j + 1
    return ranks


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson's r, or None when undefined (n < 2, or a constant side)."""
    n = len(x)
    if n != len(y):
        raise ValueError(f"{n} predictions but {len(y)} targets")
    if n < 2:
        return None
    mx, my = math.fsum(x) / n, math.fsum(y) / n
    sxy = math.fsum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = math.fsum((a - mx) ** 2 for a in x)
    syy = math.fsum((b - my) ** 2 for b in y)
    if sxx <= 0 or syy <= 0:
        return None
    return max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho with average ranks for ties, or None when undefined."""
    if len(x) != len(y):
        raise ValueError(f"{len(x)} predictions but {len(y)} targets")
    return pearson(average_ranks(x), average_ranks(y))


def rmse(pred: Sequence[float], true: Sequence[float]) -> float | None:
    if len(pred) != len(true):
        raise ValueError(f"{len(pred)} predictions but {len(true)} targets")
    if not pred:
        return None
    return math.sqrt(math.fsum((p - t) ** 2 for p, t in zip(pred, true)) / len(pred))


def observed_pairs(pred: Sequence[Sequence[float]], true: Sequence[Sequence[float | None]], k: int
                   ) -> tuple[list[float], list[float]]:
    """(predictions, ratings) of attribute ``k`` over the rows that have a rating for it."""
    p, t = [], []
    for row_pred, row_true in zip(pred, true):
        if row_true[k] is not None:
            p.append(float(row_pred[k]))
            t.append(float(row_true[k]))  # type: ignore[arg-type]
    return p, t


def attribute_metrics(pred: Sequence[Sequence[float]], true: Sequence[Sequence[float | None]],
                      attributes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """{attribute: {"rmse", "pearson", "spearman", "n"}} for predictions and ratings in original units.

    ``pred[i][k]`` is the model's value for response i, attribute k; ``true[i][k]`` its rating or
    None (missing: skipped for that attribute only).
    """
    if len(pred) != len(true):
        raise ValueError(f"{len(pred)} prediction rows but {len(true)} rating rows")
    out = {}
    for k, name in enumerate(attributes):
        p, t = observed_pairs(pred, true, k)
        out[name] = {"rmse": rmse(p, t), "pearson": pearson(p, t), "spearman": spearman(p, t), "n": len(t)}
    return out


def pairwise_accuracy(better: Sequence[float], worse: Sequence[float]) -> float | None:
    """Share of pairs with reward(better) > reward(worse); ties are wrong; None without pairs."""
    if len(better) != len(worse):
        raise ValueError(f"{len(better)} better rewards but {len(worse)} worse rewards")
    if not better:
        return None
    return sum(b > w for b, w in zip(better, worse)) / len(better)


def macro_mean(per_attribute: dict[str, dict[str, Any]], key: str) -> float | None:
    """Mean of one metric over the attributes where it is defined (a headline number)."""
    vals = [m[key] for m in per_attribute.values() if m.get(key) is not None]
    return math.fsum(vals) / len(vals) if vals else None


def regression_metrics(pred: Sequence[Sequence[float]], true: Sequence[Sequence[float | None]],
                       attributes: Sequence[str], pair_rewards: Sequence[tuple[float, float]] | None = None
                       ) -> dict[str, Any]:
    """The dict `rewardkit eval --json` prints for a regression model (docs/objectives.md describes every field).

    ``pair_rewards`` are (combined reward of the better response, of the worse one) per pair, when
    the evaluation data gives or implies pairs.
    """
    per = attribute_metrics(pred, true, attributes)
    out: dict[str, Any] = {
        "responses": len(true),
        "attributes": per,
        "mean_rmse": macro_mean(per, "rmse"),
        "mean_pearson": macro_mean(per, "pearson"),
        "mean_spearman": macro_mean(per, "spearman"),
    }
    if pair_rewards is not None:
        out["pairs"] = len(pair_rewards)
        out["accuracy"] = pairwise_accuracy([b for b, _ in pair_rewards], [w for _, w in pair_rewards])
    return out


def flat_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """`regression_metrics` as one flat dict of numbers (``spearman/helpfulness``...), for metrics.jsonl
    and trackers, which take scalars only."""
    out = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    for name, m in metrics.get("attributes", {}).items():
        for key in ("rmse", "pearson", "spearman"):
            out[f"{key}/{name}"] = m.get(key)
    return out


def pair_rewards_from(records: Sequence[Any], combined: Sequence[float], pairs: Sequence[Comparison]
                      ) -> list[tuple[float, float]]:
    """(better, worse) predicted combined rewards of ``pairs``, looked up from the scored rated rows
    (`RatedResponse`s; a response rated twice: the mean), so pairs need no second forward pass."""
    sums: dict[tuple[str, str], list[float]] = {}
    for r, c in zip(records, combined):
        sums.setdefault((r.prompt_key(), text_key(r.response)), []).append(c)
    mean = {k: sum(v) / len(v) for k, v in sums.items()}
    return [(mean[(c.prompt_key(), text_key(c.responses[0]))], mean[(c.prompt_key(), text_key(c.responses[-1]))])
            for c in pairs]
