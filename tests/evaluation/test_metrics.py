"""Evaluation metrics against values worked out by hand (no model involved)."""

from __future__ import annotations

import math

import pytest

from rewardkit.data.records import Comparison
from rewardkit.evaluation.metrics import (brier_score, bt_loss, calibration_data, check_sections,
                                        expected_calibration_error, format_metric, kendall_tau_b, pair_metrics,
                                        pairs_of, ranking_metrics, reliability, section_scores)
from rewardkit.model.reward_model import sigmoid


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def row(c: float, r: float, lc: int, lr: int, subset: str | None = None) -> dict:
    return {"chosen_reward": c, "rejected_reward": r, "chosen_len": lc, "rejected_len": lr, "subset": subset}


# Five pairs, chosen so every headline number is easy to check by hand:
#   margin  correct  chosen longer  longer one rewarded more
#    1       yes      yes (10>5)     yes
#    0       no(tie)  no  (5=5)      - (equal lengths, excluded)
#   -2       no       no  (3<8)      yes (rejected is longer and higher)
#    2       yes      no  (4<9)      no  (shorter chosen wins)
#    0       no(tie)  yes (7>2)      no  (a tie prefers neither)
ROWS = [row(1, 0, 10, 5, "a"), row(0.5, 0.5, 5, 5, "a"), row(0, 2, 3, 8, "b"), row(3, 1, 4, 9, "b"),
        row(1, 1, 7, 2, "b")]


def test_accuracy_margins_and_ties() -> None:
    m = pair_metrics(ROWS)
    assert m["pairs"] == 5
    assert m["accuracy"] == pytest.approx(2 / 5)  # ties count as wrong
    assert m["mean_margin"] == pytest.approx((1 + 0 - 2 + 2 + 0) / 5)
    assert m["median_margin"] == 0
    assert m["loss"] == pytest.approx(sum(math.log(1 + math.exp(-x)) for x in [1, 0, -2, 2, 0]) / 5)


def test_reward_statistics_are_population_moments() -> None:
    m = pair_metrics(ROWS)
    # chosen rewards 1, .5, 0, 3, 1: mean 1.1; squared deviations .01 .36 1.21 3.61 .01 sum to 5.2
    assert m["chosen_reward_mean"] == pytest.approx(1.1)
    assert m["chosen_reward_std"] == pytest.approx(math.sqrt(5.2 / 5))
    assert m["rejected_reward_mean"] == pytest.approx((0 + 0.5 + 2 + 1 + 1) / 5)


def test_length_bias() -> None:
    m = pair_metrics(ROWS)
    assert m["chosen_longer_rate"] == pytest.approx(2 / 5)  # rows 0 and 4
    assert m["accuracy_chosen_longer"] == pytest.approx(1 / 2)  # row 0 right, row 4 a tie
    assert m["accuracy_chosen_not_longer"] == pytest.approx(1 / 3)  # rows 1, 2, 3: only row 3 right
    assert m["prefers_longer_rate"] == pytest.approx(2 / 4)  # rows 0, 2 of the 4 unequal-length pairs


def test_length_bias_undefined_parts_are_none() -> None:
    m = pair_metrics([row(1, 0, 5, 5), row(0, 1, 5, 5)])
    assert m["chosen_longer_rate"] == 0
    assert m["accuracy_chosen_longer"] is None
    assert m["prefers_longer_rate"] is None


def test_subsets_and_weighted_sections() -> None:
    m = pair_metrics(ROWS, {"S": {"a": 1, "b": 3}, "counts": ["a", "b"], "absent": {"zzz": 1}})
    assert m["subsets"] == {"a": {"accuracy": 0.5, "pairs": 2}, "b": {"accuracy": pytest.approx(1 / 3), "pairs": 3}}
    assert m["sections"]["S"] == pytest.approx((0.5 * 1 + 1 / 3 * 3) / 4)
    assert m["sections"]["counts"] == pytest.approx((0.5 * 2 + 1 / 3 * 3) / 5)  # list: weights = pair counts
    assert "absent" not in m["sections"]  # no subset of it in the data: no score rather than a fake 0


def test_section_ignores_absent_subsets_in_its_average() -> None:
    subsets = {"a": {"accuracy": 1.0, "pairs": 4}}
    assert section_scores(subsets, {"S": {"a": 2, "missing": 5}}) == {"S": 1.0}
    assert section_scores(subsets, {"S": ["a", "missing"]}) == {"S": 1.0}


