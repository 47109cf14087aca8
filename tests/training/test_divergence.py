"""The one divergence check: it stops every process together, before the update where it can, and says
what happened to the update under DeepSpeed, which steps inside backward."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from rewardkit.errors import TrainingDiverged
from rewardkit.training.divergence import check_step, check_weights


class FakeRun:
    """One process of two: ``others`` is what the other process adds to every all-reduced value."""

    def __init__(self, others: list[float] | None = None):
        self.others = others
        self.cfg = SimpleNamespace(lr=1e-3)

    def reduce_sum(self, values: list[float]) -> list[float]:
        return [a + b for a, b in zip(values, self.others or [0.0] * len(values))]

    def any(self, flag: bool) -> bool:
        return bool(self.reduce_sum([float(flag)])[0])

    def last_good(self) -> str:
        return "no checkpoint had been written"


def test_a_bad_loss_on_another_process_stops_this_one_too() -> None:
    assert check_step(FakeRun(), 3, [0.7, 0.6], 1.5, False) is False
    assert check_step(FakeRun([0.0, 0.0, 1.0]), 3, [0.7], 1.5, False) is True  # a signal elsewhere: stop too
    with pytest.raises(TrainingDiverged, match="step 3: non-finite loss.*stopped before applying the update"):
        check_step(FakeRun([1.0, 0.0, 0.0]), 3, [0.7], 1.5, False)
    with pytest.raises(TrainingDiverged, match="non-finite gradient.*DeepSpeed applied the update inside backward"):
        check_step(FakeRun(), 4, [0.7], math.inf, False, before_update=False)


def test_weights_are_judged_over_every_shard() -> None:
    check_weights(FakeRun(), [torch.ones(3)], "step 2", "no checkpoint written")
    with pytest.raises(TrainingDiverged, match="step 2: the weights hold NaN/inf; no checkpoint written"):
        check_weights(FakeRun([1.0]), [torch.ones(3)], "step 2", "no checkpoint written")  # another process's slice


def test_the_check_sees_a_pass_loss_before_its_backward() -> None:
    """Under DeepSpeed the step checks each pass's loss: a NaN loss raises before backward runs."""
    from conftest import OneProcessAccelerator, one_step

    class Batch:
        def to(self, device: object) -> "Batch":
            return self

        def inputs(self) -> dict[str, torch.Tensor]:
            return {"x": torch.ones(2)}

    class NaNObjective:
        term_weights = {"pairwise": 1.0}

        def collate(self, members: list[int], pad_id: int, layout: object, prompt_ids: list[int]) -> Batch:
            return Batch()

        def counts(self, batch: object) -> dict[str, float]:
            return {"pairwise": 1.0}

        def loss(self, outputs: torch.Tensor, batch: object) -> dict[str, torch.Tensor]:
            return {"pairwise": outputs.sum() * float("nan")}

    weight = torch.nn.Parameter(torch.ones(2))
    run = FakeRun()
    run.accelerator, run.deepspeed = OneProcessAccelerator(), True
    with pytest.raises(TrainingDiverged, match="non-finite loss"):
        one_step(NaNObjective(), lambda x: x * weight, [[0]], run=run)
    assert run.accelerator.losses == [] and weight.grad is None