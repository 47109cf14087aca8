"""Report pieces for multi-attribute models: one predicted-vs-true scatter PNG per attribute and an
HTML fragment (metrics table + the plots) that the evaluation page includes.

Same conventions as `rewardkit.evaluation.report`: matplotlib's Agg canvas directly (no pyplot, no display,
no global state), images referenced by relative file name, everything escaped, no scripts.

Ratings are usually a few integers (HelpSteer: 0..4), so thousands of points would sit on five
vertical lines. When an attribute has at most `JITTER_LEVELS` distinct ratings the points are
spread horizontally by a small seeded jitter (the caption says so), and the mean prediction per
rating is drawn as a line: a good model's line follows the diagonal.
"""

from __future__ import annotations

import html
import math
import random
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from rewardkit.evaluation.rating_metrics import observed_pairs

if TYPE_CHECKING:
    from rewardkit.evaluation.report import TrainingRun

POINT_COLOR, MEAN_COLOR = "#1f77b4", "#ff7f0e"  # the main report's colour-blind safe pair
JITTER_LEVELS = 11
JITTER = 0.15  # of the smallest gap between two ratings


def _figure() -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.8, 4.4), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_file_name(attribute: str, index: int) -> str:
    """A safe, unique file name for an attribute's plot: ``scatter-02-verbosity.png``."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", attribute).strip("-")[:40] or "attribute"
    return f"scatter-{index:02d}-{slug}.png"


def _jitter(true: Sequence[float], seed: int = 0) -> list[float]:
    levels = sorted(set(true))
    if len(levels) > JITTER_LEVELS or len(levels) < 2:
        return list(true)
    gap = min(b - a for a, b in zip(levels, levels[1:]))
    rng = random.Random(seed)
    return [t + rng.uniform(-JITTER, JITTER) * gap for t in true]


def plot_attribute_scatter(path: str | Path, pred: Sequence[float], true: Sequence[float], attribute: str,
                           metrics: dict[str, Any] | None = None) -> bool:
    """Predicted (y) against rated (x) values of one attribute, with the y = x line; True if jittered."""
    fig = _figure()
    ax = fig.add_subplot()
    xs = _jitter(true)
    jittered = xs != list(true)
    alpha = 0.6 if len(xs) <= 500 else 0.25
    ax.scatter(xs, pred, s=10, alpha=alpha, color=POINT_COLOR, linewidths=0, label="responses")
    if true:
        lo = min(min(true), min(pred))
        hi = max(max(true), max(pred))
        ax.plot([lo, hi], [lo, hi], color="0.5", linestyle="--", linewidth=1, label="perfect (y = x)")
    if jittered:
        levels = sorted(set(true))
        means = [sum(p for p, t in zip(pred, true) if t == v) / sum(t == v for t in true) for v in levels]
        ax.plot(levels, means, color=MEAN_COLOR, marker="o", linewidth=1.5, label="mean prediction per rating")
    m = metrics or {}
    parts = [f"{k} {_num(m.get(k))}" for k in ("spearman", "pearson", "rmse")]
    ax.set_title(f"{attribute}\n" + ", ".join(parts) + f", n {len(true)}", fontsize="medium")
    ax.set_xlabel("rating" + (" (jittered)" if jittered else ""))
    ax.set_ylabel("predicted")
    ax.legend(frameon=False, fontsize="small", loc="upper left")
    fig.savefig(path)
    return jittered


def _num(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.3g}" if isinstance(v, float) else html.escape(str(v))


def write_attribute_plots(out_dir: str | Path, pred: Sequence[Sequence[float]],
                          true: Sequence[Sequence[float | None]], attributes: Sequence[str],
                          per_attribute: dict[str, dict[str, Any]] | None = None) -> list[tuple[str, str]]:
    """One scatter PNG per attribute with any rating into ``out_dir``; [(file name, attribute)]."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for k, name in enumerate(attributes):
        p, t = observed_pairs(pred, true, k)
        if not t:
            continue
        fname = plot_file_name(name, k)
        plot_attribute_scatter(out / fname, p, t, name, (per_attribute or {}).get(name))
        written.append((fname, name))
    return written


def attribute_html(metrics: dict[str, Any], plots: Sequence[tuple[str, str]]) -> str:
    """HTML fragment: per-attribute metrics table, combined-reward accuracy, and the scatter plots.

    ``metrics`` is `rewardkit.evaluation.rating_metrics.regression_metrics`'s dict; ``plots`` what
    `write_attribute_plots` returned. Uses the classes of `rewardkit.evaluation.report`'s stylesheet.
    """
    esc = html.escape
    parts = ["<h2>Attributes</h2>",
             "<p class=\"meta\">Per rated attribute, over the responses that have a rating for it (missing "
             "ratings are skipped). RMSE is in the attribute's own units; Spearman uses average ranks for ties."
             "</p>",
             "<table><tr><th>attribute</th><th>responses</th><th>RMSE</th><th>Pearson r</th>"
             "<th>Spearman rho</th></tr>"]
    for name, m in metrics.get("attributes", {}).items():
        parts.append(f"<tr><td>{esc(name)}</td><td class=\"num\">{m.get('n', 0)}</td>"
                     f"<td class=\"num\">{_num(m.get('rmse'))}</td><td class=\"num\">{_num(m.get('pearson'))}</td>"
                     f"<td class=\"num\">{_num(m.get('spearman'))}</td></tr>")
    if len(metrics.get("attributes", {})) > 1:
        parts.append(f"<tr><th>mean</th><td></td><td class=\"num\">{_num(metrics.get('mean_rmse'))}</td>"
                     f"<td class=\"num\">{_num(metrics.get('mean_pearson'))}</td>"
                     f"<td class=\"num\">{_num(metrics.get('mean_spearman'))}</td></tr>")
    parts.append("</table>")
    if metrics.get("pairs"):
        acc = metrics.get("accuracy")
        shown = "n/a" if acc is None else f"{acc:.2%}"
        parts.append(f"<p>Combined reward orders <b>{shown}</b> of {metrics['pairs']} pairs correctly "
                     "(ties count as wrong).</p>")
    if plots:
        parts.append("<div class=\"plots\">")
        for fname, name in plots:
            parts.append(f"<figure><img src=\"{esc(fname)}\" alt=\"{esc(name)}: predicted vs rated\" width=\"528\" "
                         f"height=\"484\"><figcaption>{esc(name)}: each dot is a response. Dots on the dashed "
                         "diagonal are predicted exactly; ratings with few levels are jittered sideways and their "
                         "mean prediction drawn in orange.</figcaption></figure>")
        parts.append("</div>")
    return "\n".join(parts)


def write_attribute_report(out_dir: str | Path, metrics: dict[str, Any], pred: Sequence[Sequence[float]],
                           true: Sequence[Sequence[float | None]], attributes: Sequence[str],
                           title: str = "Reward model evaluation", details: dict[str, str] | None = None,
                           training: TrainingRun | None = None) -> Path:
    """A regression model's page: report.html (the attribute table and scatters, with the pairwise
    report's stylesheet), one PNG per attribute and metrics.json; returns report.html's path.
    ``training``: the run that trained the model, for the pairwise report's Training section (loss.png)."""
    import json

    from rewardkit.evaluation.report import html_page, training_html

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = write_attribute_plots(out, pred, true, attributes, metrics.get("attributes"))
    body = [attribute_html(metrics, plots)] + ([training_html(out, training)] if training else [])
    page = html_page(title, details or {}, body)
    (out / "report.html").write_text(page)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return out / "report.html"
