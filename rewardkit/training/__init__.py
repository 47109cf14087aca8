"""`rewardkit train` and `rewardkit export`: one training loop for every objective (`objectives`), with
its plan, checkpoints and resume, divergence check, tracking and the published output directory.
"""
