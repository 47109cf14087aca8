"""The training loop: data -> encoded comparisons -> length-grouped batches -> AdamW on accelerate.

Read top to bottom: `train` loads and encodes the data, plans every batch of the run up front (so
a step number alone says where the data stands), then runs optimizer steps, evaluating, logging
and checkpointing as it goes, and finally evaluates, stores reward statistics and saves a plain
transformers model (or, with LoRA, a peft adapter that carries the score head).

Never lose a run: checkpoints are atomic (`checkpoint.py`), SIGINT/SIGTERM checkpoint and stop at
the end of the current step, ``--resume`` rebuilds the same plan and starts at the saved step, and
a non-finite loss or gradient stops the run before the bad update is applied.

Multi-process runs (``accelerate launch``) split each round of micro-batches across processes;
accelerate provides DDP/FSDP/DeepSpeed and mixed precision, rewardkit never reimplements them.
Every process takes one micro-batch per round, so the global batch is ``batch_size * processes``;
metrics are reduced over all processes, and files are written by the main process only.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import yaml
from tqdm.auto import tqdm

from .version import __version__
from .batching import Batch, length_grouped_batches, split_by_tokens
from .checkpoint import (STATE_FILE, StopSignals, TrainingDiverged, TrainingInterrupted, all_finite,
                         check_compatible, describe_os_error, latest_checkpoint, list_checkpoints,
                         load_checkpoint, read_state, remove_stale, save_checkpoint, save_trainable_only)
from .cache import encode_cached
from .config import TrainConfig, UsageError, to_dict
from .data import (Comparison, bundled_sample, describe_dropped, describe_problems, group_by_prompt,
                   load_comparisons, split_by_prompt)
from .encode import Encoded
from .evaluate import pair_metrics, pairs_of
from .lora import ADAPTER_CONFIG, META_FILE, apply_lora, is_adapter_dir, merge_adapter, save_adapter
from .losses import bradley_terry, center_penalty, plackett_luce
from .precision import Precision, resolve_precision
from .model import (RewardNet, batch_length, collate_for, compute_rewards, load_backbone, make_encoder,
                    resolve_prefix_sharing, save_model, score_encoded)

# Padded tokens per forward/backward pass on CPU (--pass-tokens): 16 pairs of 512 tokens would keep
# ~3 GB of MiniLM activations alive at once; 8192 halves that and costs <1% more padding on hh-rlhf.
CPU_PASS_TOKENS = 8192


@dataclass
class TrainResult:
    output_dir: str
    steps: int
    pairs_seen: int
    train_comparisons: int
    truncated: int
    skipped: int
    eval_metrics: dict[str, Any] | None
    seconds: float
    resumed_from_step: int = 0
    train_seconds: float = 0.0  # the optimizer loop alone (no loading, tokenizing, evaluation, saving)


def batch_loss(rewards: torch.Tensor, batch: Batch, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, pairwise accuracy) of one batch under the configured objective."""
    better, worse = rewards[batch.pair_better], rewards[batch.pair_worse]
    if cfg.loss == "pl":
        loss = plackett_luce(rewards, batch.group_sizes)
    else:
        loss = bradley_terry(better, worse, batch.pair_margin, batch.pair_weight)
    if cfg.center_coef:
        loss = loss + cfg.center_coef * center_penalty(better, worse, batch.pair_weight)
    return loss, (better > worse).float().mean()


def loss_denominator(batch: Batch, cfg: TrainConfig) -> float:
    """What `batch_loss` divides by: its pairs' total weight, or its rankings under --loss pl.

    A micro-batch run in several passes weights each pass's mean loss by its share of this, so the
    gradients add up to those of the whole batch's mean.
    """
    return float(batch.num_groups) if cfg.loss == "pl" else float(batch.pair_weight.sum())


