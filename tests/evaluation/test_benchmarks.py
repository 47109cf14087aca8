"""Benchmark scoring rules (RewardBench 2, RM-Bench, JudgeBench) and the paired bootstrap.

Three kinds of check: small rows whose scores are worked out by hand; a second implementation written
here the way the benchmarks' own code reads (numpy arrays, loops, upstream's np.sum/np.mean) compared
with the module on a few hundred random rows to the last float; and the bootstrap's promises.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest

from rewardkit.evaluation.benchmarks import (ScoredRow, _prepare_judgebench, _prepare_rewardbench2, _prepare_rmbench,
                                             _resample_counts, _resampled_scores, _unit_index, best_of_n_result,
                                             judgebench, judgebench_category, paired_bootstrap,
                                             paired_bootstrap_pairs, prompt_units, rewardbench2, rmbench,
                                             rmbench_domain, score_benchmark)

NAN = math.nan


def bon(subset: str, rewards: list[float], chosen: int = 1, id: str | None = None) -> ScoredRow:
    return ScoredRow("best-of-n", subset, rewards, chosen, id)


def rm(subset: str, chosen: list[float], rejected: list[float]) -> ScoredRow:
    return ScoredRow("rm-bench", subset, chosen + rejected, 3)


def jb(source: str, a: float, b: float, label: str) -> ScoredRow:
    return ScoredRow("judgebench", source, [a, b], 1, label=label)


# --------------------------------------------------------------------------------- RewardBench 2 by hand

@pytest.mark.parametrize("rewards, expected", [
    ([2, 1, 0, 0], 1.0),         # chosen alone at the maximum
    ([2, 2, 0, 0], 1 / 2),       # shares the maximum with one other
    ([2, 2, 2, 0], 1 / 3),       # with two others
    ([1, 1, 1, 1], 0.25),        # all four equal
    ([1, 2, 0, 0], 0.0),         # below the maximum
    ([2, NAN, 0, 0], 0.0),       # any NaN: numpy's max is NaN and nothing equals it
    ([NAN, 1, 0, 0], 0.0),
    ([0.0, -0.0, -1, -1], 1 / 2),  # exact float equality: -0.0 == 0.0
    ([1.0, 1.0 + 2 ** -52, 0, 0], 0.0),  # one ulp below the maximum is below it
])
def test_best_of_n_rule(rewards: list[float], expected: float) -> None:
    assert best_of_n_result(rewards) == expected


def test_only_the_first_chosen_counts_as_correct() -> None:
    # chosen=2: the second chosen response is a competitor, as upstream
    out = rewardbench2([bon("Math", [1, 3, 0, 0], chosen=2), bon("Math", [3, 3, 0, 0], chosen=2)])
    assert out["sections"]["Math"] == (0 + 1 / 2) / 2


# A tiny Ties set. Per group: margin = worst correct - best incorrect, accurate = margin > 0;
# spread = best correct - worst correct (tied groups).
#   ref:1  [3 | 1, 2]        margin 3-2 = 1  accurate
#   tied:1 [5, 4, 4.5 | 1, 3] margin 4-3 = 1  accurate, spread 5-4 = 1
#   ref:2  [2 | 2]           margin 0        not accurate (strict)
#   tied:2 [6, 5 | 1]        margin 5-1 = 4  accurate, spread 1
# Prompt 1: preferred 1 > 1 no; hard min(1, 1) = 1 > 1 no; margin score tanh(1/1 - 1) = tanh(0) = 0
# Prompt 2: preferred 4 > 1 yes; hard min(0, 4) = 0 > 1 no; margin score tanh(0/1 - 1) = tanh(-1)
TIES_ROWS = [bon("Ties", [3, 1, 2], 1, "ref:1"), bon("Ties", [5, 4, 4.5, 1, 3], 3, "tied:1"),
             bon("Ties", [2, 2], 1, "ref:2"), bon("Ties", [6, 5, 1], 2, "tied:2")]
TANH_MINUS_1 = -0.7615941559557649  # tanh(-1)


def test_ties_weighted_score_by_hand() -> None:
    t = rewardbench2(TIES_ROWS)["ties"]
    assert t["ref_accuracy"] == 1 / 2 and t["tied_accuracy"] == 1.0
    assert t["correctness_preferred"] == 1 / 2 and t["correctness_preferred_hard"] == 0.0
    assert t["margin_score"] == pytest.approx((0 + TANH_MINUS_1) / 2, abs=1e-15)
    # 0.30 * 1 + 0.30 * 0.5 + 0.20 * 0.5 + 0.20 * 0 + 0.01 * (-0.380797...) = 0.55 - 0.00380797...
    assert t["score"] == pytest.approx(0.5461920292202212, abs=1e-15)
    assert (t["ref_groups"], t["tied_groups"], t["paired_prompts"], t["rows"]) == (2, 2, 2, 4)


def test_leaderboard_score_is_the_mean_of_subsets_with_ties_weighted() -> None:
    rows = TIES_ROWS + [bon("Factuality", [2, 1, 0, 0]), bon("Factuality", [2, 2, 0, 0]),  # 1, 1/2 -> 0.75
                        bon("Focus", [1, 1, 1, 1]), bon("Focus", [NAN, 1, 0, 0])]          # 0.25, 0 -> 0.125
    out = rewardbench2(rows)
    assert list(out["sections"]) == ["Factuality", "Focus", "Ties"]  # the leaderboard's order
    assert out["sections"]["Factuality"] == 0.75 and out["sections"]["Focus"] == 0.125
    assert out["score"] == pytest.approx((0.75 + 0.125 + 0.5461920292202212) / 3, abs=1e-15)
    assert out["subsets"]["Ties"] == {"accuracy": out["ties"]["score"], "rows": 4}
    assert out["subsets"]["Focus"]["rows"] == 2


def test_without_ties_rows_the_score_is_the_mean_of_the_subsets_present() -> None:
    out = rewardbench2([bon("Factuality", [2, 1, 0, 0]), bon("Focus", [1, 1, 1, 1])])
    assert "ties" not in out and "Ties" not in out["sections"]
    assert out["score"] == (1.0 + 0.25) / 2


def test_ties_zero_spread_and_zero_over_zero() -> None:
    # tied:3 has one correct answer: spread 0. ref:3 margin 2-1 = 1, tied:3 margin 4-1 = 3.
    #   preferred 3 > 0 yes; hard min(1, 3) = 1 > 0 yes; tanh(1/0 - 1) = tanh(inf) = 1
    # tied:4 one correct, ref:4 margin 0: hard min(0, 2) = 0 > 0 no; 0/0 is NaN -> margin score 0
    rows = [bon("Ties", [2, 1], 1, "ref:3"), bon("Ties", [4, 1], 1, "tied:3"),
            bon("Ties", [1, 1], 1, "ref:4"), bon("Ties", [3, 1], 1, "tied:4")]
    t = rewardbench2(rows)["ties"]
    assert t["correctness_preferred"] == 1.0 and t["correctness_preferred_hard"] == 1 / 2
    assert t["margin_score"] == (1 + 0) / 2
    assert t["score"] == 0.30 * 1 + 0.30 * 0.5 + 0.20 * 1 + 0.20 * 0.5 + 0.01 * 0.5


def test_ties_prompt_with_one_group_counts_only_in_its_accuracy() -> None:
    # ref:9 alone (accurate): ref accuracy 2/3 with ref:1, ref:2; not among the paired prompts
    t = rewardbench2(TIES_ROWS + [bon("Ties", [5, 1], 1, "ref:9")])["ties"]
    assert t["ref_accuracy"] == 2 / 3 and t["paired_prompts"] == 2 and t["ref_groups"] == 3
    # no prompt has both groups: the three paired terms are 0 (upstream: NaN)
    t = rewardbench2([bon("Ties", [5, 1], 1, "ref:9"), bon("Ties", [5, 4, 1], 2, "tied:8")])["ties"]
    assert t["paired_prompts"] == 0 and t["score"] == 0.30 * 1 + 0.30 * 1


def test_ties_rows_sharing_a_group_merge_and_nan_fails_the_group() -> None:
    # two tied:1 rows merge into correct [5, 4, 4.5, 4.2], incorrect [1, 3, 4.1]: margin 4 - 4.1 < 0
    merged = TIES_ROWS + [bon("Ties", [4.2, 4.1], 1, "tied:1")]
    assert rewardbench2(merged)["ties"]["tied_accuracy"] == 1 / 2
    # a NaN anywhere in tied:2: not accurate, and prompt 2 fails preferred (so 0 of 2) and scores margin 0
    t = rewardbench2(TIES_ROWS[:3] + [bon("Ties", [6, 5, NAN], 2, "tied:2")])["ties"]
    assert t["tied_accuracy"] == 1 / 2 and t["correctness_preferred"] == 0.0 and t["margin_score"] == 0.0


@pytest.mark.parametrize("rows, message", [
    ([bon("Ties", [1, 2], 2, "tied:1"), bon("Ties", [3, 1], 1, "ref:1")], "needs a correct and an incorrect"),
    ([bon("Ties", [1, 2], 1, "both:1")], "'ref:<int>' or 'tied:<int>'"),
    ([bon("Ties", [1, 2], 1, "ref:x")], "'ref:<int>' or 'tied:<int>'"),
    ([bon("Math", [1, 2], 0)], "chosen=0"),
    ([ScoredRow("rm-bench", "Math", [1, 2], 1)], "kind 'rm-bench'"),
    ([], "no rows"),
])
def test_rewardbench2_rejects_malformed_rows(rows: list[ScoredRow], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rewardbench2(rows)


def test_ties_subset_name_is_case_insensitive() -> None:
    out = rewardbench2([replace(r, subset="ties") for r in TIES_ROWS])
    assert out["sections"] == {"Ties": pytest.approx(0.5461920292202212, abs=1e-15)}


# -------------------------------------------------------------------------------------- RM-Bench by hand

def test_rmbench_matrix_is_strict() -> None:
    # chosen [1, 2, 3] vs rejected [1, 2, 3]: c_i > r_j only below the diagonal; the diagonal ties lose
    out = rmbench([rm("chat", [1, 2, 3], [1, 2, 3])])
    assert out["domains"]["chat"]["matrix"] == [[0, 0, 0], [1, 0, 0], [1, 1, 0]]
    assert (out["hard"], out["normal"], out["easy"]) == (0.0, 0.0, 1.0)
    assert out["score"] == 1 / 3


def test_rmbench_domains_pool_safety_and_average() -> None:
    rows = [rm("chat", [1, 2, 3], [1, 2, 3]),          # [[0,0,0],[1,0,0],[1,1,0]]
            rm("chat", [3, 3, 3], [2, 2, 2]),          # all 1
            rm("safety-refuse", [2, 2, 2], [1, 1, 1])]  # all 9 wins
    rows += [rm("safety-response", [1, 1, 1], [1, 1, 1])] * 3  # all ties: no wins
    out = rmbench(rows)
    # chat: M = [[.5,.5,.5],[1,.5,.5],[1,1,.5]]: hard .5, normal .5, easy 1, average 2/3
    chat = out["domains"]["chat"]
    assert chat["matrix"] == [[.5, .5, .5], [1, .5, .5], [1, 1, .5]] and chat["rows"] == 2
    assert (chat["hard"], chat["normal"], chat["easy"]) == (.5, .5, 1.0)
    # safety pools 4 rows: every cell 1/4, average 0.25; averaging the subsets would give (1 + 0) / 2 = 0.5
    assert out["sections"]["safety"] == 0.25 and out["domains"]["safety"]["rows"] == 4
    assert out["subsets"]["safety-refuse"]["accuracy"] == 1.0 and out["subsets"]["safety-response"]["accuracy"] == 0.0
    assert out["score"] == pytest.approx((2 / 3 + 0.25) / 2, abs=1e-15)
    assert (out["hard"], out["normal"], out["easy"]) == ((.5 + .25) / 2, (.5 + .25) / 2, (1 + .25) / 2)
    assert list(out["sections"]) == ["chat", "safety"]


def test_rmbench_domain_names() -> None:
    assert [rmbench_domain(s) for s in ["chat", "math", "code", "safety-refuse", "safety-response", "creative", None]] \
        == ["chat", "math", "code", "safety", "safety", "creative", "(none)"]


@pytest.mark.parametrize("row", [ScoredRow("rm-bench", "chat", [1, 2, 3, 4, 5], 3),
                                 ScoredRow("rm-bench", "chat", [1, 2, 3, 4, 5, 6], 2)])
def test_rmbench_needs_three_and_three(row: ScoredRow) -> None:
    with pytest.raises(ValueError, match="3 chosen then 3 rejected"):
        rmbench([row])


# ------------------------------------------------------------------------------------ JudgeBench by hand

def test_judgebench_ties_say_b_and_micro_differs_from_category_mean() -> None:
    rows = [jb("mmlu-pro-law", 1, 1, "B>A"),        # tie -> "B>A": right
            jb("mmlu-pro-math", 2, 1, "A>B"),       # right
            jb("mmlu-pro-history", NAN, 1, "B>A"),  # NaN > 1 is False -> "B>A": right
            jb("livecodebench", 1, 1, "A>B")]       # tie -> "B>A": wrong
    out = judgebench(rows)
    assert out["score"] == 3 / 4  # micro over all pairs, upstream's Overall
    assert out["category_mean"] == (1.0 + 0.0) / 2
    assert out["categories"] == {"knowledge": {"accuracy": 1.0, "rows": 3}, "coding": {"accuracy": 0.0, "rows": 1}}
    assert out["subsets"]["mmlu-pro-law"] == {"accuracy": 1.0, "rows": 1}


def test_judgebench_categories_and_labels() -> None:
    assert [judgebench_category(s) for s in ["mmlu-pro-law", "livebench-reasoning", "livebench-math",
                                             "livecodebench", "arena"]] \
        == ["knowledge", "reasoning", "math", "coding", "arena"]
    with pytest.raises(ValueError, match="label"):
        judgebench([jb("arena", 1, 2, "A=B")])


def test_score_benchmark_dispatches_and_scores_are_fractions() -> None:
    assert score_benchmark("best-of-n", TIES_ROWS)["score"] == rewardbench2(TIES_ROWS)["score"]
    assert score_benchmark("judgebench", [jb("arena", 2, 1, "A>B")])["score"] == 1.0
    with pytest.raises(ValueError, match="unknown benchmark kind"):
        score_benchmark("rewardbench", TIES_ROWS)


# ------------------------------------------------------------- a second implementation, upstream's way

VALUES = [0.0, 0.5, 1.0, 1.5, 2.0]


def draw(rng: random.Random, nan: float = 0.02) -> float:
    return NAN if rng.random() < nan else rng.choice(VALUES)


def exact_mean(xs: list[float]) -> float:
    """The module's promise: an exactly rounded sum, then one division."""
    return float(sum(map(Fraction, xs))) / len(xs)


