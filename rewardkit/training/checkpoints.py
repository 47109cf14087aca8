"""Checkpoints that survive a kill at any instant, and the signals that ask for one.

Layout inside the output directory::

    checkpoint-40/            complete checkpoints, newest = highest step
        model.safetensors     accelerate's state: model (LoRA runs: trainable weights only),
        optimizer.bin         optimizer, scheduler, one RNG file per process
        scheduler.bin / custom_checkpoint_0.pkl
        random_states_0.pkl
        trainer_state.json    written last: step, pairs seen, running loss sums, config, data fingerprint
    .tmp-checkpoint-50/       a checkpoint being written (ignored, removed on the next start)

A checkpoint is written into a hidden temporary directory, flushed to disk and renamed into place;
rename is atomic, so ``checkpoint-N`` either exists complete or not at all. Old checkpoints are
renamed to a hidden name before deletion for the same reason. The data position is the step
number: `train` plans every batch of the run from the seed (`rewardkit.training.batch_plan`), so resuming rebuilds
the same plan and starts at the saved step. The resume contract (same settings, same number of
processes, same data) is checked here too.

accelerate writes the model, optimizer and RNG states (including FSDP and DeepSpeed shards); this
module only adds atomicity, rotation, the trainer state and the compatibility check on resume.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import re
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from rewardkit.encoding.encoded_set import shape_arrays, shape_json
from rewardkit.encoding.encoder import Encoded
from rewardkit.errors import UsageError, flag
from rewardkit.options import must_match
from rewardkit.training.sharding import read_sharded_weights
from rewardkit.version import __version__

STATE_FILE = "trainer_state.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_TMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".deleting-"

# --------------------------------------------------------------------------------------- finding


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


def check_compatible(saved: dict[str, Any], cfg: Any, where: Path) -> None:
    """Refuse to resume when a setting that shapes the run differs from the checkpoint's.

    The settings are the config fields declared ``must_match`` (`rewardkit.options`): which batches
    a step sees, or what the saved weights mean. Data files are compared by content (the
    fingerprint, `check_resume_data`), not by path, so they may move.
    """
    current = dataclasses.asdict(cfg)
    diffs = [f"{flag(k)} {saved.get(k)!r} -> {current.get(k)!r}" for k in must_match(cfg)
             if k in saved and saved.get(k) != current.get(k)]
    if diffs:
        raise UsageError(f"--resume: {where} was written by a run with different settings; "
                         f"resume with the same ones or start over with --overwrite:\n  " + "\n  ".join(diffs))


def check_resume(saved: dict[str, Any], cfg: Any, world: int, where: Path) -> None:
    """The resume contract before any data is read: same settings, same number of processes."""
    check_compatible(saved.get("config", {}), cfg, where)
    if saved.get("num_processes", 1) != world:
        raise UsageError(f"--resume: {where} was written by {saved.get('num_processes')} "
                         f"process(es), this run has {world}; resume with the same number")


def check_resume_data(saved: dict[str, Any], fingerprint: str, where: Path,
                      legacy: Callable[[], str] | None = None) -> None:
    """The resume contract once the data is encoded: the same comparisons, to skip exactly those seen.

    ``legacy`` computes the fingerprint the way checkpoints written before `shape_arrays` did;
    it is asked only when the current one differs.
    """
    stored = saved.get("fingerprint")
    if stored != fingerprint and (legacy is None or stored != legacy()):
        raise UsageError(f"--resume: the data differs from the data {where} was trained on "
                         "(same files and settings needed to skip exactly the pairs already seen)")


def data_fingerprint(train_enc: Sequence[Encoded], eval_enc: Sequence[Encoded]) -> str:
    """A cheap hash of the encoded data's shape (every sequence length, responses and prompt length
    per comparison): resuming on different data is refused. Vectorised: seconds at a million pairs."""
    h = hashlib.sha256(b"shape-v2")
    for part in (train_enc, eval_enc):
        for a in shape_arrays(part):
            h.update(len(a).to_bytes(8, "little"))
            h.update(a.tobytes())
    return h.hexdigest()[:16]


def legacy_data_fingerprint(train_enc: Sequence[Encoded], eval_enc: Sequence[Encoded]) -> str:
    """`data_fingerprint` as checkpoints written before `shape_arrays` computed it (JSON of the shape)."""
    h = hashlib.sha256()
    for part in (train_enc, eval_enc):
        h.update(shape_json(part).encode())
    return h.hexdigest()[:16]



@dataclass
class TrainState:
    """Where a run stands: exactly what ``trainer_state.json`` holds beside accelerate's files.

    ``loss_sum``/``acc_sum``/``micro_batches`` accumulate the micro-batch losses and accuracies
    since the last logged step; a resumed run continues the same sums.
    """

    step: int = 0
    pairs_seen: int = 0
    loss_sum: float = 0.0
    acc_sum: float = 0.0
    micro_batches: float = 0.0

    def record(self, losses: list[float], accuracies: list[float], pairs: int) -> None:
        """One optimizer step: its micro-batches' losses and accuracies, and the pairs it saw."""
        self.step += 1
        self.pairs_seen += pairs
        self.loss_sum += sum(losses)
        self.acc_sum += sum(accuracies)
        self.micro_batches += len(losses)

    @property
    def running(self) -> list[float]:
        return [self.loss_sum, self.acc_sum, self.micro_batches]

    def reset_running(self) -> None:
        self.loss_sum = self.acc_sum = self.micro_batches = 0.0

    def to_json(self, running: list[float], **run: Any) -> dict[str, Any]:
        """The trainer state file: this state (``running`` summed over processes) plus the run's facts."""
        return {"step": self.step, "total_steps": run["total_steps"], "pairs_seen": self.pairs_seen,
                "running": running, "num_processes": run["num_processes"], "fingerprint": run["fingerprint"],
                "version": __version__, "config": run["config"]}

    @classmethod
    def from_json(cls, saved: dict[str, Any], with_running: bool) -> "TrainState":
        """The state of a checkpoint; ``with_running`` on the main process only (the sums were reduced)."""
        loss, acc, count = (float(x) for x in saved["running"]) if with_running else (0.0, 0.0, 0.0)
        return cls(int(saved["step"]), int(saved["pairs_seen"]), loss, acc, count)