def backward_passes(net: torch.nn.Module, parts: list[Batch], cfg: TrainConfig,
                    backward: Callable[[torch.Tensor], None], scale: float,
                    syncs: list[Any] | None = None) -> tuple[float, float]:
    """Forward and backward each part of one micro-batch; returns the whole batch's (loss, accuracy).

    Each part's mean loss is weighted by its share of the batch's `loss_denominator`, so the
    gradients summed over the parts are those of the whole batch's loss (times ``scale``).
    ``syncs`` gives a context per part (DDP's no_sync for all but the last of an optimizer step).
    """
    shares = [loss_denominator(batch, cfg) for batch in parts]
    pairs = [len(batch.pair_better) for batch in parts]
    total_share, total_pairs = sum(shares), sum(pairs)
    loss_value = acc_value = 0.0
    for k, batch in enumerate(parts):
        with syncs[k] if syncs else nullcontext():
            loss, acc = batch_loss(compute_rewards(net, batch), batch, cfg)
            backward(loss * (scale * shares[k] / total_share))
        loss_value += loss.item() * shares[k] / total_share
        acc_value += acc.item() * pairs[k] / total_pairs
    return loss_value, acc_value


def resolve_pass_tokens(setting: int | None, device: torch.device, deepspeed: bool) -> int:
    """--pass-tokens: the default cap on CPU, none on GPU; none under DeepSpeed (one backward per step)."""
    if deepspeed:
        if setting:
            raise UsageError("--pass-tokens is not supported under DeepSpeed (it steps inside backward); "
                             "use --pass-tokens 0 or a smaller --batch-size")
        return 0
    if setting is None:
        return CPU_PASS_TOKENS if device.type == "cpu" else 0
    return setting


def plan_rounds(batches: list[list[int]], world: int) -> list[list[list[int]]]:
    """Group batches into rounds of ``world`` (one per process), using every comparison once.

    When the last round is short, its comparisons are re-dealt into ``world`` smaller batches so
    every process takes a step and no data is dropped.
    """
    full = len(batches) - len(batches) % world
    rounds = [batches[i:i + world] for i in range(0, full, world)]
    rest = [i for b in batches[full:] for i in b]
    if rest:
        share = [rest[r::world] for r in range(world)]
        rounds.append([s if s else rest[:1] for s in share])
    return rounds


def plan_training(units: list[list[int]], lengths: list[int], batch_size: int, epochs: float, seed: int,
                  world: int) -> list[list[list[int]]]:
    """Every micro-batch of the run: rounds of one batch (comparison indices) per process.

    Batches are made of *units*, ``batch_size`` per batch, and a unit is never split: a unit is one
    comparison, or with --balance-per-prompt every comparison of one prompt, so that the prompt's
    pair weights sum to 1 inside its batch. A unit's length is its longest member's.
    """
    unit_lengths = [max(lengths[i] for i in u) for u in units]
    per_epoch = math.ceil(len(units) / batch_size)
    micro_total = max(1, math.ceil(epochs * per_epoch))
    batches: list[list[int]] = []
    epoch = 0
    while len(batches) < micro_total:
        batches += length_grouped_batches(unit_lengths, batch_size, seed + epoch)
        epoch += 1
    return [[[i for u in batch for i in units[u]] for batch in rnd]
            for rnd in plan_rounds(batches[:micro_total], world)]


def fused_adamw_kwargs(params: list[torch.Tensor]) -> dict[str, bool]:
    """``fused=True`` where torch has a fused AdamW kernel for these parameters (CPU and CUDA floats).

    The default for-loop AdamW launches a dozen elementwise ops per parameter tensor; on a CPU that
    is a sizeable share of each step for a small model. transformers' Trainer (and so TRL) also
    uses the fused kernel by default, so this keeps the comparison even. Same update rule.
    """
    ok = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return {"fused": True} if ok else {}


class MetricsLog:
    """Append-only ``metrics.jsonl``: one JSON object per logged event."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def write(self, **record: Any) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (and a line cut short by a kill) before a resumed run appends."""
        if not self.enabled or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line + "\n")
            except json.JSONDecodeError:
                continue
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(kept))
        os.replace(tmp, self.path)


