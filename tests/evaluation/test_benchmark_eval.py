"""`rewardkit eval` on the benchmarks' own files, several models side by side, and exports vLLM serves raw.

The scoring rules themselves are tested against hand-worked values and a second implementation in
test_benchmarks.py; here the command reads each shape, scores it by its rules with a real model's
rewards (checked by recomputing them from `RewardModel`), compares two models with a paired interval,
and writes the report.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import pairs_records, write_jsonl

from rewardkit import RewardModel
from rewardkit.cli import main
from rewardkit.evaluation.benchmarks import ScoredRow, score_benchmark

RB2 = [{"prompt": f"question {i}: how do I do task {i}?", "chosen": [f"Happy to help with task {i}: read the manual."],
        "rejected": [f"No. {i}", f"Figure task {i} out yourself.", "Not my problem."], "subset": s, "id": str(i),
        "num_correct": 1} for i, s in enumerate(["Focus", "Focus", "Math", "Safety", "Math", "Factuality"])]
RB2 += [{"prompt": "question t: name a colour", "chosen": ["red", "blue"], "rejected": ["seven"], "subset": "Ties",
         "id": "tied:1", "num_correct": 2},
        {"prompt": "question t: name a colour", "chosen": ["red"], "rejected": ["seven", "a chair"], "subset": "Ties",
         "id": "ref:1", "num_correct": 1}]
RMBENCH = [{"prompt": f"task {i}?", "chosen": [f"Do {i}.", f"Do task {i} in detail, step by step.", f"**Do** {i}."],
            "rejected": [f"No {i}.", f"No, you cannot do task {i}, it is not possible.", f"**No** {i}."],
            "domain": d, "id": i} for i, d in enumerate(["chat", "code", "safety-refuse", "safety-response", "math"])]
JUDGE = [{"question": f"what is {i} + {i}?", "response_A": f"It is {2 * i}.", "response_B": f"It is {2 * i + 1}.",
          "label": "A>B" if i % 2 else "B>A", "source": src, "pair_id": f"p{i}"}
         for i, src in enumerate(["mmlu-pro-math", "livebench-math", "livecodebench", "livebench-reasoning"])]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bench-files")
    return {"rb2": write_jsonl(d / "rb2.jsonl", RB2), "rmbench": write_jsonl(d / "rmbench.jsonl", RMBENCH),
            "judge": write_jsonl(d / "judge.jsonl", JUDGE), "pairs": write_jsonl(d / "pairs.jsonl", pairs_records(12))}


@pytest.fixture(scope="module")
def second_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from serve_util import spread_bert

    return spread_bert(tmp_path_factory.mktemp("second-bert"))


@pytest.mark.parametrize("name,kind", [("rb2", "best-of-n"), ("rmbench", "rm-bench"), ("judge", "judgebench")])
def test_eval_scores_a_benchmark_file_by_its_rules(name: str, kind: str, files: dict[str, Path], bert_dir: Path,
                                                   tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", str(bert_dir), str(files[name]), "--json", "--report", str(tmp_path / "report")]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["benchmark"] == kind and got["kind"] == kind and 0.0 <= got["score"] <= 1.0
    # recompute from the model's own rewards with the rules' function: the command feeds them faithfully
    from rewardkit.data.loading import load_comparisons

    rm = RewardModel.from_pretrained(bert_dir, device="cpu")
    comps = load_comparisons(str(files[name])).comparisons
    rows = [ScoredRow(c.bench.kind, c.subset, rewards, c.bench.chosen, c.bench.id, c.bench.label)
            for c, rewards in zip(comps, rm.score_comparisons(comps))]
    assert got["score"] == pytest.approx(score_benchmark(kind, rows)["score"], abs=1e-9)
    assert got["sections"] and (tmp_path / "report" / "report.html").is_file()
    if kind == "rm-bench":
        assert set(got["domains"]) == {"chat", "code", "math", "safety"} and got["domains"]["safety"]["rows"] == 2
        assert len(got["domains"]["chat"]["matrix"]) == 3
    if kind == "best-of-n":
        assert "Ties" in got["sections"] and "ties" in got


def test_two_models_side_by_side_with_a_paired_interval(files: dict[str, Path], bert_dir: Path, second_model: Path,
                                                       tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = [str(files["pairs"]), str(files["rb2"])]
    assert main(["eval", "--bootstrap", "200", "--report", str(tmp_path / "side"), str(bert_dir), str(second_model),
                 "--", *data]) == 0
    out = capsys.readouterr().out
    for path in data:
        assert path in out
    assert bert_dir.name in out and second_model.name in out and "B - A" in out and "interval" in out
    assert (tmp_path / "side" / "report.html").is_file() and (tmp_path / "side" / "scores.png").stat().st_size > 0
    assert main(["eval", "--models", f"{bert_dir},{second_model}", str(files["pairs"]), "--json",
                 "--bootstrap", "200"]) == 0
    got = json.loads(capsys.readouterr().out)
    result = got["files"][str(files["pairs"])]
    assert got["models"] == [str(bert_dir), str(second_model)] and result["kind"] == "pairs"
    d = result["difference"]
    a, b = (result["per_model"][m]["score"] for m in got["models"])
    assert d["difference"] == pytest.approx(b - a) and d["low"] <= d["difference"] <= d["high"]
    assert d["resamples"] == 200 and d["units"] == 12  # the 12 prompts are the resampled units


def test_bad_benchmark_rows_exit_2_naming_file_line_and_field(tmp_path: Path, bert_dir: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    bad = write_jsonl(tmp_path / "bad.jsonl", [JUDGE[0], {**JUDGE[1], "label": "A=B"}])
    assert main(["eval", str(bert_dir), str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2" in err and "label" in err and "Traceback" not in err


def test_single_output_exports_are_regressions_for_vllm(bert_dir: Path, tmp_path: Path) -> None:
    """vLLM applies a sigmoid to a 1-output classifier unless config.json says regression; the export says it
    (plain transformers reads problem_type only to pick a loss, so its rewards are unchanged)."""
    from rewardkit import TrainConfig, train

    data = write_jsonl(tmp_path / "pairs.jsonl", pairs_records(12))
    out = tmp_path / "rm"
    train(TrainConfig(model=str(bert_dir), train_data=str(data), output_dir=str(out), max_length=48, batch_size=4,
                      precision="fp32", eval_split=0.25), log=lambda _m: None)
    assert json.loads((out / "config.json").read_text())["problem_type"] == "regression"
    assert "problem_type" not in json.loads((bert_dir / "config.json").read_text())  # the base as it was
