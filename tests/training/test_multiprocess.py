"""Data-parallel training through `accelerate launch` (2 CPU processes, gloo) follows the loss curve of
one process that takes the same global batches (grad_accum 2), and writes every file once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import pairs_records, write_jsonl

from rewardkit.config import TrainConfig
from rewardkit.training.trainer import train

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path: Path, llama_dir: Path) -> None:
    # 64 training pairs = 16 micro-batches of 4: 8 rounds of 2 processes, or 8 steps of grad_accum 2
    # in one process. Both see the same batches in every optimizer step (the plan depends only on
    # the seed and --batch-size), and DDP's gradient average equals accumulation's average.
    train_file = write_jsonl(tmp_path / "train.jsonl", pairs_records(64))
    eval_file = write_jsonl(tmp_path / "eval.jsonl", pairs_records(80)[64:])
    common = dict(model=str(llama_dir), train_data=str(train_file), eval_data=str(eval_file), batch_size=4,
                  lr=1e-3, max_length=64, precision="fp32", logging_steps=1, seed=5)
    single = train(TrainConfig(output_dir=str(tmp_path / "one"), grad_accum=2, **common), log=lambda _m: None)

    out = tmp_path / "two"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), "-m", "rewardkit", "train", "--output-dir", str(out),
           "--save-steps", "4", "--save-total-limit", "0"]
    for k, v in common.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.count("model saved to") == 1  # one summary, from the main process

    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    two = [r for r in records if r["split"] == "train"]
    one = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()
           if json.loads(x)["split"] == "train"]
    assert [r["step"] for r in two] == list(range(1, single.steps + 1)) == [r["step"] for r in one]
    assert [r["pairs_seen"] for r in two] == [r["pairs_seen"] for r in one]
    # the logged loss is the mean over both processes' micro-batches, as in the single process
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], abs=1e-4)
    assert [r["lr"] for r in two] == pytest.approx([r["lr"] for r in one])
    assert one[-1]["loss"] < one[0]["loss"] - 0.05  # the curve being compared actually moves

    summary = json.loads((out / "eval.json").read_text())
    assert summary["eval"]["pairs"] == single.eval_metrics["pairs"] == 16
    assert summary["eval"]["mean_margin"] == pytest.approx(single.eval_metrics["mean_margin"], abs=1e-4)

    # checkpoints are written once, with one RNG state per process
    ckpts = sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint-"))
    assert ckpts == ["checkpoint-4", "checkpoint-8"]
    names = {p.name for p in (out / "checkpoint-8").iterdir()}
    assert {"random_states_0.pkl", "random_states_1.pkl", "trainer_state.json"} <= names
    state = json.loads((out / "checkpoint-8" / "trainer_state.json").read_text())
    assert state["num_processes"] == 2 and state["pairs_seen"] == 64
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]