def _load(cfg: TrainConfig, log: Callable[[str], None]) -> tuple[list[Comparison], list[Comparison], int]:
    source = cfg.train_data or bundled_sample()
    loaded = load_comparisons(source, cfg.format, cfg.skip_invalid, cfg.rating_options())
    skipped = len(loaded.problems)
    if skipped:
        log(describe_problems(loaded.problems, source) + "\n(skipped: --skip-invalid)")
    for note in loaded.notes:
        log(note)
    if loaded.dropped:
        log(describe_dropped(loaded.dropped, source))
    if cfg.eval_data:
        held = load_comparisons(cfg.eval_data, cfg.format, cfg.skip_invalid, cfg.rating_options())
        if held.problems:
            log(describe_problems(held.problems, cfg.eval_data) + "\n(skipped: --skip-invalid)")
            skipped += len(held.problems)
        for note in held.notes:
            log(note)
        if held.dropped:
            log(describe_dropped(held.dropped, cfg.eval_data))
        return loaded.comparisons, held.comparisons, skipped
    train_c, eval_c = split_by_prompt(loaded.comparisons, cfg.held_out_fraction(), cfg.seed)
    return train_c, eval_c, skipped


# Files of a finished model, full or LoRA; `eval.json` is written last and marks a finished run.
_MODEL_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", ADAPTER_CONFIG,
                "adapter_model.safetensors", META_FILE)


def _check_output_dir(cfg: TrainConfig) -> tuple[Path, Path | None]:
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
    if cfg.resume and cfg.resume != "latest":
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
    elif not cfg.overwrite and has_run:
        if checkpoints and not (out / "eval.json").is_file():
            what = f"an unfinished run (newest checkpoint {checkpoints[-1][1].name}); pass --resume to continue it,"
        elif finished:
            what = "a trained model; pass"
        else:
            what = "an earlier run (metrics.jsonl); pass"
        raise UsageError(f"--output-dir: {out} already holds {what} --overwrite to replace it, "
                         "or choose another directory")
    return out, resume_from


def _prepare_output_dir(cfg: TrainConfig, out: Path) -> None:
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


def evaluate_model(net: torch.nn.Module, comps: list[Comparison], encoded: list[Encoded], pad_id: int,
                   batch_size: int, accelerator: Any, share_prefix: bool = False
                   ) -> tuple[dict[str, Any], list[list[float]]]:
    """Score the eval set (sharded across processes) and compute metrics on the main process."""
    from accelerate.utils import gather_object

    rank, world = accelerator.process_index, accelerator.num_processes
    mine = list(range(rank, len(encoded), world))
    # Equal shard sizes: DDP and FSDP forward passes are collective, so every process must run
    # the same number of batches. Padding repeats one item; the gather below de-duplicates it.
    per_process = math.ceil(len(encoded) / world)
    mine += [mine[0] if mine else 0] * (per_process - len(mine))
    was_training = net.training
    net.eval()
    with accelerator.autocast():
        rewards = score_encoded(net, pad_id, [encoded[i] for i in mine], batch_size, accelerator.device,
                                share_prefix=share_prefix)
    net.train(was_training)
    pairs = list(zip(mine, rewards))
    if world > 1:
        pairs = gather_object(pairs)
    by_index = dict(pairs)
    all_rewards = [by_index[i] for i in range(len(encoded))]
    return pair_metrics(pairs_of(comps, all_rewards)), all_rewards


def data_fingerprint(train_enc: list[Encoded], eval_enc: list[Encoded]) -> str:
    """A cheap hash of the encoded data's shape: resuming on different data is refused."""
    h = hashlib.sha256()
    for part in (train_enc, eval_enc):
        h.update(json.dumps([[len(s) for s in e.input_ids] + [e.prompt_len] for e in part]).encode())
    return h.hexdigest()[:16]


def _reduce_sum(values: list[float], accelerator: Any) -> list[float]:
    """Element-wise sum over processes (identity in a single process)."""
    if accelerator.num_processes == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=accelerator.device)
    return accelerator.reduce(t, reduction="sum").tolist()


