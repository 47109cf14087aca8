"""rewardkit: train, evaluate and serve reward models for RLHF.

The public API, one function per command, each taking the command's typed config:

* `RewardModel`: score with a trained model (``score``, ``score_batch``, ``compare``, ...);
* `train` (`TrainConfig`): ``rewardkit train``;
* `evaluate` (`EvalConfig`): ``rewardkit eval``; `score_file` (`ScoreConfig`): ``rewardkit score``;
* `convert_data` (`DataConvertConfig`): ``rewardkit data convert``.
"""

from rewardkit.config import DataConvertConfig, EvalConfig, ScoreConfig, TrainConfig
from rewardkit.data.convert import convert_data
from rewardkit.evaluation.evaluate import evaluate
from rewardkit.evaluation.scoring import score_file
from rewardkit.model.reward_model import RewardModel
from rewardkit.training.trainer import train
from rewardkit.version import __version__

__all__ = ["RewardModel", "TrainConfig", "train", "EvalConfig", "evaluate", "ScoreConfig", "score_file",
           "DataConvertConfig", "convert_data", "__version__"]