# --------------------------------------------------------------------------------------- writing


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


def describe_os_error(e: OSError, what: str, path: Path) -> str:
    reason = "no space left on device" if e.errno == errno.ENOSPC else (e.strerror or str(e))
    return f"cannot write {what} to {path}: {reason}"


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


# --------------------------------------------------------------------------------------- LoRA


def save_trainable_only(accelerator: Any) -> None:
    """Make accelerate checkpoints hold only trainable weights (LoRA runs: adapter + head).

    The frozen backbone is reloaded from ``--model`` on resume, so copying it into every
    checkpoint would only cost disk. Loading checks that exactly the trainable weights are present.
    """
    from safetensors.torch import load_file

    def trainable(model: nn.Module) -> set[str]:
        return {n for n, p in model.named_parameters() if p.requires_grad}

    def on_save(models: list[nn.Module], weights: list[dict[str, torch.Tensor]], _dir: str) -> None:
        for model, sd in zip(models, weights):
            keep = trainable(model)
            for key in [k for k in sd if k not in keep]:
                del sd[key]

    def on_load(models: list[nn.Module], input_dir: str) -> None:
        for i, model in enumerate(models):
            f = Path(input_dir) / ("model.safetensors" if i == 0 else f"model_{i}.safetensors")
            if not f.is_file():
                return  # sharded (FSDP/DeepSpeed) state: accelerate's own loader handles it
            sd = load_file(str(f))
            want = trainable(model)
            missing, extra = want - sd.keys(), sd.keys() - want
            if missing or extra:
                raise UsageError(f"--resume: {f} does not match this model's trainable weights "
                                 f"({len(missing)} missing, {len(extra)} unexpected; different LoRA settings?)")
            model.load_state_dict(sd, strict=False)
        models.clear()  # loaded here; accelerate must not load them again with strict checking

    accelerator.register_save_state_pre_hook(on_save)
    accelerator.register_load_state_pre_hook(on_load)


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


def all_finite(params: Iterator[torch.Tensor] | list[torch.Tensor]) -> bool:
    """True when no parameter holds NaN or inf (checked before anything is saved)."""
    return all(bool(torch.isfinite(p).all()) for p in params)


# --------------------------------------------------------------------------------------- signals


class StopSignals:
    """Turn the first SIGINT/SIGTERM into a request to checkpoint and stop at the end of the step.

    A second signal of either kind restores the default behaviour, so an impatient Ctrl-C still
    ends the process at once (the atomic writes keep the last checkpoint intact even then).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received = signum
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def __enter__(self) -> "StopSignals":
        try:
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous.clear()
        return self

    def __exit__(self, *_exc: Any) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else ""
