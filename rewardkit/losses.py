"""Reward-model losses as pure functions of reward tensors (tested against hand-worked values)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry(better: torch.Tensor, worse: torch.Tensor, margin: torch.Tensor | None = None,
                  weight: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted mean of ``-logsigmoid(r_better - r_worse - margin)``.

    With weights 1/C(K,2) for the pairs of a K-way comparison the mean is per prompt
    (InstructGPT); with unit weights it is per pair.
    """
    diff = better - worse
    if margin is not None:
        diff = diff - margin
    losses = -F.logsigmoid(diff)
    if weight is None:
        return losses.mean()
    return (losses * weight).sum() / weight.sum()


def center_penalty(better: torch.Tensor, worse: torch.Tensor, weight: torch.Tensor | None = None
                   ) -> torch.Tensor:
    """``mean((r_better + r_worse)^2)``: pulls rewards toward zero without changing preferences."""
    sq = (better + worse) ** 2
    if weight is None:
        return sq.mean()
    return (sq * weight).sum() / weight.sum()


def plackett_luce(rewards: torch.Tensor, group_sizes: torch.Tensor) -> torch.Tensor:
    """Mean over groups of the Plackett-Luce negative log-likelihood of each full ranking.

    ``rewards`` is flat, group after group, each group best first. For one ranking
    ``r_1 > ... > r_K``: ``-sum_k [r_k - logsumexp(r_k..r_K)]``. For K = 2 this is exactly
    ``-logsigmoid(r_1 - r_2)``, Bradley-Terry.
    """
    sizes = group_sizes.tolist()
    kmax = max(sizes)
    padded = rewards.new_full((len(sizes), kmax), -1e9)  # finite: keeps gradients NaN-free
    valid = torch.zeros((len(sizes), kmax), dtype=torch.bool, device=rewards.device)
    offset = 0
    for g, k in enumerate(sizes):
        padded[g, :k] = rewards[offset:offset + k]
        valid[g, :k] = True
        offset += k
    # logsumexp over positions k..K: reverse cumulative logsumexp
    tail = torch.logcumsumexp(padded.flip(-1), dim=-1).flip(-1)
    terms = torch.where(valid, padded - tail, torch.zeros_like(padded))
    return -(terms.sum(-1)).mean()