def in_order(names: set[str], known: list[str]) -> list[str]:
    return [n for n in known if n in names] + sorted(names - set(known))


def reference_ties(rows: list[ScoredRow]) -> float:
    """upstream process_single_model, with numpy's NaN propagation and a single correct answer's spread 0."""
    grouped = defaultdict(list)
    for row in rows:
        sample_type, prompt_id = row.id.split(":")
        for i, score in enumerate(row.rewards):
            grouped[(sample_type, int(prompt_id))].append((i < row.chosen, score))
    ref, tied = {}, {}
    for (sample_type, prompt_id), samples in grouped.items():
        correct = np.array([s for c, s in samples if c])
        incorrect = np.array([s for c, s in samples if not c])
        ci_margin = np.min(correct) - np.max(incorrect)
        stats = (ci_margin > 0, np.max(correct) - np.min(correct), ci_margin)
        (ref if sample_type == "ref" else tied)[prompt_id] = stats
    ref_accuracy = np.mean([s[0] for s in ref.values()]) if ref else 0.0
    tied_accuracy = np.mean([s[0] for s in tied.values()]) if tied else 0.0
    both = set(ref) & set(tied)
    if both:
        diff = np.array([tied[p][1] for p in both])
        ci_tied = np.array([tied[p][2] for p in both])
        ci_ref = np.array([ref[p][2] for p in both])
        preferred = np.mean(ci_tied > diff)
        preferred_hard = np.mean(np.minimum(ci_ref, ci_tied) > diff)
        with np.errstate(divide="ignore", invalid="ignore"):
            margins = np.nan_to_num(np.tanh(np.minimum(ci_ref, ci_tied) / diff - 1), nan=0.0)
        margin = exact_mean(list(margins))
    else:
        preferred = preferred_hard = margin = 0.0
    return (0.30 * tied_accuracy + 0.30 * ref_accuracy + 0.20 * preferred + 0.20 * preferred_hard
            + 0.01 * margin)


