"""The reward model itself: backbones and their heads, batches, the reward network and its exact speed
paths, LoRA, precision, saved model directories, and `RewardModel` for scoring.
"""
