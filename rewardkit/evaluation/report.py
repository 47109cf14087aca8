"""The evaluation report: one self-contained HTML page plus three PNG plots, readable offline.

``write_report(DIR, comparisons, rewards)`` writes into DIR::

    report.html        metrics tables, the plots, the most confident mistakes
    rewards.png        reward histograms, chosen vs rejected
    reliability.png    reliability diagram of P(chosen) = sigmoid(r_c - r_r), with bin counts
    length_bias.png    reward margin against length difference (chosen - rejected, characters)
    metrics.json       the numbers in the page, as `rewardkit eval --json` prints them

The page has no scripts and no external resources; images are referenced by relative file name,
so the directory can be zipped, copied or opened from disk in any browser. Plots are drawn with
matplotlib's Agg canvas directly (no pyplot), so writing a report never touches global plotting
state or needs a display.
"""

from __future__ import annotations

import datetime
import html
import json
import math
from itertools import combinations
from pathlib import Path
from typing import Any, Sequence

from rewardkit.data.records import Comparison, Text
from rewardkit.encoding.encoder import render_plain
from rewardkit.evaluation.metrics import calibration_data, format_metric, pair_metrics, pairs_of, reliability

PLOTS = {
    "rewards.png": "Reward distributions, chosen vs rejected",
    "reliability.png": "Reliability diagram",
    "length_bias.png": "Reward margin against length difference",
}
CHOSEN_COLOR, REJECTED_COLOR = "#1f77b4", "#ff7f0e"  # colour-blind safe pair (matplotlib's first two)
MISTAKES_SHOWN = 10
SNIPPET_CHARS = 400

# (key, label, how to read it); the order of the headline table.
METRIC_ROWS = [
    ("accuracy", "accuracy", "share of pairs with r(chosen) > r(rejected); ties count as wrong"),
    ("pairs", "pairs", "(chosen, rejected) pairs; a K-way ranking gives K(K-1)/2"),
    ("mean_margin", "mean margin", "mean of r(chosen) - r(rejected)"),
    ("median_margin", "median margin", "median of r(chosen) - r(rejected)"),
    ("loss", "Bradley-Terry loss", "mean -log sigmoid(r(chosen) - r(rejected))"),
    ("ece", "ECE", "expected calibration error of sigmoid(margin), 10 equal-width bins, both orientations"),
    ("brier", "Brier score", "mean (1 - sigmoid(margin))^2; 0.25 is a coin flip"),
    ("chosen_reward_mean", "chosen reward mean", ""),
    ("chosen_reward_std", "chosen reward std", ""),
    ("rejected_reward_mean", "rejected reward mean", ""),
    ("rejected_reward_std", "rejected reward std", ""),
    ("chosen_longer_rate", "chosen is longer",
     "share of pairs whose chosen response has more characters (the data's bias)"),
    ("accuracy_chosen_longer", "accuracy, chosen longer", "accuracy on pairs where the chosen response is longer"),
    ("accuracy_chosen_not_longer", "accuracy, chosen not longer", "accuracy on the other pairs"),
    ("prefers_longer_rate", "prefers longer", "among pairs of unequal length, share where the model rewards the longer "
                                                "response more (the model's bias)"),
]


# --------------------------------------------------------------------------------------- plots


def _figure() -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_rewards(path: Path, chosen: Sequence[float], rejected: Sequence[float]) -> None:
    """Overlaid histograms on shared bins: the gap between the two humps is what the model learned."""
    import numpy as np

    fig = _figure()
    ax = fig.add_subplot()
    both = np.asarray(list(chosen) + list(rejected), dtype=float)
    edges = np.histogram_bin_edges(both, bins=int(min(60, max(10, math.sqrt(len(both))))))
    for values, color, name in ((chosen, CHOSEN_COLOR, "chosen"), (rejected, REJECTED_COLOR, "rejected")):
        mean = float(np.mean(values))
        ax.hist(values, bins=edges, color=color, alpha=0.45, label=f"{name} (mean {mean:.3g})")
        ax.hist(values, bins=edges, color=color, histtype="step", linewidth=1.2)
        ax.axvline(mean, color=color, linestyle="--", linewidth=1.2)
    ax.set_xlabel("reward")
    ax.set_ylabel("pairs")
    ax.set_title("Rewards of chosen and rejected responses")
    ax.legend(frameon=False)
    fig.savefig(path)


