"""Resuming a run: where it stands (`TrainState`) and what it must share with its checkpoint.

The data position is the step number: `rewardkit.training.trainer` plans every micro-batch of the
run from the seed (`rewardkit.training.batch_plan`), so resuming rebuilds the same plan and starts at
the saved step. The contract, checked before any work is redone: the same settings (the config
fields declared ``must_match``), the same number of processes, and the same data (a fingerprint of
the encoded data, compared once it is encoded).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from rewardkit.encoding.encoded_set import shape_arrays
from rewardkit.encoding.encoder import Encoded
from rewardkit.errors import UsageError, flag
from rewardkit.options import must_match
from rewardkit.version import __version__


def check_compatible(saved: dict[str, Any], cfg: Any, where: Path) -> None:
    """Refuse to resume when a setting that shapes the run differs from the checkpoint's.

    The settings are the config fields declared ``must_match`` (`rewardkit.options`): which batches
    a step sees, or what the saved weights mean. Data files are compared by content (the
    fingerprint, `check_resume_data`), not by path, so they may move.
    """
    current = dataclasses.asdict(cfg)
    diffs = [f"{flag(k)} {saved.get(k)!r} -> {current.get(k)!r}" for k in must_match(cfg)
             if k in saved and saved.get(k) != current.get(k)]
    if diffs:
        raise UsageError(f"--resume: {where} was written by a run with different settings; "
                         f"resume with the same ones or start over with --overwrite:\n  " + "\n  ".join(diffs))


def check_resume(saved: dict[str, Any], cfg: Any, world: int, where: Path, precision: str) -> None:
    """The resume contract before any data is read: same settings, same number of processes, and the
    precision the run resolved to (``--precision auto`` may resolve differently on other hardware)."""
    check_compatible(saved.get("config", {}), cfg, where)
    if saved.get("precision") not in (None, precision):
        raise UsageError(f"--precision: {where} was trained in {saved['precision']}, and --precision "
                         f"{cfg.precision} resolves to {precision} here; resume with --precision {saved['precision']} "
                         "(on hardware that runs it) or start over with --overwrite")
    if saved.get("num_processes", 1) != world:
        raise UsageError(f"--resume: {where} was written by {saved.get('num_processes')} "
                         f"process(es), this run has {world}; resume with the same number")


def check_resume_data(saved: dict[str, Any], fingerprint: str, where: Path) -> None:
    """The resume contract once the data is encoded: the same comparisons, to skip exactly those seen."""
    if saved.get("fingerprint") != fingerprint:
        raise UsageError(f"--resume: the data differs from the data {where} was trained on "
                         "(same files and settings needed to skip exactly the pairs already seen)")


def data_fingerprint(train_enc: Sequence[Encoded], eval_enc: Sequence[Encoded]) -> str:
    """A cheap hash of the encoded data's shape (every sequence length, responses and prompt length
    per comparison): resuming on different data is refused. Vectorised: seconds at a million pairs."""
    h = hashlib.sha256(b"shape-v2")
    for part in (train_enc, eval_enc):
        for a in shape_arrays(part):
            h.update(len(a).to_bytes(8, "little"))
            h.update(a.tobytes())
    return h.hexdigest()[:16]


def as_float64(values: list[Any]) -> torch.Tensor:
    """Python floats and 0-dim tensors (on one device) as one float64 tensor on that device: read back
    with one ``.tolist()``, one wait for the GPU instead of one per value."""
    device = next((v.device for v in values if isinstance(v, torch.Tensor)), None)
    return torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device) for v in values])


@dataclass
class TrainState:
    """Where a run stands: exactly what ``trainer_state.json`` holds beside accelerate's files.

    ``seen`` counts the training items of the steps taken (``<unit>_seen``: pairs, rows). ``sums``
    adds up each logged value (``names``: loss, accuracy, ...) over the micro-batches since the last
    logged step, ``micro_batches`` counts them; a resumed run continues the same sums. The values of
    steps not yet read stay on the device (``pending``) until `running` is asked for: reading them
    waits for the GPU, so that happens when a line is logged or a checkpoint written, not every step.
    """

    names: tuple[str, ...] = ("loss",)
    unit: str = "pairs"
    step: int = 0
    seen: int = 0
    sums: list[float] = field(default_factory=list)
    micro_batches: float = 0.0
    pending: list[list[dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sums = list(self.sums) or [0.0] * len(self.names)

    def record(self, values: list[dict[str, Any]], seen: int) -> None:
        """One optimizer step: the logged values of each of its micro-batches, and the items it saw."""
        self.step += 1
        self.seen += seen
        self.pending.append(values)
        self.micro_batches += len(values)

    @property
    def running(self) -> list[float]:
        """The sums, then the micro-batch count: what a log row averages and a checkpoint keeps."""
        if self.pending:
            flat = [v[name] for step in self.pending for v in step for name in self.names]
            read = iter(as_float64(flat).tolist())
            for step in self.pending:  # per step, its micro-batches first: a Python float sum's order
                per_mb = [[next(read) for _ in self.names] for _ in step]
                self.sums = [total + sum(mb[i] for mb in per_mb) for i, total in enumerate(self.sums)]
            self.pending = []
        return [*self.sums, self.micro_batches]

    def reset_running(self) -> None:
        self.running  # noqa: B018 - read what is pending before it is dropped
        self.sums, self.micro_batches = [0.0] * len(self.names), 0.0

    def to_json(self, running: list[float], **run: Any) -> dict[str, Any]:
        """The trainer state file: this state (``running`` summed over processes), the run's facts
        (``total_steps``, ``num_processes``, ``fingerprint``, ``config``) and any ``extra`` fields."""
        return {"step": self.step, "total_steps": run["total_steps"], f"{self.unit}_seen": self.seen,
                "running": running, "num_processes": run["num_processes"], "fingerprint": run["fingerprint"],
                "version": __version__, "config": run["config"], **run.get("extra", {})}

    @classmethod
    def from_json(cls, saved: dict[str, Any], names: tuple[str, ...], unit: str, with_running: bool) -> "TrainState":
        """The state of a checkpoint; ``with_running`` on the main process only (the sums were reduced)."""
        state = cls(names, unit, int(saved["step"]), int(saved[f"{unit}_seen"]))
        if with_running:
            *sums, state.micro_batches = (float(x) for x in saved["running"])
            state.sums = sums
        return state
