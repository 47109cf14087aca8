"""Masked regression losses and the combined reward against values worked by hand."""

from __future__ import annotations

import math

import pytest
import torch

from rewardkit.training.losses import combined_reward, regression_loss, weighted_regression_loss


def t(*rows: tuple[float, ...]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


PRED = t((1.0, 2.0), (0.0, -1.0))
TARGET = t((0.0, 2.5), (3.0, 99.0))
MASK = torch.tensor([[True, True], [True, False]])


def test_masked_mse_by_hand() -> None:
    # observed errors 1, -0.5, -3 -> (1 + 0.25 + 9) / 3; the masked 99 plays no part
    assert math.isclose(regression_loss(PRED, TARGET, MASK).item(), 10.25 / 3, rel_tol=1e-6)


def test_mean_is_over_observed_values_not_rows() -> None:
    # one row with 1 value (error 2), one with 3 values (errors 0): 4 / 4 = 1, not (4 + 0) / 2 rows
    pred, target = t((2.0, 0.0, 0.0), (1.0, 1.0, 1.0)), t((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    mask = torch.tensor([[True, False, False], [True, True, True]])
    assert math.isclose(regression_loss(pred, target, mask).item(), 1.0, rel_tol=1e-6)


def test_huber_by_hand() -> None:
    # delta 1: |e| = 1 -> 0.5; |e| = 0.5 -> 0.125; |e| = 3 -> 1 * (3 - 0.5) = 2.5
    got = regression_loss(PRED, TARGET, MASK, kind="huber", delta=1.0).item()
    assert math.isclose(got, (0.5 + 0.125 + 2.5) / 3, rel_tol=1e-6)
    # delta 2: |e| = 3 -> 2 * (3 - 1) = 4; the others are quadratic 0.5 e^2
    got = regression_loss(PRED, TARGET, MASK, kind="huber", delta=2.0).item()
    assert math.isclose(got, (0.5 + 0.125 + 4.0) / 3, rel_tol=1e-6)


def test_masked_entries_get_no_gradient_even_with_nan_targets() -> None:
    pred = PRED.clone().requires_grad_()
    target = TARGET.clone()
    target[1, 1] = float("nan")  # whatever sits under the mask
    for kind in ("mse", "huber"):
        pred.grad = None
        loss = regression_loss(pred, target, MASK, kind=kind)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()
        assert pred.grad[1, 1] == 0
    # mse gradient 2 e / n: e = 1, 0.5 wrt pred (pred - target), -3
    pred.grad = None
    regression_loss(pred, TARGET, MASK).backward()
    assert torch.allclose(pred.grad, t((2 / 3, -1 / 3), (-2.0, 0.0)))


def test_all_masked_batch_is_zero_without_nan() -> None:
    pred = torch.randn(3, 2, requires_grad=True)
    target = torch.full((3, 2), float("nan"))
    loss = regression_loss(pred, target, torch.zeros(3, 2, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(pred.grad, torch.zeros(3, 2))


def test_weighted_form_sums_over_passes() -> None:
    total, count = weighted_regression_loss(PRED, TARGET, MASK)
    a_sum, a_n = weighted_regression_loss(PRED[:1], TARGET[:1], MASK[:1])
    b_sum, b_n = weighted_regression_loss(PRED[1:], TARGET[1:], MASK[1:])
    assert count == 3 and a_n + b_n == 3
    assert math.isclose((a_sum + b_sum).item() / 3, regression_loss(PRED, TARGET, MASK).item(), rel_tol=1e-6)
    assert math.isclose(total.item(), 10.25, rel_tol=1e-6)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="must be one of mse, huber"):
        regression_loss(PRED, TARGET, MASK, kind="l1")
    with pytest.raises(ValueError, match="same shape"):
        regression_loss(PRED, TARGET[:1], MASK)


def test_combined_reward_by_hand() -> None:
    out = t((0.5, 1.0), (0.0, 0.25))
    w = torch.tensor([1.0, -0.3])
    assert torch.allclose(combined_reward(out, w), torch.tensor([0.5 - 0.3, -0.075]))
    # scaled outputs back to original units first: value = offset + scale * out
    offset, scale = torch.tensor([0.0, 1.0]), torch.tensor([4.0, 2.0])
    # row 0: values (2, 3) -> 2 - 0.9 = 1.1; row 1: values (0, 1.5) -> -0.45
    assert torch.allclose(combined_reward(out, w, offset, scale), torch.tensor([1.1, -0.45]))


def test_combined_reward_is_differentiable_in_fp32_from_bf16() -> None:
    out = t((0.5, 1.0)).to(torch.bfloat16).requires_grad_()
    r = combined_reward(out, torch.tensor([2.0, 1.0]), scale=torch.tensor([3.0, 1.0]))
    assert r.dtype == torch.float32
    r.sum().backward()
    assert torch.allclose(out.grad.float(), t((6.0, 1.0)))


def test_fold_scaling_makes_the_layer_emit_original_units() -> None:
    from rewardkit.model.attribute_head import fold_scaling

    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 3)
    h = torch.randn(5, 8)
    offset, scale = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([4.0, 0.5, 2.0])
    expected = offset + scale * layer(h)
    w, b = fold_scaling(layer.weight, layer.bias, offset, scale)
    assert torch.allclose(h @ w.T + b, expected, atol=1e-6)
    # bias-less heads (decoders): a pure scale folds, an offset cannot
    w2, b2 = fold_scaling(layer.weight, None, torch.zeros(3), scale)
    assert b2 is None and torch.allclose(h @ w2.T, scale * (h @ layer.weight.T), atol=1e-6)
    with pytest.raises(ValueError, match="no bias"):
        fold_scaling(layer.weight, None, offset, scale)
