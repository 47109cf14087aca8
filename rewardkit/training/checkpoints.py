"""Checkpoints that survive a kill at any instant: finding them, writing them atomically, reading them.

Layout inside the output directory::

    checkpoint-40/            complete checkpoints, newest = highest step
        model.safetensors     accelerate's state: model (LoRA runs: trainable weights only),
        optimizer.bin         optimizer, scheduler, one RNG file per process
        scheduler.bin / custom_checkpoint_0.pkl
        random_states_0.pkl
        trainer_state.json    written last: `rewardkit.training.resume.TrainState` and the run's facts
    .tmp-checkpoint-50/       a checkpoint being written (ignored, removed on the next start)

A checkpoint is written into a hidden temporary directory, flushed to disk and renamed into place;
rename is atomic, so ``checkpoint-N`` either exists complete or not at all. Old checkpoints are
renamed to a hidden name before deletion for the same reason. accelerate writes the model,
optimizer and RNG states (including FSDP and DeepSpeed shards); this module only adds atomicity,
rotation and the trainer state. What a resumed run must share with its checkpoint is
`rewardkit.training.resume`'s.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from rewardkit.errors import UsageError, describe_os_error
from rewardkit.training.sharding import read_sharded_weights

STATE_FILE = "trainer_state.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_TMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".deleting-"


def list_checkpoints(out: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``out``, oldest first."""
    if not out.is_dir():
        return []
    found = []
    for p in out.iterdir():
        m = _CHECKPOINT.match(p.name)
        if m and (p / STATE_FILE).is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(out: Path) -> Path | None:
    found = list_checkpoints(out)
    return found[-1][1] if found else None


def read_state(path: Path) -> dict[str, Any]:
    """The trainer state of a checkpoint directory; UsageError when it is not one."""
    f = path / STATE_FILE
    if not f.is_file():
        raise UsageError(f"{path} is not a rewardkit checkpoint (no {STATE_FILE})")
    try:
        return json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"cannot read {f}: {e}") from None


def remove_stale(out: Path) -> None:
    """Delete leftovers of writes that a kill interrupted (never complete checkpoints)."""
    if not out.is_dir():
        return
    for p in out.iterdir():
        if p.name.startswith((_TMP_PREFIX, _TRASH_PREFIX)) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    """Flush every file under ``root`` so a power cut after the rename cannot leave it empty."""
    for dirpath, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the rename is still atomic
    finally:
        os.close(fd)


def _gather_errors(accelerator: Any, error: str | None) -> list[str]:
    """Every process's error (or None), so that all processes fail together instead of hanging."""
    if accelerator.num_processes == 1:
        return [error] if error else []
    from accelerate.utils import gather_object

    return [e for e in gather_object([error]) if e]


def save_checkpoint(accelerator: Any, out: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write ``out/checkpoint-{step}`` atomically, then delete all but the newest ``keep`` (0: keep all).

    Every process calls this (accelerate's writers are collective); only the main process renames
    and rotates. A failed write (disk full, permissions) removes the partial temporary directory,
    leaves earlier checkpoints untouched and raises UsageError on every process.
    """
    final = out / f"checkpoint-{step}"
    tmp = out / f"{_TMP_PREFIX}checkpoint-{step}"
    error = None
    if accelerator.is_main_process:
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        except OSError as e:
            error = describe_os_error(e, f"checkpoint {step}", tmp)
    accelerator.wait_for_everyone()
    if not _gather_errors(accelerator, error):
        try:
            accelerator.save_state(str(tmp))
            if accelerator.is_main_process:
                (tmp / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n")
                _fsync_tree(tmp)
        except OSError as e:
            error = describe_os_error(e, f"checkpoint {step}", tmp)
    errors = _gather_errors(accelerator, error)
    if not errors and accelerator.is_main_process:
        try:
            if final.exists():  # a checkpoint of this step from an earlier attempt: replace it
                _discard(final)
            os.rename(tmp, final)
            _fsync_dir(out)
        except OSError as e:
            errors = [describe_os_error(e, f"checkpoint {step}", final)]
    errors = _gather_errors(accelerator, errors[0] if errors else None)
    if errors:
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        previous = latest_checkpoint(out)
        keep_msg = f"; the previous checkpoint {previous} is intact" if previous else ""
        raise UsageError(errors[0] + keep_msg)
    if accelerator.is_main_process and keep:
        for _, old in list_checkpoints(out)[:-keep]:
            _discard(old)
    accelerator.wait_for_everyone()
    return final


def _discard(path: Path) -> None:
    """Rename out of the checkpoint namespace first, so a kill mid-delete leaves no half checkpoint."""
    trash = path.with_name(f"{_TRASH_PREFIX}{path.name}")
    shutil.rmtree(trash, ignore_errors=True)
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def load_checkpoint(accelerator: Any, path: Path) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and RNG states from ``path``; return its trainer state."""
    state = read_state(path)
    try:
        accelerator.load_state(str(path))
    except (OSError, RuntimeError, KeyError) as e:
        raise UsageError(f"--resume: cannot load {path}: {str(e).splitlines()[0]}") from None
    return state


def checkpoint_weights(path: Path) -> dict[str, torch.Tensor]:
    """The model weights of a checkpoint, keyed as in the unwrapped RewardNet's ``model`` attribute."""
    from safetensors.torch import load_file

    f = path / "model.safetensors"
    weights = load_file(str(f)) if f.is_file() else read_sharded_weights(path)  # FSDP/DeepSpeed shards merged
    out = {}
    for key, value in weights.items():
        key = key.removeprefix("module.").removeprefix("model.")
        out[key] = value
    return out
