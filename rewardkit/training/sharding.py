"""What rewardkit needs to do itself for accelerate's sharded back ends (FSDP2, DeepSpeed ZeRO).

accelerate does the sharding; three things around it are rewardkit's job:

* refuse a launch whose sharding accelerate dropped without a word: accelerate 1.15 turns
  ``ACCELERATE_USE_FSDP`` / ``ACCELERATE_USE_DEEPSPEED`` on only for accelerator devices, so an
  FSDP or DeepSpeed config launched on CPU runs as plain data parallelism (with
  ``ACCELERATE_USE_CPU=1``) or as N unrelated single processes that each believe they are rank 0
  (without it) -- every process then holds the whole model, or all of them write the output;
* tell DeepSpeed the micro-batch size: rewardkit plans its own batches and prepares no
  DataLoader, from which accelerate would otherwise read it;
* read the weights of a sharded checkpoint (FSDP's distributed checkpoint, DeepSpeed's ZeRO
  files) in one process, so ``rewardkit export`` works on them like on any other checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from rewardkit.errors import UsageError

FSDP_MODEL_DIR = "pytorch_model_fsdp_0"  # accelerate's SHARDED_STATE_DICT model directory
DEEPSPEED_MODEL_DIR = "pytorch_model"  # accelerate's save_state tag for the DeepSpeed engine


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() in ("1", "true", "yes")


def check_launch(accelerator: Any) -> None:
    """Raise UsageError when the launch asked for something accelerate did not set up.

    Each check compares what the launcher put in the environment with the state accelerate
    built from it; a mismatch means the run would silently differ from the one configured.
    """
    kind = str(accelerator.distributed_type).split(".")[-1]
    launched = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if launched > 1 and accelerator.num_processes == 1:
        raise UsageError(
            f"launched as {launched} processes, but accelerate set each one up as the only process "
            f"({kind} on {accelerator.device}): it found no GPU-class device to run them together on, "
            "so every process would train alone and write the same output. On CPU, launch with "
            "ACCELERATE_USE_CPU=1 and a data-parallel config (examples/accelerate/cpu_2proc.yaml); "
            "FSDP and DeepSpeed need GPUs (docs: sharded training)")
    for env, wanted in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DEEPSPEED")):
        if _env_flag(env) and kind != wanted:
            raise UsageError(
                f"the launch config asks for {wanted} ({env}=true), but accelerate set up {kind} on "
                f"{accelerator.device}: accelerate {_version('accelerate')} enables {wanted} only on "
                "GPU-class devices and ignores it on CPU, so every process would hold the whole model. "
                "Use a data-parallel config on CPU (examples/accelerate/cpu_2proc.yaml), or run on GPUs")


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def configure_deepspeed(accelerator: Any, batch_size: int) -> None:
    """Fill DeepSpeed's ``train_micro_batch_size_per_gpu`` when the config leaves it ``auto``.

    accelerate reads it from a prepared DataLoader; rewardkit plans batches itself and prepares
    none, and without the value `accelerator.prepare` refuses to build the engine. The number is
    bookkeeping for DeepSpeed (its train_batch_size check and throughput log): rewardkit's
    batches may be split or balanced per prompt, DeepSpeed never batches data itself here.
    """
    plugin = accelerator.state.deepspeed_plugin
    if plugin is not None and plugin.is_auto("train_micro_batch_size_per_gpu"):
        plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = batch_size


def zero3_partitioned(model: torch.nn.Module) -> bool:
    """True when DeepSpeed ZeRO-3 partitioned ``model``'s weights as transformers loaded it.

    accelerate registers the ZeRO-3 config with transformers whenever the plugin is selected,
    whatever ``zero3_init_flag`` says, so ``from_pretrained`` builds the backbone under
    ``deepspeed.zero.Init``: every process holds only its slice (the local tensors are empty)
    until the DeepSpeed engine gathers them around each forward.
    """
    return any(hasattr(p, "ds_id") for p in model.parameters())


def full_weights(model: torch.nn.Module) -> Any:
    """Context in which a ZeRO-3-partitioned ``model`` has its full weights (a no-op otherwise).

    For work before ``accelerator.prepare`` that runs the model (the prefix-sharing probe): it
    costs the full model's memory in every process for its duration, as loading without
    ``zero.Init`` would have.
    """
    from contextlib import nullcontext

    if not zero3_partitioned(model):
        return nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)


def read_sharded_weights(path: Path) -> dict[str, torch.Tensor]:
    """The full model weights of a checkpoint that FSDP or DeepSpeed wrote as shards, in one process.

    Keys are as in the wrapped model's state dict (``model.`` prefixes kept: the caller strips
    them as for an unsharded checkpoint). Raises UsageError when ``path`` holds neither layout.
    """
    if (path / FSDP_MODEL_DIR).is_dir():
        import tempfile

        from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

        with tempfile.TemporaryDirectory(prefix="rewardkit-dcp-") as tmp:  # torch's public converter writes a file
            dcp_to_torch_save(str(path / FSDP_MODEL_DIR), f"{tmp}/model.pt")
            state = torch.load(f"{tmp}/model.pt", weights_only=True)
        return dict(state.get("model", state))  # accelerate saves {"model": state_dict}
    if (path / DEEPSPEED_MODEL_DIR).is_dir() and (path / "latest").is_file():
        import contextlib
        import io

        try:
            from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
        except ImportError:
            raise UsageError(f"{path} is a DeepSpeed checkpoint; reading it needs DeepSpeed: "
                             "pip install 'rewardkit[deepspeed]'") from None

        with contextlib.redirect_stdout(io.StringIO()):  # it narrates every step on stdout
            state = get_fp32_state_dict_from_zero_checkpoint(str(path), tag=DEEPSPEED_MODEL_DIR)
        return {k: v.detach() for k, v in state.items()}
    raise UsageError(f"{path}: no model weights found (neither model.safetensors, nor FSDP's "
                     f"{FSDP_MODEL_DIR}/, nor DeepSpeed's {DEEPSPEED_MODEL_DIR}/ with a 'latest' file)")
