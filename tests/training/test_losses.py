"""Losses against values worked by hand."""

from __future__ import annotations

import math

import torch

from rewardkit.training.losses import bradley_terry, center_penalty, plackett_luce


def t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float32)


def test_bradley_terry_by_hand() -> None:
    # -logsigmoid(d) = log(1 + e^-d): d = 1 -> 0.313262, d = -2 -> 2.126928
    loss = bradley_terry(t(2.0, 0.0), t(1.0, 2.0))
    assert math.isclose(loss.item(), (0.3132617 + 2.1269280) / 2, rel_tol=1e-6)


def test_equal_rewards_cost_log2() -> None:
    assert math.isclose(bradley_terry(t(0.3), t(0.3)).item(), math.log(2), rel_tol=1e-6)


def test_margin_is_subtracted() -> None:
    # d = 3 - 1 - 2 = 0 -> log 2
    assert math.isclose(bradley_terry(t(3.0), t(1.0), margin=t(2.0)).item(), math.log(2), rel_tol=1e-6)


def test_weights_average_per_prompt() -> None:
    # weights 1/3, 1/3, 1/3 (one K=3 prompt) and 1 (one pair): sum(w*l)/sum(w) = (mean of 3 + l4) / 2
    losses = [math.log1p(math.exp(-d)) for d in (1.0, 2.0, 3.0, 0.5)]
    got = bradley_terry(t(1, 2, 3, 0.5), t(0, 0, 0, 0), weight=t(1 / 3, 1 / 3, 1 / 3, 1)).item()
    assert math.isclose(got, (sum(losses[:3]) / 3 + losses[3]) / 2, rel_tol=1e-6)


def test_center_penalty_by_hand() -> None:
    # ((1 + -1)^2 + (2 + 1)^2) / 2 = 4.5
    assert math.isclose(center_penalty(t(1.0, 2.0), t(-1.0, 1.0)).item(), 4.5, rel_tol=1e-6)


def test_plackett_luce_is_bradley_terry_for_pairs() -> None:
    r = torch.randn(10)
    pl = plackett_luce(r, torch.tensor([2] * 5))
    bt = bradley_terry(r[0::2], r[1::2])
    assert torch.allclose(pl, bt, atol=1e-6)


def test_plackett_luce_three_way_by_hand() -> None:
    # ranking rewards (2, 1, 0): -[2 - log(e^2+e^1+e^0)] - [1 - log(e^1+e^0)] - 0
    expected = -(2 - math.log(math.exp(2) + math.exp(1) + 1)) - (1 - math.log(math.exp(1) + 1))
    got = plackett_luce(t(2.0, 1.0, 0.0), torch.tensor([3]))
    assert math.isclose(got.item(), expected, rel_tol=1e-6)


def test_plackett_luce_mixed_group_sizes_have_finite_gradients() -> None:
    r = t(2.0, 1.0, 0.0, 0.5, -0.5).requires_grad_()
    loss = plackett_luce(r, torch.tensor([3, 2]))
    loss.backward()
    expected = (-(2 - math.log(math.exp(2) + math.exp(1) + 1)) - (1 - math.log(math.exp(1) + 1))
                + math.log1p(math.exp(-1.0))) / 2
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)
    assert torch.isfinite(r.grad).all()
