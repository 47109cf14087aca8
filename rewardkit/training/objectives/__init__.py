"""Training objectives: what the one training loop learns (`base.Objective` says what they provide).

``--objective bt`` is `pairwise.PairwiseObjective`; ``regression`` and ``bt+regression`` are
`regression.RegressionObjective`; ``sft`` is `sft.SFTObjective`; ``generative`` is
`generative.GenerativeObjective` on comparisons, `generative.GenerativeRatingsObjective` on a rating table.
"""

from __future__ import annotations

from rewardkit.config import TrainConfig
from rewardkit.data.loading import is_rating_table
from rewardkit.training.objectives.base import Evaluation, Objective
from rewardkit.training.objectives.generative import GenerativeObjective, GenerativeRatingsObjective
from rewardkit.training.objectives.pairwise import PairwiseObjective
from rewardkit.training.objectives.regression import RegressionObjective
from rewardkit.training.objectives.sft import SFTObjective

__all__ = ["Evaluation", "Objective", "objective_for"]


def objective_for(cfg: TrainConfig) -> Objective:
    """The objective ``--objective`` names."""
    if cfg.objective == "bt":
        return PairwiseObjective(cfg)
    if cfg.objective == "sft":
        return SFTObjective(cfg)
    if cfg.objective == "generative":
        ratings = bool(cfg.train_data) and is_rating_table(cfg.train_data, cfg.format, cfg.rating_options())
        return GenerativeRatingsObjective(cfg) if ratings else GenerativeObjective(cfg)
    return RegressionObjective(cfg)
