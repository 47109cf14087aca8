"""A training run's surroundings: the accelerator and its processes, the output directory, resume.

`start_run` creates the `Accelerator` for the resolved precision, refuses to mix two runs in one
output directory, finds the checkpoint to resume from and checks the resume contract, then clears
what the new run must not inherit. `Run` carries all of it through the phases of `rewardkit.training.trainer`.

Multi-process runs (``accelerate launch``): every process calls everything here; decisions are
read-only until every process has looked, and files are written by the main process only.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from rewardkit.config import TrainConfig
from rewardkit.errors import UsageError
from rewardkit.model.artifacts import is_adapter_dir
from rewardkit.model.precision import Precision
from rewardkit.training.checkpoints import (
    STATE_FILE,
    check_resume,
    latest_checkpoint,
    list_checkpoints,
    read_state,
    remove_stale,
)
from rewardkit.training.sharding import check_launch


@dataclass
class Run:
    """One training run: its settings, accelerator, output directory and resume point."""

    cfg: TrainConfig
    accelerator: Any
    precision: Precision
    out: Path
    resume_from: Path | None  # the checkpoint to continue, if any
    saved: dict[str, Any] | None  # its trainer state
    log: Callable[[str], None]

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def deepspeed(self) -> bool:
        from accelerate.utils import DistributedType

        return self.accelerator.distributed_type == DistributedType.DEEPSPEED

    @property
    def sharded(self) -> bool:
        """FSDP or DeepSpeed: every process holds a shard, full weights need a collective gather."""
        from accelerate.utils import DistributedType

        return self.accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)

    def say(self, message: str) -> None:
        """Tell the user, once (main process)."""
        if self.main:
            self.log(message)

    def reduce_sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over processes (identity in a single process)."""
        if self.world == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.accelerator.device)
        return self.accelerator.reduce(t, reduction="sum").tolist()

    def any(self, flag: bool) -> bool:
        """True on every process when ``flag`` is true on any."""
        return bool(self.reduce_sum([float(flag)])[0])

    def last_good(self) -> str:
        latest = latest_checkpoint(self.out)
        return (f"the last good checkpoint is {latest} (export it with `rewardkit export`)" if latest
                else "no checkpoint had been written (set --save-steps to keep one)")


def run_device_type() -> str:
    """The device the `Accelerator` will pick, without creating any accelerate state before it."""
    from accelerate.utils import parse_flag_from_env

    if parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available():
        return "cpu"
    return "cuda"


@contextmanager
def fresh_accelerate_state() -> Iterator[None]:
    """A run that neither inherits nor leaves behind accelerate's process-wide settings.

    accelerate keeps mixed precision (and more) in shared state and refuses a second Accelerator
    with other settings, so two runs in one process (a notebook, a sweep) would clash. The process
    group (PartialState) is kept, so this is safe under `accelerate launch` too.
    """
    from accelerate.state import AcceleratorState, GradientState

    def reset() -> None:
        AcceleratorState._reset_state(reset_partial_state=False)
        GradientState._reset_state()

    reset()
    try:
        yield
    finally:
        reset()


def start_run(cfg: TrainConfig, precision: Precision, log: Callable[[str], None],
              trackers: dict[str, Any] | None = None) -> Run:
    """The accelerator (with the --report-to ``trackers``), the output directory (checked, then
    prepared) and the resume point."""
    from accelerate import Accelerator

    accelerator = Accelerator(mixed_precision=precision.mixed_precision, **(trackers or {}))
    check_launch(accelerator)  # sharding asked for but dropped by accelerate (e.g. FSDP on CPU): refuse
    out, resume_from = check_output_dir(cfg)
    run = Run(cfg, accelerator, precision, out, resume_from, None, log)
    run.say(precision.describe())
    if precision.emulated:
        run.say(f"warning: {precision.reason}")
    if run.deepspeed and cfg.grad_accum > 1:
        raise UsageError("--grad-accum > 1 is not supported under DeepSpeed (it steps inside backward); "
                         "use --grad-accum 1 and raise --batch-size or the number of processes")
    if resume_from is not None:
        run.saved = read_state(resume_from)
        check_resume(run.saved, cfg, run.world, resume_from)
    elif cfg.resume:
        run.say(f"--resume: no checkpoint in {out} yet; starting from step 0")
    accelerator.wait_for_everyone()  # every process has looked before the main process changes anything
    if run.main:
        prepare_output_dir(cfg, out)
    from accelerate.utils import set_seed

    set_seed(cfg.seed)
    return run


def check_output_dir(cfg: TrainConfig) -> tuple[Path, Path | None]:
    """(output dir, checkpoint to resume from), refusing to mix two runs in one directory.

    Read-only, so every process can run it (they agree) before the main process changes anything
    in `_prepare_output_dir`.
    """
    out = Path(cfg.output_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output-dir: {out} exists and is not a directory")
    checkpoints = list_checkpoints(out)
    finished = (out / "eval.json").is_file() or (out / "config.json").is_file() or is_adapter_dir(out)
    has_run = finished or bool(checkpoints) or (out / "metrics.jsonl").is_file()
    resume_from: Path | None = None
    if cfg.resume and cfg.resume != "latest":
        resume_from = Path(cfg.resume)
        if not (resume_from / STATE_FILE).is_file():
            raise UsageError(f"--resume: {resume_from} is not a complete rewardkit checkpoint (no {STATE_FILE})")
        if has_run and resume_from.resolve().parent != out.resolve():
            raise UsageError(f"--output-dir: {out} already holds another run; to continue {resume_from} "
                             "there, choose an empty --output-dir")
    elif cfg.resume:
        if (out / "eval.json").is_file():
            raise UsageError(f"--resume: {out} holds a finished run; nothing to resume "
                             "(pass --overwrite instead of --resume to train again)")
        resume_from = latest_checkpoint(out)
    elif not cfg.overwrite and has_run:
        if checkpoints and not (out / "eval.json").is_file():
            what = f"an unfinished run (newest checkpoint {checkpoints[-1][1].name}); pass --resume to continue it,"
        elif finished:
            what = "a trained model; pass"
        else:
            what = "an earlier run (metrics.jsonl); pass"
        raise UsageError(f"--output-dir: {out} already holds {what} --overwrite to replace it, "
                         "or choose another directory")
    return out, resume_from



def prepare_output_dir(cfg: TrainConfig, out: Path) -> None:
    """Create the directory, prove it writable, and clear what the new run must not inherit."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".rewardkit-write-test"
        probe.write_text("")
        probe.unlink()
        remove_stale(out)
        if cfg.overwrite:  # stale checkpoints would otherwise mix into this run's --resume
            for _, old in list_checkpoints(out):
                shutil.rmtree(old)
            shutil.rmtree(out / "merged", ignore_errors=True)  # an earlier LoRA run's --merge output
        (out / "eval.json").unlink(missing_ok=True)  # the run is unfinished until it is rewritten
    except OSError as e:
        raise UsageError(f"--output-dir: cannot write to {out}: {e.strerror}") from None



class MetricsLog:
    """Append-only ``metrics.jsonl``: one JSON object per logged event."""

    def __init__(self, path: Path, enabled: bool, tracker: Any = None):
        self.path, self.enabled, self.tracker = path, enabled, tracker  # tracker: --report-to (tracking.py)

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
