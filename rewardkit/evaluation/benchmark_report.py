"""A benchmark file's results for one model, as a text table and as a report page.

The numbers are `rewardkit.evaluation.benchmarks`'s (each benchmark's own rules); this module only
lays them out: the headline score, the subset (RewardBench 2), domain and difficulty (RM-Bench, with
each domain's 3x3 win matrix) or category (JudgeBench) tables.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

NAMES = {"best-of-n": "RewardBench 2 (best-of-N)", "rm-bench": "RM-Bench", "judgebench": "JudgeBench"}
STYLES = ("concise", "detailed", "markdown")


def _flat(metrics: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in metrics.items() if not isinstance(v, (dict, list))]


def _tables(metrics: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(title, {row: value or {column: value}}) for every nested table of the metrics."""
    return [(k, v) for k, v in metrics.items() if isinstance(v, dict) and v]


def benchmark_table(metrics: dict[str, Any], data: str) -> str:
    """The text form `rewardkit eval` prints."""
    name = NAMES.get(metrics.get("benchmark", ""), metrics.get("benchmark", "benchmark"))
    lines = [f"{data} ({name}):"]
    lines += [f"  {k:<28} {v:.4f}" if isinstance(v, float) else f"  {k:<28} {v}" for k, v in _flat(metrics)]
    for title, table in _tables(metrics):
        lines.append(f"  {title}:")
        for row, value in table.items():
            if isinstance(value, dict):
                cells = ", ".join(f"{c} {v:.4f}" if isinstance(v, float) else f"{c} {v}" for c, v in value.items()
                                  if not isinstance(v, (dict, list)))
                lines.append(f"    {row:<26} {cells}")
            else:
                lines.append(f"    {row:<26} {value:.4f}" if isinstance(value, float) else f"    {row:<26} {value}")
    return "\n".join(lines)


def _matrix_html(matrix: list[list[float]]) -> str:
    head = "".join(f"<th>rejected {s}</th>" for s in STYLES)
    rows = "".join(f"<tr><th>chosen {s}</th>" + "".join(f"<td>{v:.2%}</td>" for v in row) + "</tr>"
                   for s, row in zip(STYLES, matrix))
    return f"<table><tr><th></th>{head}</tr>{rows}</table>"


def _table_html(title: str, table: dict[str, Any]) -> str:
    esc = html.escape
    parts = [f"<h2>{esc(title)}</h2>"]
    plain = {k: v for k, v in table.items() if not isinstance(v, dict)}
    if plain:
        parts.append("<table>" + "".join(f"<tr><td>{esc(str(k))}</td><td>{esc(_fmt(v))}</td></tr>"
                                         for k, v in plain.items()) + "</table>")
    for row, value in table.items():
        if isinstance(value, dict):
            cells = "".join(f"<tr><td>{esc(str(c))}</td><td>{esc(_fmt(v))}</td></tr>" for c, v in value.items()
                            if not isinstance(v, list))
            parts.append(f"<h3>{esc(str(row))}</h3><table>{cells}</table>")
            if isinstance(value.get("matrix"), list):
                parts.append(_matrix_html(value["matrix"]))
    return "\n".join(parts)


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def write_benchmark_report(out_dir: str | Path, metrics: dict[str, Any], title: str = "Benchmark evaluation",
                           details: dict[str, str] | None = None) -> Path:
    """DIR/report.html with the headline score and every table; DIR/metrics.json the same numbers."""
    import json

    from rewardkit.evaluation.report import html_page

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = NAMES.get(metrics.get("benchmark", ""), "benchmark")
    head = "<table>" + "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(_fmt(v))}</td></tr>"
                               for k, v in _flat(metrics)) + "</table>"
    body = [f"<p>Scored by {html.escape(name)}'s own rules (docs/evaluation.md says which script each matches).</p>",
            head, *[_table_html(t, table) for t, table in _tables(metrics)]]
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    page = out / "report.html"
    page.write_text(html_page(f"{title}: {name}", details or {}, body))
    return page