@pytest.mark.parametrize("doc", [[], {}, {"S": {}}, {"S": []}, {"S": {"a": "x"}}, {"S": {"a": -1}},
                                 {"S": {"a": True}}, {"S": [1, 2]}, {"S": "a"}, {"S": {"a": float("nan")}}])
def test_bad_section_mappings_are_rejected(doc: object) -> None:
    with pytest.raises(ValueError):
        check_sections(doc)


def test_ece_and_brier_on_a_hand_worked_case() -> None:
    # P(chosen) = 0.85, 0.85, 0.35, 0.95 (no value on a bin edge). Both orientations:
    #   bin 8: 0.85, 0.85 -> outcome 1   gap .15, n=2     bin 1: 0.15, 0.15 -> outcome 0   gap .15, n=2
    #   bin 3: 0.35       -> outcome 1   gap .65, n=1     bin 6: 0.65       -> outcome 0   gap .65, n=1
    #   bin 9: 0.95       -> outcome 1   gap .05, n=1     bin 0: 0.05       -> outcome 0   gap .05, n=1
    # ECE = 2 * (2*.15 + .65 + .05) / 8 = 0.25;  Brier = (2*.15^2 + .65^2 + .05^2) / 4 = 0.1175
    margins = [logit(0.85), logit(0.85), logit(0.35), logit(0.95)]
    m = pair_metrics([row(x, 0.0, 1, 1) for x in margins])
    assert m["ece"] == pytest.approx(0.25)
    assert m["brier"] == pytest.approx(0.1175)
    probs, outcomes = calibration_data(margins)
    assert sorted(b["lo"] for b in reliability(probs, outcomes)) == pytest.approx([0, .1, .3, .6, .8, .9])


def test_ece_averages_within_a_bin_before_taking_the_gap() -> None:
    # bin 6: forecasts .62, .68 (mean .65), outcomes 1, 0 (freq .5) -> gap .15, weight 2/4
    # bin 4: forecasts .41, .45 (mean .43), outcomes 1, 1 (freq 1)  -> gap .57, weight 2/4
    # ECE = .075 + .285 = .36 (a per-item average would give .55)
    assert expected_calibration_error([0.62, 0.68, 0.41, 0.45], [1, 0, 1, 1]) == pytest.approx(0.36)


def test_ece_bins_include_both_ends() -> None:
    assert expected_calibration_error([0.0, 1.0], [0, 1]) == 0.0
    assert [b["count"] for b in reliability([0.0, 1.0, 0.1], [0, 1, 0])] == [1, 1, 1]


def test_perfect_confident_model_is_near_zero_and_brier_of_coin_flip() -> None:
    m = pair_metrics([row(50.0, 0.0, 1, 1)] * 3)
    assert m["ece"] == pytest.approx(0.0, abs=1e-12)
    assert m["brier"] == pytest.approx(0.0, abs=1e-12)
    assert brier_score([0.5, 0.5]) == 0.25


def test_extreme_margins_do_not_overflow() -> None:
    assert sigmoid(-1000.0) == 0.0 and sigmoid(1000.0) == 1.0
    assert bt_loss(-1000.0) == pytest.approx(1000.0)
    assert bt_loss(1000.0) == pytest.approx(0.0, abs=1e-300)
    assert pair_metrics([row(0.0, 800.0, 1, 1)])["loss"] == pytest.approx(800.0)


def test_rankings_contribute_every_ordered_pair() -> None:
    comp = Comparison(prompt="p", responses=["aaa", "b", "cc"], subset="k")
    rows = pairs_of([comp], [[3.0, 1.0, 2.0]])
    assert [(r["chosen_reward"], r["rejected_reward"]) for r in rows] == [(3, 1), (3, 2), (1, 2)]
    assert [(r["chosen_len"], r["rejected_len"]) for r in rows] == [(3, 1), (3, 2), (1, 2)]
    assert pair_metrics(rows)["accuracy"] == pytest.approx(2 / 3)


def test_message_lengths_count_content_characters() -> None:
    comp = Comparison(prompt=[{"role": "user", "content": "q"}],
                      responses=[[{"role": "assistant", "content": "four"}], [{"role": "assistant", "content": "xy"}]])
    assert pairs_of([comp], [[0.0, 1.0]])[0]["chosen_len"] == 4


