"""Several reward models on the same files: one table, and for two the paired difference with its interval.

    rewardkit eval MODEL_A MODEL_B -- heldout.jsonl rb2.jsonl        # or --models A,B DATA...

Every model scores every file (one model in memory at a time). A preference file gets its pairwise
accuracy, a benchmark file its own headline score (`rewardkit.evaluation.benchmarks`). With exactly two
models, each file also gets B - A with a percentile interval from a paired bootstrap over prompts:
prompts are resampled with replacement and both models are scored on the same resample, so the
interval answers "is B really better than A on data like this" rather than "how noisy is each".
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardkit.config import EvalConfig
from rewardkit.data.loading import load_comparisons
from rewardkit.data.records import Comparison, is_benchmark
from rewardkit.errors import UsageError
from rewardkit.evaluation.benchmarks import paired_bootstrap, paired_bootstrap_pairs, score_benchmark
from rewardkit.evaluation.metrics import format_metric, pair_metrics, pairs_of


@dataclass
class FileResult:
    """One data file: what each model scored on it, and the paired difference of two models."""

    data: str
    kind: str  # "pairs" or a benchmark kind
    units: int  # bootstrap units (prompts)
    per_model: dict[str, dict[str, Any]] = field(default_factory=dict)
    difference: dict[str, Any] | None = None

    def headline(self, model: str) -> float:
        return float(self.per_model[model]["score"])


@dataclass
class SideBySide:
    models: list[str]
    files: list[FileResult]

    def to_dict(self) -> dict[str, Any]:
        return {"models": self.models, "files": {f.data: {"kind": f.kind, "units": f.units, "per_model": f.per_model,
                                                          "difference": f.difference} for f in self.files}}

    def table(self) -> str:
        """Per file: the headline score of every model, then B - A with its interval."""
        width = max(12, *(len(Path(m).name) for m in self.models))
        lines = []
        for f in self.files:
            what = "pairwise accuracy" if f.kind == "pairs" else f"{f.kind} score"
            lines.append(f"{f.data} ({what}, {f.units} prompts):")
            lines += [f"  {Path(m).name:<{width}} {f.headline(m):.4f}" for m in self.models]
            if f.difference:
                d = f.difference
                lines.append(f"  {'B - A':<{width}} {d['difference']:+.4f}   {d['level']:.0%} interval "
                             f"[{d['low']:+.4f}, {d['high']:+.4f}] ({d['resamples']} paired resamples of prompts, "
                             f"seed {d['seed']})")
        return "\n".join(lines)


def unit_of(c: Comparison) -> str:
    """The bootstrap unit of a row: its prompt (RewardBench 2's Ties rows: their prompt id, ref and tied alike)."""
    if c.bench is not None and c.bench.id and (c.subset or "").lower() == "ties" and ":" in c.bench.id:
        return "ties:" + c.bench.id.split(":", 1)[1]
    return c.prompt_key()


def scored_rows(comps: list[Comparison], rewards: list[list[float]]) -> list[Any]:
    """Benchmark rows with a model's rewards, as the scoring rules take them."""
    from rewardkit.evaluation.benchmarks import ScoredRow

    return [ScoredRow(kind=c.bench.kind, subset=c.subset, rewards=list(r), chosen=c.bench.chosen, id=c.bench.id,
                      label=c.bench.label) for c, r in zip(comps, rewards) if c.bench is not None]


def file_metrics(comps: list[Comparison], rewards: list[list[float]]) -> dict[str, Any]:
    """A file's metrics for one model, with a headline ``score``: the benchmark's own, or pair accuracy."""
    kind = is_benchmark(comps)
    if kind:
        return {"benchmark": kind, **score_benchmark(kind, scored_rows(comps, rewards))}
    metrics = pair_metrics(pairs_of(comps, rewards))
    return {**metrics, "score": metrics["accuracy"]}


def compare_models(cfg: EvalConfig) -> SideBySide:
    """Every model of ``cfg.model_dirs`` on every file of ``cfg.data_files`` (see the module doc)."""
    from rewardkit.evaluation.scorer import load_scorer

    models, files = cfg.model_dirs, cfg.data_files
    for m in models:
        if not Path(m).is_dir():
            raise UsageError(f"MODEL_DIR: {m} is not a directory")
    loaded = [(f, load_comparisons(f, cfg.format, cfg.skip_invalid).comparisons) for f in files]
    rewards: dict[str, list[list[list[float]]]] = {}
    for m in models:  # one model in memory at a time
        rm = load_scorer(_with_model(cfg, m))
        rewards[m] = [rm.score_comparisons(comps, cfg.batch_size) for _, comps in loaded]
        del rm
    results = []
    for i, (f, comps) in enumerate(loaded):
        kind = is_benchmark(comps) or "pairs"
        units = [unit_of(c) for c in comps]
        result = FileResult(f, kind, len(set(units)), {m: file_metrics(comps, rewards[m][i]) for m in models})
        if len(models) == 2:
            a, b = (rewards[m][i] for m in models)
            if kind == "pairs":
                result.difference = paired_bootstrap_pairs(a, b, units, cfg.bootstrap, cfg.seed)
            else:
                result.difference = paired_bootstrap(kind, scored_rows(comps, a), scored_rows(comps, b), units,
                                                     cfg.bootstrap, cfg.seed)
        results.append(result)
    return SideBySide(models, results)


def _with_model(cfg: EvalConfig, model: str) -> EvalConfig:
    import dataclasses

    return dataclasses.replace(cfg, model_dir=model, models=None)


def write_side_by_side_report(directory: str | Path, result: SideBySide, details: dict[str, str]) -> Path:
    """DIR/report.html: the table per file and scores.png (each model's headline score per file; with two
    models, B - A and its interval)."""
    from rewardkit.evaluation.report import html_page

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    _plot(out / "scores.png", result)
    esc = html.escape
    body = [f"<img src=\"scores.png\" alt=\"headline score per model and file\" width=\"760\">"]
    for f in result.files:
        keys = [k for k in next(iter(f.per_model.values())) if not isinstance(f.per_model[result.models[0]][k], dict)]
        head = "".join(f"<th>{esc(Path(m).name)}</th>" for m in result.models)
        rows = "".join(f"<tr><td>{esc(k)}</td>" + "".join(f"<td>{esc(format_metric(k, f.per_model[m].get(k)))}</td>"
                                                         for m in result.models) + "</tr>" for k in keys)
        body.append(f"<h2>{esc(f.data)} ({esc(f.kind)}, {f.units} prompts)</h2>\n<table><tr><th>metric</th>{head}"
                    f"</tr>{rows}</table>")
        if f.difference:
            d = f.difference
            body.append(f"<p>B - A = {d['difference']:+.4f}, {d['level']:.0%} interval [{d['low']:+.4f}, "
                        f"{d['high']:+.4f}] from {d['resamples']} paired resamples of the prompts (seed {d['seed']}).</p>")
    page = out / "report.html"
    page.write_text(html_page("Reward models side by side", details, body))
    return page


def _plot(path: Path, result: SideBySide) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.6, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    n, width = len(result.models), 0.8 / max(1, len(result.models))
    for j, m in enumerate(result.models):
        xs = [i + (j - (n - 1) / 2) * width for i in range(len(result.files))]
        ax.bar(xs, [f.headline(m) for f in result.files], width, label=Path(m).name)
    for i, f in enumerate(result.files):
        if f.difference:
            d = f.difference
            ax.annotate(f"B-A {d['difference']:+.3f}\n[{d['low']:+.3f}, {d['high']:+.3f}]", (i, 1.0),
                        ha="center", va="top", fontsize=8)
    ax.set_xticks(range(len(result.files)), [Path(f.data).name for f in result.files], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("headline score")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
