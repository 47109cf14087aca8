"""The one divergence check: a non-finite loss, gradient or weight stops the run before it does harm.

Where the update is still ahead (every mode but DeepSpeed), the step's losses and gradient norm are
checked after the backward passes and before ``optimizer.step()``, so a run stops *before* applying
a bad update. DeepSpeed steps inside ``backward``, so there the loss is checked before the backward
(the update never starts), and the gradient norm DeepSpeed reports afterwards stops the run before
anything of it is saved. Every check is reduced over processes, so all of them stop together (a
process that stopped alone would leave the others waiting in a collective) and, under ZeRO-3 or FSDP
where each process holds a slice of the weights, the verdict covers all of them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterable

import torch

from rewardkit.errors import TrainingDiverged
from rewardkit.training.resume import as_float64

if TYPE_CHECKING:
    from rewardkit.training.startup import Run


def all_finite(params: Iterable[torch.Tensor]) -> bool:
    """True when no tensor holds NaN or inf (checked before anything is saved)."""
    return all(bool(torch.isfinite(p).all()) for p in params)


def check_step(run: Run, step: int, losses: list[Any], grad_norm: Any, signalled: bool,
               before_update: bool = True) -> bool:
    """Raise TrainingDiverged, on every process, for a non-finite loss or gradient norm on any process;
    otherwise return whether any process was asked to stop (SIGINT/SIGTERM).

    ``losses`` and ``grad_norm`` may be device tensors: the check runs there and is read back once (the
    step's one wait for the GPU). ``before_update`` says whether the optimizer has yet to apply this step
    (the message says so).
    """
    loss_t = as_float64(losses)
    norm_t = torch.as_tensor(grad_norm, dtype=torch.float64, device=loss_t.device)
    flags = torch.stack([(~torch.isfinite(loss_t)).any().double(), (~torch.isfinite(norm_t)).double(),
                         torch.tensor(float(signalled), dtype=torch.float64, device=loss_t.device)])
    bad = run.reduce_sum(flags)
    if bad[0] or bad[1]:
        values = loss_t.tolist()
        shown = next((x for x in values if not math.isfinite(x)), values[-1])
        what = "loss" if bad[0] else "gradient"
        when = ("stopped before applying the update" if before_update else
                "DeepSpeed applied the update inside backward; nothing of it was saved")
        raise TrainingDiverged(
            f"step {step}: non-finite {what} (loss {shown:.4g}, gradient norm {float(norm_t):.4g}); {when} and no "
            f"final model was written; {run.last_good()}. Lower --lr (now {run.cfg.lr:g}), keep --max-grad-norm on, "
            "or try --precision fp32.")
    return bool(bad[2])


def check_weights(run: Run, params: Iterable[torch.Tensor], what: str, consequence: str) -> None:
    """Raise TrainingDiverged on every process when any process's (slice of the) weights is non-finite."""
    if run.any(not all_finite(params)):
        raise TrainingDiverged(f"{what}: the weights hold NaN/inf; {consequence}; {run.last_good()}")
