"""`rewardkit eval` as a library function: a trained model on a data file -> metrics, a report, a table.

    from rewardkit import EvalConfig, evaluate
    result = evaluate(EvalConfig(model_dir="rm-out", data="heldout.jsonl"))
    result.metrics["accuracy"]; result.write_report("report/"); print(result.table())

Preference data (pairs, rankings, any shape rewardkit reads) gets the pairwise metrics of
`rewardkit.evaluation.metrics`; a regression model on a rating table with its attribute columns gets
per-attribute metrics (`rewardkit.evaluation.rated`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

from rewardkit.config import EvalConfig
from rewardkit.data.records import is_benchmark
from rewardkit.errors import UsageError
from rewardkit.evaluation.scorer import load_scorer

HEADLINE = ["accuracy", "pairs", "position_consistency", "mean_margin", "median_margin", "loss", "ece", "brier", "chosen_reward_mean",
            "rejected_reward_mean", "chosen_longer_rate", "prefers_longer_rate", "accuracy_chosen_longer",
            "accuracy_chosen_not_longer", "top1_accuracy", "kendall_tau", "rankings"]


@dataclass
class EvalResult:
    """What `evaluate` measured: ``metrics`` (what ``--json`` prints), a report writer and a text table."""

    metrics: dict[str, Any]
    report: Callable[..., Path]  # report(directory, title=..., details=...) -> the page
    table: Callable[[], str]

    def write_report(self, directory: str | Path, title: str = "Reward model evaluation",
                     details: dict[str, str] | None = None) -> Path:
        return self.report(directory, title=title, details=details or {})


def metrics_table(m: dict[str, Any], title: str) -> str:
    """The headline pairwise metrics, one per line, then subsets and sections."""
    def fmt(v: Any) -> str:
        return "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = [title] + [f"  {k:<28} {fmt(m[k])}" for k in HEADLINE if k in m]
    lines += [f"  subset {name:<21} {s['accuracy']:.4f} ({s['pairs']} pairs)" for name, s in (m.get("subsets") or {}).items()]
    lines += [f"  section {name:<20} {v:.4f}" for name, v in (m.get("sections") or {}).items()]
    lines += [f"  gate weights {name:<15} " + ", ".join(f"{a} {v:.3f}" for a, v in w.items())
              for name, w in (m.get("gate_weights") or {}).items()]
    return "\n".join(lines)


def _sections(path: str | None, present: set[str | None], data: str) -> Any:
    """The --sections mapping, validated; a note for subsets the data does not have."""
    from rewardkit.evaluation.metrics import check_sections

    if not path:
        return None
    try:
        sections = check_sections(json.loads(Path(path).read_text()))
    except (OSError, json.JSONDecodeError, ValueError) as e:
        raise UsageError(f"--sections: cannot use {path}: {e}") from None
    absent = sorted({s for m in sections.values() for s in m} - present)
    if absent:
        print(f"rewardkit: note: --sections subsets not in {data}: {', '.join(absent)}", file=sys.stderr)
    return sections


def evaluate(cfg: EvalConfig, progress: bool = True) -> EvalResult:
    """Score ``cfg.data`` with the model in ``cfg.model_dir`` and measure it (see the module doc); several
    models or files are `rewardkit.evaluation.side_by_side.compare_models`'s."""
    from rewardkit.evaluation.rated import eval_rated

    cfg.validate()
    if len(cfg.model_dirs) > 1 or len(cfg.data_files) > 1:
        raise UsageError("evaluate takes one model and one data file; several go side by side: "
                         "rewardkit.evaluation.side_by_side.compare_models (rewardkit eval A B -- DATA...)")
    if not Path(cfg.model_dir).is_dir():
        raise UsageError(f"MODEL_DIR: {cfg.model_dir} is not a directory")
    rated = eval_rated(cfg, load_scorer)  # a regression model on a rating table
    if rated is not None:
        metrics, page, table = rated
        return EvalResult(metrics, page, table)
    return _eval_pairs(cfg, progress and not cfg.json)


