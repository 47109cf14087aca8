"""Step-labelled solutions (`rewardkit.data.steps`): TRL's stepwise rows, Math-Shepherd's tagged text,
per-step ratings with a rule for neutral steps; each bad row exit 2 with file:line and the field."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import write_jsonl

from rewardkit.cli import main
from rewardkit.data.steps import aggregate, load_step_solutions, parse_step_record, ratings_to_labels
from rewardkit.errors import DataError

STEPWISE = {"prompt": "start 3 steps 2", "completions": ["3 > 9", "9 > 6"], "labels": [True, False], "correct": False}
SHEPHERD = {"input": "Janet has 3 eggs. How many? Step 1: She has 3. ки\nStep 2: 3 + 1 = 5. ки",
            "label": "Janet has 3 eggs. How many? Step 1: She has 3. +\nStep 2: 3 + 1 = 5. -"}
RATINGS = {"prompt": "2 + 2 * 3?", "steps": ["2 * 3 = 6", "so maybe 6", "2 + 6 = 8"], "ratings": [1, 0, -1]}


def test_each_shape_is_read() -> None:
    s = parse_step_record(STEPWISE)
    assert (s.prompt, s.steps, s.labels, s.correct, s.first_error) == ("start 3 steps 2", ["3 > 9", "9 > 6"],
                                                                         [True, False], False, 1)
    m = parse_step_record(SHEPHERD)
    assert m.prompt == "Janet has 3 eggs. How many?"
    assert m.steps == ["Step 1: She has 3.", "Step 2: 3 + 1 = 5."] and m.labels == [True, False]
    for rule, labels in (("positive", [True, True, False]), ("negative", [True, False, False]),
                         ("drop-after", [True])):
        r = parse_step_record(RATINGS, neutral=rule)
        assert r.labels == labels and len(r.steps) == len(labels), rule
    assert ratings_to_labels([1, 1, 0, 1], "drop-after") == [True, True]


def test_aggregates_of_step_probabilities() -> None:
    probs = [0.9, 0.5, 0.8]
    assert aggregate(probs, "min") == 0.5 and aggregate(probs, "last") == 0.8
    assert aggregate(probs, "prod") == pytest.approx(0.36) and aggregate(probs, "mean") == pytest.approx(2.2 / 3)


@pytest.mark.parametrize("bad,field", [
    ({**STEPWISE, "labels": [True]}, "'labels' must hold one label per step: 2 steps, 1 labels"),
    ({**STEPWISE, "completions": ["3 > 9", "  "]}, "'completions[1]' is empty"),
    ({**STEPWISE, "labels": [True, "no"]}, "'labels[1]' must be true or false"),
    ({**RATINGS, "ratings": [1, 2, -1]}, "'ratings[1]' must be -1, 0 or 1"),
    ({**SHEPHERD, "label": SHEPHERD["label"].replace("+", "?")}, "'label' does not match 'input' at step 1"),
    ({**STEPWISE, "correct": "yes"}, "'correct' must be true or false"),
])
def test_bad_rows_name_file_line_and_field(bad: dict, field: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    path = write_jsonl(tmp_path / "steps.jsonl", [STEPWISE, bad])
    with pytest.raises(DataError, match=re.escape(f"steps.jsonl:2: field {field}")):
        load_step_solutions(str(path), neutral="positive")
    assert main(["data", "check", str(path), "--strict", "--neutral", "positive"]) == 2
    assert "steps.jsonl:2" in capsys.readouterr().out
    out = tmp_path / "out.jsonl"
    assert main(["data", "convert", str(path), "-o", str(out), "--neutral", "positive"]) == 2
    assert not out.exists()  # nothing written from an unusable file


def test_ratings_need_a_neutral_rule(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "ratings.jsonl", [RATINGS])
    with pytest.raises(DataError, match="ratings.jsonl:1: per-step ratings need a rule .*--neutral"):
        load_step_solutions(str(path))


def test_data_check_and_convert_on_step_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_jsonl(tmp_path / "mixed.jsonl", [STEPWISE, SHEPHERD, {**STEPWISE, "labels": [True, True]}])
    assert main(["data", "check", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["solutions"], report["steps"], report["solutions_all_right"]) == (3, 6, 1)
    assert report["first_error_step"] == {"2": 2} and report["right_step_rate"] == pytest.approx(4 / 6)
    ratings = write_jsonl(tmp_path / "ratings.jsonl", [RATINGS])
    out = tmp_path / "converted" / "stepwise.jsonl"
    assert main(["data", "convert", str(ratings), "-o", str(out), "--neutral", "drop-after"]) == 0
    assert json.loads(out.read_text()) == {"prompt": RATINGS["prompt"], "completions": ["2 * 3 = 6"], "labels": [True]}
