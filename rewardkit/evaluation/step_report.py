"""The report of a process reward model: its held-out metrics and the step reward along the solutions.

``steps.png`` draws each held-out solution's step rewards (the probability the step is right) against
the step index: solutions with no wrong step in one colour, solutions with one in the other, and each
group's mean, so one sees whether the reward drops where reasoning goes wrong.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Sequence

from rewardkit.data.steps import sigmoid

RIGHT_COLOR, WRONG_COLOR = "#1f77b4", "#d62728"


def plot_steps(path: Path, probs: Sequence[Sequence[float]], labels: Sequence[Sequence[bool]]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.2, 3.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for right, color, name in ((True, RIGHT_COLOR, "no wrong step"), (False, WRONG_COLOR, "a wrong step")):
        rows = [p for p, y in zip(probs, labels) if all(y) == right and p]
        for p in rows[:60]:
            ax.plot(range(1, len(p) + 1), p, color=color, alpha=0.15, linewidth=0.8)
        longest = max((len(p) for p in rows), default=0)
        means = [sum(p[i] for p in rows if len(p) > i) / max(1, sum(len(p) > i for p in rows)) for i in range(longest)]
        if means:
            ax.plot(range(1, longest + 1), means, color=color, linewidth=2.2, label=f"{name} ({len(rows)}), mean")
    ax.set_xlabel("step")
    ax.set_ylabel("P(step is right)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def write_step_report(out_dir: str | Path, metrics: dict[str, Any], logits: Sequence[Sequence[float]],
                      labels: Sequence[Sequence[bool]], details: dict[str, str] | None = None,
                      title: str = "Held-out evaluation of a process reward model") -> Path:
    """DIR/report.html with the metrics and steps.png; DIR/metrics.json the same numbers."""
    from rewardkit.evaluation.report import html_page

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_steps(out / "steps.png", [[sigmoid(x) for x in row] for row in logits], labels)
    esc = html.escape
    flat = [(k, v) for k, v in metrics.items() if not isinstance(v, dict)]
    rows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(f'{v:.4f}' if isinstance(v, float) else str(v))}</td></tr>"
                   for k, v in flat)
    body = [f"<table>{rows}</table>",
            "<p>A step is predicted wrong when its probability of being right is below the threshold; the "
            "first error is the first such step (ProcessBench's rule).</p>"]
    bon = metrics.get("best_of_n")
    if bon:
        body.append("<h2>Best-of-N</h2><table>" + "".join(
            f"<tr><td>{esc(k)}</td><td>{esc(f'{v:.4f}' if isinstance(v, float) else str(v))}</td></tr>"
            for k, v in bon.items()) + "</table>")
    body.append("<h2>Step rewards along the solutions</h2><img src=\"steps.png\" alt=\"step rewards\" width=\"720\">")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    page = out / "report.html"
    page.write_text(html_page(title, details or {}, body))
    return page
