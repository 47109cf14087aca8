"""--report-to: the same scalars as metrics.jsonl reach TensorBoard and W&B; missing packages exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from rewardkit import TrainConfig, train
from rewardkit.cli import build_parser, main
from rewardkit.config import build_config
from rewardkit.errors import UsageError
from rewardkit.training.tracking import hyperparameters, parse_report_to, scalars


def _cfg(model_dir: Path, data: Path, out: Path, **kw: Any) -> TrainConfig:
    base = dict(model=str(model_dir), train_data=str(data), output_dir=str(out), max_length=48, batch_size=4,
                eval_batch_size=8, lr=1e-3, epochs=2, eval_split=0.25, precision="fp32", logging_steps=2,
                eval_steps=4)
    base.update(kw)
    return TrainConfig(**base)


def _records(out: Path, split: str) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [x for x in lines if x["split"] == split]


def test_report_to_spellings(tmp_path: Path) -> None:
    assert parse_report_to("none") == [] and parse_report_to(None) == [] and parse_report_to("") == []
    assert parse_report_to("TensorBoard, wandb,tensorboard") == ["tensorboard", "wandb"]
    assert parse_report_to(["mlflow", "trackio"]) == ["mlflow", "trackio"]
    with pytest.raises(UsageError, match="unknown tracker 'neptune'.*tensorboard, wandb, trackio, mlflow"):
        parse_report_to("tensorboard,neptune")
    with pytest.raises(UsageError, match="'none' cannot be combined"):
        parse_report_to("none,wandb")
    args = build_parser().parse_args(["train", "--report-to", "tensorboard", "--report-to", "wandb"])
    assert args.report_to == "tensorboard,wandb"
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("report_to: [tensorboard, wandb]\n")
    assert build_config(TrainConfig, str(yaml_file), {}).report_to == "tensorboard,wandb"


def test_hyperparameters_and_scalars_are_flat() -> None:
    hp = hyperparameters({"model": None, "lr": 1e-3, "lora": {"r": 4}, "mods": ["q", "v"], "merge": False},
                         {"precision_resolved": "fp32"})
    assert hp == {"model": "None", "lr": 1e-3, "lora.r": 4, "mods": "q,v", "merge": False, "precision_resolved": "fp32"}
    values, step = scalars({"split": "eval", "step": 6, "accuracy": 0.5, "pairs": 6, "prefers_longer_rate": None,
                            "ece": float("nan")})
    assert (values, step) == ({"eval/accuracy": 0.5, "eval/pairs": 6}, 6)


def test_tensorboard_holds_the_metrics_jsonl_scalars(bert_dir: Path, pairs_file: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "out"
    result = train(_cfg(bert_dir, pairs_file, out, report_to="tensorboard"), log=lambda _m: None)
    acc = EventAccumulator(str(out / "rewardkit"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"train/loss", "train/accuracy", "train/lr", "eval/accuracy", "eval/loss"} <= set(tags)
    train_rows, eval_rows = _records(out, "train"), _records(out, "eval")
    assert [e.step for e in acc.Scalars("train/loss")] == [r["step"] for r in train_rows]
    assert [e.value for e in acc.Scalars("train/loss")] == pytest.approx([r["loss"] for r in train_rows], rel=1e-6)
    assert [e.step for e in acc.Scalars("eval/accuracy")] == [4, 8, result.steps] == [r["step"] for r in eval_rows]
    assert [e.value for e in acc.Scalars("eval/accuracy")] == pytest.approx([r["accuracy"] for r in eval_rows])
    # the run configuration went in as hyperparameters (accelerate also keeps them as hparams.yml)
    hparams = list((out / "rewardkit").glob("*/hparams.yml"))
    assert hparams and "report_to: tensorboard" in hparams[0].read_text()


def test_wandb_offline_writes_a_run(bert_dir: Path, pairs_file: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    for var, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true",
                       "WANDB_CONFIG_DIR": str(tmp_path / "wb-config"), "WANDB_CACHE_DIR": str(tmp_path / "wb-cache"),
                       "WANDB_DATA_DIR": str(tmp_path / "wb-data")}.items():
        monkeypatch.setenv(var, value)
    out = tmp_path / "out"
    train(_cfg(bert_dir, pairs_file, out, report_to="wandb", epochs=1), log=lambda _m: None)
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    # An offline run is one protobuf record log (this wandb ships no Python reader for it; `wandb sync`
    # uploads it): the run config and the logged metric names are in it.
    log = b"".join(f.read_bytes() for f in runs[0].glob("run-*.wandb"))
    for key in (b"train/loss", b"train/accuracy", b"eval/accuracy", b"report_to", b"max_length",
                b"precision_resolved"):
        assert key in log, key


@pytest.mark.parametrize("name,package", [("tensorboard", "tensorboard"), ("mlflow", "mlflow")])
def test_missing_tracker_package_exits_2_before_any_work(name: str, package: str, bert_dir: Path, pairs_file: Path,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    import accelerate.utils

    monkeypatch.setattr(accelerate.utils, f"is_{name}_available", lambda: False)  # as if not installed
    out = tmp_path / "out"
    rc = main(["train", "--model", str(bert_dir), "--train-data", str(pairs_file), "--output-dir", str(out),
               "--report-to", name])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"--report-to {name}" in err and f"pip install {package}" in err and "Traceback" not in err
    assert not out.exists()  # refused before the output directory, the data or the model were touched


def test_tensorboard_after_resume_and_overwrite_matches_metrics_jsonl(bert_dir: Path, pairs_file: Path,
                                                                       tmp_path: Path) -> None:
    """What a killed run logged past its checkpoint, or an overwritten run logged at all, is hidden."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "out"
    cfg = _cfg(bert_dir, pairs_file, out, report_to="tensorboard", logging_steps=1, eval_steps=0, save_steps=3,
               save_total_limit=0)
    train(cfg, log=lambda _m: None)
    # as if killed after logging step 10 with checkpoint-6 its last checkpoint: steps 7-10 run again
    (out / "eval.json").unlink()
    shutil.rmtree(out / "checkpoint-9")
    for extra in ({"resume": "latest"}, {"overwrite": True, "logging_steps": 2}):
        train(_cfg(bert_dir, pairs_file, out, report_to="tensorboard", eval_steps=0, save_steps=3, save_total_limit=0,
                   **{"logging_steps": 1, **extra}), log=lambda _m: None)
        acc = EventAccumulator(str(out / "rewardkit"))
        acc.Reload()
        rows = _records(out, "train")
        assert [e.step for e in acc.Scalars("train/loss")] == [r["step"] for r in rows]
        assert [e.value for e in acc.Scalars("train/loss")] == pytest.approx([r["loss"] for r in rows], rel=1e-6)
        if "resume" in extra:
            assert [r["step"] for r in rows] == list(range(1, 11))
    assert [r["step"] for r in rows] == [2, 4, 6, 8, 10]


