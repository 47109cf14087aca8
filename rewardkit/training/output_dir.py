"""The output directory of a run: never two runs mixed in one, and nothing stale inherited.

`check_output_dir` is read-only, so every process of a multi-process run can call it (they agree)
before the main process changes anything in `prepare_output_dir`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rewardkit.config import TrainConfig
from rewardkit.errors import UsageError
from rewardkit.model.artifacts import is_adapter_dir
from rewardkit.training.checkpoints import STATE_FILE, latest_checkpoint, list_checkpoints, remove_stale


def check_output_dir(cfg: TrainConfig) -> tuple[Path, Path | None]:
    """(output dir, checkpoint to resume from), refusing to mix two runs in one directory.

    Read-only, so every process can run it (they agree) before the main process changes anything
    in `_prepare_output_dir`.
    """
    out = Path(cfg.output_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output-dir: {out} exists and is not a directory")
    checkpoints = list_checkpoints(out)
    finished = (out / "eval.json").is_file() or (out / "config.json").is_file() or is_adapter_dir(out)
    has_run = finished or bool(checkpoints) or (out / "metrics.jsonl").is_file()
    resume_from: Path | None = None
    if cfg.resume and cfg.resume not in ("latest", "auto"):
        resume_from = Path(cfg.resume)
        if not (resume_from / STATE_FILE).is_file():
            raise UsageError(f"--resume: {resume_from} is not a complete rewardkit checkpoint (no {STATE_FILE})")
        if has_run and resume_from.resolve().parent != out.resolve():
            raise UsageError(f"--output-dir: {out} already holds another run; to continue {resume_from} "
                             "there, choose an empty --output-dir")
    elif cfg.resume:
        if (out / "eval.json").is_file():
            raise UsageError(f"--resume: {out} holds a finished run; nothing to resume "
                             "(pass --overwrite instead of --resume to train again)")
        resume_from = latest_checkpoint(out)
        if resume_from is None and cfg.resume == "latest":
            raise UsageError(f"--resume: no checkpoint in {out} to resume from; run without --resume to start, "
                             "or pass --resume auto to resume when there is a checkpoint and start when there is none")
    if resume_from is None and not cfg.overwrite and has_run:
        if checkpoints and not (out / "eval.json").is_file():
            what = f"an unfinished run (newest checkpoint {checkpoints[-1][1].name}); pass --resume to continue it,"
        elif finished:
            what = "a trained model; pass"
        else:
            what = "an earlier run (metrics.jsonl); pass"
        raise UsageError(f"--output-dir: {out} already holds {what} --overwrite to replace it, "
                         "or choose another directory")
    return out, resume_from



def prepare_output_dir(cfg: TrainConfig, out: Path) -> None:
    """Create the directory, prove it writable, and clear what the new run must not inherit."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".rewardkit-write-test"
        probe.write_text("")
        probe.unlink()
        remove_stale(out)
        if cfg.overwrite:  # stale checkpoints would otherwise mix into this run's --resume
            for _, old in list_checkpoints(out):
                shutil.rmtree(old)
            shutil.rmtree(out / "merged", ignore_errors=True)  # an earlier LoRA run's --merge output
        (out / "eval.json").unlink(missing_ok=True)  # the run is unfinished until it is rewritten
    except OSError as e:
        raise UsageError(f"--output-dir: cannot write to {out}: {e.strerror}") from None
