"""How good a process reward model is, from its step probabilities: pure functions.

* **Steps**: accuracy, and precision/recall/F1 of the error class (a step is predicted wrong when its
  probability of being right is below ``threshold``, 0.5 unless stated), beside what always predicting
  the majority class scores.
* **First error** (ProcessBench's rule): a solution's predicted first error is its first step predicted
  wrong, or none; accuracy on the solutions that have an error (the predicted first error is the real
  one), accuracy on the fully right solutions (nothing predicted wrong), and their harmonic mean.
* **Best-of-N** (solutions with a ``correct`` final answer, grouped by prompt): the solution a PRM picks
  by aggregating its step probabilities (``min``, ``prod``, ``last``, ``mean``), against picking at random
  (the expected share of correct solutions) and, where solutions carry their ``answer``, majority vote.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from typing import Any, Sequence

from rewardkit.data.steps import AGGREGATES, aggregate, sigmoid

def _f1(precision: float | None, recall: float | None) -> float | None:
    if not precision or not recall:
        return 0.0 if precision is not None and recall is not None else None
    return 2 * precision * recall / (precision + recall)


def step_metrics(probs: Sequence[Sequence[float]], labels: Sequence[Sequence[bool]], threshold: float = 0.5
                 ) -> dict[str, Any]:
    """Step accuracy and the error class's precision, recall and F1, with the majority-class baselines."""
    pairs = [(p, y) for ps, ys in zip(probs, labels) for p, y in zip(ps, ys)]
    wrong_pred = [p < threshold for p, _ in pairs]
    wrong_true = [not y for _, y in pairs]
    hits = sum(a and b for a, b in zip(wrong_pred, wrong_true))
    precision = hits / sum(wrong_pred) if any(wrong_pred) else None
    recall = hits / sum(wrong_true) if any(wrong_true) else None
    right_share = sum(y for _, y in pairs) / len(pairs) if pairs else None
    errors = sum(wrong_true)
    return {"steps": len(pairs), "step_accuracy": sum(a == b for a, b in zip(wrong_pred, wrong_true)) / len(pairs)
            if pairs else None,
            "error_precision": precision, "error_recall": recall, "error_f1": _f1(precision, recall),
            "majority_step_accuracy": max(right_share, 1 - right_share) if right_share is not None else None,
            # always "wrong": precision = share of errors, recall 1; always "right": F1 0
            "majority_error_f1": _f1(errors / len(pairs), 1.0) if right_share is not None and right_share < 0.5
            else 0.0, "threshold": threshold}


def first_error_metrics(probs: Sequence[Sequence[float]], labels: Sequence[Sequence[bool]], threshold: float = 0.5
                        ) -> dict[str, Any]:
    """ProcessBench's first-error localization (see the module doc)."""
    erroneous, right = [], []
    for ps, ys in zip(probs, labels):
        gold = next((i for i, y in enumerate(ys) if not y), -1)
        pred = next((i for i, p in enumerate(ps) if p < threshold), -1)
        (erroneous if gold >= 0 else right).append(pred == gold)
    acc_err = sum(erroneous) / len(erroneous) if erroneous else None
    acc_ok = sum(right) / len(right) if right else None
    harmonic = (2 * acc_err * acc_ok / (acc_err + acc_ok) if acc_err and acc_ok else 0.0
                if acc_err is not None and acc_ok is not None else None)
    return {"first_error_accuracy_erroneous": acc_err, "first_error_accuracy_correct": acc_ok,
            "first_error_f1": harmonic, "erroneous_solutions": len(erroneous), "correct_solutions": len(right)}


def best_of_n(prompts: Sequence[str], probs: Sequence[Sequence[float]], correct: Sequence[bool | None],
              answers: Sequence[str | None]) -> dict[str, Any] | None:
    """Best-of-N selection per aggregate against random choice and majority vote; None without at least
    one prompt of 2+ solutions with a known ``correct``."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, (p, c) in enumerate(zip(prompts, correct)):
        if c is not None:
            groups[p].append(i)
    groups = {p: ix for p, ix in groups.items() if len(ix) >= 2}
    if not groups:
        return None
    out: dict[str, Any] = {"prompts": len(groups), "solutions_per_prompt": statistics.fmean(len(ix) for ix in
                                                                                          groups.values())}
    for how in AGGREGATES:
        picked = [max(ix, key=lambda i: aggregate(probs[i], how)) for ix in groups.values()]
        out[f"best_of_n_{how}"] = sum(bool(correct[i]) for i in picked) / len(picked)
    out["best_of_n_random"] = statistics.fmean(sum(bool(correct[i]) for i in ix) / len(ix) for ix in groups.values())
    if all(answers[i] is not None for ix in groups.values() for i in ix):
        votes = []
        for ix in groups.values():
            top = Counter(answers[i] for i in ix).most_common(1)[0][0]
            votes.append(bool(correct[next(i for i in ix if answers[i] == top)]))
        out["best_of_n_majority_vote"] = sum(votes) / len(votes)
    return out


def prm_metrics(prompts: Sequence[str], logits: Sequence[Sequence[float]], labels: Sequence[Sequence[bool]],
                correct: Sequence[bool | None], answers: Sequence[str | None], threshold: float = 0.5
                ) -> dict[str, Any]:
    """Every PRM metric of held-out solutions from the model's step logits."""
    probs = [[sigmoid(x) for x in row] for row in logits]
    metrics = {"solutions": len(probs), **step_metrics(probs, labels, threshold),
               **first_error_metrics(probs, labels, threshold)}
    bon = best_of_n(prompts, probs, correct, answers)
    if bon:
        metrics["best_of_n"] = bon
    return metrics
