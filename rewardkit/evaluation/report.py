"""The evaluation report: one self-contained HTML page plus three PNG plots, readable offline.

``write_report(DIR, comparisons, rewards)`` writes into DIR::

    report.html        metrics tables, the plots, the most confident mistakes
    rewards.png        reward histograms, chosen vs rejected
    reliability.png    reliability diagram of P(chosen) = sigmoid(r_c - r_r), with bin counts
    length_bias.png    reward margin against length difference (chosen - rejected, characters)
    metrics.json       the numbers in the page, as `rewardkit eval --json` prints them
    loss.png           only for a report written at the end of training (`TrainingRun`): the loss curve
    gate_weights.png   only for a gated model (``metrics["gate_weights"]``): mean attribute weights per subset

A report written at the end of training also has a Training section: the last train loss, the loss
curve from the run's metrics.jsonl and, when the training loss had a margin term, why the train loss
and the held-out Bradley-Terry loss cannot be compared.

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
from dataclasses import dataclass
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
LOSS_PLOT = "loss.png"
GATE_PLOT = "gate_weights.png"  # a gated model's (`plot_gate_weights`)
CHOSEN_COLOR, REJECTED_COLOR = "#1f77b4", "#ff7f0e"  # colour-blind safe pair (matplotlib's first two)
MISTAKES_SHOWN = 10
SNIPPET_CHARS = 400

# (key, label, how to read it); the order of the headline table.
METRIC_ROWS = [
    ("accuracy", "accuracy", "share of pairs with r(chosen) > r(rejected); ties count as wrong"),
    ("pairs", "pairs", "(chosen, rejected) pairs; a K-way ranking gives K(K-1)/2"),
    ("top1_accuracy", "top-1 accuracy (best of N)",
     "share of rankings (K >= 3) whose best response gets the highest reward; a tie at the top counts "
     "1/(number tied)"),
    ("kendall_tau", "Kendall tau-b", "mean over rankings (K >= 3) of the rank correlation between rewards and the "
                                     "true order: 1 same order, -1 reversed; all-equal rewards count 0"),
    ("rankings", "rankings (K >= 3)", "comparisons of 3 or more responses, what top-1 and Kendall tau-b average"),
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


def plot_gate_weights(path: Path, gate_weights: dict[str, dict[str, float]]) -> None:
    """A gated model's mean attribute weights per subset, one stacked bar each: where the gate reads the
    prompt, the bars of different kinds of prompt differ."""
    fig = _figure()
    ax = fig.add_subplot()
    subsets = list(gate_weights)
    attributes = list(next(iter(gate_weights.values())))
    left = [0.0] * len(subsets)
    for k, a in enumerate(attributes):
        values = [gate_weights[s][a] for s in subsets]
        ax.barh(subsets, values, left=left, label=a, color=f"C{k}")
        left = [x + v for x, v in zip(left, values)]
    ax.set_xlim(0, 1)
    ax.set_xlabel("mean gate weight")
    ax.set_title("Attribute weights the gate gives, per subset")
    ax.legend(frameon=False, ncols=min(4, len(attributes)), loc="lower center", bbox_to_anchor=(0.5, 1.06))
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


Losses = list[tuple[int, float]]  # (step, loss)


def read_losses(metrics_log: Path) -> tuple[Losses, Losses]:
    """(train, eval) losses by step from a run's metrics.jsonl; a missing file, a line cut short or a
    row without a finite loss is skipped (the curve is a picture, not a check)."""
    found: dict[str, Losses] = {"train": [], "eval": []}
    try:
        lines = Path(metrics_log).read_text(encoding="utf-8").splitlines()
    except OSError:
        return [], []
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(row, dict):
            continue
        loss = row.get("loss")
        if row.get("split") in found and isinstance(loss, (int, float)) and math.isfinite(loss):
            found[row["split"]].append((int(row.get("step", 0)), float(loss)))
    return found["train"], found["eval"]


def plot_loss(path: Path, train: Losses, held_out: Losses, margin: bool) -> None:
    """Train loss over steps, held-out loss as points: a train loss still falling while the held-out
    one rises is overfitting."""
    from matplotlib.ticker import MaxNLocator

    fig = _figure()
    ax = fig.add_subplot()
    ax.plot([s for s, _ in train], [v for _, v in train], color=CHOSEN_COLOR, linewidth=1.2,
            marker="." if len(train) <= 50 else None,
            label="train loss" + (" (with margin term)" if margin else ""))
    if held_out:
        ax.plot([s for s, _ in held_out], [v for _, v in held_out], color=REJECTED_COLOR, marker="o",
                linestyle="--", linewidth=1, label="held-out loss" + (" (no margin term)" if margin else ""))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title("Loss over training")
    ax.legend(frameon=False)
    fig.savefig(path)


# --------------------------------------------------------------------------------------- page


@dataclass
class TrainingRun:
    """What a report written at the end of training adds: the loss curve of the run's ``metrics_log``
    (metrics.jsonl) and, when its loss was -log sigmoid(r_c - r_r - m), the mean margin m over the
    training pairs (``mean_margin``; None: no margin term)."""

    metrics_log: Path
    mean_margin: float | None = None


def training_html(out: Path, training: TrainingRun, held_out_loss: float | None = None) -> str:
    """The Training section: writes loss.png into ``out`` when the log holds train losses, and says
    next to the loss numbers whether train and held-out loss can be compared."""
    esc = html.escape
    train, held = read_losses(training.metrics_log)
    margin = training.mean_margin is not None
    parts = ["<h2>Training</h2>"]
    losses = []
    if train:
        losses.append(f"last logged train loss <b>{train[-1][1]:.4g}</b> (step {train[-1][0]})")
    if held_out_loss is not None:
        losses.append(f"held-out Bradley-Terry loss <b>{held_out_loss:.4g}</b>")
    if losses:
        said = "; ".join(losses)
        parts.append(f"<p>{said[:1].upper()}{said[1:]}.</p>")
    if margin:
        parts.append(f"<p class=\"margin-note\">Training used margins: each pair's training loss was "
                     f"-log sigmoid(r_c - r_r - m), with mean m = {training.mean_margin:.4g} over the training "
                     "pairs, so the train loss includes the margin term and is larger than the same rewards' loss "
                     "without it. The held-out Bradley-Terry loss has no margin term: the two numbers are not "
                     "comparable (compare accuracies instead).</p>")
    if not train:
        parts.append(f"<p class=\"meta\">{esc(training.metrics_log.name)} holds no train loss (a run shorter "
                     "than --logging-steps): no loss curve.</p>")
        return "\n".join(parts)
    plot_loss(out / LOSS_PLOT, train, held, margin)
    caption = (f"Train loss (the mean over each --logging-steps window) and held-out loss at each evaluation, from "
               f"{training.metrics_log.name}." + (" The train loss includes the margin term; the held-out points "
                                                  "do not." if margin and held else ""))
    parts.append(f"<figure><img src=\"{LOSS_PLOT}\" alt=\"Loss over training\" width=\"704\" height=\"484\">"
                 f"<figcaption>{esc(caption)}</figcaption></figure>")
    return "\n".join(parts)


def short_source(source: str) -> str:
    """``pairs.jsonl:17`` for ``/long/path/to/pairs.jsonl:17`` (also ``file:row N``): the file name and
    where in it, short enough to leave a narrow column's room to the texts."""
    path, sep, where = source.rpartition(":")
    if not sep:
        return Path(source).name or source
    return f"{Path(path).name or path}:{where}"


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
.text { white-space: pre-wrap; font-size: 0.85rem; overflow-wrap: anywhere; }
table.mistakes { table-layout: fixed; width: 100%; }
col.margin { width: 6rem; } col.source { width: 9rem; }
td.source { font-size: 0.85rem; color: #555; overflow-wrap: anywhere; }
.margin-note { border-left: 3px solid #ff7f0e; padding-left: 0.6rem; }
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


def mistakes_html(mistakes: list[tuple[float, Comparison, int, int]]) -> list[str]:
    """The most confident mistakes: a fixed layout (margin and source narrow, the three texts sharing
    the rest), the source as ``file:line`` with the full path in its tooltip."""
    esc = html.escape
    parts = [f"<h2>Most confident mistakes</h2>\n<p class=\"meta\">The {len(mistakes)} wrongly ranked "
             "pairs with the most negative margin r(better) - r(worse).</p>"]
    if not mistakes:
        return parts
    parts.append("<table class=\"mistakes\"><colgroup><col class=\"margin\"><col><col><col>"
                 "<col class=\"source\"></colgroup>\n<tr><th>margin</th><th>prompt (end)</th>"
                 "<th>better response</th><th>worse response</th><th>source</th></tr>")
    for margin, c, i, j in mistakes:
        parts.append(f"<tr><td class=\"num\">{margin:.3g}</td><td class=\"text\">{_snippet(c.prompt, tail=True)}"
                     f"</td><td class=\"text\">{_snippet(c.responses[i])}</td>"
                     f"<td class=\"text\">{_snippet(c.responses[j])}</td>"
                     f"<td class=\"source\" title=\"{esc(c.source)}\">{esc(short_source(c.source))}</td></tr>")
    parts.append("</table>")
    return parts


def critique_examples_html(comps: Sequence[Comparison], rewards: Sequence[Sequence[float]],
                           critiques: Sequence[Sequence[str]], per_kind: int = 3) -> str:
    """Example critiques of a critique model: the first pairs it judged right and wrong, each response with
    the critique it wrote and the reward the head read from it."""
    esc = html.escape
    right = [i for i, r in enumerate(rewards) if len(r) > 1 and r[0] > r[1]][:per_kind]
    wrong = [i for i, r in enumerate(rewards) if len(r) > 1 and r[0] <= r[1]][:per_kind]
    parts = ["<h2>Example critiques</h2>"]
    for label, idx in (("judged right (chosen scored higher)", right), ("judged wrong", wrong)):
        parts.append(f"<h3>{esc(label)}: {len(idx)} shown</h3>")
        for i in idx:
            parts.append(f"<p><b>prompt</b> {_snippet(comps[i].prompt, tail=True)}</p><table>"
                         "<tr><th></th><th>response</th><th>critique</th><th>reward</th></tr>")
            for k, name in ((0, "chosen"), (1, "rejected")):
                parts.append(f"<tr><th>{name}</th><td>{_snippet(comps[i].responses[k])}</td>"
                             f"<td>{esc(critiques[i][k])}</td><td class=\"num\">{rewards[i][k]:.3f}</td></tr>")
            parts.append("</table>")
    return "\n".join(parts) + "\n"


def render_html(metrics: dict[str, Any], mistakes: list[tuple[float, Comparison, int, int]], title: str,
                details: dict[str, str], training: str = "", margin: bool = False) -> str:
    """The page itself: headline metrics, the Training section (``training``, written at the end of a
    run), subsets and sections, the three plots, confident mistakes. ``margin``: the training loss had
    a margin term, which the loss row's note then says."""
    esc = html.escape
    parts = ["<h2>Metrics</h2>\n<table>"]
    for key, label, note in METRIC_ROWS:
        if key == "loss" and margin:
            note += "; no margin term, unlike the train loss (see Training)"
        if key in metrics:
            parts.append(f"<tr><th>{esc(label)}</th><td class=\"num\">{_cell(key, metrics[key])}</td>"
                         f"<td class=\"note\">{esc(note)}</td></tr>")
    parts.append("</table>")
    if training:
        parts.append(training)
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

    if metrics.get("gate_weights"):
        attributes = list(next(iter(metrics["gate_weights"].values())))
        parts.append("<h2>Gate weights (mean per subset)</h2>\n<table><tr><th>subset</th>"
                     + "".join(f"<th>{esc(a)}</th>" for a in attributes) + "</tr>")
        for name, w in metrics["gate_weights"].items():
            parts.append(f"<tr><td>{esc(name)}</td>" + "".join(f"<td class=\"num\">{w[a]:.3f}</td>" for a in attributes)
                         + "</tr>")
        parts.append(f"</table>\n<figure><img src=\"{GATE_PLOT}\" alt=\"Gate weights per subset\" width=\"704\" "
                     "height=\"484\"><figcaption>The gate reads each prompt; bars that differ between kinds of prompt "
                     "mean it weights the attributes by what the prompt asks.</figcaption></figure>")
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
    parts.extend(mistakes_html(mistakes))
    return html_page(title, details, parts)


def write_report(out_dir: str | Path, comps: Sequence[Comparison], rewards: Sequence[Sequence[float]],
                 metrics: dict[str, Any] | None = None, title: str = "Reward model evaluation",
                 details: dict[str, str] | None = None, training: TrainingRun | None = None,
                 critiques: Sequence[Sequence[str]] | None = None) -> Path:
    """Write report.html, the three PNGs and metrics.json into ``out_dir``; return report.html's path.

    ``rewards[i]`` holds one reward per response of ``comps[i]``, best first (as scoring returns
    them). ``metrics`` defaults to `pair_metrics` of the same rewards; pass the ones already
    computed (with section scores) to keep page and JSON identical. ``training``: the run that
    trained the model, for the Training section and loss.png (`training_html`). ``critiques``: what a
    critique model wrote about each response of ``comps[i]`` (`critique_examples_html`).
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
    if metrics.get("gate_weights"):
        plot_gate_weights(out / GATE_PLOT, metrics["gate_weights"])
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    part = training_html(out, training, metrics.get("loss")) if training else ""
    if critiques:
        part = critique_examples_html(comps, rewards, critiques) + part
    margin = training is not None and training.mean_margin is not None
    page = out / "report.html"
    page.write_text(render_html(metrics, confident_mistakes(comps, rewards), title, details or {}, part, margin),
                    encoding="utf-8")
    return page

