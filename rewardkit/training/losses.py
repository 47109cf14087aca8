"""Losses as pure functions of tensors (tested against hand-worked values).

Pairwise: Bradley-Terry (with margins and per-prompt weights), reward centering, Plackett-Luce.
Regression (``--objective regression``): the head predicts K scaled attribute values per response
(``pred [N, K]``); ``target`` holds the scaled ratings and ``mask`` says which of them exist.
Missing ratings are masked, never imputed: a masked entry contributes neither to the loss nor to
its gradient, whatever number sits in ``target`` there. The regression loss is the mean over
*observed* values (not over rows), so a row with one rating and a row with five weigh by what they
carry; a batch with no observed value at all gives a loss of exactly 0 that still backpropagates
(zero gradients, no NaN).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from rewardkit.model.batching import Batch


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


# --------------------------------------------------------------------------------------- regression

REGRESSION_KINDS = ("mse", "huber")


def regression_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str = "mse",
                    delta: float = 1.0) -> torch.Tensor:
    """Mean over observed entries of the squared error (``mse``) or Huber loss (``huber``).

    Huber with ``delta`` d: ``0.5 e^2`` for ``|e| <= d``, ``d (|e| - 0.5 d)`` above (torch's
    definition), so at small errors it is half the squared error, and large errors (annotator
    outliers) pull linearly. ``pred``, ``target`` and ``mask`` share one shape, usually [N, K].
    """
    if kind not in REGRESSION_KINDS:
        raise ValueError(f"regression loss must be one of {', '.join(REGRESSION_KINDS)}, got {kind!r}")
    if pred.shape != target.shape or pred.shape != mask.shape:
        raise ValueError(f"pred {tuple(pred.shape)}, target {tuple(target.shape)} and mask "
                         f"{tuple(mask.shape)} must have the same shape")
    observed = mask.to(torch.bool)
    pred = pred.float()
    # where() rather than multiplying by the mask: a NaN/inf placeholder in a masked target must not
    # reach the loss or the gradient (0 * NaN is NaN)
    target = torch.where(observed, target.float(), pred.detach())
    if kind == "mse":
        per = (pred - target) ** 2
    else:
        per = F.huber_loss(pred, target, reduction="none", delta=delta)
    per = torch.where(observed, per, torch.zeros_like(per))
    count = observed.sum()
    return per.sum() / count.clamp(min=1)


def weighted_regression_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str = "mse",
                             delta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of per-value losses, number of observed values): for a loop that splits one micro-batch
    over several passes and must weight each pass by its share of observed values."""
    count = mask.to(torch.bool).sum()
    return regression_loss(pred, target, mask, kind, delta) * count, count


def combined_reward(outputs: torch.Tensor, weights: torch.Tensor, offset: torch.Tensor | None = None,
                    scale: torch.Tensor | None = None) -> torch.Tensor:
    """``sum_k w_k * (offset_k + scale_k * outputs_k)``: one reward per row of ``outputs [N, K]``.

    With ``offset``/``scale`` (the stored `rewardkit.data.attributes.table.Scaling`) the head's scaled outputs
    are first mapped back to original units, so the combined reward equals the weighted sum of the
    values `RewardModel.score_attributes` reports. Differentiable: ``bt+regression`` puts the
    pairwise loss on it.
    """
    outputs = outputs.float()
    if scale is not None:
        outputs = outputs * scale.to(outputs)
    if offset is not None:
        outputs = outputs + offset.to(outputs)
    return outputs @ weights.to(outputs)
