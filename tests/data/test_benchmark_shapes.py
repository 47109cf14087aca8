"""Reward-model benchmarks' own rows (RewardBench 2 best-of-N, RM-Bench, JudgeBench) load as one
Comparison each, with a BenchmarkRow saying which responses are chosen; bad rows name file, line,
field and the shape assumed. Every fixture is written by hand: none is the benchmarks' data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import write_jsonl

from rewardkit.cli import main
from rewardkit.data.formats import FORMATS, parse_record
from rewardkit.data.loading import load_comparisons
from rewardkit.data.records import BenchmarkRow, Comparison, is_benchmark, preference_pairs
from rewardkit.errors import DataError

USER = {"prompt": "Name a prime number.", "chosen": ["2 is a prime number."],
        "rejected": ["4 is a prime number.", "Bananas are yellow.", "9 is a prime number."], "subset": "Focus"}
BEST_OF_N = {"id": 7, "prompt": "What is 3 + 4?", "chosen": ["7", "It is 7."], "rejected": ["8", "34"],
             "subset": "Math", "num_correct": 2, "num_incorrect": 2, "total_completions": 4, "models": ["m1", "m2"]}
TIES = {"id": "ref:3", "prompt": "Name a colour of the French flag.", "chosen": ["Blue", "White", "Red"],
        "rejected": ["Green"], "subset": "Ties", "num_correct": 3}
BEST_OF_N_3_3 = {"id": "x", "prompt": "Say hi.", "chosen": ["hi", "hello", "hey"], "rejected": ["no", "bye", "go"],
                 "subset": "Precise IF", "num_correct": 3}
RM_BENCH = {"id": 11, "prompt": "Is 7 prime?", "domain": "math", "subset": "ignored-when-domain-is-there",
            "chosen": ["Yes.", "Yes: 7 has no divisors but 1 and 7.", "**Yes**"],
            "rejected": ["No.", "No: 7 is divisible by 3.", "**No**"]}
RM_BENCH_NO_DOMAIN = {"prompt": "Greet me.", "chosen": ["Hi!", "Hello there, nice to meet you.", "# Hi"],
                      "rejected": ["Go away.", "Go away, I am busy today.", "# Go away"], "subset": "chat"}
JUDGEBENCH = {"pair_id": "jb-1", "original_id": "q9", "question": "What is 2 ** 10?", "response_A": "1000",
              "response_B": "1024", "label": "B>A", "source": "mmlu-pro-math"}
JUDGEBENCH_A = {"pair_id": "jb-2", "question": "Capital of Italy?", "response_A": "Rome", "response_B": "Milan",
                "label": "A>B", "source": "knowledge"}


def one(record: dict[str, Any], fmt: str = "auto") -> Comparison:
    [c] = parse_record(record, fmt, "f.jsonl:1")
    return c


def test_the_users_rewardbench2_row_loads_as_one_best_of_n_comparison(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    path = write_jsonl(tmp_path / "rb2.jsonl", [USER])
    [c] = load_comparisons(str(path)).comparisons
    assert c.prompt == USER["prompt"] and c.responses == USER["chosen"] + USER["rejected"]
    assert c.bench == BenchmarkRow("best-of-n", chosen=1) and c.subset == "Focus"
    assert main(["data", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "1 records -> 1 comparisons (3 pairs)" in out and "best-of-n rows" in out and "'1+3': 1" in out


def test_best_of_n_row() -> None:
    c = one(BEST_OF_N)
    assert c.responses == ["7", "It is 7.", "8", "34"] and c.subset == "Math"
    assert c.bench == BenchmarkRow("best-of-n", chosen=2, id="7")
    assert preference_pairs(c) == [(0, 2), (0, 3), (1, 2), (1, 3)]
    assert one(TIES).bench == BenchmarkRow("best-of-n", chosen=3, id="ref:3")
    assert one({**TIES, "id": "tied:12"}).bench.id == "tied:12"


def test_a_3_plus_3_row_with_num_correct_is_best_of_n_not_rm_bench() -> None:
    c = one(BEST_OF_N_3_3)
    assert c.bench == BenchmarkRow("best-of-n", chosen=3, id="x") and len(preference_pairs(c)) == 9


def test_rm_bench_rows() -> None:
    c = one(RM_BENCH)
    assert c.responses == RM_BENCH["chosen"] + RM_BENCH["rejected"]
    assert c.bench == BenchmarkRow("rm-bench", chosen=3, id="11") and c.subset == "math"  # domain over subset
    assert preference_pairs(c) == [(0, 3), (1, 4), (2, 5)]  # concise, detailed, markdown: same style
    c2 = one(RM_BENCH_NO_DOMAIN)  # 3 + 3 and no num_correct
    assert c2.bench == BenchmarkRow("rm-bench", chosen=3) and c2.subset == "chat"


def test_judgebench_row_keeps_the_record_order_and_the_label() -> None:
    c = one(JUDGEBENCH)
    assert c.prompt == "What is 2 ** 10?" and c.responses == ["1000", "1024"]  # A then B, not best first
    assert c.bench == BenchmarkRow("judgebench", chosen=1, id="jb-1", label="B>A") and c.subset == "mmlu-pro-math"
    assert preference_pairs(c) == [(1, 0)] and preference_pairs(one(JUDGEBENCH_A)) == [(0, 1)]


def test_forced_formats(tmp_path: Path) -> None:
    assert {"best-of-n", "rm-bench", "judgebench"} <= set(FORMATS)
    assert one(RM_BENCH_NO_DOMAIN, "best-of-n").bench == BenchmarkRow("best-of-n", chosen=3)
    assert one(BEST_OF_N_3_3, "rm-bench").bench.kind == "rm-bench"
    path = write_jsonl(tmp_path / "u.jsonl", [USER])
    with pytest.raises(DataError, match=r"u.jsonl:1: field 'chosen' \(RM-Bench row, --format rm-bench\): needs 3"):
        load_comparisons(str(path), "rm-bench")


def test_conversational_records_stay_messages_and_pairs_are_unchanged() -> None:
    user = {"role": "user", "content": "Hi"}
    good, bad = {"role": "assistant", "content": "Hello!"}, {"role": "assistant", "content": "Go away."}
    c = one({"chosen": [user, good], "rejected": [user, bad]})
    assert c.prompt == [user] and c.responses == [[good], [bad]] and c.bench is None
    c2 = one({"prompt": [user], "chosen": [good], "rejected": [bad]})
    assert c2.responses == [[good], [bad]] and c2.bench is None
    pair = one({"prompt": "p", "chosen": "a", "rejected": "b", "subset": "s"})
    assert pair.bench is None and pair.subset == "s" and preference_pairs(pair) == [(0, 1)]
    assert one({"prompt": "p", "response_a": "x", "response_b": "y", "votes": ["b", "b"]}).responses == ["y", "x"]


def test_a_benchmark_prompt_given_as_messages_makes_its_responses_messages() -> None:
    user = {"role": "user", "content": "Name a prime number."}
    c = one({**USER, "prompt": [user]})
    assert c.prompt == [user] and c.responses[0] == [{"role": "assistant", "content": "2 is a prime number."}]


def test_is_benchmark() -> None:
    pair = one({"prompt": "p", "chosen": "a", "rejected": "b"})
    assert is_benchmark([pair]) is None and is_benchmark([]) is None
    assert is_benchmark([pair, one(JUDGEBENCH), one(USER)]) == "judgebench"


BOB = "RewardBench-2 best-of-N row assumed"
BAD = [
    ({**USER, "chosen": []}, f"field 'chosen' ({BOB}): is an empty list"),
    ({**USER, "rejected": ["fine", 3]}, f"field 'rejected' ({BOB}): item 1 must be a string, got int"),
    ({**USER, "chosen": ["  "]}, f"field 'chosen' ({BOB}): item 0 is empty"),
    ({**USER, "num_correct": 2}, f"field 'num_correct' ({BOB}): is 2, but 'chosen' has 1 response(s)"),
    ({**BEST_OF_N, "num_incorrect": 3}, f"field 'num_incorrect' ({BOB}): is 3, but 'rejected' has 2 response(s)"),
    ({**BEST_OF_N, "total_completions": 5},
     f"field 'total_completions' ({BOB}): is 5, but 'chosen' and 'rejected' have 4 response(s)"),
    ({**USER, "num_correct": "one"}, f"field 'num_correct' ({BOB}): must be an integer, got str 'one'"),
    ({**TIES, "id": 3}, f"field 'id' ({BOB}): a Ties row needs an id 'ref:<n>' or 'tied:<n>'"),
    ({k: v for k, v in TIES.items() if k != "id"}, f"field 'id' ({BOB}): a Ties row needs an id"),
    ({k: v for k, v in USER.items() if k != "prompt"}, f"field 'prompt' ({BOB}): missing"),
    ({**RM_BENCH, "chosen": ["Yes.", "Yes, 7 is prime."]},
     "field 'chosen' (RM-Bench row assumed): needs 3 responses (concise, detailed, markdown), got 2"),
    ({**RM_BENCH, "rejected": ["No.", None, "**No**"]},
     "field 'rejected' (RM-Bench row assumed): item 1 must be a string, got null"),
    ({**JUDGEBENCH, "label": "A=B"},
     "field 'label' (JudgeBench row assumed): must be \"A>B\" or \"B>A\", got str 'A=B'"),
    ({**JUDGEBENCH, "label": 1}, "field 'label' (JudgeBench row assumed): must be \"A>B\" or \"B>A\", got int 1"),
    ({k: v for k, v in JUDGEBENCH.items() if k != "label"}, "field 'label' (JudgeBench row assumed): missing"),
    ({**JUDGEBENCH, "response_A": ""}, "field 'response_A' (JudgeBench row assumed): is empty"),
    ({**JUDGEBENCH, "response_B": ["1024"]}, "field 'response_B' (JudgeBench row assumed): must be a string, got list"),
]


@pytest.mark.parametrize("bad,reason", BAD)
def test_bad_benchmark_rows_name_file_line_field_and_shape(tmp_path: Path, bad: dict, reason: str,
                                                            capsys: pytest.CaptureFixture) -> None:
    path = write_jsonl(tmp_path / "bench.jsonl", [BEST_OF_N, bad, JUDGEBENCH])
    with pytest.raises(DataError) as e:
        load_comparisons(str(path))
    assert f"{path}:2: {reason}" in str(e.value)
    assert main(["data", "check", str(path), "--strict"]) == 2
    assert f"{path}:2: {reason}" in capsys.readouterr().out
    only_bad = write_jsonl(tmp_path / "only_bad.jsonl", [bad])
    assert main(["data", "check", str(only_bad), "--strict"]) == 2
    assert f"{only_bad}:1: {reason}" in capsys.readouterr().err


def test_skip_invalid_skips_and_counts_bad_benchmark_rows(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bench.jsonl", [USER, {**USER, "chosen": []}, RM_BENCH, {**JUDGEBENCH, "label": "?"}])
    loaded = load_comparisons(str(path), skip_invalid=True)
    assert [c.bench.kind for c in loaded.comparisons] == ["best-of-n", "rm-bench"]
    assert [p.where for p in loaded.problems] == [f"{path}:2", f"{path}:4"]


def test_data_check_reports_benchmark_rows(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_jsonl(tmp_path / "mixed.jsonl", [USER, BEST_OF_N, TIES, RM_BENCH, JUDGEBENCH, JUDGEBENCH_A,
                                                  {"prompt": "p", "chosen": "long answer", "rejected": "short"}])
    assert main(["data", "check", str(path), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["comparisons"] == 7 and r["pairs"] == 3 + 4 + 3 + 3 + 1 + 1 + 1
    assert r["benchmarks"] == {
        "best-of-n": {"rows": 3, "subsets": {"Focus": 1, "Math": 1, "Ties": 1},
                      "chosen+rejected": {"1+3": 1, "2+2": 1, "3+1": 1}},
        "judgebench": {"rows": 2, "subsets": {"knowledge": 1, "mmlu-pro-math": 1},
                       "chosen+rejected": {"1+1": 2}, "labels": {"A>B": 1, "B>A": 1}},
        "rm-bench": {"rows": 1, "subsets": {"math": 1}, "chosen+rejected": {"3+3": 1}}}
    assert r["responses_per_comparison"] == {"2": 3, "4": 3, "6": 1}
    # chosen longer, over the stated pairs only: USER 1 of 3 (only "Bananas are yellow." is shorter),
    # BEST_OF_N 2 of 4 ("It is 7."), TIES 0 of 3, RM-Bench 3 of 3, JudgeBench 0 (1024 vs 1000, Rome vs
    # Milan), the plain pair 1 of 1
    assert r["chosen_longer_rate"] == pytest.approx((1 + 2 + 0 + 3 + 0 + 0 + 1) / 16)
    assert main(["data", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "judgebench rows" in out and "labels {'A>B': 1, 'B>A': 1}" in out and "rm-bench rows" in out


def test_data_check_does_not_count_a_judgebench_swap_as_a_duplicate(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    path = write_jsonl(tmp_path / "jb.jsonl", [JUDGEBENCH, JUDGEBENCH, {**JUDGEBENCH, "label": "A>B"}])
    assert main(["data", "check", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["duplicate_comparisons"] == 1


def test_data_convert_writes_the_pairs_each_benchmark_row_states(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "bench.jsonl", [BEST_OF_N, RM_BENCH, JUDGEBENCH, JUDGEBENCH_A])
    out = tmp_path / "pairs.jsonl"
    assert main(["data", "convert", str(src), "-o", str(out)]) == 0
    got = [json.loads(x) for x in out.read_text().splitlines()]
    p, q = BEST_OF_N["prompt"], RM_BENCH["prompt"]
    assert got[:4] == [{"prompt": p, "chosen": c, "rejected": r, "subset": "Math"}
                       for c in ("7", "It is 7.") for r in ("8", "34")]
    assert got[4:7] == [{"prompt": q, "chosen": c, "rejected": r, "subset": "math"}
                        for c, r in zip(RM_BENCH["chosen"], RM_BENCH["rejected"])]
    assert got[7:] == [
        {"prompt": "What is 2 ** 10?", "chosen": "1024", "rejected": "1000", "subset": "mmlu-pro-math"},
        {"prompt": "Capital of Italy?", "chosen": "Rome", "rejected": "Milan", "subset": "knowledge"}]
    back = load_comparisons(str(out)).comparisons
    assert len(back) == 9 and all(c.bench is None for c in back)
    assert main(["data", "convert", str(src), "-o", str(tmp_path / "p2.jsonl"), "--to", "pairs"]) == 0
    assert (tmp_path / "p2.jsonl").read_text() == out.read_text()


def test_data_convert_to_rankings_refuses_a_benchmark_row(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = write_jsonl(tmp_path / "bench.jsonl", [{"prompt": "p", "ranking": ["a", "b", "c"]}, USER])
    out = tmp_path / "r.jsonl"
    assert main(["data", "convert", str(src), "-o", str(out), "--to", "rankings"]) == 2
    err = capsys.readouterr().err
    assert f"{src}:2: a best-of-n benchmark row is not a ranking" in err and "--to pairs" in err
    assert not out.exists()
