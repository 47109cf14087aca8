"""Data-parallel training through `accelerate launch` (2 CPU processes, gloo) follows the loss curve of
one process that takes the same global batches (grad_accum 2), and writes every file once."""

from __future__ import annotations

import csv
import json
import os
import signal
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


def _synthetic_attributes(tmp_path: Path) -> tuple[Path, Path]:
    """train.csv / test.csv from scripts/synthetic_attributes.py: five attributes, noisy ratings, gaps."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("synthetic_attributes", ROOT / "scripts" / "synthetic_attributes.py")
    synth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(synth)  # type: ignore[union-attr]
    train_csv, test_csv = tmp_path / "train.csv", tmp_path / "test.csv"
    synth.write_csv(train_csv, synth.make_rows(80, 2, seed=0, noise=0.5, missing=0.15))
    synth.write_csv(test_csv, synth.make_rows(10, 2, seed=1000, noise=0.0, missing=0.05))
    return train_csv, test_csv


def _launch(out: Path, common: dict, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), "-m", "rewardkit", "train", "--output-dir", str(out), *extra]
    for k, v in common.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the launcher and every process under it (torch's launcher starts its workers in sessions
    of their own, so killing its process group would leave them running)."""
    import psutil

    tree = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def _kill_after_first_checkpoint_then_resume(out: Path, common: dict) -> None:
    """Launch on 2 processes, SIGKILL everything once checkpoint-2 is complete, then --resume to the end."""
    import time

    proc = _launch(out, common)
    deadline = time.time() + 300
    while not (out / "checkpoint-2" / "trainer_state.json").is_file():
        assert proc.poll() is None, proc.stderr.read()[-4000:]
        assert time.time() < deadline, "no checkpoint within 300 s"
        time.sleep(0.02)
    _kill_tree(proc)
    assert not (out / "eval.json").exists(), "killed too late: the run had already finished"
    resumed = _launch(out, common, "--resume")
    stdout, stderr = resumed.communicate(timeout=540)
    assert resumed.returncode == 0, stderr[-4000:]
    assert "resumed from" in stderr and stdout.count("model saved to") == 1


def _same_training_curve(one_dir: Path, two_dir: Path, steps: int, seen: str) -> None:
    rows = lambda d: [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    one = [r for r in rows(one_dir) if r["split"] == "train"]
    two = [r for r in rows(two_dir) if r["split"] == "train"]
    assert [r["step"] for r in two] == [r["step"] for r in one] == list(range(1, steps + 1))
    assert [r[seen] for r in two] == [r[seen] for r in one]
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], abs=1e-4)
    assert one[-1]["loss"] < one[0]["loss"]  # the curve being compared actually moves


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["sft", "generative"])
def test_lm_objectives_two_processes_killed_and_resumed_match_one_process(tmp_path: Path, llama_dir: Path,
                                                                        objective: str) -> None:
    """--objective sft and generative under `accelerate launch` (2 CPU processes), SIGKILLed after the first
    checkpoint and resumed, end where one process with grad_accum 2 ends: every logged loss and every final
    weight within 1e-4."""
    from safetensors.torch import load_file

    train_file = write_jsonl(tmp_path / "train.jsonl", pairs_records(64))
    eval_file = write_jsonl(tmp_path / "eval.jsonl", pairs_records(80)[64:])
    common = dict(model=str(llama_dir), objective=objective, train_data=str(train_file), eval_data=str(eval_file),
                  batch_size=4, lr=3e-3, max_length=64, precision="fp32", logging_steps=1, seed=4, save_steps=2,
                  save_total_limit=0, epochs=4, **({"verdict_tokens": " good, bad"} if objective == "generative" else {}))
    single = train(TrainConfig(output_dir=str(tmp_path / "one"), grad_accum=2, **common), log=lambda _m: None)
    out = tmp_path / "two"
    _kill_after_first_checkpoint_then_resume(out, common)
    _same_training_curve(tmp_path / "one", out, single.steps, "responses_seen" if objective == "sft" else "pairs_seen")
    a, b = load_file(str(tmp_path / "one" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4
    summary = json.loads((out / "eval.json").read_text())
    key = "perplexity" if objective == "sft" else "mean_margin"
    assert summary["eval"][key] == pytest.approx(single.eval_metrics[key], rel=1e-4, abs=1e-4)


@pytest.mark.slow
def test_regression_two_processes_killed_and_resumed_match_one_process(tmp_path: Path, bert_dir: Path) -> None:
    """--objective regression on five synthetic attributes under `accelerate launch` (2 CPU processes):
    SIGKILLed after its first checkpoint, resumed, it ends where one process with the same global batch
    (grad_accum 2) ends: losses, held-out metrics and checkpoints."""
    train_csv, test_csv = _synthetic_attributes(tmp_path)
    attributes = "helpfulness,correctness,coherence,complexity,verbosity"
    common = dict(model=str(bert_dir), objective="regression", train_data=str(train_csv), eval_data=str(test_csv),
                  score_column=attributes, score_range="0:4", batch_size=4, lr=3e-3, max_length=64, precision="fp32",
                  logging_steps=1, seed=2, save_steps=2, save_total_limit=0, epochs=2)
    single = train(TrainConfig(output_dir=str(tmp_path / "one"), grad_accum=2, **common), log=lambda _m: None)

    out = tmp_path / "two"
    _kill_after_first_checkpoint_then_resume(out, common)
    _same_training_curve(tmp_path / "one", out, single.steps, "rows_seen")

    summary = json.loads((out / "eval.json").read_text())
    assert summary["resumed_from_step"] >= 2 and summary["rows_seen"] == single.pairs_seen
    want = single.eval_metrics
    for name in attributes.split(","):  # (Pearson is left out: ill-conditioned where predictions barely vary)
        assert summary["eval"]["attributes"][name]["rmse"] == pytest.approx(want["attributes"][name]["rmse"], abs=1e-4)
    # the two final models rate the held-out answers alike
    from rewardkit import RewardModel

    test_rows = list(csv.DictReader(open(test_csv)))
    prompts, responses = [r["prompt"] for r in test_rows], [r["response"] for r in test_rows]
    ratings = [RewardModel.from_pretrained(d, device="cpu", dtype="fp32").score_attributes(prompts, responses)
               for d in (tmp_path / "one", out)]
    assert max(abs(a[k] - b[k]) for a, b in zip(*ratings) for k in a) < 1e-4
    state = json.loads((out / f"checkpoint-{single.steps}" / "trainer_state.json").read_text())
    assert state["num_processes"] == 2 and state["regression"]["attributes"] == attributes.split(",")
