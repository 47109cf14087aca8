"""K-way losses against values worked by hand, and the pair index / weights that feed them.

Hand values (e = 2.718281828...):
  PL, rewards (2, 1, 0) best first:
    -[2 - log(e^2 + e + 1)] - [1 - log(e + 1)] - [0 - log 1]
    = (log 11.107338 - 2) + (log 3.718282 - 1) = 0.407606 + 0.313262 = 0.720868
  PL, rewards (0, 1, 2) (the ranking reversed):
    (log 11.107338 - 0) + (log(e + e^2) - 1) = 2.407606 + 1.313262 = 3.720868
  PL, equal rewards: every one of the 3! orders is equally likely, NLL = log 6 = 1.791759
    gradient: d/dr1 = -1 + 1/3 = -2/3, d/dr2 = 1/3 - 1 + 1/2 = -1/6, d/dr3 = 1/3 + 1/2 = 5/6
  softplus(-x) = -logsigmoid(x): softplus(-1) = 0.313262, softplus(-2) = 0.126928, softplus(1) = 1.313262
"""

from __future__ import annotations

import math

import pytest
import torch

from rewardkit.encoding.encoder import Encoded
from rewardkit.model.batching import collate
from rewardkit.training.losses import bradley_terry, plackett_luce

SP_M1, SP_M2, SP_P1 = 0.3132616875, 0.1269280110, 1.3132616875


def enc(k: int, scores: list[float] | None = None, margin: float | None = None) -> Encoded:
    """K fake responses of different lengths (the losses only care about how many)."""
    return Encoded(input_ids=[[101] + [7] * (i + 1) + [102] for i in range(k)], token_type_ids=None,
                   prompt_len=1, truncated=False, margin=margin, scores=scores)


def test_plackett_luce_k3_hand_values() -> None:
    r = torch.tensor([2.0, 1.0, 0.0])
    assert plackett_luce(r, torch.tensor([3])).item() == pytest.approx(0.7208677, abs=1e-6)
    assert plackett_luce(r.flip(0), torch.tensor([3])).item() == pytest.approx(3.7208677, abs=1e-6)
    assert plackett_luce(torch.zeros(3), torch.tensor([3])).item() == pytest.approx(math.log(6), abs=1e-6)


def test_plackett_luce_k3_gradient_by_hand() -> None:
    r = torch.zeros(3, requires_grad=True)
    plackett_luce(r, torch.tensor([3])).backward()
    assert r.grad.tolist() == pytest.approx([-2 / 3, -1 / 6, 5 / 6], abs=1e-6)


def test_plackett_luce_mixed_group_sizes_mean_over_groups() -> None:
    # group 1: pair (1, 0) -> softplus(-1); group 2: (2, 1, 0) -> 0.720868; mean of the two groups
    r = torch.tensor([1.0, 0.0, 2.0, 1.0, 0.0], requires_grad=True)
    loss = plackett_luce(r, torch.tensor([2, 3]))
    assert loss.item() == pytest.approx((SP_M1 + 0.7208677) / 2, abs=1e-6)
    loss.backward()
    assert torch.isfinite(r.grad).all()  # the -1e9 padding of the short group leaks no NaN


def test_plackett_luce_equals_bradley_terry_for_pairs() -> None:
    torch.manual_seed(0)
    r = torch.randn(10) * 3
    pl = plackett_luce(r, torch.full((5,), 2))
    bt = bradley_terry(r[0::2], r[1::2])
    assert pl.item() == pytest.approx(bt.item(), abs=1e-6)
    assert pl.item() == pytest.approx(sum(math.log1p(math.exp(-(a - b))) for a, b in
                                          zip(r[0::2].tolist(), r[1::2].tolist())) / 5, abs=1e-5)


def test_collate_indexes_all_pairs_of_a_ranking_best_first() -> None:
    b = collate([enc(2), enc(3)], pad_id=0)
    assert b.input_ids.shape[0] == 5  # one tensor, one forward pass, for every response
    assert b.sizes.tolist() == [2, 3]
    assert b.pair_better.tolist() == [0, 2, 2, 3]
    assert b.pair_worse.tolist() == [1, 3, 4, 4]
    assert b.pair_weight.tolist() == [1.0, 1.0, 1.0, 1.0]
    assert b.reward_col.tolist() == [2, 3, 2, 3, 4]  # last real token of each response


def test_collate_margins_from_scores_and_pair_margin() -> None:
    b = collate([enc(2, margin=0.5), enc(3, scores=[5.0, 3.0, 2.0])], pad_id=0)
    assert b.pair_margin.tolist() == [0.5, 2.0, 3.0, 1.0]
    assert collate([enc(3, scores=[5.0, 3.0, 2.0])], pad_id=0, use_margin=False).pair_margin.tolist() == [0, 0, 0]


def test_instructgpt_balancing_weights_and_loss_by_hand() -> None:
    """A pair and a 3-way ranking: balanced, each prompt's pairs weigh 1/C(K,2) and sum to 1."""
    b = collate([enc(2), enc(3)], pad_id=0, balance_per_prompt=True)
    assert b.pair_weight.tolist() == pytest.approx([1.0, 1 / 3, 1 / 3, 1 / 3])
    rewards = torch.tensor([0.0, 1.0, 2.0, 1.0, 0.0])  # the pair is ordered wrongly
    better, worse = rewards[b.pair_better], rewards[b.pair_worse]
    balanced = bradley_terry(better, worse, weight=b.pair_weight).item()
    # ranking: diffs 1, 2, 1 -> mean(sp(-1), sp(-2), sp(-1)) = 0.251150; pair: sp(1); mean over prompts
    assert balanced == pytest.approx(((2 * SP_M1 + SP_M2) / 3 + SP_P1) / 2, abs=1e-6)
    plain = collate([enc(2), enc(3)], pad_id=0)
    unbalanced = bradley_terry(better, worse, weight=plain.pair_weight).item()
    assert unbalanced == pytest.approx((2 * SP_M1 + SP_M2 + SP_P1) / 4, abs=1e-6)


def test_balancing_groups_pair_records_of_one_prompt() -> None:
    """Three pair records of prompt A and a 3-way ranking of prompt B: weights sum to 1 per prompt."""
    items = [enc(2), enc(2), enc(3), enc(2)]
    b = collate(items, pad_id=0, balance_per_prompt=True, prompt_ids=[7, 7, 9, 7])
    w = b.pair_weight.tolist()
    assert w == pytest.approx([1 / 3, 1 / 3, 1 / 3, 1 / 3, 1 / 3, 1 / 3])
    prompt_of_pair = [7, 7, 9, 9, 9, 7]
    for g in (7, 9):
        assert sum(x for x, p in zip(w, prompt_of_pair) if p == g) == pytest.approx(1.0)
    # groups are ignored without balancing
    assert collate(items, pad_id=0, prompt_ids=[7, 7, 9, 7]).pair_weight.tolist() == [1.0] * 6
