"""rewardkit: train, evaluate and serve reward models for RLHF."""

from .version import __version__  # noqa: F401

from .config import TrainConfig  # noqa: E402
from .scorer import RewardModel  # noqa: E402
from .train import train  # noqa: E402  (the function shadows the submodule name, on purpose)

__all__ = ["RewardModel", "TrainConfig", "train", "__version__"]