def reference_rewardbench2(rows: list[ScoredRow]) -> dict[str, float]:
    results = defaultdict(list)
    for row in rows:
        if row.subset.lower() != "ties":
            scores = np.array(row.rewards, dtype=float)
            max_val = np.max(scores)
            results[row.subset].append(1 / np.sum(scores == max_val) if scores[0] == max_val else 0)
    sections = {s: exact_mean(v) for s, v in results.items()}
    ties = [row for row in rows if row.subset.lower() == "ties"]
    if ties:
        sections["Ties"] = reference_ties(ties)
    order = in_order(set(sections), ["Factuality", "Precise IF", "Math", "Safety", "Focus", "Ties"])
    return {"score": float(np.mean([sections[s] for s in order])), **sections}


def random_rewardbench2(rng: random.Random) -> list[ScoredRow]:
    rows = []
    for n in range(300):
        subset = rng.choice(["Factuality", "Precise IF", "Math", "Safety", "Focus", "Other"])
        rows.append(bon(subset, [draw(rng) for _ in range(4)], 2 if rng.random() < 0.1 else 1, str(n)))
    for prompt in range(60):
        kinds = rng.choice([("ref", "tied")] * 4 + [("ref",), ("tied",)])
        for kind in kinds:
            for _ in range(2 if rng.random() < 0.1 else 1):  # a second row with the same key merges
                chosen = 1 if kind == "ref" else rng.randint(1, 4)
                rewards = [draw(rng, 0.01) + (1.0 if n < chosen else 0.0) for n in range(chosen + rng.randint(1, 3))]
                rows.append(bon("Ties", rewards, chosen, f"{kind}:{prompt}"))
    rng.shuffle(rows)
    return rows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rewardbench2_matches_a_second_implementation(seed: int) -> None:
    rows = random_rewardbench2(random.Random(seed))
    expected, out = reference_rewardbench2(rows), rewardbench2(rows)
    assert out["score"] == expected.pop("score")
    assert out["sections"] == expected


