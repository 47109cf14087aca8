"""Regression losses and the combined reward, as pure functions of tensors (tested by hand).

The head predicts K scaled attribute values per response (``pred [N, K]``); ``target`` holds the
scaled ratings and ``mask`` says which of them exist. Missing ratings are masked, never imputed:
a masked entry contributes neither to the loss nor to its gradient, whatever number sits in
``target`` there. The loss is the mean over *observed* values (not over rows), so a row with one
rating and a row with five weigh by what they carry; a batch with no observed value at all gives a
loss of exactly 0 that still backpropagates (zero gradients, no NaN).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import unwrap
from .errors import UsageError

KINDS = ("mse", "huber")


def regression_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str = "mse",
                    delta: float = 1.0) -> torch.Tensor:
    """Mean over observed entries of the squared error (``mse``) or Huber loss (``huber``).

    Huber with ``delta`` d: ``0.5 e^2`` for ``|e| <= d``, ``d (|e| - 0.5 d)`` above (torch's
    definition), so at small errors it is half the squared error, and large errors (annotator
    outliers) pull linearly. ``pred``, ``target`` and ``mask`` share one shape, usually [N, K].
    """
    if kind not in KINDS:
        raise ValueError(f"regression loss must be one of {', '.join(KINDS)}, got {kind!r}")
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

    With ``offset``/``scale`` (the stored `rewardkit.attributes.Scaling`) the head's scaled outputs
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


@torch.no_grad()
def fold_scaling(weight: torch.Tensor, bias: torch.Tensor | None, offset: torch.Tensor, scale: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The output layer's (weight [K, H], bias [K]) rewritten to emit ``offset + scale * output``.

    Training regresses scaled targets; folding the scaling into the last linear layer at export
    makes the saved model's logits the ratings in original units, so plain transformers and
    `RewardModel.score_attributes` give the same numbers. A bias-less layer (decoder ``score``
    heads) can absorb a scale but not an offset: ValueError unless every offset is 0.
    """
    scale = scale.to(torch.float32)
    offset = offset.to(torch.float32)
    new_weight = (weight.float() * scale[:, None]).to(weight.dtype)
    if bias is None:
        if bool((offset != 0).any()):
            raise ValueError("the output layer has no bias to fold a non-zero offset into "
                             "(fit the scaling with center=False for this head)")
        return new_weight, None
    return new_weight, (bias.float() * scale + offset).to(bias.dtype)


def output_layer(model: nn.Module) -> nn.Linear:
    """The linear layer that produces the K logits (``score`` for decoders, ``classifier`` or
    ``classifier.out_proj`` for encoders); under peft, the trained copy."""
    inner = unwrap(model)
    k = inner.config.num_labels
    for name in ("score", "classifier"):
        head = getattr(inner, name, None)
        if head is None:
            continue
        saved = getattr(head, "modules_to_save", None)
        if saved is not None and "default" in saved:
            head = saved["default"]
        linears = [m for m in head.modules() if isinstance(m, nn.Linear) and m.out_features == k]
        if linears:
            return linears[-1]
    raise UsageError(f"{type(inner).__name__}: cannot find the output layer with {k} outputs")


def fold_output_layer(model: nn.Module, offset: Sequence[float], scale: Sequence[float]) -> None:
    """Rewrite the output layer so the model's logits are ratings in original units (`fold_scaling`)."""
    layer = output_layer(model)
    w, b = fold_scaling(layer.weight.data, None if layer.bias is None else layer.bias.data,
                        torch.tensor(list(offset)), torch.tensor(list(scale)))
    layer.weight.data.copy_(w)
    if b is not None:
        layer.bias.data.copy_(b)