def _publish(tmp: Path, out: Path) -> None:
    """Move a freshly saved model from ``tmp`` into ``out``, config files last.

    Model files of the other kind (full vs. LoRA) from an earlier run are removed first so the
    directory never looks like both.
    """
    for name in _MODEL_FILES:
        (out / name).unlink(missing_ok=True)
    entries = sorted(tmp.iterdir(), key=lambda p: p.name in ("config.json", ADAPTER_CONFIG))
    for entry in entries:
        target = out / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(entry, target)
    tmp.rmdir()


def train(cfg: TrainConfig, log: Callable[[str], None] = print) -> TrainResult:
    """Train a reward model as ``cfg`` says and save it to ``cfg.output_dir``.

    Raises UsageError for bad settings, TrainingDiverged (a UsageError) on a non-finite loss or
    gradient, and TrainingInterrupted after checkpointing on SIGINT/SIGTERM.
    """
    from accelerate import Accelerator

    cfg.validate()
    started = time.time()
    precision = resolve_precision(cfg.precision, _run_device_type())
    _reset_accelerate_state()  # a run never inherits another run's precision in this process
    try:
        accelerator = Accelerator(mixed_precision=precision.mixed_precision)
        return _train(cfg, log, accelerator, precision, started)
    finally:
        _reset_accelerate_state()


def _run_device_type() -> str:
    """The device the `Accelerator` will pick, without creating any accelerate state before it."""
    from accelerate.utils import parse_flag_from_env

    if parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available():
        return "cpu"
    return "cuda"


def _reset_accelerate_state() -> None:
    """Forget the process-wide settings the last `Accelerator` fixed (mixed precision above all).

    accelerate keeps them in shared state and refuses a second Accelerator with other settings;
    the process group (PartialState) is kept, so this is safe under `accelerate launch` too.
    """
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()


