"""The regression-model parts of ``rewardkit eval`` and ``rewardkit score`` (issue 14).

``eval`` of a model with attributes on a rating table holding its attribute columns reports the
per-attribute RMSE/Pearson/Spearman of `rewardkit.evaluation.rating_metrics` and the pairwise accuracy of
the combined reward on the pairs the ratings imply; on a pair/ranking file the ordinary pairwise
metrics of the combined reward apply (the scorer returns it), so that path needs nothing here.
``score`` writes each response's attributes next to its combined reward.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Any, Callable

from rewardkit.data.attributes.pairs import pairs_from_records
from rewardkit.data.attributes.table import AttributeOptions, load_attribute_table
from rewardkit.data.ratings import RatingOptions
from rewardkit.data.readers import iter_rows
from rewardkit.data.records import describe_problems
from rewardkit.evaluation.rating_metrics import pair_rewards_from, regression_metrics
from rewardkit.model.artifacts import read_meta


# (metrics, write the HTML report to a directory, the text table)
RatedEvaluation = tuple[dict[str, Any], Callable[..., Path], Callable[[], str]]


def _is_attribute_table(path: str, attributes: list[str]) -> bool:
    """Whether the file's first record is a rating-table row with at least one of the attribute columns."""
    try:
        _, first = next(iter(iter_rows(path)))
    except (StopIteration, OSError, ValueError):
        return False
    return (isinstance(first, dict) and "chosen" not in first and "responses" not in first
            and any(a in first for a in attributes))


def eval_rated(cfg: Any, load_scorer: Callable[[Any], Any]) -> RatedEvaluation | None:
    """``rewardkit eval`` of a regression model on a rating table: (metrics, the report writer, the table
    printer), which the CLI uses as for pairwise metrics; None when this does not apply (a pairwise
    model, or a pair/ranking file: the pairwise path scores the combined reward)."""
    meta = read_meta(cfg.model_dir)
    attrs = list(meta.get("attributes") or [])
    if not attrs or not _is_attribute_table(cfg.data, attrs):
        return None
    table = load_attribute_table(cfg.data, AttributeOptions(score_column=",".join(attrs)), cfg.skip_invalid)
    if table.problems:
        print(describe_problems(table.problems, cfg.data) + "\n(skipped: --skip-invalid)", file=sys.stderr)
    rm = load_scorer(cfg)
    records = table.records
    encoded = [rm.encoder.encode_texts(r.prompt, [r.response]) for r in records]
    rewards, dicts = rm.attributes_for(encoded, cfg.batch_size)
    pred = [[d[0][a] for a in attrs] for d in dicts]
    combined = [r[0] for r in rewards]
    reg = rm.regression
    pairs = pairs_from_records(records, attrs, reg.weights, reg.pair_attribute, RatingOptions()).comparisons
    metrics = regression_metrics(pred, [r.values for r in records], attrs,
                                 pair_rewards_from(records, combined, pairs) if pairs else None)
    metrics["skipped"] = len(table.problems)
    from rewardkit.evaluation.rating_report import write_attribute_report

    page = partial(write_attribute_report, metrics=metrics, pred=pred, true=[r.values for r in records],
                   attributes=attrs)
    title = f"{cfg.data} ({metrics['responses']} rated responses):"
    return metrics, page, lambda: attribute_metrics_table(metrics, title)


def attribute_metrics_table(m: dict[str, Any], title: str) -> str:
    """Text form: one line per attribute, then the means and the combined reward's pair accuracy."""
    def fmt(v: Any) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    lines = [title, f"  {'attribute':<20} {'n':>6} {'rmse':>8} {'pearson':>8} {'spearman':>8}"]
    for name, a in m["attributes"].items():
        lines.append(f"  {name:<20} {a['n']:>6} {fmt(a['rmse']):>8} {fmt(a['pearson']):>8} {fmt(a['spearman']):>8}")
    lines.append(f"  {'mean':<20} {'':>6} {fmt(m['mean_rmse']):>8} {fmt(m['mean_pearson']):>8} "
                 f"{fmt(m['mean_spearman']):>8}")
    if "pairs" in m:
        lines.append(f"  combined reward accuracy {fmt(m['accuracy'])} ({m['pairs']} pairs)")
    return "\n".join(lines)


def add_attributes(rec: dict[str, Any], kind: str, raw: dict[str, Any], payload: Any,
                   attributes: list[dict[str, float]]) -> None:
    """``rewardkit score``: a regression model's attributes next to the rewards the record got."""
    if kind == "single":
        rec["attributes"] = attributes[0]
    elif len(attributes) == 2 and ("chosen" in raw or "positive" in raw or "response_j" in raw):
        rec["chosen_attributes"], rec["rejected_attributes"] = attributes
    else:
        order = payload.order or list(range(len(attributes)))
        out: list[dict[str, float]] = [{} for _ in attributes]
        for rank, i in enumerate(order):
            out[i] = attributes[rank]
        rec["attributes"] = out
