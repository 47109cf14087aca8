"""Reward-model metrics, computed from rewards alone (so they are easy to check by hand).

Every comparison is judged pair by pair: a pair is (chosen, rejected) and a K-way ranking
contributes its C(K,2) ordered pairs. A tie counts as wrong (RewardBench convention): a model that
gives every response the same reward scores 0, not 0.5.

Calibration treats P(chosen preferred) = sigmoid(r_c - r_r) as a probabilistic forecast. Each pair
is counted in both orientations, (p, outcome 1) and (1 - p, outcome 0), so the reliability diagram
spans [0, 1] and does not depend on which response the file lists first. ECE uses 10 equal-width
bins; the Brier score is mean((1 - p)^2), the same in both orientations.

Rankings of K >= 3 responses are also judged whole (`ranking_metrics`): whether the best response
gets the highest reward (top-1, best-of-N) and how well the rewards' order agrees with the true one
(Kendall's tau-b). Pairs (K = 2) are left out of these: for them both say what accuracy says.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from itertools import combinations
from typing import Any, Sequence

from rewardkit.data.records import Comparison, text_length
from rewardkit.model.reward_model import sigmoid

CALIBRATION_BINS = 10
Sections = dict[str, dict[str, float] | list[str]]  # section -> {subset: weight} or [subset, ...]


def format_metric(key: str, value: Any) -> str:
    """A metric for people: accuracies and rates as percentages, other floats to 4 significant digits
    (an untrained model's margins are ~1e-6, not "0.0000"), None and NaN as "n/a". Reports and model
    cards show numbers this one way."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        percent = key.endswith(("_rate", "_accuracy")) or key.startswith("accuracy")
        return f"{value:.2%}" if percent else f"{value:.4g}"
    return str(value)


def calibration_bin(p: float, bins: int = CALIBRATION_BINS) -> int:
    """Equal-width bin of a probability; 1.0 falls in the last bin.

    ECE and the reliability diagram both bin through here, so the plot shows exactly the bins the
    number was computed from.
    """
    return min(max(int(p * bins), 0), bins - 1)


def reliability(probs: Sequence[float], outcomes: Sequence[int], bins: int = CALIBRATION_BINS
                ) -> list[dict[str, float]]:
    """Per non-empty bin: edges, count, mean forecast and observed frequency (the diagram's data)."""
    sums = [[0.0, 0.0, 0] for _ in range(bins)]
    for p, y in zip(probs, outcomes):
        b = calibration_bin(p, bins)
        sums[b][0] += p
        sums[b][1] += y
        sums[b][2] += 1
    return [{"lo": b / bins, "hi": (b + 1) / bins, "count": c, "forecast": sp / c, "observed": sy / c}
            for b, (sp, sy, c) in enumerate(sums) if c]


def expected_calibration_error(probs: Sequence[float], outcomes: Sequence[int],
                               bins: int = CALIBRATION_BINS) -> float:
    """sum_b |B_b|/n * |mean forecast in b - observed frequency in b|, equal-width bins on [0, 1]."""
    if not probs:
        return float("nan")
    n = len(probs)
    return sum(r["count"] / n * abs(r["forecast"] - r["observed"]) for r in reliability(probs, outcomes, bins))


def calibration_data(margins: Sequence[float]) -> tuple[list[float], list[int]]:
    """Forecasts and outcomes for calibration: every pair in both orientations (see module doc)."""
    probs = [sigmoid(m) for m in margins]
    return probs + [1.0 - p for p in probs], [1] * len(probs) + [0] * len(probs)


def bt_loss(margin: float) -> float:
    """-log sigmoid(margin), computed without overflow or underflow for any margin."""
    return math.log1p(math.exp(-margin)) if margin >= 0 else -margin + math.log1p(math.exp(margin))


def brier_score(probs_chosen: Sequence[float]) -> float:
    return sum((1.0 - p) ** 2 for p in probs_chosen) / len(probs_chosen) if probs_chosen else float("nan")


def _stats(xs: list[float]) -> tuple[float, float]:
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), statistics.pstdev(xs) if len(xs) > 1 else 0.0


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b of two sequences: (concordant - discordant) / sqrt((n0 - n1) (n0 - n2)), with n0
    the number of pairs and n1, n2 the pairs tied in x, in y. None when either is constant (0/0).

    O(n^2) over the pairs; rankings are short, and scipy is not a dependency.
    """
    score = tied_x = tied_y = 0
    for i, j in combinations(range(len(x)), 2):
        dx, dy = (x[i] > x[j]) - (x[i] < x[j]), (y[i] > y[j]) - (y[i] < y[j])
        score += dx * dy
        tied_x += dx == 0
        tied_y += dy == 0
    n0 = len(x) * (len(x) - 1) // 2
    if tied_x == n0 or tied_y == n0:
        return None
    return score / math.sqrt((n0 - tied_x) * (n0 - tied_y))


def ranking_metrics(rankings: Sequence[Sequence[float]]) -> dict[str, Any]:
    """Top-1 accuracy and mean Kendall tau-b over rankings of K >= 3 responses' rewards, best first.

    Top-1: the best response has the highest reward; a tie at the top scores 1/(number tied), the
    expected score of picking one of them at random. Tau-b compares the rewards with the true order;
    a ranking whose rewards are all equal (tau-b undefined) counts 0, as it orders nothing. Empty
    dict without any ranking of K >= 3.
    """
    ranked = [list(r) for r in rankings if len(r) >= 3]
    if not ranked:
        return {}
    top1, taus = [], []
    for r in ranked:
        best = max(r)
        top1.append(1.0 / r.count(best) if r[0] == best else 0.0)
        tau = kendall_tau_b([-float(i) for i in range(len(r))], r)
        taus.append(0.0 if tau is None else tau)
    return {"top1_accuracy": statistics.fmean(top1), "kendall_tau": statistics.fmean(taus), "rankings": len(ranked)}


def pairs_of(comps: Sequence[Comparison], rewards: Sequence[Sequence[float]]
             ) -> list[dict[str, Any]]:
    """Flatten comparisons and their rewards into (chosen, rejected) pair rows.

    Each row also names its comparison (index ``comparison``, ``size`` K) and the responses' places
    in it (``better``, ``worse``), so `pair_metrics` can put K-way rankings back together.
    """
    rows = []
    for n, (c, r) in enumerate(zip(comps, rewards)):
        k = len(c.responses)
        for i, j in combinations(range(k), 2):
            rows.append({"chosen_reward": r[i], "rejected_reward": r[j], "subset": c.subset,
                         "chosen_len": text_length(c.responses[i]),
                         "rejected_len": text_length(c.responses[j]),
                         "comparison": n, "size": k, "better": i, "worse": j})
    return rows


def rankings_of(rows: Sequence[dict[str, Any]]) -> list[list[float]]:
    """The rewards of every K >= 3 comparison (best first) behind `pairs_of` rows; rows without the
    comparison fields (built by hand) give none."""
    found: dict[int, list[float]] = {}
    for r in rows:
        if r.get("size", 0) >= 3 and "comparison" in r:
            rewards = found.setdefault(r["comparison"], [math.nan] * r["size"])
            rewards[r["better"]], rewards[r["worse"]] = r["chosen_reward"], r["rejected_reward"]
    return list(found.values())


def pair_metrics(rows: Sequence[dict[str, Any]], section_weights: Sections | None = None
                 ) -> dict[str, Any]:
    """All headline metrics from pair rows with chosen/rejected rewards and lengths."""
    if not rows:
        return {"pairs": 0}
    margins = [r["chosen_reward"] - r["rejected_reward"] for r in rows]
    correct = [m > 0 for m in margins]
    probs = [sigmoid(m) for m in margins]
    both_p, both_y = calibration_data(margins)
    chosen_mean, chosen_std = _stats([r["chosen_reward"] for r in rows])
    rejected_mean, rejected_std = _stats([r["rejected_reward"] for r in rows])
    longer = [r["chosen_len"] > r["rejected_len"] for r in rows]
    differ = [r for r in rows if r["chosen_len"] != r["rejected_len"]]
    prefers_longer = [(r["chosen_reward"] > r["rejected_reward"]) == (r["chosen_len"] > r["rejected_len"])
                      and r["chosen_reward"] != r["rejected_reward"] for r in differ]

    def acc(sel: list[bool]) -> float | None:
        picked = [c for c, s in zip(correct, sel) if s]
        return sum(picked) / len(picked) if picked else None

    out: dict[str, Any] = {
        "accuracy": sum(correct) / len(rows),
        "pairs": len(rows),
        "mean_margin": statistics.fmean(margins),
        "median_margin": statistics.median(margins),
        "loss": statistics.fmean(bt_loss(m) for m in margins),
        "chosen_reward_mean": chosen_mean, "chosen_reward_std": chosen_std,
        "rejected_reward_mean": rejected_mean, "rejected_reward_std": rejected_std,
        "ece": expected_calibration_error(both_p, both_y),
        "brier": brier_score(probs),
        "chosen_longer_rate": sum(longer) / len(rows),
        "accuracy_chosen_longer": acc(longer),
        "accuracy_chosen_not_longer": acc([not x for x in longer]),
        "prefers_longer_rate": sum(prefers_longer) / len(differ) if differ else None,
        **ranking_metrics(rankings_of(rows)),
    }
    subsets: dict[str, list[bool]] = defaultdict(list)
    for r, c in zip(rows, correct):
        if r.get("subset") is not None:
            subsets[r["subset"]].append(c)
    if subsets:
        out["subsets"] = {k: {"accuracy": sum(v) / len(v), "pairs": len(v)} for k, v in sorted(subsets.items())}
    if section_weights and subsets:
        out["sections"] = section_scores(out["subsets"], section_weights)
    return out


def check_sections(doc: Any) -> Sections:
    """Validate a section mapping read from JSON; raise ValueError saying what is wrong where.

    Shape: ``{section: {subset: weight}}`` or ``{section: [subset, ...]}`` (list: each subset
    weighted by its number of pairs, RewardBench's example-count weighting).
    """
    if not isinstance(doc, dict) or not doc:
        raise ValueError("expected a JSON object {section: {subset: weight}} or {section: [subset, ...]}")
    for name, members in doc.items():
        if isinstance(members, list):
            if not members or not all(isinstance(m, str) for m in members):
                raise ValueError(f"section {name!r}: expected a non-empty list of subset names")
        elif isinstance(members, dict) and members:
            for subset, w in members.items():
                if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0 or math.isinf(w):
                    raise ValueError(f"section {name!r}, subset {subset!r}: weight must be a number >= 0, got {w!r}")
        else:
            raise ValueError(f"section {name!r}: expected {{subset: weight}} or [subset, ...], got {members!r}")
    return doc


def section_scores(subsets: dict[str, dict[str, float]], sections: Sections) -> dict[str, float]:
    """RewardBench-style section score: per section, subset accuracies averaged with weights.

    ``sections`` maps section -> {subset: weight}, or section -> [subset, ...] to weight each
    subset by its pair count. Subsets absent from the data are left out of the average; a
    section with none present gets no score.
    """
    out = {}
    for name, members in sections.items():
        weights = {s: subsets[s]["pairs"] for s in members if s in subsets} if isinstance(members, list) else members
        present = {s: w for s, w in weights.items() if s in subsets}
        total = sum(present.values())
        if total:
            out[name] = sum(subsets[s]["accuracy"] * w for s, w in present.items()) / total
    return out


def mean_gate_weights(attributes: list[str], comps: list[Any], weights: list[list[Any]]) -> dict[str, dict[str, float]]:
    """The gate's mean weight of every attribute per subset (and over all prompts), one weight per prompt."""
    groups: dict[str, list[list[float]]] = defaultdict(list)
    for c, per in zip(comps, weights):
        w = per[0]  # the responses of a comparison share its prompt, so its weights
        groups["all"].append(w)
        if c.subset is not None:
            groups[c.subset].append(w)
    return {s: {a: sum(w[k] for w in ws) / len(ws) for k, a in enumerate(attributes)} for s, ws in groups.items()}