def _train(cfg: TrainConfig, log: Callable[[str], None], accelerator: Any, precision: Precision,
           started: float) -> TrainResult:
    from accelerate.utils import DistributedType, set_seed
    from transformers import get_scheduler

    main = accelerator.is_main_process
    world = accelerator.num_processes
    say = log if main else (lambda _msg: None)
    say(precision.describe())
    if precision.emulated:
        say(f"warning: {precision.reason}")
    if accelerator.distributed_type == DistributedType.DEEPSPEED and cfg.grad_accum > 1:
        raise UsageError("--grad-accum > 1 is not supported under DeepSpeed (it steps inside backward); "
                         "use --grad-accum 1 and raise --batch-size or the number of processes")
    out, resume_from = _check_output_dir(cfg)
    saved_state: dict[str, Any] | None = None
    if resume_from is not None:
        saved_state = read_state(resume_from)
        check_compatible(saved_state.get("config", {}), to_dict(cfg), resume_from)
        if saved_state.get("num_processes", 1) != world:
            raise UsageError(f"--resume: {resume_from} was written by {saved_state.get('num_processes')} "
                             f"process(es), this run has {world}; resume with the same number")
    elif cfg.resume:
        say(f"--resume: no checkpoint in {out} yet; starting from step 0")
    accelerator.wait_for_everyone()  # every process has looked before the main process changes anything
    if main:
        _prepare_output_dir(cfg, out)
    set_seed(cfg.seed)

    train_c, eval_c, skipped = _load(cfg, say)  # bad data fails before the model is loaded
    model, tokenizer = load_backbone(cfg.model, dropout=cfg.dropout)
    encoder = make_encoder(model, tokenizer, cfg.max_length)
    train_enc = encode_cached(encoder, train_c, lambda c: tqdm(c, desc="tokenize", disable=not main, leave=False))
    eval_enc = encode_cached(encoder, eval_c)
    share = resolve_prefix_sharing(cfg.prefix_sharing, model, tokenizer.pad_token_id, cfg.max_length, say)
    truncated = sum(e.truncated for e in train_enc)
    eval_truncated = sum(e.truncated for e in eval_enc)
    say(f"data: {len(train_enc)} training comparisons, {len(eval_enc)} held out"
        f"{f', {skipped} invalid records skipped' if skipped else ''}; "
        f"{truncated} training and {eval_truncated} held-out comparisons truncated to "
        f"--max-length {cfg.max_length} (prompt start dropped, responses kept)")
    fingerprint = data_fingerprint(train_enc, eval_enc)
    if saved_state is not None and saved_state.get("fingerprint") != fingerprint:
        raise UsageError(f"--resume: the data differs from the data {resume_from} was trained on "
                         "(same files and settings needed to skip exactly the pairs already seen)")

    units = group_by_prompt(train_c) if cfg.balance_per_prompt else [[i] for i in range(len(train_c))]
    group_of = [0] * len(train_c)
    for u, members in enumerate(units):
        for i in members:
            group_of[i] = u
    if cfg.balance_per_prompt:
        say(f"balance per prompt: {len(units)} prompts, {cfg.batch_size} whole prompts per batch, "
            "each prompt's pairs weighted to sum to 1")
    widths = [batch_length(e, share) for e in train_enc]
    rounds = plan_training(units, widths, cfg.batch_size, cfg.epochs, cfg.seed, world)
    total_steps = math.ceil(len(rounds) / cfg.grad_accum)
    rows_of = [1 if share else len(e.input_ids) for e in train_enc]
    pass_tokens = resolve_pass_tokens(cfg.pass_tokens, accelerator.device,
                                      accelerator.distributed_type == DistributedType.DEEPSPEED)

    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if cfg.lora_r:
        model = apply_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        say(f"LoRA r={cfg.lora_r}: {trainable:,} of {total:,} parameters trainable "
            f"({100 * trainable / total:.2f}%, score head included)")
    net = RewardNet(model)
    net.train()
    decay, no_decay = [], []
    for name, p in net.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr,
                                  **fused_adamw_kwargs(decay + no_decay))
    scheduler = get_scheduler(cfg.scheduler if cfg.scheduler != "constant" else "constant_with_warmup",
                              optimizer, num_warmup_steps=int(cfg.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    net, optimizer = accelerator.prepare(net, optimizer)
    # Registered, not prepared: a prepared scheduler steps once per process per optimizer step.
    accelerator.register_for_checkpointing(scheduler)
    if cfg.lora_r:
        save_trainable_only(accelerator)
    metrics = MetricsLog(out / "metrics.jsonl", main)
    pad_id = tokenizer.pad_token_id

    start_step, pairs_seen = 0, 0
    running = [0.0, 0.0, 0.0]  # sums of micro-batch loss and accuracy, and their count, since the last log
    if resume_from is not None and saved_state is not None:
        load_checkpoint(accelerator, resume_from)
        start_step, pairs_seen = int(saved_state["step"]), int(saved_state["pairs_seen"])
        if main:
            running = [float(x) for x in saved_state["running"]]
        metrics.truncate_after(start_step)
        say(f"resumed from {resume_from} at step {start_step} of {total_steps} "
            f"({pairs_seen} pairs already seen are skipped)")
    elif main:
        (out / "metrics.jsonl").write_text("")

    def run_eval(step: int) -> dict[str, Any] | None:
        if not eval_enc:
            return None
        result, _ = evaluate_model(net, eval_c, eval_enc, pad_id, cfg.eval_batch_size, accelerator, share)
        metrics.write(split="eval", step=step, **{k: v for k, v in result.items() if not isinstance(v, dict)})
        return result

    def checkpoint(step: int) -> Path:
        state = {"step": step, "total_steps": total_steps, "pairs_seen": pairs_seen,
                 "running": _reduce_sum(running, accelerator), "num_processes": world,
                 "fingerprint": fingerprint, "version": __version__, "config": to_dict(cfg)}
        if _reduce_sum([float(not all_finite(net.parameters()))], accelerator)[0]:
            raise TrainingDiverged(f"step {step}: the weights hold NaN/inf; no checkpoint written; {last_good()}")
        return save_checkpoint(accelerator, out, step, state, cfg.save_total_limit)

    def last_good() -> str:
        latest = latest_checkpoint(out)
        return (f"the last good checkpoint is {latest} (export it with `rewardkit export`)" if latest
                else "no checkpoint had been written (set --save-steps to keep one)")

    bar = tqdm(total=total_steps, initial=start_step, desc="train", disable=not main, unit="step")
    loop_started = time.time()
    with StopSignals() as stop:
        for step in range(start_step, total_steps):
            done = step + 1
            step_rounds = rounds[step * cfg.grad_accum:(step + 1) * cfg.grad_accum]
            bad_loss: float | None = None
            for i, rnd in enumerate(step_rounds):
                parts = [collate_for([train_enc[j] for j in part], pad_id, share,
                                     balance_per_prompt=cfg.balance_per_prompt, use_margin=cfg.use_margin,
                                     groups=[group_of[j] for j in part]).to(accelerator.device)
                         for part in split_by_tokens(rnd[accelerator.process_index], widths, rows_of, group_of,
                                                     pass_tokens)]
                last = i == len(step_rounds) - 1  # gradients are all-reduced once, in the step's last pass
                syncs = [nullcontext() if last and k == len(parts) - 1 else accelerator.no_sync(net)
                         for k in range(len(parts))]
                loss_value, acc_value = backward_passes(net, parts, cfg, accelerator.backward,
                                                        1 / len(step_rounds), syncs)
                if bad_loss is None and not math.isfinite(loss_value):
                    bad_loss = loss_value
                running[0] += loss_value
                running[1] += acc_value
                running[2] += 1
                pairs_seen += sum(len(b) for b in rnd)
            # Clipping with an infinite norm still returns the norm: the divergence check needs it.
            # (DeepSpeed clips inside its own step and may report no norm: the loss check remains.)
            norm = accelerator.clip_grad_norm_(net.parameters(), cfg.max_grad_norm or math.inf)
            grad_norm = float(norm) if norm is not None else 0.0
            flags = _reduce_sum([float(bad_loss is not None), float(not math.isfinite(grad_norm)),
                                 float(stop.received is not None)], accelerator)
            if flags[0] or flags[1]:
                bar.close()
                what = "loss" if flags[0] else "gradient"
                raise TrainingDiverged(
                    f"step {done}: non-finite {what} (loss {loss_value if bad_loss is None else bad_loss:.4g}, "
                    f"gradient norm {grad_norm:.4g}); "
                    f"stopped before applying the update and no final model was written; {last_good()}. "
                    f"Lower --lr (now {cfg.lr:g}), keep --max-grad-norm on, or try --precision fp32.")
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            bar.update(1)
            if done % cfg.logging_steps == 0 or done == total_steps:
                loss_sum, acc_sum, count = _reduce_sum(running, accelerator)
                running = [0.0, 0.0, 0.0]
                mean_loss, mean_acc = loss_sum / count, acc_sum / count
                bar.set_postfix(loss=f"{mean_loss:.4f}", acc=f"{mean_acc:.3f}")
                metrics.write(split="train", step=done, loss=mean_loss, accuracy=mean_acc,
                              lr=scheduler.get_last_lr()[0], grad_norm=grad_norm, pairs_seen=pairs_seen,
                              epoch=pairs_seen / len(train_enc))
            if cfg.eval_steps and done % cfg.eval_steps == 0 and done < total_steps:
                result = run_eval(done)
                if result:
                    say(f"step {done}: eval accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f}")
            stopping = bool(flags[2])
            if (cfg.save_steps and done % cfg.save_steps == 0) or stopping:
                saved = checkpoint(done)
                if stopping:
                    bar.close()
                    signum = stop.received or 15  # another process got the signal: report SIGTERM
                    raise TrainingInterrupted(
                        f"stopped by {stop.name or 'SIGTERM'} after step {done} of {total_steps}; "
                        f"checkpoint written to {saved}; continue with --resume", 128 + signum)
    bar.close()
    train_seconds = time.time() - loop_started

    final = None
    stats_rewards: list[float] = []
    if eval_enc:
        final, eval_rewards = evaluate_model(net, eval_c, eval_enc, pad_id, cfg.eval_batch_size, accelerator,
                                             share)
        metrics.write(split="eval", step=total_steps, **{k: v for k, v in final.items() if not isinstance(v, dict)})
        stats_rewards = [r for rs in eval_rewards for r in rs]
        stats_source = "eval"
    else:
        sample = random.Random(cfg.seed).sample(range(len(train_enc)), min(512, len(train_enc)))
        _, train_rewards = evaluate_model(net, [train_c[i] for i in sample], [train_enc[i] for i in sample],
                                          pad_id, cfg.eval_batch_size, accelerator, share)
        stats_rewards = [r for rs in train_rewards for r in rs]
        stats_source = "train-sample"

    accelerator.wait_for_everyone()
    sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    # Sharded runs gather the full weights (a collective: every process takes part).
    full_state = accelerator.get_state_dict(net) if sharded else None
    broken = not all(math.isfinite(r) for r in stats_rewards) or not all_finite(
        [v for v in full_state.values() if v.is_floating_point()] if full_state else net.parameters())
    if _reduce_sum([float(broken)], accelerator)[0]:
        raise TrainingDiverged(f"the trained weights hold NaN/inf or give non-finite rewards; "
                               f"no final model was written; {last_good()}")
    if main:
        mean = sum(stats_rewards) / len(stats_rewards)
        std = math.sqrt(sum((r - mean) ** 2 for r in stats_rewards) / len(stats_rewards)) or 1.0
        meta = {"version": __version__, "max_length": cfg.max_length, "loss": cfg.loss,
                "normalization": {"mean": mean, "std": std, "source": stats_source, "count": len(stats_rewards)}}
        inner = accelerator.unwrap_model(net).model
        state = {k.removeprefix("model."): v for k, v in full_state.items()} if full_state else None
        tmp = out / ".tmp-model"
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            if cfg.lora_r:
                save_adapter(inner, tokenizer, tmp, meta, state_dict=state)
            else:
                save_model(inner, tokenizer, tmp, meta, state_dict=state)
            _publish(tmp, out)
            if cfg.merge:
                merge_adapter(out, out / "merged", overwrite=True)
            (out / "train_config.yaml").write_text(
                f"# precision: {cfg.precision} resolved to {precision.name} ({precision.reason})\n"
                + yaml.safe_dump({**to_dict(cfg), "precision": precision.name}, sort_keys=False))
            summary = {"steps": total_steps, "pairs_seen": pairs_seen, "train_comparisons": len(train_enc),
                       "truncated": truncated, "eval_truncated": eval_truncated, "skipped": skipped,
                       "seconds": round(time.time() - started, 1), "train_seconds": round(train_seconds, 1),
                       "prefix_sharing": share, "precision": precision.name,
                       "precision_reason": precision.reason, "eval": final}
            if saved_state is not None:
                summary["resumed_from_step"] = start_step
            if final:  # the same report as `rewardkit eval --report`, for the held-out data
                from .report import write_report

                held_out = cfg.eval_data or f"{cfg.held_out_fraction():.0%} of the prompts"
                page = write_report(out / "report", eval_c, eval_rewards, final, title="Held-out evaluation",
                                    details={"model": cfg.model or "bundled MiniLM-L6", "held-out data": held_out})
                say(f"evaluation report: {page}")
            (out / "eval.json").write_text(json.dumps(summary, indent=2) + "\n")  # last: marks the run finished
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise UsageError(describe_os_error(e, "the final model", out) + f"; {last_good()}") from None
    accelerator.wait_for_everyone()
    return TrainResult(output_dir=str(out), steps=total_steps, pairs_seen=pairs_seen,
                       train_comparisons=len(train_enc), truncated=truncated, skipped=skipped,
                       eval_metrics=final, seconds=time.time() - started, resumed_from_step=start_step,
                       train_seconds=train_seconds)
