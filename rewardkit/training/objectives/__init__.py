"""Training objectives: what the one training loop learns (`base.Objective` says what they provide).

``--objective bt`` is `pairwise.PairwiseObjective`; ``regression`` and ``bt+regression`` are
`regression.RegressionObjective`.
"""

from __future__ import annotations

from rewardkit.config import TrainConfig
from rewardkit.training.objectives.base import Evaluation, Objective
from rewardkit.training.objectives.pairwise import PairwiseObjective
from rewardkit.training.objectives.regression import RegressionObjective

__all__ = ["Evaluation", "Objective", "objective_for"]


def objective_for(cfg: TrainConfig) -> Objective:
    """The objective ``--objective`` names."""
    if cfg.objective == "bt":
        return PairwiseObjective(cfg)
    return RegressionObjective(cfg)