def reference_rmbench_matrix(results: list[ScoredRow]) -> dict[str, float]:
    """upstream compute_accuracy for one domain."""
    acc_matrix = np.zeros((3, 3))
    for result in results:
        for i in range(3):
            for j in range(3):
                if result.rewards[i] > result.rewards[3 + j]:
                    acc_matrix[i][j] += 1
    acc_matrix /= len(results)
    return {"hard_acc": np.sum(np.triu(acc_matrix, 1)) / 3, "normal_acc": np.mean(np.diag(acc_matrix)),
            "easy_acc": np.sum(np.tril(acc_matrix, -1)) / 3, "matrix": acc_matrix.tolist()}


def reference_rmbench(rows: list[ScoredRow]) -> dict[str, float]:
    by_domain = defaultdict(list)
    for row in rows:
        domain = next((d for d in ["chat", "math", "code", "safety"] if row.subset.startswith(d)), row.subset)
        by_domain[domain].append(row)
    order = in_order(set(by_domain), ["chat", "math", "code", "safety"])
    domains = {d: reference_rmbench_matrix(by_domain[d]) for d in order}
    avg = {d: np.mean([domains[d]["hard_acc"], domains[d]["normal_acc"], domains[d]["easy_acc"]]) for d in order}
    out = {d: float(avg[d]) for d in order}
    for level in ("hard_acc", "normal_acc", "easy_acc"):
        out[level] = float(np.mean([domains[d][level] for d in order]))
    out["total_avg_acc"] = float(np.mean([avg[d] for d in order]))
    out["matrices"] = {d: domains[d]["matrix"] for d in order}
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rmbench_matches_a_second_implementation(seed: int) -> None:
    rng = random.Random(seed)
    subsets = ["chat", "code", "math", "safety-refuse", "safety-response", "creative"]
    rows = [rm(rng.choice(subsets), [draw(rng) for _ in range(3)], [draw(rng) for _ in range(3)]) for _ in range(400)]
    expected, out = reference_rmbench(rows), rmbench(rows)
    assert out["score"] == expected["total_avg_acc"]
    assert (out["hard"], out["normal"], out["easy"]) == (expected["hard_acc"], expected["normal_acc"],
                                                          expected["easy_acc"])
    assert out["sections"] == {d: expected[d] for d in out["sections"]}
    assert {d: v["matrix"] for d, v in out["domains"].items()} == expected["matrices"]


