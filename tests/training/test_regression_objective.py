"""Ratings as targets end to end (issue 14): train, export, score, eval, bad values. Tiny models, fp32."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import rated_rows, regression_cfg, write_csv
import torch

from rewardkit import RewardModel, TrainConfig, train
from rewardkit.errors import UsageError

ATTRS = ["helpfulness", "verbosity"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rewardkit", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def trained(bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("regression")
    data = write_csv(d / "rated.csv", rated_rows())
    out = d / "out"
    train(regression_cfg(bert_dir, data, out, eval_steps=20), log=lambda m: None)
    return out, data


def test_regression_run_learns_and_writes_metrics(trained: tuple[Path, Path]) -> None:
    out, _ = trained
    config = json.loads((out / "config.json").read_text())
    assert config["problem_type"] == "regression"  # num_labels is implied by id2label (transformers 5)
    assert config["id2label"] == {"0": "helpfulness", "1": "verbosity"}
    meta = config["rewardkit"]
    assert meta["attributes"] == ATTRS and meta["scaling"]["folded"] is True
    assert meta["attribute_weights"] == {"helpfulness": 0.5, "verbosity": 0.5}
    ev = json.loads((out / "eval.json").read_text())["eval"]
    assert set(ev["attributes"]) == set(ATTRS)
    assert ev["attributes"]["helpfulness"]["spearman"] > 0.5, ev  # learns the word counts
    assert "pairs" in ev and 0.0 <= ev["accuracy"] <= 1.0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r["step"] for r in rows if r["split"] == "eval" and "spearman/helpfulness" in r]
    assert evals == [20, 40]  # --eval-steps 20 of 40 steps, then the final evaluation
    assert (out / "report" / "report.html").is_file()
    assert "helpfulness" in (out / "report" / "report.html").read_text()


def test_export_matches_plain_transformers(trained: tuple[Path, Path]) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out, _ = trained
    rm = RewardModel.from_pretrained(out, device="cpu", dtype="fp32")
    prompts, responses = ["question number 3", "question number 9"], ["great great the answer", "long long long"]
    attrs = rm.score_attributes(prompts, responses)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        logits = model(**tok(prompts, responses, return_tensors="pt", padding=True)).logits
    for row, a in zip(logits.tolist(), attrs):
        assert list(a) == ATTRS
        assert [a[k] for k in ATTRS] == pytest.approx(row, abs=1e-5)
    rewards = rm.score_batch(prompts, responses)
    assert rewards == pytest.approx((logits @ torch.tensor([0.5, 0.5])).tolist(), abs=1e-5)
    assert rm.score(prompts[0], responses[0]) == pytest.approx(sum(0.5 * v for v in attrs[0].values()), abs=1e-6)


def test_pairwise_model_has_no_attributes(bert_dir: Path) -> None:
    from rewardkit.model.artifacts import load_model_dir

    model, tok, meta = load_model_dir(bert_dir)
    with pytest.raises(UsageError, match="no attributes"):
        RewardModel(model, tok, device="cpu").score_attributes(["p"], ["r"])


def test_score_and_eval_cli(trained: tuple[Path, Path], tmp_path: Path) -> None:
    out, data = trained
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"prompt": "question number 1", "response": "great great the answer"}) + "\n"
                   + json.dumps({"prompt": "question number 1", "chosen": "great great great", "rejected": "the"}) + "\n")
    res = run_cli("score", str(out), str(inp), "-o", str(tmp_path / "scored.jsonl"))
    assert res.returncode == 0, res.stderr
    recs = [json.loads(x) for x in (tmp_path / "scored.jsonl").read_text().splitlines()]
    assert set(recs[0]["attributes"]) == set(ATTRS)
    assert recs[0]["reward"] == pytest.approx(0.5 * sum(recs[0]["attributes"].values()), abs=1e-5)
    assert set(recs[1]["chosen_attributes"]) == set(ATTRS) and "rejected_reward" in recs[1]
    res = run_cli("eval", str(out), str(data), "--json", "--report", str(tmp_path / "rep"))
    assert res.returncode == 0, res.stderr
    metrics = json.loads(res.stdout)
    assert set(metrics["attributes"]) == set(ATTRS) and metrics["responses"] == 48
    assert "accuracy" in metrics and metrics["pairs"] > 0
    assert (tmp_path / "rep" / "report.html").is_file()


@pytest.mark.parametrize("bad, message", [("lots", "must be a number"), ("7", "outside")])
def test_bad_rating_values_exit_2(bert_dir: Path, tmp_path: Path, bad: str, message: str) -> None:
    rows = rated_rows(4, 2, missing=0.0)
    rows[3]["verbosity"] = bad
    data = write_csv(tmp_path / "bad.csv", rows)
    res = run_cli("train", "--model", str(bert_dir), "--train-data", str(data), "--objective", "regression",
                  "--score-column", "helpfulness,verbosity", "--score-range", "0:4", "--precision", "fp32",
                  "--output-dir", str(tmp_path / "o"))
    assert res.returncode == 2, res.stderr
    assert "bad.csv:5" in res.stderr and message in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_pairwise_refuses_attribute_list(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="one --score-column"):
        TrainConfig(train_data="x.csv", score_column="a,b").validate()
    for bad in ({"loss": "pl"}, {"ratings_mode": "ranking"}, {"balance_per_prompt": True}):
        with pytest.raises(UsageError, match="does not apply to --objective regression"):
            TrainConfig(train_data="x.csv", score_column="a,b", objective="regression", **bad).validate()


def test_bt_plus_regression_runs(bert_dir: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "rated.csv", rated_rows(8, 3))
    out = tmp_path / "out"
    result = train(regression_cfg(bert_dir, data, out, objective="bt+regression", epochs=2, eval_split=0.0,
                                  gradient_checkpointing=True),
                   log=lambda m: None)
    assert result.steps > 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["split"] == "train"]
    assert train_rows and all(r["pairwise_loss"] >= 0 for r in train_rows)
    assert any(r["pairwise_loss"] > 0 for r in train_rows)
    assert json.loads((out / "config.json").read_text())["rewardkit"]["objective"] == "bt+regression"


def test_llama_regression_export_matches(llama_dir: Path, tmp_path: Path) -> None:
    """Bias-less decoder head: scaling fitted without an offset, so it folds into the weight alone."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    data = write_csv(tmp_path / "rated.csv", rated_rows(6, 2))
    out = tmp_path / "out"
    train(regression_cfg(llama_dir, data, out, epochs=1, eval_split=0.0), log=lambda m: None)
    rm = RewardModel.from_pretrained(out, device="cpu", dtype="fp32", prefix_sharing="off")
    attrs = rm.score_attributes(["question number 1"], ["great great the answer"])[0]
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    AutoTokenizer.from_pretrained(out)  # the export carries its tokenizer
    ids = rm.encoder.encode_texts("question number 1", ["great great the answer"]).input_ids[0]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].tolist()
    assert [attrs[a] for a in ATTRS] == pytest.approx(logits, abs=1e-5)


