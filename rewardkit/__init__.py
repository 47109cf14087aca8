"""rewardkit: train, evaluate and serve reward models for RLHF.

The public API: `RewardModel` (score with a trained model), `TrainConfig` and `train` (train one).
"""

from rewardkit.config import TrainConfig
from rewardkit.model.reward_model import RewardModel
from rewardkit.training.trainer import train
from rewardkit.version import __version__

__all__ = ["RewardModel", "TrainConfig", "train", "__version__"]