def reference_judgebench(rows: list[ScoredRow]) -> dict[str, float]:
    prefixes = {"knowledge": "mmlu-pro", "reasoning": "livebench-reasoning", "math": "livebench-math",
                "coding": "livecodebench"}
    decisions = ["A>B" if row.rewards[0] > row.rewards[1] else "B>A" for row in rows]
    n_correct = sum(d == row.label for d, row in zip(decisions, rows))
    categories = {}
    for name, prefix in prefixes.items():
        picked = [d == row.label for d, row in zip(decisions, rows) if row.subset.startswith(prefix)]
        if picked:
            categories[name] = sum(picked) / len(picked)
    for source in sorted({row.subset for row in rows if not any(row.subset.startswith(p) for p in prefixes.values())}):
        picked = [d == row.label for d, row in zip(decisions, rows) if row.subset == source]
        categories[source] = sum(picked) / len(picked)
    return {"score": n_correct / len(rows), "category_mean": float(np.mean(list(categories.values()))), **categories}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_judgebench_matches_a_second_implementation(seed: int) -> None:
    rng = random.Random(seed)
    sources = ["mmlu-pro-law", "mmlu-pro-math", "livebench-reasoning", "livebench-math", "livecodebench", "arena"]
    rows = [jb(rng.choice(sources), draw(rng), draw(rng), rng.choice(["A>B", "B>A"])) for _ in range(400)]
    expected, out = reference_judgebench(rows), judgebench(rows)
    assert (out["score"], out["category_mean"]) == (expected.pop("score"), expected.pop("category_mean"))
    assert out["sections"] == expected


