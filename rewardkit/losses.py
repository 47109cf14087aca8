"""Reward-model losses as pure functions of reward tensors (tested against hand-worked values)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from .batching import Batch


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


def plackett_luce(rewards: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Mean over rankings of the Plackett-Luce negative log-likelihood of each full ranking.

    ``rewards`` is flat, ranking after ranking (``sizes`` responses each), each best first. For one ranking
    ``r_1 > ... > r_K``: ``-sum_k [r_k - logsumexp(r_k..r_K)]``. For K = 2 this is exactly
    ``-logsigmoid(r_1 - r_2)``, Bradley-Terry.
    """
    sizes = sizes.tolist()
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


def batch_loss(rewards: torch.Tensor, batch: "Batch", loss: str, center_coef: float
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, pairwise accuracy) of one batch: ``loss`` "bt" (Bradley-Terry) or "pl" (Plackett-Luce),
    plus ``center_coef`` times the centering penalty."""
    better, worse = rewards[batch.pair_better], rewards[batch.pair_worse]
    if loss == "pl":
        value = plackett_luce(rewards, batch.sizes)
    else:
        value = bradley_terry(better, worse, batch.pair_margin, batch.pair_weight)
    if center_coef:
        value = value + center_coef * center_penalty(better, worse, batch.pair_weight)
    return value, (better > worse).float().mean()


def loss_denominator(batch: "Batch", loss: str) -> float:
    """What `batch_loss` divides by: its pairs' total weight, or its rankings under "pl".

    A micro-batch run in several passes weights each pass's mean loss by its share of this, so the
    gradients add up to those of the whole batch's mean.
    """
    return float(batch.num_comparisons) if loss == "pl" else float(batch.pair_weight.sum())
