"""The training loop: data -> encoded comparisons -> length-grouped batches -> AdamW on accelerate.

Read top to bottom: `train` loads and encodes the data, plans every batch of the run up front (so
a step number alone says where the data stands), then runs optimizer steps, evaluating and logging
as it goes, and finally evaluates, stores reward statistics and saves a plain transformers model.

Multi-process runs (``accelerate launch``) split each round of micro-batches across processes;
accelerate provides DDP and mixed precision, rewardkit never reimplements them.
"""

from __future__ import annotations

import json
import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import yaml
from tqdm.auto import tqdm

from . import __version__
from .batching import Batch, collate, length_grouped_batches
from .config import TrainConfig, UsageError, to_dict
from .data import Comparison, bundled_sample, describe_problems, load_comparisons, split_by_prompt
from .encode import Encoded
from .evaluate import pair_metrics, pairs_of
from .losses import bradley_terry, center_penalty, plackett_luce
from .model import RewardNet, compute_rewards, load_backbone, make_encoder, save_model, score_encoded


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


def resolve_precision(precision: str) -> str:
    """accelerate's mixed_precision value. ``auto`` picks bf16 only where it is fast.

    CPUs without native bf16 (no AVX512-BF16/AMX) run bf16 matmuls hundreds of times slower than
    fp32, so ``auto`` checks for hardware support rather than assuming it.
    """
    if precision == "fp32":
        return "no"
    if torch.cuda.is_available():
        supported = torch.cuda.is_bf16_supported()
    else:
        supported = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if precision == "bf16" and not supported:
        raise UsageError("--precision bf16: this device has no native bf16 support (use auto or fp32)")
    return "bf16" if supported else "no"


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


