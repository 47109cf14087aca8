"""Where a run's numbers go: ``metrics.jsonl`` always, and ``--report-to`` trackers through accelerate.

`MetricsLog` appends one JSON object per train or eval record to ``OUTPUT_DIR/metrics.jsonl``;
``--report-to tensorboard,wandb,trackio,mlflow`` (comma
separated or repeated) sends the same records to those trackers as well: every ``train`` and
``eval`` record becomes scalars ``train/loss``, ``eval/accuracy``, ... at the record's optimizer
step, and the run's configuration is stored as the run's hyperparameters. The trackers are
accelerate's own (``Accelerator(log_with=..., project_dir=OUTPUT_DIR)``), so they behave as in any
accelerate script, log from the main process only, and no tracker is a rewardkit dependency.

Where things go: TensorBoard event files under ``OUTPUT_DIR/rewardkit/``; W&B runs under
``OUTPUT_DIR/wandb/`` (project ``rewardkit``, run name = the output directory's name;
``WANDB_MODE=offline`` works as usual); trackio project ``rewardkit``; MLflow experiment
``rewardkit`` (``MLFLOW_TRACKING_URI`` / ``MLFLOW_EXPERIMENT_NAME`` as usual).

A requested tracker whose package is missing is a usage error (exit 2, naming the package to
install), raised before any data is read or any model loaded.
"""

from __future__ import annotations

import json
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from rewardkit.errors import UsageError

PROJECT = "rewardkit"
# --report-to name -> (pip package, accelerate's availability check in accelerate.utils)
TRACKERS: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", "is_tensorboard_available"),
    "wandb": ("wandb", "is_wandb_available"),
    "trackio": ("trackio", "is_trackio_available"),
    "mlflow": ("mlflow", "is_mlflow_available"),
}


def parse_report_to(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """``"tensorboard,wandb"`` (or a list of names) -> ``["tensorboard", "wandb"]``; ``none`` -> []."""
    items = value if isinstance(value, (list, tuple)) else str(value or "none").split(",")
    names: list[str] = []
    for item in items:
        name = str(item).strip().lower()
        if name and name not in names:
            names.append(name)
    if "none" in names:
        if len(names) > 1:
            raise UsageError(f"--report-to: 'none' cannot be combined with other trackers (got {','.join(names)})")
        return []
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise UsageError(f"--report-to: unknown tracker {unknown[0]!r} "
                         f"(choose from none, {', '.join(TRACKERS)}; several comma-separated)")
    return names


def check_installed(names: list[str]) -> None:
    """UsageError naming the package to install for the first tracker that is not available.

    Uses accelerate's own availability checks, the ones that decide whether accelerate would
    silently leave a tracker out.
    """
    import accelerate.utils as au

    for name in names:
        package, check = TRACKERS[name]
        if not getattr(au, check)():
            raise UsageError(f"--report-to {name}: the {package!r} package is not installed; "
                             f"install it with `pip install {package}` (or drop {name} from --report-to)")


def accelerator_kwargs(cfg: Any) -> dict[str, Any]:
    """The `Accelerator` arguments for ``cfg.report_to``, after checking every tracker is installed."""
    names = parse_report_to(cfg.report_to)
    check_installed(names)
    return {"log_with": names, "project_dir": str(cfg.output_dir)} if names else {}


def _flat_value(value: Any) -> bool | int | float | str:
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)  # None and anything else: a string every tracker takes (TensorBoard refuses None)


def hyperparameters(config: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, bool | int | float | str]:
    """A flat {name: scalar} view of the run configuration; nested mappings become ``a.b`` keys."""
    out: dict[str, bool | int | float | str] = {}

    def walk(prefix: str, d: dict[str, Any]) -> None:
        for k, v in d.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict):
                walk(f"{key}.", v)
            else:
                out[key] = _flat_value(v)

    walk("", {**config, **(extra or {})})
    return out


def scalars(record: dict[str, Any]) -> tuple[dict[str, float | int], int | None]:
    """A metrics.jsonl record -> ({"split/name": number}, step); non-numeric fields are left out."""
    split = record.get("split", "train")
    values = {f"{split}/{k}": v for k, v in record.items()
              if k not in ("split", "step") and isinstance(v, (int, float)) and not isinstance(v, bool)
              and math.isfinite(v)}
    return values, record.get("step")


class Tracker:
    """Forwards metrics.jsonl records to the accelerator's trackers (main process only)."""

    def __init__(self, accelerator: Any):
        self.accelerator = accelerator

    def log(self, record: dict[str, Any]) -> None:
        values, step = scalars(record)
        if values:
            self.accelerator.log(values, step=step)

    def finish(self) -> None:
        finish(self.accelerator)


def start_trackers(accelerator: Any, config: dict[str, Any], extra: dict[str, Any] | None = None,
          resume_step: int = 0) -> Tracker | None:
    """Start the trackers the accelerator was created with; None when there are none.

    ``resume_step``: a resumed run drops, in TensorBoard, what the killed run logged after its
    checkpoint (``purge_step``), as metrics.jsonl does; a fresh run (0) hides an earlier run's
    events in the same directory the same way.
    """
    if not getattr(accelerator, "log_with", None):
        return None
    run_name = Path(config["output_dir"]).resolve().name
    init_kwargs = {"tensorboard": {"purge_step": resume_step + 1},
                   "wandb": {"name": run_name, "dir": str(config["output_dir"])},
                   "trackio": {"name": run_name},
                   "mlflow": {"run_name": run_name}}
    accelerator.init_trackers(PROJECT, config=hyperparameters(config, extra), init_kwargs=init_kwargs)
    return Tracker(accelerator)


@contextmanager
def finishing(accelerator: Any) -> Iterator[None]:
    """Finish the trackers when the block ends, however it ends."""
    try:
        yield
    finally:
        finish(accelerator)


def finish(accelerator: Any) -> None:
    """Close every started tracker (flush TensorBoard, finish the W&B run), once.

    Not ``accelerator.end_training()``: that also destroys the process group, which the CLI still
    uses after `train` returns under ``accelerate launch``.
    """
    trackers = list(getattr(accelerator, "trackers", None) or [])
    accelerator.trackers = []
    for tracker in trackers:
        tracker.finish()


class MetricsLog:
    """Append-only ``metrics.jsonl``: one JSON object per logged event."""

    def __init__(self, path: Path, enabled: bool, tracker: Any = None):
        self.path, self.enabled, self.tracker = path, enabled, tracker  # tracker: --report-to (`Tracker`)

    def write(self, **record: Any) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
            if self.tracker is not None:
                self.tracker.log(record)

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (and a line cut short by a kill) before a resumed run appends."""
        if not self.enabled or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line + "\n")
            except json.JSONDecodeError:
                continue
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(kept))
        os.replace(tmp, self.path)