def _eval_pairs(cfg: EvalConfig, progress: bool) -> EvalResult:
    from tqdm.auto import tqdm

    from rewardkit.data.loading import load_comparisons
    from rewardkit.data.records import describe_problems
    from rewardkit.evaluation.metrics import mean_gate_weights, pair_metrics, pairs_of
    from rewardkit.evaluation.report import write_report

    loaded = load_comparisons(cfg.data, cfg.format, cfg.skip_invalid)
    if loaded.problems:
        print(describe_problems(loaded.problems, cfg.data) + "\n(skipped: --skip-invalid)", file=sys.stderr)
    kind = is_benchmark(loaded.comparisons)
    sections = None if kind else _sections(cfg.sections, {c.subset for c in loaded.comparisons}, cfg.data)
    rm = load_scorer(cfg)
    if getattr(rm, "judge", False):  # a pairwise judge: every pair in both orders
        metrics = {**judge_metrics(rm, loaded.comparisons), "skipped": len(loaded.problems)}
        return EvalResult(metrics, _no_report, lambda: metrics_table(metrics, f"{cfg.data} (judge):"))
    with tqdm(total=len(loaded.comparisons), desc="score", disable=not progress, unit="cmp") as bar:
        rewards = rm.score_comparisons(loaded.comparisons, cfg.batch_size, bar)
    if kind:  # a benchmark's rows, scored by its own rules
        from rewardkit.evaluation.benchmark_report import benchmark_table, write_benchmark_report
        from rewardkit.evaluation.side_by_side import file_metrics

        metrics = {**file_metrics(loaded.comparisons, rewards), "skipped": len(loaded.problems)}
        page = partial(write_benchmark_report, metrics=metrics)
        return EvalResult(metrics, page, lambda: benchmark_table(metrics, cfg.data))
    metrics = {**pair_metrics(pairs_of(loaded.comparisons, rewards), sections), "skipped": len(loaded.problems)}
    if getattr(rm, "gate", None) is not None:  # a gated model: which attributes each kind of prompt gets
        weights = rm.gate_weights([c.prompt for c in loaded.comparisons], [c.responses[0] for c in loaded.comparisons])
        metrics["gate_weights"] = mean_gate_weights(rm.meta["gating"]["attributes"], loaded.comparisons,
                                               [[list(w.values())] for w in weights])
    critiques = list(rm.last_critiques) if getattr(rm, "critique", None) is not None else None  # what it wrote
    page = partial(write_report, comps=loaded.comparisons, rewards=rewards, metrics=metrics, critiques=critiques)
    return EvalResult(metrics, page, lambda: metrics_table(metrics, f"{cfg.data} ({metrics['pairs']} pairs):"))


def run_eval(cfg: EvalConfig) -> str:
    """`rewardkit eval`: one model (`evaluate`) or several side by side (`compare_models`); the report
    written when asked (its path said on stderr); returns what the command prints (``--json``: one object)."""
    from rewardkit.evaluation.side_by_side import compare_models, write_side_by_side_report

    if len(cfg.model_dirs) > 1 or len(cfg.data_files) > 1:
        side = compare_models(cfg)
        if cfg.report:
            page = write_side_by_side_report(cfg.report, side, {"models": ", ".join(side.models), "data": cfg.data})
            print(f"report: {page}", file=sys.stderr)
        return json.dumps(side.to_dict()) if cfg.json else side.table()
    result = evaluate(cfg)
    if cfg.report:
        page = result.write_report(cfg.report, details={"model": cfg.model_dir, "data": cfg.data})
        print(f"report: {page}", file=sys.stderr)
    return json.dumps(result.metrics) if cfg.json else result.table()


def judge_metrics(rm: Any, comps: list[Any]) -> dict[str, Any]:
    """A judge on preference data: accuracy of its decision over both orders, of each order alone, and
    position consistency (`rewardkit.model.judge`)."""
    from itertools import combinations

    judged = [(rm.judge_pair(c.prompt, c.responses[i], c.responses[j])) for c in comps
              for i, j in combinations(range(len(c.responses)), 2)]
    n = len(judged)
    return {"pairs": n, "accuracy": sum(p > 0.5 for p, _ in judged) / n,
            "position_consistency": sum(agree for _, agree in judged) / n,
            "mean_p_better": sum(p for p, _ in judged) / n}


def _no_report(directory: Any, **_: Any) -> Path:
    raise UsageError("--report: a judge's evaluation has no report page yet; use --json")