class MetricsLog:
    """Append-only ``metrics.jsonl``: one JSON object per logged event."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def write(self, **record: Any) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")


def _load(cfg: TrainConfig, log: Callable[[str], None]) -> tuple[list[Comparison], list[Comparison], int]:
    source = cfg.train_data or bundled_sample()
    loaded = load_comparisons(source, cfg.format, cfg.skip_invalid)
    skipped = len(loaded.problems)
    if skipped:
        log(describe_problems(loaded.problems, source) + "\n(skipped: --skip-invalid)")
    if cfg.eval_data:
        held = load_comparisons(cfg.eval_data, cfg.format, cfg.skip_invalid)
        if held.problems:
            log(describe_problems(held.problems, cfg.eval_data) + "\n(skipped: --skip-invalid)")
            skipped += len(held.problems)
        return loaded.comparisons, held.comparisons, skipped
    train_c, eval_c = split_by_prompt(loaded.comparisons, cfg.eval_split, cfg.seed)
    return train_c, eval_c, skipped


def _check_output_dir(cfg: TrainConfig) -> Path:
    out = Path(cfg.output_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output-dir: {out} exists and is not a directory")
    if (out / "config.json").exists() and not cfg.overwrite:
        raise UsageError(f"--output-dir: {out} already holds a trained model; "
                         "pass --overwrite to replace it or choose another directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".rewardkit-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"--output-dir: cannot write to {out}: {e.strerror}") from None
    return out


def evaluate_model(net: torch.nn.Module, comps: list[Comparison], encoded: list[Encoded], pad_id: int,
                   batch_size: int, accelerator: Any) -> tuple[dict[str, Any], list[list[float]]]:
    """Score the eval set (sharded across processes) and compute metrics on the main process."""
    from accelerate.utils import gather_object

    rank, world = accelerator.process_index, accelerator.num_processes
    mine = list(range(rank, len(encoded), world))
    was_training = net.training
    net.eval()
    with accelerator.autocast():
        rewards = score_encoded(net, pad_id, [encoded[i] for i in mine], batch_size, accelerator.device)
    net.train(was_training)
    pairs = list(zip(mine, rewards))
    if world > 1:
        pairs = gather_object(pairs)
    by_index = dict(pairs)
    all_rewards = [by_index[i] for i in range(len(encoded))]
    return pair_metrics(pairs_of(comps, all_rewards)), all_rewards


def train(cfg: TrainConfig, log: Callable[[str], None] = print) -> TrainResult:
    """Train a reward model as ``cfg`` says and save it to ``cfg.output_dir``."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_scheduler

    cfg.validate()
    started = time.time()
    accelerator = Accelerator(mixed_precision=resolve_precision(cfg.precision))
    main = accelerator.is_main_process
    say = log if main else (lambda _msg: None)
    out = _check_output_dir(cfg) if main else Path(cfg.output_dir)
    set_seed(cfg.seed)

    model, tokenizer = load_backbone(cfg.model, dropout=cfg.dropout)
    train_c, eval_c, skipped = _load(cfg, say)
    encoder = make_encoder(model, tokenizer, cfg.max_length)
    train_enc = [encoder.encode(c) for c in tqdm(train_c, desc="tokenize", disable=not main, leave=False)]
    eval_enc = [encoder.encode(c) for c in eval_c]
    truncated = sum(e.truncated for e in train_enc)
    eval_truncated = sum(e.truncated for e in eval_enc)
    say(f"data: {len(train_enc)} training comparisons, {len(eval_enc)} held out"
        f"{f', {skipped} invalid records skipped' if skipped else ''}; "
        f"{truncated} training and {eval_truncated} held-out comparisons truncated to "
        f"--max-length {cfg.max_length} (prompt start dropped, responses kept)")

    lengths = [e.longest for e in train_enc]
    per_epoch = math.ceil(len(train_enc) / cfg.batch_size)
    micro_total = max(1, math.ceil(cfg.epochs * per_epoch))
    batches: list[list[int]] = []
    epoch = 0
    while len(batches) < micro_total:
        batches += length_grouped_batches(lengths, cfg.batch_size, cfg.seed + epoch)
        epoch += 1
    rounds = plan_rounds(batches[:micro_total], accelerator.num_processes)
    total_steps = math.ceil(len(rounds) / cfg.grad_accum)

    net = RewardNet(model)
    net.train()
    decay, no_decay = [], []
    for name, p in net.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    scheduler = get_scheduler(cfg.scheduler if cfg.scheduler != "constant" else "constant_with_warmup",
                              optimizer, num_warmup_steps=int(cfg.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    net, optimizer = accelerator.prepare(net, optimizer)
    metrics = MetricsLog(out / "metrics.jsonl", main)
    if main:
        (out / "metrics.jsonl").write_text("")
    pad_id = tokenizer.pad_token_id

    def run_eval(step: int) -> dict[str, Any] | None:
        if not eval_enc:
            return None
        result, _ = evaluate_model(net, eval_c, eval_enc, pad_id, cfg.eval_batch_size, accelerator)
        metrics.write(split="eval", step=step, **{k: v for k, v in result.items() if not isinstance(v, dict)})
        return result

    pairs_seen = 0
    running: list[tuple[float, float]] = []
    bar = tqdm(total=total_steps, desc="train", disable=not main, unit="step")
    for step in range(total_steps):
        step_rounds = rounds[step * cfg.grad_accum:(step + 1) * cfg.grad_accum]
        for i, rnd in enumerate(step_rounds):
            mine = rnd[accelerator.process_index]
            batch = collate([train_enc[j] for j in mine], pad_id, balance_per_prompt=cfg.balance_per_prompt,
                            use_margin=cfg.use_margin).to(accelerator.device)
            sync = nullcontext() if i == len(step_rounds) - 1 else accelerator.no_sync(net)
            with sync:
                rewards = compute_rewards(net, batch)
                loss, acc = batch_loss(rewards, batch, cfg)
                accelerator.backward(loss / len(step_rounds))
            running.append((loss.item(), acc.item()))
            pairs_seen += sum(len(b) for b in rnd)
        if cfg.max_grad_norm:
            accelerator.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        bar.update(1)
        done = step + 1
        if done % cfg.logging_steps == 0 or done == total_steps:
            mean_loss = sum(x for x, _ in running) / len(running)
            mean_acc = sum(y for _, y in running) / len(running)
            running.clear()
            bar.set_postfix(loss=f"{mean_loss:.4f}", acc=f"{mean_acc:.3f}")
            metrics.write(split="train", step=done, loss=mean_loss, accuracy=mean_acc,
                          lr=scheduler.get_last_lr()[0], pairs_seen=pairs_seen,
                          epoch=pairs_seen / len(train_enc))
        if cfg.eval_steps and done % cfg.eval_steps == 0 and done < total_steps:
            result = run_eval(done)
            if result:
                say(f"step {done}: eval accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f}")
    bar.close()

    final = None
    stats_rewards: list[float] = []
    if eval_enc:
        final, eval_rewards = evaluate_model(net, eval_c, eval_enc, pad_id, cfg.eval_batch_size, accelerator)
        metrics.write(split="eval", step=total_steps, **{k: v for k, v in final.items() if not isinstance(v, dict)})
        stats_rewards = [r for rs in eval_rewards for r in rs]
        stats_source = "eval"
    else:
        sample = random.Random(cfg.seed).sample(range(len(train_enc)), min(512, len(train_enc)))
        _, train_rewards = evaluate_model(net, [train_c[i] for i in sample], [train_enc[i] for i in sample],
                                          pad_id, cfg.eval_batch_size, accelerator)
        stats_rewards = [r for rs in train_rewards for r in rs]
        stats_source = "train-sample"

    accelerator.wait_for_everyone()
    if main:
        mean = sum(stats_rewards) / len(stats_rewards)
        std = math.sqrt(sum((r - mean) ** 2 for r in stats_rewards) / len(stats_rewards)) or 1.0
        meta = {"version": __version__, "max_length": cfg.max_length, "loss": cfg.loss,
                "normalization": {"mean": mean, "std": std, "source": stats_source, "count": len(stats_rewards)}}
        save_model(accelerator.unwrap_model(net).model, tokenizer, out, meta)
        (out / "train_config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        summary = {"steps": total_steps, "pairs_seen": pairs_seen, "train_comparisons": len(train_enc),
                   "truncated": truncated, "eval_truncated": eval_truncated, "skipped": skipped,
                   "seconds": round(time.time() - started, 1), "eval": final}
        (out / "eval.json").write_text(json.dumps(summary, indent=2) + "\n")
        if final:  # the same report as `rewardkit eval --report`, for the held-out data
            from .report import write_report

            page = write_report(out / "report", eval_c, eval_rewards, final, title="Held-out evaluation",
                                details={"model": cfg.model or "bundled MiniLM-L6",
                                         "held-out data": cfg.eval_data or f"{cfg.eval_split:.0%} of the prompts"})
            say(f"evaluation report: {page}")
    accelerator.wait_for_everyone()
    return TrainResult(output_dir=str(out), steps=total_steps, pairs_seen=pairs_seen,
                       train_comparisons=len(train_enc), truncated=truncated, skipped=skipped,
                       eval_metrics=final, seconds=time.time() - started)
