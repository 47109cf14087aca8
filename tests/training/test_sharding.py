"""rewardkit's own parts of sharded training, in one process: the launch check, DeepSpeed's
micro-batch size, and export from the checkpoint layouts FSDP and DeepSpeed write.

The multi-process runs themselves are in test_sharded.py (slow)."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import pairs_records, write_jsonl
from safetensors.torch import load_file

from rewardkit import TrainConfig, train
from rewardkit.errors import UsageError
from rewardkit.training.export import export
from rewardkit.training.sharding import FSDP_MODEL_DIR, check_launch, configure_deepspeed, read_sharded_weights


def _accelerator(kind: str, processes: int = 1) -> SimpleNamespace:
    return SimpleNamespace(distributed_type=f"DistributedType.{kind}", num_processes=processes,
                           device=torch.device("cpu"))


@pytest.fixture
def clean_launch_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("WORLD_SIZE", "ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_launch_check_passes_what_accelerate_set_up(clean_launch_env: pytest.MonkeyPatch) -> None:
    check_launch(_accelerator("NO"))
    clean_launch_env.setenv("WORLD_SIZE", "2")
    check_launch(_accelerator("MULTI_CPU", 2))
    clean_launch_env.setenv("ACCELERATE_USE_FSDP", "true")
    check_launch(_accelerator("FSDP", 2))


@pytest.mark.parametrize("env, kind", [("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DEEPSPEED")])
def test_launch_check_refuses_sharding_that_accelerate_dropped(clean_launch_env: pytest.MonkeyPatch, env: str,
                                                               kind: str) -> None:
    # accelerate 1.15 with ACCELERATE_USE_CPU=1: the FSDP/DeepSpeed config is read, the run is MULTI_CPU
    clean_launch_env.setenv("WORLD_SIZE", "2")
    clean_launch_env.setenv(env, "true")
    with pytest.raises(UsageError, match=f"asks for {kind} .*but accelerate set up MULTI_CPU on cpu"):
        check_launch(_accelerator("MULTI_CPU", 2))


def test_launch_check_refuses_processes_that_each_think_they_are_alone(clean_launch_env) -> None:
    # accelerate 1.15 on CPU without ACCELERATE_USE_CPU: every worker of a 2-process launch is rank 0 of 1
    clean_launch_env.setenv("WORLD_SIZE", "2")
    clean_launch_env.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(UsageError, match="launched as 2 processes, but accelerate set each one up as the only"):
        check_launch(_accelerator("DEEPSPEED", 1))


def test_train_refuses_an_fsdp_launch_that_runs_unsharded(clean_launch_env, tmp_path: Path, llama_dir: Path,
                                                          pairs_file: Path) -> None:
    clean_launch_env.setenv("ACCELERATE_USE_FSDP", "true")
    out = tmp_path / "out"
    with pytest.raises(UsageError, match="asks for FSDP"):
        train(TrainConfig(model=str(llama_dir), train_data=str(pairs_file), output_dir=str(out), precision="fp32"),
              log=lambda _m: None)
    assert not out.exists()  # refused before anything was written


def test_deepspeed_micro_batch_is_filled_only_when_auto() -> None:
    pytest.importorskip("deepspeed", reason="DeepSpeed is optional")
    from accelerate.utils import DeepSpeedPlugin

    plugin = DeepSpeedPlugin(zero_stage=2)  # accelerate's defaults leave the micro-batch "auto"
    configure_deepspeed(SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=plugin)), 6)
    assert plugin.deepspeed_config["train_micro_batch_size_per_gpu"] == 6
    configure_deepspeed(SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=plugin)), 9)
    assert plugin.deepspeed_config["train_micro_batch_size_per_gpu"] == 6  # a set value is the user's


def _as_fsdp_checkpoint(src: Path, dst: Path) -> None:
    """Rewrite an unsharded accelerate checkpoint in the layout FSDP's SHARDED_STATE_DICT gives it."""
    import torch.distributed.checkpoint as dcp

    shutil.copytree(src, dst)
    weights = load_file(str(dst / "model.safetensors"))
    (dst / "model.safetensors").unlink()
    dcp.save({"model": weights}, checkpoint_id=str(dst / FSDP_MODEL_DIR), no_dist=True)


def test_export_reads_an_fsdp_sharded_checkpoint(tmp_path: Path, llama_dir: Path) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs_records(16))
    out = tmp_path / "run"
    train(TrainConfig(model=str(llama_dir), train_data=str(data), output_dir=str(out), batch_size=4, lr=1e-3,
                      max_length=64, precision="fp32", save_steps=2, save_total_limit=0, eval_split=0.0), log=lambda _m: None)
    plain = out / "checkpoint-2"
    sharded = tmp_path / "checkpoint-2"
    _as_fsdp_checkpoint(plain, sharded)
    assert not (sharded / "model.safetensors").exists()

    read = read_sharded_weights(sharded)
    reference = load_file(str(plain / "model.safetensors"))
    assert read.keys() == reference.keys()
    assert all(torch.equal(read[k], reference[k]) for k in reference)

    a = load_file(str(export(plain, tmp_path / "from-plain") / "model.safetensors"))
    b = load_file(str(export(sharded, tmp_path / "from-sharded") / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_export_names_what_a_checkpoint_without_weights_lacks(tmp_path: Path, llama_dir: Path) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs_records(8))
    out = tmp_path / "run"
    train(TrainConfig(model=str(llama_dir), train_data=str(data), output_dir=str(out), batch_size=4, lr=1e-3,
                      max_length=64, precision="fp32", save_steps=1, save_total_limit=0, eval_split=0.0), log=lambda _m: None)
    (out / "checkpoint-1" / "model.safetensors").unlink()
    with pytest.raises(UsageError, match="no model weights found .*pytorch_model_fsdp_0.*'latest'"):
        export(out / "checkpoint-1", tmp_path / "x")