def plot_reliability(path: Path, margins: Sequence[float], ece: float) -> None:
    """Mean forecast against observed frequency per bin (the ECE's own bins), bin counts below."""
    fig = _figure()
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    bins = reliability(*calibration_data(margins))
    top.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfect calibration")
    top.plot([b["forecast"] for b in bins], [b["observed"] for b in bins], marker="o", color=CHOSEN_COLOR,
             label="model")
    for b in bins:  # the gap that ECE averages
        top.plot([b["forecast"], b["forecast"]], [b["forecast"], b["observed"]], color=REJECTED_COLOR,
                 linewidth=2, alpha=0.7)
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("observed frequency")
    top.set_title(f"Reliability of sigmoid(r_a - r_b)   (ECE {ece:.4f})")
    top.legend(frameon=False, loc="upper left")
    bottom.bar([(b["lo"] + b["hi"]) / 2 for b in bins], [b["count"] for b in bins], width=0.09,
               color="0.55")
    bottom.set_xlabel("forecast probability (each pair counted in both orientations)")
    bottom.set_ylabel("count")
    fig.savefig(path)


def plot_length_bias(path: Path, length_diff: Sequence[float], margins: Sequence[float],
                     prefers_longer: float | None) -> None:
    """Margin vs chosen-minus-rejected length; a slope here means the model pays for length."""
    import numpy as np

    fig = _figure()
    ax = fig.add_subplot()
    x = np.asarray(length_diff, dtype=float)
    y = np.asarray(margins, dtype=float)
    right = y > 0
    alpha = 0.7 if len(x) <= 500 else 0.35
    ax.scatter(x[right], y[right], s=12, alpha=alpha, color=CHOSEN_COLOR, label="ranked correctly")
    ax.scatter(x[~right], y[~right], s=12, alpha=alpha, color=REJECTED_COLOR, label="ranked wrongly")
    ax.axhline(0, color="0.4", linewidth=0.8)
    ax.axvline(0, color="0.4", linewidth=0.8)
    if len(x) > 1 and np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        r = float(np.corrcoef(x, y)[0, 1]) if np.ptp(y) > 0 else 0.0
        xs = np.array([x.min(), x.max()])
        ax.plot(xs, slope * xs + intercept, color="0.2", linewidth=1.2,
                label=f"least squares (Pearson r = {r:.2f})")
    ax.set_xlabel("len(chosen) - len(rejected)   [characters]")
    ax.set_ylabel("r(chosen) - r(rejected)")
    share = "n/a" if prefers_longer is None else f"{prefers_longer:.1%}"
    ax.set_title(f"Margin vs length difference   (prefers longer: {share})")
    ax.legend(frameon=False, fontsize="small")
    fig.savefig(path)


# --------------------------------------------------------------------------------------- page



def _snippet(t: Text, tail: bool = False) -> str:
    """Plain text of a prompt or response, cut to SNIPPET_CHARS (a prompt keeps its end)."""
    s = t if isinstance(t, str) else render_plain(t)
    s = s.strip()
    if len(s) > SNIPPET_CHARS:
        s = "…" + s[-SNIPPET_CHARS:] if tail else s[:SNIPPET_CHARS] + "…"
    return html.escape(s)