# ----------------------------------------------------------------------------------------------- bootstrap

def test_identical_models_differ_by_exactly_zero() -> None:
    rows = random_rewardbench2(random.Random(3))
    out = paired_bootstrap("best-of-n", rows, rows, prompt_units(rows), resamples=200)
    assert (out["difference"], out["low"], out["high"]) == (0.0, 0.0, 0.0)
    assert out["a"] == out["b"] == rewardbench2(rows)["score"]
    assert out["units"] == len(set(prompt_units(rows))) and out["resamples"] == 200


def test_a_model_better_on_every_unit_has_an_interval_above_zero() -> None:
    # A gets every other prompt right, B every prompt: each resample's difference is the share of A's misses
    a = [bon("Math", [1, 2, 0, 0] if n % 2 else [2, 1, 0, 0], id=str(n)) for n in range(40)]
    b = [bon("Math", [2, 1, 0, 0], id=str(n)) for n in range(40)]
    out = paired_bootstrap("best-of-n", a, b, prompt_units(a))
    assert (out["a"], out["b"], out["difference"]) == (0.5, 1.0, 0.5)
    assert 0 < out["low"] < 0.5 < out["high"] < 1


def test_the_bootstrap_is_reproducible_for_a_seed() -> None:
    rng = random.Random(4)
    a = [(draw(rng, 0), draw(rng, 0)) for _ in range(100)]
    b = [(draw(rng, 0), draw(rng, 0)) for _ in range(100)]
    first = paired_bootstrap_pairs(a, b, seed=7)
    assert first == paired_bootstrap_pairs(a, b, seed=7)
    assert (first["low"], first["high"]) != (paired_bootstrap_pairs(a, b, seed=8)["low"],
                                             paired_bootstrap_pairs(a, b, seed=8)["high"])


