"""The `RewardModel` a scoring command's config describes (`rewardkit eval`, `score`, side by side)."""

from __future__ import annotations

from typing import Any


def load_scorer(cfg: Any) -> Any:
    """The `RewardModel` a scoring config (`rewardkit.config.ScorerOptions`) describes."""
    from rewardkit.model.reward_model import RewardModel

    return RewardModel.from_pretrained(cfg.model_dir, max_length=cfg.max_length, prefix_sharing=cfg.prefix_sharing,
                                       dtype=cfg.dtype, packing=cfg.packing)
