"""Checkpoints: atomic writes, rotation, failure handling, signals, resume, the NaN guard, output-dir rules."""

from __future__ import annotations

import errno
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import pairs_records, write_jsonl

from rewardkit.config import TrainConfig, to_dict
from rewardkit.errors import TrainingDiverged, TrainingInterrupted, UsageError
from rewardkit.training.checkpoints import latest_checkpoint, list_checkpoints, remove_stale, save_checkpoint, STATE_FILE
from rewardkit.training.resume import check_compatible
from rewardkit.training.signals import StopSignals
from rewardkit.training.tracking import MetricsLog
from rewardkit.training.trainer import train


@pytest.fixture
def accel_setup():
    """A tiny model + optimizer prepared by accelerate, as train() does."""
    from accelerate import Accelerator

    accelerator = Accelerator(mixed_precision="no")
    net = torch.nn.Linear(4, 1)
    opt = torch.optim.AdamW(net.parameters(), lr=0.1)
    net, opt = accelerator.prepare(net, opt)
    return accelerator, net, opt


def _state(step: int) -> dict:
    return {"step": step, "pairs_seen": step * 2, "running": [0.0, 0.0, 0.0], "num_processes": 1}


def test_checkpoints_are_complete_and_rotated(tmp_path: Path, accel_setup) -> None:
    accelerator, net, _ = accel_setup
    for step in (1, 2, 3, 4):
        save_checkpoint(accelerator, tmp_path, step, _state(step), keep=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [3, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-3", "checkpoint-4"]  # no leftovers
    ckpt = latest_checkpoint(tmp_path)
    assert ckpt == tmp_path / "checkpoint-4"
    assert json.loads((ckpt / STATE_FILE).read_text())["pairs_seen"] == 8
    assert {"model.safetensors", "optimizer.bin", "random_states_0.pkl"} <= {p.name for p in ckpt.iterdir()}


def test_keep_zero_keeps_everything(tmp_path: Path, accel_setup) -> None:
    accelerator, _, _ = accel_setup
    for step in (1, 2, 3):
        save_checkpoint(accelerator, tmp_path, step, _state(step), keep=0)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [1, 2, 3]


def test_full_disk_leaves_previous_checkpoint_intact(tmp_path: Path, accel_setup, monkeypatch) -> None:
    accelerator, _, _ = accel_setup
    save_checkpoint(accelerator, tmp_path, 1, _state(1), keep=2)
    before = (tmp_path / "checkpoint-1" / "model.safetensors").read_bytes()

    def disk_full(output_dir: str, **_kw) -> None:
        (Path(output_dir) / "model.safetensors").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(accelerator, "save_state", disk_full)
    with pytest.raises(UsageError, match=r"checkpoint 2 .*no space left on device.*checkpoint-1 is intact"):
        save_checkpoint(accelerator, tmp_path, 2, _state(2), keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-1"]  # partial write removed
    assert (tmp_path / "checkpoint-1" / "model.safetensors").read_bytes() == before


def test_kill_mid_write_never_exposes_a_half_checkpoint(tmp_path: Path, accel_setup, monkeypatch) -> None:
    """A process killed while writing leaves only a hidden temporary directory behind."""
    accelerator, _, _ = accel_setup
    save_checkpoint(accelerator, tmp_path, 1, _state(1), keep=2)

    class Killed(BaseException):
        pass

    def die(output_dir: str, **_kw) -> None:
        (Path(output_dir) / "model.safetensors").write_bytes(b"partial")
        raise Killed

    monkeypatch.setattr(accelerator, "save_state", die)
    with pytest.raises(Killed):
        save_checkpoint(accelerator, tmp_path, 2, _state(2), keep=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [1]
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-1"
    assert (tmp_path / ".tmp-checkpoint-2").is_dir()
    remove_stale(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-1"]


def test_directory_without_state_file_is_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "checkpoint-7").mkdir()
    (tmp_path / "checkpoint-7" / "model.safetensors").write_bytes(b"x")
    assert list_checkpoints(tmp_path) == []


def test_check_compatible_names_the_changed_flags(tmp_path: Path) -> None:
    saved = to_dict(TrainConfig(batch_size=8, seed=1))
    current = TrainConfig(batch_size=4, seed=1, eval_steps=5, output_dir="elsewhere")
    with pytest.raises(UsageError, match=r"--batch-size 8 -> 4") as e:
        check_compatible(saved, current, tmp_path)
    assert "eval-steps" not in str(e.value) and "output-dir" not in str(e.value)
    check_compatible(saved, TrainConfig(batch_size=8, seed=1, save_steps=3), tmp_path)


def test_stop_signals_turns_sigterm_into_a_flag() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert stop.received == signal.SIGTERM and stop.name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before


def test_metrics_truncate_after_drops_later_and_cut_lines(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"split": "train", "step": 1}\n{"split": "eval", "step": 2}\n'
                    '{"split": "train", "step": 3}\n{"split": "tr')
    MetricsLog(path, True).truncate_after(2)
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [1, 2]


# --------------------------------------------------------------------------------------- in-process training


def _cfg(model: Path, data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(model=str(model), train_data=str(data), output_dir=str(out), batch_size=2, lr=1e-3,
                max_length=64, precision="fp32", logging_steps=1, eval_split=0.25, seed=3)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture
def data64(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "pairs64.jsonl", pairs_records(64))


def _train_lines(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_sigterm_checkpoints_then_resume_matches_uninterrupted(tmp_path: Path, llama_dir: Path,
                                                               data64: Path) -> None:
    ref = train(_cfg(llama_dir, data64, tmp_path / "ref"), log=lambda _m: None)

    out = tmp_path / "run"
    fired = threading.Event()

    def send_sigterm_after_step_3() -> None:
        while not fired.is_set():
            m = out / "metrics.jsonl"
            if m.is_file() and m.read_text().count("\n") >= 3:
                os.kill(os.getpid(), signal.SIGTERM)
                fired.set()
            time.sleep(0.01)

    watcher = threading.Thread(target=send_sigterm_after_step_3, daemon=True)
    watcher.start()
    with pytest.raises(TrainingInterrupted, match=r"stopped by SIGTERM after step (\d+)") as e:
        train(_cfg(llama_dir, data64, out), log=lambda _m: None)
    fired.set()
    assert e.value.exit_code == 128 + signal.SIGTERM
    stopped_at = list_checkpoints(out)[-1][0]
    assert 3 <= stopped_at < ref.steps
    assert not (out / "eval.json").exists() and not (out / "config.json").exists()

    # without --resume the unfinished run is protected
    with pytest.raises(UsageError, match=r"unfinished run .*checkpoint-\d+.*--resume"):
        train(_cfg(llama_dir, data64, out), log=lambda _m: None)
    resumed = train(_cfg(llama_dir, data64, out, resume="latest"), log=lambda _m: None)
    assert resumed.resumed_from_step == stopped_at
    assert resumed.pairs_seen == ref.pairs_seen
    assert resumed.eval_metrics["accuracy"] == ref.eval_metrics["accuracy"]
    assert resumed.eval_metrics["mean_margin"] == pytest.approx(ref.eval_metrics["mean_margin"], abs=1e-6)
    ref_lines, lines = _train_lines(tmp_path / "ref"), _train_lines(out)
    assert [x["step"] for x in lines] == [x["step"] for x in ref_lines]
    for a, b in zip(ref_lines, lines):
        assert a.get("loss", a.get("accuracy")) == pytest.approx(b.get("loss", b.get("accuracy")), abs=1e-6)

    with pytest.raises(UsageError, match="finished run"):
        train(_cfg(llama_dir, data64, out, resume="latest"), log=lambda _m: None)


def test_resume_refuses_changed_settings(tmp_path: Path, llama_dir: Path, data64: Path) -> None:
    out = tmp_path / "run"
    train(_cfg(llama_dir, data64, out, save_steps=4, save_total_limit=2, epochs=0.3), log=lambda _m: None)
    (out / "eval.json").unlink()  # pretend the run was killed before it finished
    with pytest.raises(UsageError, match=r"(?s)different settings.*--batch-size 2 -> 4"):
        train(_cfg(llama_dir, data64, out, save_steps=4, epochs=0.3, batch_size=4, resume="latest"),
              log=lambda _m: None)
    other = write_jsonl(tmp_path / "other.jsonl", pairs_records(64)[::-1][:60])
    with pytest.raises(UsageError, match="data differs"):
        train(_cfg(llama_dir, data64, out, save_steps=4, epochs=0.3, resume="latest", train_data=str(other)),
              log=lambda _m: None)


def test_nan_guard_stops_naming_the_step_and_keeps_last_checkpoint(tmp_path: Path, llama_dir: Path,
                                                                   data64: Path, capsys) -> None:
    from rewardkit.cli import main

    out = tmp_path / "nan"
    code = main(["train", "--model", str(llama_dir), "--train-data", str(data64), "--output-dir", str(out),
                 "--batch-size", "2", "--lr", "1e10", "--warmup-ratio", "0", "--max-length", "64",
                 "--precision", "fp32", "--save-steps", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert "rewardkit: error: step 2: non-finite" in err
    assert f"last good checkpoint is {out / 'checkpoint-1'}" in err
    assert [s for s, _ in list_checkpoints(out)] == [1]
    for name in ("config.json", "model.safetensors", "eval.json"):
        assert not (out / name).exists()

    # the last good checkpoint loads and exports to a model plain transformers reads
    from transformers import AutoModelForSequenceClassification

    assert main(["export", str(out / "checkpoint-1"), "-o", str(tmp_path / "exported")]) == 0
    exported = AutoModelForSequenceClassification.from_pretrained(tmp_path / "exported")
    assert type(exported).__name__ == "LlamaForSequenceClassification"


def test_train_raises_diverged_in_python_api(tmp_path: Path, llama_dir: Path, data64: Path) -> None:
    with pytest.raises(TrainingDiverged, match=r"step \d+: non-finite"):
        train(_cfg(llama_dir, data64, tmp_path / "x", lr=1e10, warmup_ratio=0.0), log=lambda _m: None)


def test_output_dir_rules(tmp_path: Path, llama_dir: Path, data64: Path) -> None:
    out = tmp_path / "done"
    train(_cfg(llama_dir, data64, out, save_steps=3, epochs=0.3), log=lambda _m: None)
    assert list_checkpoints(out) == []  # by default a finished run keeps no checkpoint: the model is written
    train(_cfg(llama_dir, data64, out, save_steps=3, epochs=0.3, save_total_limit=1, overwrite=True),
          log=lambda _m: None)
    assert [step for step, _ in list_checkpoints(out)] == [6]  # --save-total-limit N keeps the newest N
    with pytest.raises(UsageError, match="already holds a trained model.*--overwrite"):
        train(_cfg(llama_dir, data64, out), log=lambda _m: None)
    with pytest.raises(UsageError, match="--resume cannot be combined with --overwrite"):
        _cfg(llama_dir, data64, out, resume="latest", overwrite=True).validate()
    # --overwrite starts clean: the old run's checkpoints cannot leak into this one's --resume
    train(_cfg(llama_dir, data64, out, overwrite=True, epochs=0.3), log=lambda _m: None)
    assert list_checkpoints(out) == []

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(UsageError, match="cannot write to"):
        train(_cfg(llama_dir, data64, blocker / "sub"), log=lambda _m: None)
    with pytest.raises(UsageError, match="--model: no such directory: /no/such/model"):
        train(_cfg(Path("/no/such/model"), data64, tmp_path / "m"), log=lambda _m: None)
    with pytest.raises(UsageError, match="not a complete rewardkit checkpoint"):
        train(_cfg(llama_dir, data64, tmp_path / "r", resume=str(tmp_path / "nothing-here")), log=lambda _m: None)


def test_resume_without_checkpoint_is_refused_unless_auto(tmp_path: Path, llama_dir: Path, data64: Path) -> None:
    """--resume with nothing to resume is a mistake (exit 2), not a silent fresh start; --resume auto starts."""
    with pytest.raises(UsageError, match="--resume: no checkpoint in .*--resume auto"):
        train(_cfg(llama_dir, data64, tmp_path / "fresh", resume="latest", epochs=0.3), log=lambda _m: None)
    assert not (tmp_path / "fresh").exists()
    said: list[str] = []
    result = train(_cfg(llama_dir, data64, tmp_path / "fresh", resume="auto", epochs=0.3), log=said.append)
    assert result.resumed_from_step == 0 and (tmp_path / "fresh" / "eval.json").is_file()
    assert any("--resume auto: no checkpoint" in m for m in said)


def test_resume_refuses_a_change_of_resolved_precision(tmp_path: Path, llama_dir: Path, data64: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The checkpoint records the precision the run resolved to; `auto` resolving differently is exit 2."""
    from rewardkit.model import precision as P

    monkeypatch.setenv(P.FORCE_ENV, "0")  # this "hardware" has no native bf16: auto is fp32
    out = tmp_path / "run"
    kw = dict(save_steps=4, save_total_limit=2, epochs=0.3, precision="auto")
    train(_cfg(llama_dir, data64, out, **kw), log=lambda _m: None)
    (out / "eval.json").unlink()  # pretend the run was killed before it finished
    newest, where = list_checkpoints(out)[-1]
    assert json.loads((where / "trainer_state.json").read_text())["precision"] == "fp32"
    monkeypatch.setenv(P.FORCE_ENV, "1")  # "other hardware": auto now means bf16
    with pytest.raises(UsageError, match=r"--precision: .* trained in fp32, and --precision auto resolves to bf16"):
        train(_cfg(llama_dir, data64, out, resume="latest", **kw), log=lambda _m: None)
    monkeypatch.setenv(P.FORCE_ENV, "0")
    assert train(_cfg(llama_dir, data64, out, resume="latest", **kw), log=lambda _m: None).resumed_from_step == newest


def test_resume_flag_parses_bare_and_with_path() -> None:
    from rewardkit.cli import build_parser
    from rewardkit.flags import config_of as _config

    parser = build_parser()
    bare = parser.parse_args(["train", "--resume"])
    assert _config(TrainConfig, bare).resume == "latest"
    path = parser.parse_args(["train", "--resume", "out/checkpoint-4"])
    assert _config(TrainConfig, path).resume == "out/checkpoint-4"
    assert TrainConfig(resume="true").resume == "latest" and TrainConfig(resume="false").resume is None
