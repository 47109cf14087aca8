"""rewardkit: train, evaluate and serve reward models for RLHF."""

__version__ = "0.1.0"

from .config import TrainConfig  # noqa: E402
from .model import RewardModel  # noqa: E402
from .train import train  # noqa: E402  (the function shadows the submodule name, on purpose)

__all__ = ["RewardModel", "TrainConfig", "train", "__version__"]
