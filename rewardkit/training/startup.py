"""Starting a training run: the accelerator and its processes, the output directory, the resume point.

`start_run` creates the `Accelerator` for the resolved precision, checks the output directory
(`rewardkit.training.output_dir`: never two runs in one), finds the checkpoint to resume from and
checks the resume contract, then clears what the new run must not inherit. `Run` carries all of it
through the phases of `rewardkit.training.trainer`.

Multi-process runs (``accelerate launch``): every process calls everything here; decisions are
read-only until every process has looked, and files are written by the main process only.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from rewardkit.config import TrainConfig
from rewardkit.errors import UsageError
from rewardkit.model.precision import Precision
from rewardkit.training.checkpoints import latest_checkpoint, read_state
from rewardkit.training.output_dir import check_output_dir, prepare_output_dir
from rewardkit.training.resume import check_resume
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

    def reduce_sum(self, values: list[float] | torch.Tensor) -> list[float]:
        """Element-wise sum over processes (identity in a single process), read back as floats."""
        t = torch.as_tensor(values, dtype=torch.float64)
        if self.world == 1:
            return t.tolist()
        return self.accelerator.reduce(t.to(self.accelerator.device), reduction="sum").tolist()

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
    """The accelerator (with the --report-to ``trackers``), the output directory (checked, not yet
    touched: `prepare_output` does that once the data and model are known to be good) and the
    resume point."""
    from accelerate import Accelerator

    accelerator = Accelerator(mixed_precision=precision.mixed_precision, **(trackers or {}))
    check_launch(accelerator)  # sharding asked for but dropped by accelerate (e.g. FSDP on CPU): refuse
    out, resume_from = check_output_dir(cfg)
    run = Run(cfg, accelerator, precision, out, resume_from, None, log)
    if precision.emulated:  # the precision itself is said with the other speed settings (`SpeedPlan`)
        run.say(f"warning: {precision.reason}")
    if run.deepspeed and cfg.grad_accum > 1:
        raise UsageError("--grad-accum > 1 is not supported under DeepSpeed (it steps inside backward); "
                         "use --grad-accum 1 and raise --batch-size or the number of processes")
    if resume_from is not None:
        run.saved = read_state(resume_from)
        check_resume(run.saved, cfg, run.world, resume_from, precision.name)
    elif cfg.resume:  # --resume auto with nothing to resume
        run.say(f"--resume auto: no checkpoint in {out} yet; starting from step 0")
    from accelerate.utils import set_seed

    set_seed(cfg.seed)
    return run


def prepare_output(run: Run) -> None:
    """Create and clear the output directory (`prepare_output_dir`), once every process has looked at
    it and the run's data and model have loaded: a bad input stops the run before anything in the
    directory changes."""
    run.accelerator.wait_for_everyone()
    if run.main:
        prepare_output_dir(run.cfg, run.out)
