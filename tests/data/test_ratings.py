"""Rating tables -> pairs/rankings, and multi-annotator votes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_jsonl

from rewardkit.cli import main
from rewardkit.data.formats import parse_record
from rewardkit.data.loading import load_comparisons
from rewardkit.data.ratings import RatingOptions
from rewardkit.errors import DataError, RecordError

# The seed shape: a question,answer,feedback CSV with several answers per question (line numbers:
# the header is line 1).
SEED_CSV = """question,answer,feedback
How do I boil an egg?,Put it in boiling water for 8 minutes.,5
How do I boil an egg?,Eggs come from chickens.,2
How do I boil an egg?,Microwave it whole.,1
What is 2+2?,4,5
What is 2+2?,"Four, of course.",4
What is 2+2?,22,3
Name a colour.,Blue.,3
Name a colour.,Red.,3
Tell me a joke.,Why did the chicken cross the road?,4
Capital of Peru?,Lima.,3
Capital of Peru?,Cusco.,2
Best pet?,A dog.,5
Best pet?,A cat.,4
"""


@pytest.fixture
def seed_csv(tmp_path: Path) -> Path:
    p = tmp_path / "seed.csv"
    p.write_text(SEED_CSV)
    return p


def pairs_of(path: Path, **opts: object) -> list[tuple[str, str, str, float | None]]:
    loaded = load_comparisons(str(path), ratings=RatingOptions(**opts))  # auto-detected
    return [(c.prompt, c.chosen, c.rejected, c.margin) for c in loaded.comparisons]


# --------------------------------------------------------------------------------------- pairing rules


def test_best_worst_with_thresholds(seed_csv: Path) -> None:
    loaded = load_comparisons(str(seed_csv), ratings=RatingOptions(hi=4, lo=4))
    assert [(c.prompt, c.chosen, c.rejected, c.margin) for c in loaded.comparisons] == [
        ("How do I boil an egg?", "Put it in boiling water for 8 minutes.", "Microwave it whole.", 4.0),
        ("What is 2+2?", "4", "22", 2.0)]
    assert [str(d) for d in loaded.dropped] == [
        f"{seed_csv}:8: prompt 'Name a colour.' (2 answers): all answers scored 3 (tied), no pair",
        f"{seed_csv}:10: prompt 'Tell me a joke.' (1 answer): only one answer, no pair",
        f"{seed_csv}:11: prompt 'Capital of Peru?' (2 answers): best answer scored 3 < --hi 4, no pair",
        f"{seed_csv}:13: prompt 'Best pet?' (2 answers): worst answer scored 4 >= --lo 4, no pair"]
    assert loaded.records == 13 and not loaded.problems
    assert loaded.notes == [f"rating table {seed_csv}: 13 rows, 6 prompts -> 2 pairs (best-worst, chosen >= 4, "
                            "rejected < 4, margin = 1 x gap); 4 prompts gave none"]


def test_best_worst_without_thresholds_pairs_any_strict_gap(seed_csv: Path) -> None:
    got = pairs_of(seed_csv)
    assert [(p, c, r) for p, c, r, _ in got] == [
        ("How do I boil an egg?", "Put it in boiling water for 8 minutes.", "Microwave it whole."),
        ("What is 2+2?", "4", "22"), ("Capital of Peru?", "Lima.", "Cusco."), ("Best pet?", "A dog.", "A cat.")]


def test_all_pairs_min_gap_and_margin_scale(seed_csv: Path) -> None:
    got = pairs_of(seed_csv, ratings_mode="all-pairs", min_gap=2, margin_scale=0.5)
    assert got == [
        ("How do I boil an egg?", "Put it in boiling water for 8 minutes.", "Eggs come from chickens.", 1.5),
        ("How do I boil an egg?", "Put it in boiling water for 8 minutes.", "Microwave it whole.", 2.0),
        ("What is 2+2?", "4", "22", 1.0)]


def test_all_pairs_never_pairs_ties_and_scale_zero_means_no_margin(tmp_path: Path) -> None:
    rows = [{"prompt": "p", "response": r, "score": s} for r, s in [("a", 3), ("b", 3), ("c", 1), ("d", 3)]]
    path = write_jsonl(tmp_path / "r.jsonl", rows)
    got = pairs_of(path, ratings_mode="all-pairs", margin_scale=0)
    assert got == [("p", "a", "c", None), ("p", "b", "c", None), ("p", "d", "c", None)]


def test_all_pairs_with_thresholds(seed_csv: Path) -> None:
    got = pairs_of(seed_csv, ratings_mode="all-pairs", hi=4, lo=3)
    assert [(p, c, r) for p, c, r, _ in got] == [
        ("How do I boil an egg?", "Put it in boiling water for 8 minutes.", "Eggs come from chickens."),
        ("How do I boil an egg?", "Put it in boiling water for 8 minutes.", "Microwave it whole.")]


def test_ties_for_best_take_the_first_answer(tmp_path: Path) -> None:
    rows = [{"question": "q", "answer": a, "rating": s} for a, s in [("x", 1), ("y", 5), ("z", 5), ("w", 1)]]
    assert pairs_of(write_jsonl(tmp_path / "r.jsonl", rows)) == [("q", "y", "x", 4.0)]


def test_re_rated_answers_are_averaged(tmp_path: Path) -> None:
    rows = [{"prompt": "p", "response": r, "score": s} for r, s in [("a", 5), ("b", 2), ("a", 1), ("b", 4)]]
    # a: mean 3, b: mean 3 -> tied
    loaded = load_comparisons(str(write_jsonl(tmp_path / "r.jsonl", rows + [
        {"prompt": "q", "response": "c", "score": 4}, {"prompt": "q", "response": "d", "score": 1}])))
    assert [(c.chosen, c.rejected) for c in loaded.comparisons] == [("c", "d")]
    assert "all answers scored 3 (tied)" in str(loaded.dropped[0])
    assert "2 rows re-rated an answer already seen and were averaged into it" in loaded.notes[0]


def test_ranking_mode_keeps_scores_and_reports_ties(seed_csv: Path) -> None:
    loaded = load_comparisons(str(seed_csv), ratings=RatingOptions(ratings_mode="ranking"))
    assert [(c.responses, c.scores) for c in loaded.comparisons][:2] == [
        (["Put it in boiling water for 8 minutes.", "Eggs come from chickens.", "Microwave it whole."], [5, 2, 1]),
        (["4", "Four, of course.", "22"], [5, 4, 3])]
    assert len(loaded.comparisons) == 4
    assert "answers tied at score 3; a ranking needs a strict order" in str(loaded.dropped[0])


# --------------------------------------------------------------------------------------- columns, files


def test_configurable_columns_and_explicit_format(tmp_path: Path) -> None:
    rows = [{"q": "p", "a": "good", "s": 9, "chosen": "decoy"}, {"q": "p", "a": "bad", "s": 1, "chosen": "decoy"}]
    path = write_jsonl(tmp_path / "odd.jsonl", rows)
    loaded = load_comparisons(str(path), "ratings",
                              ratings=RatingOptions(prompt_column="q", response_column="a", score_column="s"))
    assert [(c.chosen, c.rejected, c.margin) for c in loaded.comparisons] == [("good", "bad", 8.0)]
    with pytest.raises(DataError, match=r"odd.jsonl:1: rating table: no prompt column \(looked for prompt"):
        load_comparisons(str(path), "ratings")
    with pytest.raises(DataError, match=r"--score-column 'grade' is not a column"):
        load_comparisons(str(path), "ratings", ratings=RatingOptions(prompt_column="q", response_column="a",
                                                                     score_column="grade"))


def test_parquet_rating_table(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "r.parquet"
    pq.write_table(pa.table({"instruction": ["p", "p", "p"], "output": ["x", "y", "z"], "rating": [1.0, 4.5, 3.0]}),
                   path)
    assert pairs_of(path) == [("p", "y", "x", 3.5)]


def test_invalid_rows_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("question,answer,feedback\nq,a,5\nq,b,lots\nq,,3\nq,c,\nq,d,1\n")
    with pytest.raises(DataError) as e:
        load_comparisons(str(path))
    msg = str(e.value)
    assert f"{path}:3: field 'feedback' (score) must be a number, got 'lots'" in msg
    assert f"{path}:4: field 'answer' is empty" in msg
    assert f"{path}:5: field 'feedback' (score) is empty" in msg
    loaded = load_comparisons(str(path), skip_invalid=True)
    assert len(loaded.problems) == 3 and [(c.chosen, c.rejected) for c in loaded.comparisons] == [("a", "d")]


def test_csv_of_neither_pairs_nor_ratings_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("text,label\nhello,1\n")
    with pytest.raises(DataError, match="describe neither preference pairs .* nor a rating table"):
        load_comparisons(str(path))


# --------------------------------------------------------------------------------------- CLI


def test_convert_seed_csv_reports_tied_question(seed_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "pairs.jsonl"
    assert main(["data", "convert", str(seed_csv), "-o", str(out), "--from", "ratings", "--hi", "4", "--lo", "4"]) == 0
    assert [json.loads(x) for x in out.read_text().splitlines()] == [
        {"prompt": "How do I boil an egg?", "chosen": "Put it in boiling water for 8 minutes.",
         "rejected": "Microwave it whole.", "margin": 4.0},
        {"prompt": "What is 2+2?", "chosen": "4", "rejected": "22", "margin": 2.0}]
    err = capsys.readouterr().err
    assert f"{seed_csv}:8: prompt 'Name a colour.' (2 answers): all answers scored 3 (tied), no pair" in err
    assert "wrote 2 records (2 pairs, 0 rankings) from 13 input records" in err
    # the converted file loads back as the same pairs
    assert [(c.chosen, c.margin) for c in load_comparisons(str(out)).comparisons] == [
        ("Put it in boiling water for 8 minutes.", 4.0), ("4", 2.0)]


def test_convert_mode_alias_and_bad_options(seed_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "o.jsonl"
    assert main(["data", "convert", str(seed_csv), "-o", str(out), "--mode", "all-pairs"]) == 0
    assert len(out.read_text().splitlines()) == 3 + 3 + 1 + 1
    assert main(["data", "convert", str(seed_csv), "-o", str(out), "--min-gap", "-1"]) == 2
    assert "--min-gap must be a finite number >= 0" in capsys.readouterr().err
    assert main(["data", "convert", str(seed_csv), "-o", str(out), "--mode", "ranking", "--hi", "4"]) == 2
    assert "--hi only apply to --ratings-mode best-worst or all-pairs" in capsys.readouterr().err
    assert main(["data", "convert", str(seed_csv), "-o", str(seed_csv)]) == 2


def test_check_reports_ratings(seed_csv: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "check", str(seed_csv), "--json", "--ratings-mode", "all-pairs"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["pairs"] == 8 and r["prompts"] == 4 and r["no_preference"] == 2
    assert r["pairs_per_prompt"]["max"] == 3 and r["pairs_per_prompt"]["min"] == 1
    assert "all answers scored 3 (tied)" in r["no_preference_records"][0]


def test_train_on_seed_csv_in_one_command(seed_csv: Path, tmp_path: Path, bert_dir: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    """Acceptance: the question,answer,feedback CSV converts and trains with one command."""
    out = tmp_path / "model"
    rc = main(["train", "--model", str(bert_dir), "--train-data", str(seed_csv), "--hi", "4", "--lo", "4",
               "--output-dir", str(out), "--max-length", "64", "--precision", "fp32"])  # own data: no split
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "no held-out data (every pair was trained on)" in captured.out
    assert "-> 2 pairs (best-worst, chosen >= 4, rejected < 4" in captured.err
    assert "prompt 'Name a colour.' (2 answers): all answers scored 3 (tied), no pair" in captured.err
    summary = json.loads((out / "eval.json").read_text())
    assert summary["train_comparisons"] == 2
    assert (out / "model.safetensors").is_file()
    import yaml

    saved = yaml.safe_load((out / "train_config.yaml").read_text())
    assert saved["hi"] == 4 and saved["lo"] == 4 and saved["ratings_mode"] == "best-worst"


# --------------------------------------------------------------------------------------- votes


def test_votes_majority_decides() -> None:
    [c] = parse_record({"prompt": "p", "response_a": "A!", "response_b": "B!", "votes": ["b", "a", "B", "tie"]
                        + ["b"]})
    assert c.responses == ["B!", "A!"]
    [c] = parse_record({"prompt": "p", "response_a": "A!", "response_b": "B!", "votes": ["a"]})
    assert c.responses == ["A!", "B!"]


def test_votes_implicit_prompt() -> None:
    [c] = parse_record({"response_a": "\n\nHuman: hi\n\nAssistant: hello", "response_b": "\n\nHuman: hi\n\nAssistant: go",
                        "votes": ["b", "b", "a"]})
    assert c.prompt == "\n\nHuman: hi\n\nAssistant:" and c.responses == [" go", " hello"]


@pytest.mark.parametrize("record, reason", [
    ({"prompt": "p", "response_a": "x", "response_b": "y", "votes": []}, "field 'votes' must be a non-empty list"),
    ({"prompt": "p", "response_a": "x", "response_b": "y", "votes": ["a", 1]}, "field 'votes[1]' must be"),
    ({"prompt": "p", "chosen": "x", "rejected": "y", "votes": ["a"]}, "missing field 'response_a'"),
    ({"prompt": "p", "response_a": "x", "response_b": "x", "votes": ["a"]}, "response_a and response_b are identical"),
])
def test_invalid_votes(record: dict, reason: str) -> None:
    with pytest.raises(RecordError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        parse_record(record)


def test_tied_votes_are_skipped_and_counted(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_jsonl(tmp_path / "votes.jsonl", [
        {"prompt": "p1", "response_a": "a1", "response_b": "b1", "votes": ["a", "a", "b"]},
        {"prompt": "p2", "response_a": "a2", "response_b": "b2", "votes": ["a", "b", "tie"]},
        {"prompt": "p3", "response_a": "a3", "response_b": "b3", "votes": ["tie", "tie"]},
        {"prompt": "p4", "response_a": "a4", "response_b": "b4", "votes": ["b"]}])
    loaded = load_comparisons(str(path))  # no --skip-invalid needed: a tie is not an error
    assert [(c.chosen, c.rejected) for c in loaded.comparisons] == [("a1", "b1"), ("b4", "a4")]
    assert [str(d) for d in loaded.dropped] == [
        f"{path}:2: votes split 1 a / 1 b, 1 tie: no majority, no pair",
        f"{path}:3: votes split 0 a / 0 b, 2 tie: no majority, no pair"]
    out = tmp_path / "pairs.jsonl"
    assert main(["data", "convert", str(path), "-o", str(out), "--from", "votes"]) == 0
    err = capsys.readouterr().err
    assert "2 record(s)/prompt(s)" in err and "2 without a preference" in err
    assert len(out.read_text().splitlines()) == 2
