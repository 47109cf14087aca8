"""A run SIGKILLed right after a checkpoint and again at a random moment, then resumed, ends where an
uninterrupted run ends; no checkpoint directory is ever half-written."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import pairs_records, write_jsonl
from safetensors.torch import load_file

from rewardkit.config import TrainConfig
from rewardkit.training.checkpoints import STATE_FILE
from rewardkit.training.trainer import train

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT_FILES = {STATE_FILE, "model.safetensors", "optimizer.bin", "random_states_0.pkl",
                    "custom_checkpoint_0.pkl"}
SETTINGS = dict(batch_size=2, lr=1e-3, max_length=64, precision="fp32", logging_steps=1, save_steps=3,
                save_total_limit=2, eval_split=0.25, seed=3)


def _command(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "rewardkit", "train", "--model", str(model), "--train-data", str(data),
           "--output-dir", str(out)]
    for k, v in SETTINGS.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    return cmd + list(extra)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _wait_for(cond, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    end = time.time() + timeout
    while not cond():
        if proc.poll() is not None:
            pytest.fail(f"training exited early with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        if time.time() > end:
            proc.kill()
            pytest.fail("timed out waiting for training progress")
        time.sleep(0.005)


def _checkpoint_dirs(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.name.startswith("checkpoint-"))


def _assert_all_complete(out: Path) -> None:
    """Every visible checkpoint has all its files and they parse."""
    for ckpt in _checkpoint_dirs(out):
        assert CHECKPOINT_FILES <= {p.name for p in ckpt.iterdir()}, ckpt
        assert json.loads((ckpt / STATE_FILE).read_text())["step"] == int(ckpt.name.split("-")[1])
        assert load_file(str(ckpt / "model.safetensors"))


def _lines(out: Path, split: str) -> list[dict]:
    return [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["split"] == split]


@pytest.mark.slow  # three subprocess runs: about 45 s on 2 busy cores
def test_sigkill_twice_then_resume_matches_uninterrupted(tmp_path: Path, llama_dir: Path) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs_records(96))
    ref_out = tmp_path / "reference"
    reference = train(TrainConfig(model=str(llama_dir), train_data=str(data), output_dir=str(ref_out), **SETTINGS),
                      log=lambda _m: None)

    out = tmp_path / "killed"
    # 1) SIGKILL right after the first checkpoint appears
    proc = subprocess.Popen(_command(llama_dir, data, out), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: out.is_dir() and any((p / STATE_FILE).exists() for p in _checkpoint_dirs(out)), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _assert_all_complete(out)
    first = [int(p.name.split("-")[1]) for p in _checkpoint_dirs(out)]
    assert first and max(first) < reference.steps

    # 2) resume, and SIGKILL again at a random moment once training is under way
    proc = subprocess.Popen(_command(llama_dir, data, out, "--resume"), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    start_lines = max(first)  # metrics.jsonl is cut back to the checkpoint on resume
    _wait_for(lambda: len(_lines(out, "train")) > start_lines + 1, proc)
    time.sleep(random.Random(7).uniform(0.0, 1.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _assert_all_complete(out)
    assert not (out / "eval.json").exists(), "killed too late: the run had already finished"

    # 3) resume to the end
    done = subprocess.run(_command(llama_dir, data, out, "--resume"), env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed from" in done.stderr
    _assert_all_complete(out)

    summary = json.loads((out / "eval.json").read_text())
    assert summary["pairs_seen"] == reference.pairs_seen
    assert abs(summary["eval"]["accuracy"] - reference.eval_metrics["accuracy"]) <= 0.005
    assert summary["eval"]["mean_margin"] == pytest.approx(reference.eval_metrics["mean_margin"], abs=1e-4)
    ref_train, got_train = _lines(ref_out, "train"), _lines(out, "train")
    assert [r["step"] for r in got_train] == [r["step"] for r in ref_train]
    assert [r["loss"] for r in got_train] == pytest.approx([r["loss"] for r in ref_train], abs=1e-5)
    assert [r["pairs_seen"] for r in got_train] == [r["pairs_seen"] for r in ref_train]
