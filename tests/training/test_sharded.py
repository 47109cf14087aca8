"""Sharded training on 2 CPU processes (gloo), end to end, with the shipped accelerate configs.

For FSDP2 (full and LoRA), DeepSpeed ZeRO-2 and ZeRO-3: train with checkpoints, SIGKILL every process of the run
once a checkpoint exists, resume, finish, export a sharded checkpoint, and compare with one
process that takes the same global batches (grad_accum 2): the loss curve, the held-out metrics,
and the rewards of the final model and of the exported checkpoint.

accelerate 1.15 enables FSDP and DeepSpeed only on GPU-class devices (on CPU it silently falls
back to plain DDP), so these runs go through tests/cpu_sharded_launch.py, which makes the one
switch accelerate skips on CPU; everything else is stock torch FSDP2 / DeepSpeed. The last test
checks that without it rewardkit refuses the launch instead of training unsharded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import pairs_records, write_jsonl

from rewardkit import RewardModel, TrainConfig, train
from rewardkit.data.records import Comparison
from rewardkit.training.checkpoints import list_checkpoints, STATE_FILE

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "tests" / "cpu_sharded_launch.py"
# back end: (shipped config, the directory its checkpoints hold the model shards in, extra settings)
BACKENDS = {"fsdp2": ("fsdp.yaml", "pytorch_model_fsdp_0", {}),
            "fsdp2-lora": ("fsdp.yaml", "pytorch_model_fsdp_0", {"lora_r": 4}),
            "zero2": ("deepspeed_zero2.yaml", "pytorch_model", {}),
            "zero3": ("deepspeed_zero3.yaml", "pytorch_model", {})}
# 192 pairs, 4 per process: 24 steps of 2 processes, or of grad_accum 2 in one process; checkpoints
# every 4 steps leave 20 steps (seconds) between the first checkpoint and the end to kill in.
SETTINGS = dict(batch_size=4, lr=1e-3, max_length=64, precision="fp32", logging_steps=1, seed=5, save_steps=4,
                save_total_limit=0)
REWARD_TOLERANCE = 1e-4  # measured: DDP vs FSDP2 0.0, ZeRO-2 ~1e-8, ZeRO-3 ~1e-6 (max |weight diff|)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_process_config(name: str, dest: Path) -> Path:
    """The shipped example config, cut down to 2 processes and fp32 (the only changes)."""
    cfg = yaml.safe_load((ROOT / "examples" / "accelerate" / name).read_text())
    cfg.update(num_processes=2, mixed_precision="no")
    cfg.pop("gpu_ids", None)
    dest.write_text(yaml.safe_dump(cfg))
    return dest


def _command(config: Path, entry: list[str], model: Path, train_file: Path, eval_file: Path, out: Path,
             *extra: str, settings: dict | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
           "--main_process_port", str(_free_port()), *entry, "train", "--model", str(model),
           "--train-data", str(train_file), "--eval-data", str(eval_file), "--output-dir", str(out)]
    for k, v in {**SETTINGS, **(settings or {})}.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    return cmd + list(extra)


def _env(use_cpu: bool = True) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "DS_ACCELERATOR": "cpu",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    if use_cpu:
        env["ACCELERATE_USE_CPU"] = "1"
    return env


def _kill_run(proc: subprocess.Popen) -> None:
    """SIGKILL the launcher and every worker (torchrun starts them in sessions of their own)."""
    family = psutil.Process(proc.pid).children(recursive=True)
    for p in [psutil.Process(proc.pid), *family]:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait()
    psutil.wait_procs(family, timeout=30)


def _train_lines(out: Path) -> list[dict]:
    return [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["split"] == "train"]


def _rewards(model_dir: Path, comps: list[Comparison]) -> list[float]:
    rm = RewardModel.from_pretrained(model_dir, device="cpu", dtype="fp32")
    return [r for rs in rm.score_comparisons(comps) for r in rs]


@pytest.mark.slow  # 3 two-process launches per back end: 1.5-3 min each on 2 busy cores
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_sharded_train_kill_resume_export_matches_one_process(tmp_path: Path, llama_dir: Path,
                                                              backend: str) -> None:
    config_name, shard_dir, extra = BACKENDS[backend]
    if backend.startswith("zero"):
        pytest.importorskip("deepspeed", reason="DeepSpeed is optional: pip install 'rewardkit[deepspeed]'")
    records = pairs_records(208)
    train_file = write_jsonl(tmp_path / "train.jsonl", records[:192])
    eval_file = write_jsonl(tmp_path / "eval.jsonl", records[192:])
    ref_out = tmp_path / "one"
    reference = train(TrainConfig(model=str(llama_dir), train_data=str(train_file), eval_data=str(eval_file),
                                  output_dir=str(ref_out), grad_accum=2, **SETTINGS, **extra), log=lambda _m: None)
    assert reference.steps == 24

    config = _two_process_config(config_name, tmp_path / "accelerate.yaml")
    out = tmp_path / "two"
    cmd = _command(config, [str(LAUNCHER)], llama_dir, train_file, eval_file, out, settings=extra)

    # 1) SIGKILL every process as soon as the first checkpoint is complete
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 400
    while not list_checkpoints(out):
        assert proc.poll() is None, f"training exited early with {proc.returncode}: {proc.stderr.read()[-3000:]}"
        assert time.time() < deadline, "timed out waiting for the first checkpoint"
        time.sleep(0.005)
    _kill_run(proc)
    assert not (out / "eval.json").exists(), "killed too late: the run had already finished"
    first = list_checkpoints(out)[-1][1]
    assert first.name == "checkpoint-4"
    shards = first / shard_dir
    assert shards.is_dir() and not (first / "model.safetensors").exists()  # really sharded, not DDP

    # 2) resume to the end
    done = subprocess.run(cmd + ["--resume"], env=_env(), capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "resumed from" in done.stderr and done.stdout.count("model saved to") == 1

    one, two = _train_lines(ref_out), _train_lines(out)
    assert [r["step"] for r in two] == list(range(1, 25)) == [r["step"] for r in one]
    assert [r["pairs_seen"] for r in two] == [r["pairs_seen"] for r in one]
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], abs=1e-4)
    assert one[-1]["loss"] < one[0]["loss"] - 0.05  # the curve being compared actually moves
    summary = json.loads((out / "eval.json").read_text())
    assert summary["resumed_from_step"] == 4 and summary["pairs_seen"] == reference.pairs_seen
    assert summary["eval"]["mean_margin"] == pytest.approx(reference.eval_metrics["mean_margin"], abs=1e-4)
    assert json.loads((out / "checkpoint-24" / STATE_FILE).read_text())["num_processes"] == 2

    # 3) the gathered final model and an exported sharded checkpoint score like the single process's
    comps = [Comparison(prompt=r["prompt"], responses=[r["chosen"], r["rejected"]]) for r in records[192:]]
    assert _rewards(out, comps) == pytest.approx(_rewards(ref_out, comps), abs=REWARD_TOLERANCE)
    exported = tmp_path / "exported"
    ran = subprocess.run([sys.executable, "-m", "rewardkit", "export", str(out / "checkpoint-24"), "-o",
                          str(exported)], env=_env(), capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-3000:]
    ref_export = tmp_path / "ref-exported"
    subprocess.run([sys.executable, "-m", "rewardkit", "export", str(ref_out / "checkpoint-24"), "-o",
                    str(ref_export)], env=_env(), check=True, capture_output=True, timeout=300)
    assert _rewards(exported, comps) == pytest.approx(_rewards(ref_export, comps), abs=REWARD_TOLERANCE)
    assert _rewards(exported, comps) == pytest.approx(_rewards(out, comps), abs=REWARD_TOLERANCE)


@pytest.mark.slow  # two launches, ~15 s each
def test_sharded_configs_on_cpu_are_refused_not_run_unsharded(tmp_path: Path, llama_dir: Path) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs_records(16))
    entry = ["-m", "rewardkit"]
    fsdp = _two_process_config("fsdp.yaml", tmp_path / "fsdp.yaml")
    # ACCELERATE_USE_CPU=1: accelerate reads the FSDP config but sets up MULTI_CPU (plain DDP)
    ran = subprocess.run(_command(fsdp, entry, llama_dir, data, data, tmp_path / "a"), env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert ran.returncode != 0
    assert "the launch config asks for FSDP (ACCELERATE_USE_FSDP=true), but accelerate set up MULTI_CPU" in ran.stderr
    assert "internal error" not in ran.stderr  # exit 2 with the message, no rewardkit traceback
    # no ACCELERATE_USE_CPU: each worker is set up as process 0 of 1
    pytest.importorskip("deepspeed", reason="DeepSpeed is optional: pip install 'rewardkit[deepspeed]'")
    zero2 = _two_process_config("deepspeed_zero2.yaml", tmp_path / "zero2.yaml")
    ran = subprocess.run(_command(zero2, entry, llama_dir, data, data, tmp_path / "b"), env=_env(use_cpu=False),
                         capture_output=True, text=True, timeout=300)
    assert ran.returncode != 0
    assert "launched as 2 processes, but accelerate set each one up as the only process" in ran.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
