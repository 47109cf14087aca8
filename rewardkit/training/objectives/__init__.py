"""Training objectives: what the one training loop learns (`base.Objective` is the contract).

`rewardkit.config.OBJECTIVES` is the registry: each ``--objective`` names the module and function here
that builds it from the run's config, so a new objective is one file plus one line there
(ARCHITECTURE.md, "Adding an objective").
"""

from __future__ import annotations

import importlib
import importlib.util

from rewardkit.config import OBJECTIVES, TrainConfig
from rewardkit.training.objectives.base import Data, Evaluation, Objective, Readout, Traits

__all__ = ["Data", "Evaluation", "Objective", "Readout", "Traits", "objective_for"]


def objective_for(cfg: TrainConfig) -> Objective:
    """The objective ``--objective`` names (`rewardkit.config.OBJECTIVES`)."""
    module, _, function = OBJECTIVES[cfg.objective].partition(":")
    ours = importlib.util.find_spec(f"{__name__}.{module}") is not None  # a module of this package, or any other
    return getattr(importlib.import_module(f"{__name__}.{module}" if ours else module), function)(cfg)