def test_lora_regression_adapter_and_merge(bert_dir: Path, tmp_path: Path) -> None:
    """LoRA: the adapter keeps the head unfolded (the scorer unscales); --merge folds it."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    data = write_csv(tmp_path / "rated.csv", rated_rows(6, 2))
    out = tmp_path / "out"
    train(regression_cfg(bert_dir, data, out, epochs=1, eval_split=0.0, lora_r=4, merge=True), log=lambda m: None)
    assert (out / "adapter_config.json").is_file()
    assert json.loads((out / "rewardkit.json").read_text())["scaling"]["folded"] is False
    prompts, responses = ["question number 2"], ["great long the answer"]
    adapter = RewardModel.from_pretrained(out, device="cpu", dtype="fp32").score_attributes(prompts, responses)[0]
    merged = RewardModel.from_pretrained(out / "merged", device="cpu", dtype="fp32").score_attributes(prompts, responses)[0]
    assert [merged[a] for a in ATTRS] == pytest.approx([adapter[a] for a in ATTRS], abs=1e-4)
    model = AutoModelForSequenceClassification.from_pretrained(out / "merged").eval()
    tok = AutoTokenizer.from_pretrained(out / "merged")
    with torch.no_grad():
        logits = model(**tok(prompts, responses, return_tensors="pt")).logits[0].tolist()
    assert [merged[a] for a in ATTRS] == pytest.approx(logits, abs=1e-5)


def test_rated_loss_empty_terms_are_zero_not_nan() -> None:
    """bt+regression batches may hold only pairs (no targets) or only rows (no pairs): both finite."""
    from rewardkit.model.attribute_head import Scaling
    from rewardkit.training.objectives.regression import RegressionObjective

    cfg = TrainConfig(objective="bt+regression", train_data="x.csv", score_column="helpfulness,verbosity")
    objective = RegressionObjective(cfg)
    objective.data.attributes, objective.data.weights = ATTRS, [0.5, 0.5]
    objective.data.scaling = Scaling("range", [0.0, 0.0], [4.0, 4.0])
    out = torch.randn(2, 2, requires_grad=True)

    class PairBatch:  # the two responses of one pair, no rated row
        pair_better, pair_worse = torch.tensor([0]), torch.tensor([1])
        pair_margin, pair_weight = torch.tensor([0.0]), torch.tensor([1.0])
        targets, target_mask = torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.bool)

    terms = objective.loss(out, PairBatch())
    assert terms["regression_loss"].item() == 0.0 and terms["pairwise_loss"].item() > 0
    loss = terms["regression_loss"] + terms["pairwise_loss"]
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(out.grad).all() and out.grad.abs().sum() > 0

    mask = torch.tensor([[True, False], [True, True]])

    class RowBatch:  # rated rows only
        pair_better = pair_worse = torch.tensor([], dtype=torch.long)
        pair_margin = pair_weight = torch.tensor([])
        targets, target_mask = torch.full((2, 2), float("nan")).where(~mask, 0.5), mask

    terms = objective.loss(out.detach(), RowBatch())
    assert terms["pairwise_loss"].item() == 0.0 and terms["regression_loss"].item() > 0
    assert all(torch.isfinite(t) for t in terms.values())


def test_eval_text_output(trained: tuple[Path, Path], tmp_path: Path) -> None:
    out, data = trained
    res = run_cli("eval", str(out), str(data))
    assert res.returncode == 0, res.stderr
    assert "helpfulness" in res.stdout and "spearman" in res.stdout and "combined reward accuracy" in res.stdout


def _scores(model_dir: Path, prompts: list[str], responses: list[str]) -> tuple[list[float], list[dict]]:
    rm = RewardModel.from_pretrained(model_dir, device="cpu", dtype="fp32")
    return rm.score_batch(prompts, responses), rm.score_attributes(prompts, responses)


PROBE = (["question number 1", "question number 2", "question number 5"],
         ["great great the answer", "long long the answer", "the answer great long"])


def test_sigterm_checkpoint_and_resume_match_an_uninterrupted_run(bert_dir: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM mid-run: a checkpoint at the end of that step, exit code 143; --resume then ends where
    an uninterrupted run does (weights, metrics.jsonl), and the checkpoint exports to the same model."""
    import os
    import signal

    from rewardkit.errors import TrainingInterrupted
    from rewardkit.training.export import export
    from rewardkit.training.tracking import MetricsLog

    data = write_csv(tmp_path / "rated.csv", rated_rows(8, 3))
    kw = dict(epochs=2, save_steps=2, save_total_limit=0, logging_steps=1, eval_steps=2)
    whole = train(regression_cfg(bert_dir, data, tmp_path / "whole", **kw), log=lambda m: None)
    assert whole.steps == 6 and (tmp_path / "whole" / "checkpoint-6").is_dir()

    write = MetricsLog.write

    def write_then_signal(self: MetricsLog, **record: Any) -> None:
        write(self, **record)
        if record.get("split") == "train" and record.get("step") == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(MetricsLog, "write", write_then_signal)
    out = tmp_path / "cut"
    with pytest.raises(TrainingInterrupted, match="after step 3 of 6") as stopped:
        train(regression_cfg(bert_dir, data, out, **kw), log=lambda m: None)
    assert stopped.value.exit_code == 128 + signal.SIGTERM
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    assert not (out / "config.json").exists()  # no final model from a stopped run
    monkeypatch.setattr(MetricsLog, "write", write)
    resumed = train(regression_cfg(bert_dir, data, out, resume="latest", **kw), log=lambda m: None)
    assert resumed.resumed_from_step == 3 and resumed.steps == 6 and resumed.pairs_seen == whole.pairs_seen

    want_rewards, want_attrs = _scores(tmp_path / "whole", *PROBE)
    got_rewards, got_attrs = _scores(out, *PROBE)
    assert got_rewards == pytest.approx(want_rewards, abs=1e-5)
    assert [a[k] for a in got_attrs for k in ATTRS] == pytest.approx([a[k] for a in want_attrs for k in ATTRS], abs=1e-5)
    rows = lambda d: [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    want, got = rows(tmp_path / "whole"), rows(out)
    assert [(r["split"], r["step"]) for r in got] == [(r["split"], r["step"]) for r in want]
    assert [r.get("loss", r.get("mean_spearman")) for r in got] == pytest.approx(
        [r.get("loss", r.get("mean_spearman")) for r in want], abs=1e-5)
    assert json.loads((out / "eval.json").read_text())["resumed_from_step"] == 3

    # the last checkpoint exports to the run's final model: scaling folded, attributes and weights kept
    exported = export(tmp_path / "whole" / "checkpoint-6", tmp_path / "exported")
    got_rewards, got_attrs = _scores(exported, *PROBE)
    assert got_rewards == pytest.approx(want_rewards, abs=1e-5)
    assert [a[k] for a in got_attrs for k in ATTRS] == pytest.approx([a[k] for a in want_attrs for k in ATTRS], abs=1e-5)
    assert "2 outputs, ratings of `helpfulness`, `verbosity`" in (exported / "README.md").read_text()


def test_resume_refuses_other_ratings_or_weights(bert_dir: Path, tmp_path: Path) -> None:
    import shutil

    data = write_csv(tmp_path / "rated.csv", rated_rows(8, 3))
    train(regression_cfg(bert_dir, data, tmp_path / "run", epochs=1, save_steps=1, save_total_limit=0),
          log=lambda m: None)
    for name, changed_data, extra, message in [
            ("ratings", write_csv(tmp_path / "other.csv", rated_rows(8, 3, seed=1)), {}, "the data differs"),
            ("weights", data, {"attribute_weights": "helpfulness=1"}, "different settings")]:
        out = tmp_path / name
        out.mkdir()
        shutil.copytree(tmp_path / "run" / "checkpoint-1", out / "checkpoint-1")
        with pytest.raises(UsageError, match=message):
            train(regression_cfg(bert_dir, changed_data, out, epochs=1, save_steps=1, resume="latest", **extra),
                  log=lambda m: None)


def test_lora_regression_checkpoint_exports_adapter_and_merged(bert_dir: Path, tmp_path: Path) -> None:
    """A LoRA checkpoint: the adapter export keeps the head unfolded, the merged one folds it; both
    score as the run's final adapter does."""
    from rewardkit.model.artifacts import read_meta
    from rewardkit.training.export import export

    data = write_csv(tmp_path / "rated.csv", rated_rows(6, 2))
    out = tmp_path / "out"
    result = train(regression_cfg(bert_dir, data, out, epochs=1, eval_split=0.0, lora_r=4, save_steps=1,
                                                   save_total_limit=0),
                   log=lambda m: None)
    last = out / f"checkpoint-{result.steps}"
    want_rewards, want_attrs = _scores(out, *PROBE)
    for merge in (False, True):
        exported = export(last, tmp_path / f"exported-{merge}", merge=merge)
        assert read_meta(exported)["scaling"]["folded"] is merge
        got_rewards, got_attrs = _scores(exported, *PROBE)
        assert got_rewards == pytest.approx(want_rewards, abs=1e-4)
        assert [a[k] for a in got_attrs for k in ATTRS] == pytest.approx(
            [a[k] for a in want_attrs for k in ATTRS], abs=1e-4)


def test_split_passes_give_the_same_regression_training(bert_dir: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """--pass-tokens on bt+regression: micro-batches cut into passes of a few rows or pairs train exactly as
    whole ones (each loss term weighted by its pass's share of what it averages over)."""
    from rewardkit.training.batch_plan import TrainingPlan

    passes_per_micro_batch: list[int] = []
    real_passes = TrainingPlan.passes
    monkeypatch.setattr(TrainingPlan, "passes", lambda self, mb: passes_per_micro_batch.append(
        len(parts := real_passes(self, mb))) or parts)
    data = write_csv(tmp_path / "rated.csv", rated_rows(12, 3))
    runs = {}
    for tokens in (0, 40):  # 40 padded tokens: one or two rows per pass, a pair alone
        passes_per_micro_batch.clear()
        out = tmp_path / f"out-{tokens}"
        result = train(regression_cfg(bert_dir, data, out, objective="bt+regression", epochs=2, grad_accum=2,
                                      pass_tokens=tokens, logging_steps=1), log=lambda m: None)
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        runs[tokens] = (result, [r for r in rows if r["split"] == "train"])
        assert max(passes_per_micro_batch) == 1 if tokens == 0 else min(passes_per_micro_batch) >= 2
    (whole, whole_rows), (split, split_rows) = runs[0], runs[40]
    assert len(whole_rows) >= 4 and any(r["pairwise_loss"] > 0 for r in whole_rows)
    for key in ("loss", "regression_loss", "pairwise_loss"):
        assert [r[key] for r in split_rows] == pytest.approx([r[key] for r in whole_rows], abs=1e-5)
    assert split.eval_metrics["mean_rmse"] == pytest.approx(whole.eval_metrics["mean_rmse"], abs=1e-5)



def test_packed_rows_score_the_held_out_rows_alike(llama_dir: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """--packing on: held-out ratings are scored in packed rows too, and the metrics equal --packing off's."""
    from rewardkit.training.objectives import regression as regression_mod

    packs: list[int] = []
    real = regression_mod.score_sharded

    def spy(*args: Any, **kw: Any) -> Any:
        packs.append(kw.get("pack", 0))
        return real(*args, **kw)

    monkeypatch.setattr(regression_mod, "score_sharded", spy)
    data = write_csv(tmp_path / "rated.csv", rated_rows(8, 2))
    metrics = {}
    for packing in ("off", "on"):
        packs.clear()
        result = train(regression_cfg(llama_dir, data, tmp_path / packing, epochs=1, packing=packing),
                       log=lambda m: None)
        metrics[packing] = result.eval_metrics
        assert packs and set(packs) == {packing == "on"}
    on, off = metrics["on"], metrics["off"]
    on_attrs, off_attrs = on.pop("attributes"), off.pop("attributes")
    assert on_attrs.keys() == off_attrs.keys()
    for name in on_attrs:
        assert on_attrs[name] == pytest.approx(off_attrs[name], abs=1e-5)
    assert on == pytest.approx(off, abs=1e-5)