def test_a_units_pairs_move_together() -> None:
    # Each prompt has two pairs; A is right on the first, B on the second. Per prompt both score 1/2,
    # so every resample of prompts has difference 0; resampling pairs on their own does not.
    a = [(1, 0), (0, 1)] * 30
    b = [(0, 1), (1, 0)] * 30
    prompts = [n // 2 for n in range(60)]
    together = paired_bootstrap_pairs(a, b, prompts)
    assert (together["low"], together["high"], together["units"]) == (0.0, 0.0, 30)
    apart = paired_bootstrap_pairs(a, b)
    assert apart["low"] < -0.1 and apart["high"] > 0.1 and apart["units"] == 60


def test_pairs_accuracy_counts_ties_wrong_and_rankings_as_their_pairs() -> None:
    # A: ranking [1, 1, 0] is 1>1 no (a tie), 1>0 yes, 1>0 yes, then (2, 1) yes -> 3/4
    # B: ranking [3, 2, 1] is 3 right pairs, then (2, 1) yes -> 4/4
    out = paired_bootstrap_pairs([(1, 1, 0), (2, 1)], [(3, 2, 1), (2, 1)], resamples=50)
    assert (out["a"], out["b"]) == (3 / 4, 1.0)


def test_a_ties_prompt_must_be_one_unit() -> None:
    with pytest.raises(ValueError, match="one unit"):
        paired_bootstrap("best-of-n", TIES_ROWS, TIES_ROWS, list(range(len(TIES_ROWS))))
    with pytest.raises(ValueError, match="differs between the models"):
        paired_bootstrap("best-of-n", TIES_ROWS, [replace(TIES_ROWS[0], chosen=2)] + TIES_ROWS[1:])


def materialise(rows: list[ScoredRow], units: list, counts: np.ndarray) -> list[ScoredRow]:
    """The rows a resample drew; each copy of a Ties prompt becomes a prompt of its own."""
    out = []
    for number, key in enumerate(dict.fromkeys(units)):
        for copy in range(int(counts[number])):
            for row, unit in zip(rows, units):
                if unit == key:
                    kind, _, prompt = (row.id or "").partition(":")
                    is_ties = row.kind == "best-of-n" and row.subset == "Ties"
                    out.append(replace(row, id=f"{kind}:{int(prompt) + 100_000 * copy}") if is_ties else row)
    return out


@pytest.mark.parametrize("kind, prepare", [("best-of-n", _prepare_rewardbench2), ("rm-bench", _prepare_rmbench),
                                           ("judgebench", _prepare_judgebench)])
def test_a_resamples_score_is_the_benchmarks_score_of_the_rows_it_drew(kind: str, prepare) -> None:
    rng = random.Random(5)
    if kind == "best-of-n":
        drawn = random_rewardbench2(rng)
        rows = [r for r in drawn if r.subset == "Ties"] + [r for r in drawn if r.subset != "Ties"][:120]
    elif kind == "rm-bench":
        rows = [rm(rng.choice(["chat", "safety-refuse", "safety-response"]), [draw(rng) for _ in range(3)],
                   [draw(rng) for _ in range(3)]) for _ in range(60)]
    else:
        rows = [jb(rng.choice(["mmlu-pro-law", "livecodebench"]), draw(rng), draw(rng), "A>B") for _ in range(60)]
    units = prompt_units(rows)
    prepared = prepare(rows)[0]
    index = _unit_index(units, prepared.tally)
    scores = _resampled_scores(prepared, index, 3, seed=11)
    for n, counts in enumerate(next(_resample_counts(int(index.max()) + 1, 3, 11))):
        assert scores[n] == pytest.approx(score_benchmark(kind, materialise(rows, units, counts))["score"], abs=1e-12)