# Rankings, best first; tau-b worked by hand against the true order (3, 2, 1 / 4, 3, 2, 1):
#   rewards        pairs C/D/tied-in-rewards   tau-b                        top-1
#   [3, 2, 1]      3 / 0 / 0                   3 / sqrt(3 * 3) = 1          1
#   [1, 2, 3]      0 / 3 / 0                   -1                           0
#   [2, 3, 1]      2 / 1 / 0                   1 / 3                        0   (3 beats the best)
#   [2, 2, 1]      2 / 0 / 1                   2 / sqrt(3 * 2)              1/2 (tie at the top)
#   [5, 1, 5, 0]   4 / 1 / 1                   3 / sqrt(6 * 5)              1/2
#   [1, 1, 1]      0 / 0 / 3                   undefined: counts 0          1/3
HAND = [([3, 2, 1], 1.0, 1.0), ([1, 2, 3], -1.0, 0.0), ([2, 3, 1], 1 / 3, 0.0),
        ([2, 2, 1], 2 / math.sqrt(6), 0.5), ([5, 1, 5, 0], 3 / math.sqrt(30), 0.5), ([1, 1, 1], None, 1 / 3)]


@pytest.mark.parametrize("rewards, tau, top1", HAND)
def test_kendall_tau_b_and_top1_by_hand(rewards: list[float], tau: float | None, top1: float) -> None:
    truth = [-i for i in range(len(rewards))]
    assert kendall_tau_b(truth, rewards) == (None if tau is None else pytest.approx(tau))
    m = ranking_metrics([rewards])
    assert m["rankings"] == 1
    assert m["top1_accuracy"] == pytest.approx(top1)
    assert m["kendall_tau"] == pytest.approx(0.0 if tau is None else tau)


def test_kendall_tau_b_with_ties_on_both_sides() -> None:
    # x = 1 1 2 3, y = 1 2 2 3: pairs (0,1) tie x, (0,2) C, (0,3) C, (1,2) tie y, (1,3) C, (2,3) C
    # -> (4 - 0) / sqrt((6 - 1) * (6 - 1)) = 4/5; symmetric in its arguments
    assert kendall_tau_b([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(0.8)
    assert kendall_tau_b([1, 2, 2, 3], [1, 1, 2, 3]) == pytest.approx(0.8)
    assert kendall_tau_b([1, 2], [5, 5]) is None


def test_ranking_metrics_average_rankings_and_skip_pairs() -> None:
    m = ranking_metrics([r for r, _, _ in HAND] + [[0.0, 1.0]])  # the pair is not a ranking
    assert m["rankings"] == 6
    assert m["top1_accuracy"] == pytest.approx((1 + 0 + 0 + 0.5 + 0.5 + 1 / 3) / 6)
    assert m["kendall_tau"] == pytest.approx((1 - 1 + 1 / 3 + 2 / math.sqrt(6) + 3 / math.sqrt(30) + 0) / 6)
    assert ranking_metrics([[0.0, 1.0], [2.0, 1.0]]) == {}


def test_pair_metrics_put_rankings_back_together() -> None:
    comps = [Comparison(prompt="p", responses=["a", "b"]), Comparison(prompt="q", responses=["a", "b", "c"]),
             Comparison(prompt="r", responses=["a", "b", "c", "d"])]
    m = pair_metrics(pairs_of(comps, [[0.0, 1.0], [2.0, 3.0, 1.0], [5.0, 1.0, 5.0, 0.0]]))
    assert m["pairs"] == 1 + 3 + 6 and m["rankings"] == 2
    assert m["top1_accuracy"] == pytest.approx((0 + 0.5) / 2)
    assert m["kendall_tau"] == pytest.approx((1 / 3 + 3 / math.sqrt(30)) / 2)
    assert m["accuracy"] == pytest.approx((0 + 2 + 4) / 10)  # pairwise numbers stay as they are


def test_pair_only_data_has_no_ranking_metrics() -> None:
    comps = [Comparison(prompt="p", responses=["a", "b"])] * 3
    m = pair_metrics(pairs_of(comps, [[1.0, 0.0]] * 3))
    assert not {"top1_accuracy", "kendall_tau", "rankings"} & set(m)
    assert "rankings" not in pair_metrics(ROWS)  # rows built by hand name no comparison


def test_format_metric_shows_top1_as_a_percentage() -> None:
    assert format_metric("top1_accuracy", 0.25) == "25.00%"
    assert format_metric("kendall_tau", 0.25) == "0.25"
    assert format_metric("accuracy_chosen_longer", 0.5) == "50.00%"
