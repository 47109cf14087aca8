"""Measuring a reward model: pure metric functions (pairwise and per-attribute), the offline HTML reports,
held-out scoring during training, and the regression parts of `rewardkit eval`/`score`.
"""