def confident_mistakes(comps: Sequence[Comparison], rewards: Sequence[Sequence[float]],
                       n: int = MISTAKES_SHOWN) -> list[tuple[float, Comparison, int, int]]:
    """The ``n`` wrongly ranked pairs with the most negative margin: where to look first."""
    wrong = [(r[i] - r[j], c, i, j) for c, r in zip(comps, rewards)
             for i, j in combinations(range(len(c.responses)), 2) if r[i] - r[j] <= 0]
    wrong.sort(key=lambda w: w[0])
    return wrong[:n]


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       padding: 0 1rem; color: #222; line-height: 1.4; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
.meta { color: #666; font-size: 0.9rem; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.92rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3rem 0.8rem 0.3rem 0; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.note { color: #666; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.88rem; max-width: 704px; }
.text { white-space: pre-wrap; font-size: 0.85rem; max-width: 330px; }
"""


def html_page(title: str, details: dict[str, str], body: list[str]) -> str:
    """A self-contained report page: the stylesheet, the title, the run's details and ``body``'s parts.
    Shared by the pairwise report and the regression one (`rewardkit.evaluation.rating_report`)."""
    from rewardkit.version import __version__

    esc = html.escape
    facts = [f"{esc(k)}: {esc(v)}" for k, v in details.items()]
    facts.append(f"written {datetime.datetime.now().isoformat(timespec='seconds')} by rewardkit {esc(__version__)}")
    return "\n".join([f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                      f"<title>{esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<h1>{esc(title)}</h1>",
                      f"<p class=\"meta\">{'<br>'.join(facts)}</p>", *body, "</body>\n</html>\n"])


def _cell(key: str, v: Any) -> str:
    return html.escape(format_metric(key, v))


def render_html(metrics: dict[str, Any], mistakes: list[tuple[float, Comparison, int, int]], title: str,
                details: dict[str, str]) -> str:
    """The page itself: headline metrics, subsets and sections, the three plots, confident mistakes."""
    esc = html.escape
    parts = ["<h2>Metrics</h2>\n<table>"]
    for key, label, note in METRIC_ROWS:
        if key in metrics:
            parts.append(f"<tr><th>{esc(label)}</th><td class=\"num\">{_cell(key, metrics[key])}</td>"
                         f"<td class=\"note\">{esc(note)}</td></tr>")
    parts.append("</table>")
    if metrics.get("subsets"):
        parts.append("<h2>Subsets</h2>\n<table><tr><th>subset</th><th>accuracy</th><th>pairs</th></tr>")
        for name, s in metrics["subsets"].items():
            parts.append(f"<tr><td>{esc(name)}</td><td class=\"num\">{_cell('accuracy', s['accuracy'])}</td>"
                         f"<td class=\"num\">{s['pairs']}</td></tr>")
        parts.append("</table>")
    if metrics.get("sections"):
        parts.append("<h2>Sections (weighted subset accuracy)</h2>\n<table><tr><th>section</th><th>score</th></tr>")
        for name, v in metrics["sections"].items():
            parts.append(f"<tr><td>{esc(name)}</td><td class=\"num\">{_cell('accuracy', v)}</td></tr>")
        parts.append("</table>")

    parts.append("<h2>Plots</h2>\n<div class=\"plots\">")
    captions = {
        "rewards.png": "Well-separated humps mean confident, correct rankings; heavy overlap means the model "
                       "barely tells the responses apart. Dashed lines: means.",
        "reliability.png": "Points on the diagonal mean sigmoid(r_a - r_b) can be read as a probability. Below "
                           "the diagonal on the right: over-confident. Orange lines: the per-bin gaps ECE averages.",
        "length_bias.png": "Each dot is a pair. A rising fit line means longer responses get higher rewards "
                           "regardless of quality; compare 'prefers longer' with 'chosen is longer'.",
    }
    for name, alt in PLOTS.items():
        parts.append(f"<figure><img src=\"{name}\" alt=\"{esc(alt)}\" width=\"704\" height=\"484\">"
                     f"<figcaption>{esc(captions[name])}</figcaption></figure>")
    parts.append("</div>")

    parts.append(f"<h2>Most confident mistakes</h2>\n<p class=\"meta\">The {len(mistakes)} wrongly ranked "
                 "pairs with the most negative margin r(better) - r(worse).</p>")
    if mistakes:
        parts.append("<table><tr><th>margin</th><th>prompt (end)</th><th>better response</th>"
                     "<th>worse response</th><th>source</th></tr>")
        for margin, c, i, j in mistakes:
            parts.append(f"<tr><td class=\"num\">{margin:.3g}</td><td class=\"text\">{_snippet(c.prompt, tail=True)}"
                         f"</td><td class=\"text\">{_snippet(c.responses[i])}</td>"
                         f"<td class=\"text\">{_snippet(c.responses[j])}</td><td>{esc(c.source)}</td></tr>")
        parts.append("</table>")
    return html_page(title, details, parts)


def write_report(out_dir: str | Path, comps: Sequence[Comparison], rewards: Sequence[Sequence[float]],
                 metrics: dict[str, Any] | None = None, title: str = "Reward model evaluation",
                 details: dict[str, str] | None = None) -> Path:
    """Write report.html, the three PNGs and metrics.json into ``out_dir``; return report.html's path.

    ``rewards[i]`` holds one reward per response of ``comps[i]``, best first (as scoring returns
    them). ``metrics`` defaults to `pair_metrics` of the same rewards; pass the ones already
    computed (with section scores) to keep page and JSON identical.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = pairs_of(comps, rewards)
    if not rows:
        raise ValueError("no pairs to report on")
    metrics = metrics if metrics is not None else pair_metrics(rows)
    margins = [r["chosen_reward"] - r["rejected_reward"] for r in rows]
    plot_rewards(out / "rewards.png", [r["chosen_reward"] for r in rows], [r["rejected_reward"] for r in rows])
    plot_reliability(out / "reliability.png", margins, metrics["ece"])
    plot_length_bias(out / "length_bias.png", [r["chosen_len"] - r["rejected_len"] for r in rows], margins,
                     metrics.get("prefers_longer_rate"))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    page = out / "report.html"
    page.write_text(render_html(metrics, confident_mistakes(comps, rewards), title, details or {}),
                    encoding="utf-8")
    return page

