"""The report written at the end of `rewardkit train`: the header names the run's data and settings,
loss.png draws metrics.jsonl, and a margin-trained run says why its train loss is not the held-out one."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import pairs_records, rated_rows, write_csv, write_jsonl

from rewardkit import TrainConfig, train
from rewardkit.data.records import Comparison
from rewardkit.evaluation.report import LOSS_PLOT
from rewardkit.training.objectives.pairwise import PairwiseObjective


def _cfg(model: Path, data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(model=str(model), train_data=str(data), output_dir=str(out), max_length=32, batch_size=4,
                eval_batch_size=8, lr=1e-3, epochs=1, eval_split=0.25, precision="fp32", logging_steps=1, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def _objective(**kw) -> PairwiseObjective:
    objective = PairwiseObjective(TrainConfig(**kw))
    # margins by hand: the ranking's score gaps 1, 3, 2; the pair's 4; a pair without one 0; a 3-way
    # ranking without scores 0, 0, 0 -> (1 + 3 + 2 + 4 + 0 + 0 + 0 + 0) / 8 = 1.25
    objective.data.train = [Comparison(prompt="p", responses=["a", "b", "c"], scores=[3.0, 2.0, 0.0]),
                       Comparison(prompt="q", responses=["a", "b"], margin=4.0),
                       Comparison(prompt="r", responses=["a", "b"]),
                       Comparison(prompt="s", responses=["a", "b", "c"], margin=9.0)]  # K > 2: margin unused
    return objective


def test_mean_margin_follows_the_loss() -> None:
    assert _objective().mean_margin() == pytest.approx(1.25)
    assert _objective(use_margin=False).mean_margin() is None
    assert _objective(loss="pl").mean_margin() is None  # Plackett-Luce has no margin term
    plain = _objective()
    plain.data.train = [Comparison(prompt="p", responses=["a", "b"])] * 2
    assert plain.mean_margin() is None


def _section(text: str) -> str:
    return text[text.index("<h2>Training</h2>"):text.index("<h2>Plots</h2>")]


def test_rating_table_run_reports_loss_curve_settings_and_margin_note(bert_dir: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "ratings.csv", rated_rows())
    out = tmp_path / "out"
    train(_cfg(bert_dir, data, out, score_column="helpfulness", eval_steps=2), log=lambda _m: None)
    report = out / "report"
    assert (report / LOSS_PLOT).is_file() and (report / LOSS_PLOT).stat().st_size > 1000
    text = (report / "report.html").read_text(encoding="utf-8")
    for fact in (f"training data: {data}", "held-out data: 25% of the prompts", f"model: {bert_dir}",
                 "max length: 32", "batch size: 4", "learning rate: 0.001", "epochs: 1", "precision: fp32",
                 "objective: bt"):
        assert fact in text, fact
    section = _section(text)
    assert f'src="{LOSS_PLOT}"' in section and "Training used margins" in section and "not comparable" in section
    mean = float(re.search(r"mean m = ([0-9.e+-]+) over the training pairs", section).group(1))
    assert mean >= 1  # margin = score gap x --margin-scale 1, and every derived pair has a gap
    assert "no margin term, unlike the train loss" in text
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last_train = [r for r in rows if r["split"] == "train"][-1]
    assert f"Last logged train loss <b>{last_train['loss']:.4g}</b> (step {last_train['step']})" in section


def test_pair_run_without_margins_has_the_curve_and_no_margin_note(bert_dir: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs_records())
    out = tmp_path / "out"
    train(_cfg(bert_dir, data, out, epochs=2, batch_size=8, grad_accum=2), log=lambda _m: None)
    text = (out / "report" / "report.html").read_text(encoding="utf-8")
    assert (out / "report" / LOSS_PLOT).is_file()
    assert f"training data: {data}" in text and "batch size: 8 x 2 accumulated" in text and "epochs: 2" in text
    assert "Training used margins" not in text and "unlike the train loss" not in text
    assert "held-out Bradley-Terry loss <b>" in _section(text)
