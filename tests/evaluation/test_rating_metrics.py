"""Per-attribute RMSE / Pearson / Spearman and pairwise accuracy, by hand and against numpy/scipy."""

from __future__ import annotations

import math
import random

import pytest

from rewardkit.evaluation.rating_metrics import (
    attribute_metrics,
    average_ranks,
    pairwise_accuracy,
    pearson,
    regression_metrics,
    rmse,
    spearman,
)


def test_average_ranks_share_tied_ranks() -> None:
    assert average_ranks([10, 20, 20, 5]) == [2.0, 3.5, 3.5, 1.0]
    assert average_ranks([1, 1, 1]) == [2.0, 2.0, 2.0]
    assert average_ranks([]) == []


def test_pearson_by_hand() -> None:
    # x = 1,2,3, y = 1,3,2: means 2, 2; sxy = (-1)(-1) + (0)(1) + (1)(0) = 1; sxx = syy = 2 -> 0.5
    assert math.isclose(pearson([1, 2, 3], [1, 3, 2]), 0.5)
    assert math.isclose(pearson([1, 2, 3], [6, 4, 2]), -1.0)
    assert pearson([1, 1, 1], [1, 2, 3]) is None  # constant side: undefined, not 0
    assert pearson([1], [2]) is None


def test_spearman_by_hand_with_ties() -> None:
    # ranks x = 1, 2.5, 2.5, 4; y = 1, 2, 3, 4 -> Pearson of the ranks
    # mean 2.5 both; sxy = (-1.5)(-1.5) + 0 + 0 + (1.5)(1.5) = 4.5; sxx = 4.5; syy = 5 -> 4.5 / sqrt(22.5)
    assert math.isclose(spearman([1, 2, 2, 3], [10, 20, 30, 40]), 4.5 / math.sqrt(22.5))
    # monotone but not linear: Spearman 1, Pearson below 1
    x = [1, 2, 3, 4, 5]
    y = [1, 4, 9, 16, 100]
    assert math.isclose(spearman(x, y), 1.0) and pearson(x, y) < 0.95


def test_rmse_by_hand() -> None:
    assert math.isclose(rmse([1, 2, 3], [1, 4, 0]), math.sqrt((0 + 4 + 9) / 3))
    assert rmse([], []) is None
    with pytest.raises(ValueError, match="2 predictions but 1 targets"):
        rmse([1, 2], [1])


def test_against_numpy_and_scipy() -> None:
    np = pytest.importorskip("numpy")
    rng = random.Random(0)
    x = [float(rng.randint(0, 4)) for _ in range(200)]  # ratings with many ties
    y = [v + rng.gauss(0, 1.5) for v in x]
    assert math.isclose(pearson(x, y), float(np.corrcoef(x, y)[0, 1]), rel_tol=1e-9)
    assert math.isclose(rmse(y, x), float(np.sqrt(np.mean((np.array(y) - np.array(x)) ** 2))), rel_tol=1e-9)
    stats = pytest.importorskip("scipy.stats")
    assert math.isclose(spearman(x, y), float(stats.spearmanr(x, y).statistic), rel_tol=1e-9)
    assert average_ranks(x) == list(stats.rankdata(x))


def test_attribute_metrics_skip_missing_ratings() -> None:
    pred = [[1.0, 0.0], [2.0, 5.0], [3.0, 1.0], [4.0, 2.0]]
    true = [[1.0, None], [2.0, 4.0], [2.0, 1.0], [None, 3.0]]
    m = attribute_metrics(pred, true, ["h", "v"])
    assert m["h"]["n"] == 3 and m["v"]["n"] == 3
    assert math.isclose(m["h"]["rmse"], math.sqrt(1 / 3))  # errors 0, 0, 1 (row 4 has no rating)
    assert math.isclose(m["v"]["rmse"], math.sqrt((1 + 0 + 1) / 3))  # the 0.0 prediction of row 1 is unused
    assert math.isclose(m["h"]["spearman"], spearman([1, 2, 3], [1, 2, 2]))


def test_pairwise_accuracy_ties_are_wrong() -> None:
    assert pairwise_accuracy([2.0, 1.0, 0.5, 3.0], [1.0, 1.0, 0.7, 0.0]) == 0.5
    assert pairwise_accuracy([], []) is None


def test_regression_metrics_shape() -> None:
    out = regression_metrics([[1.0], [2.0], [3.0]], [[1.0], [3.0], [2.0]], ["h"], pair_rewards=[(1.0, 0.0), (0.0, 1.0)])
    assert out["responses"] == 3 and out["pairs"] == 2 and out["accuracy"] == 0.5
    assert math.isclose(out["mean_spearman"], 0.5) and out["attributes"]["h"]["n"] == 3
    assert "pairs" not in regression_metrics([[1.0]], [[1.0]], ["h"])


def test_flat_metrics_for_metrics_jsonl() -> None:
    from rewardkit.evaluation.rating_metrics import flat_metrics

    m = regression_metrics([[1.0, 2.0], [2.0, 1.0]], [[1.0, 2.0], [3.0, None]], ["h", "v"])
    flat = flat_metrics(m)
    assert flat["spearman/h"] == 1.0 and flat["rmse/v"] == 0.0 and flat["pearson/v"] is None
    assert "attributes" not in flat and flat["responses"] == 2