def test_regression_run_reports_to_tensorboard(bert_dir: Path, tmp_path: Path) -> None:
    """--objective regression: the same metrics.jsonl scalars, per-attribute ones included."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from conftest import rated_rows, regression_cfg, write_csv

    out = tmp_path / "out"
    data = write_csv(tmp_path / "rated.csv", rated_rows(8, 3))
    train(regression_cfg(bert_dir, data, out, epochs=2, logging_steps=1, eval_steps=3, report_to="tensorboard"),
          log=lambda _m: None)
    acc = EventAccumulator(str(out / "rewardkit"))
    acc.Reload()
    assert {"train/loss", "train/regression_loss", "eval/mean_spearman", "eval/spearman/helpfulness"} <= set(
        acc.Tags()["scalars"])
    train_rows, eval_rows = _records(out, "train"), _records(out, "eval")
    assert [e.step for e in acc.Scalars("train/loss")] == [r["step"] for r in train_rows]
    assert [e.value for e in acc.Scalars("train/loss")] == pytest.approx([r["loss"] for r in train_rows], rel=1e-6)
    assert [e.step for e in acc.Scalars("eval/mean_spearman")] == [r["step"] for r in eval_rows]
    assert len(eval_rows) >= 2


@pytest.mark.parametrize("objective, eval_key", [("sft", "eval/perplexity"), ("generative", "eval/accuracy")])
def test_lm_objectives_report_to_tensorboard(llama_dir: Path, tmp_path: Path, objective: str, eval_key: str) -> None:
    """--objective sft and generative feed TensorBoard the metrics.jsonl scalars too."""
    from conftest import pairs_records, write_jsonl
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = write_jsonl(tmp_path / "pairs.jsonl", pairs_records(24))
    out = tmp_path / "out"
    train(TrainConfig(model=str(llama_dir), objective=objective, train_data=str(data), output_dir=str(out),
                      eval_split=0.25, max_length=64, batch_size=4, epochs=2, logging_steps=1, eval_steps=4,
                      precision="fp32", report_to="tensorboard", verdict_tokens=" good, bad"), log=lambda _m: None)
    acc = EventAccumulator(str(out / "rewardkit"))
    acc.Reload()
    assert {"train/loss", eval_key} <= set(acc.Tags()["scalars"])
    train_rows, eval_rows = _records(out, "train"), _records(out, "eval")
    assert [e.value for e in acc.Scalars("train/loss")] == pytest.approx([r["loss"] for r in train_rows], rel=1e-6)
    assert [e.step for e in acc.Scalars(eval_key)] == [r["step"] for r in eval_rows] and len(eval_rows) >= 2
