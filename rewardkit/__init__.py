"""rewardkit: train, evaluate and serve reward models for RLHF.

The public names are imported lazily so that `rewardkit --help` does not pay for torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["RewardModel", "TrainConfig", "train", "__version__"]

_HOMES = {"RewardModel": "model", "TrainConfig": "config", "train": "train"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module 'rewardkit' has no attribute {name!r}")
