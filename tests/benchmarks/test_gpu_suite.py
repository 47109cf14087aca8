"""benchmarks/gpu_suite.sh stays runnable between the sessions that have a GPU: its SMOKE=1 form runs
every step (device tests, bench_train vs TRL, token budget, long prompts with and without sharing,
bench_score, bench_serve) on this CPU with a tiny model and writes every figure the table reads."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_smoke_suite_runs_every_step(tmp_path: Path) -> None:
    env = {**os.environ, "SMOKE": "1", "RESULTS": str(tmp_path)}
    env.pop("OUT", None)
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_suite.sh")], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for name in ("train_b16", "train_b64", "train_long", "train_long_off", "score", "serve"):
        assert json.loads((tmp_path / f"{name}.json").read_text())
    b16 = json.loads((tmp_path / "train_b16.json").read_text())["summary"]
    assert b16["rewardkit"]["tokens_per_s"] > 0 and b16["trl"]["pairs_per_s"] > 0
    summary = (tmp_path / "summary.md").read_text()
    assert "not run" not in summary and "sharing on vs off" in summary
    assert "passed" in (tmp_path / "tests.log").read_text() and "failed" not in (tmp_path / "tests.log").read_text()
