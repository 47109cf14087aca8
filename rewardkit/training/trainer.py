"""Train a reward model: `train` runs the phases of a run in order, `fit` is the optimizer loop.

    start_run -> load_data -> load_backbone -> encode_data -> plan -> build_net -> build_optimizer
              -> restore -> fit -> final_evaluation -> publish

Every micro-batch of the run is planned up front from the seed (`rewardkit.training.batch_plan`, which also
defines the words used here: micro-batch, round, step, pass), so a step number alone says where the
data stands. Never lose a run: checkpoints are atomic (`rewardkit.training.checkpoints`), SIGINT/SIGTERM
checkpoint and stop at the end of the current step, ``--resume`` rebuilds the same plan and starts
at the saved step, and a non-finite loss or gradient stops the run before the bad update.

Multi-process runs (``accelerate launch``): each round gives every process one micro-batch, so the
global batch is ``batch_size * processes * grad_accum``; accelerate provides DDP/FSDP/DeepSpeed and
mixed precision, rewardkit never reimplements them. Metrics are reduced over all processes and
files are written by the main process only.
"""

from __future__ import annotations

import json
import math
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

from rewardkit.card.text import write_card
from rewardkit.config import TrainConfig, to_dict
from rewardkit.data.loading import bundled_sample, group_by_prompt, split_by_prompt
from rewardkit.data.records import Comparison
from rewardkit.data.file_cache import load_cached
from rewardkit.encoding.cache import encode_cached
from rewardkit.encoding.encoded_set import truncated_count
from rewardkit.encoding.encoder import Encoded, Encoder
from rewardkit.errors import TrainingDiverged, TrainingInterrupted, UsageError
from rewardkit.evaluation.held_out import evaluate_net
from rewardkit.model.artifacts import merge_adapter, publish_model, save_trained
from rewardkit.model.backbone import load_backbone, make_encoder
from rewardkit.model.batching import Batch, collate_for
from rewardkit.model.lora import apply_lora
from rewardkit.model.net import RewardNet, compute_rewards
from rewardkit.model.precision import resolve_precision
from rewardkit.model.prefix_sharing import resolve_prefix_sharing
from rewardkit.training.batch_plan import TrainingPlan, resolve_pass_tokens
from rewardkit.model.lora import save_trainable_only
from rewardkit.training.checkpoints import describe_os_error, load_checkpoint, save_checkpoint
from rewardkit.training.divergence import all_finite
from rewardkit.training.resume import check_resume_data, data_fingerprint, legacy_data_fingerprint, TrainState
from rewardkit.training.signals import StopSignals
from rewardkit.training.losses import batch_loss, loss_denominator
from rewardkit.training.objectives.regression import train_regression
from rewardkit.training.sharding import configure_deepspeed, full_weights
from rewardkit.training.startup import fresh_accelerate_state, Run, run_device_type, start_run
from rewardkit.training.tracking import MetricsLog
from rewardkit.training.tracking import accelerator_kwargs, finishing, start_trackers
from rewardkit.version import __version__


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


@dataclass
class Data:
    """The comparisons of a run, encoded, and what the user is told about them."""

    train: list[Comparison]
    held_out: list[Comparison]
    train_enc: list[Encoded]
    eval_enc: list[Encoded]
    skipped: int  # invalid records skipped under --skip-invalid
    fingerprint: str  # of the encoded data: a resumed run must see the same (`rewardkit.training.checkpoints`)

    @property
    def truncated(self) -> int:
        return truncated_count(self.train_enc)

    @property
    def eval_truncated(self) -> int:
        return truncated_count(self.eval_enc)


@dataclass
class Job:
    """What the loop runs: the prepared network, its optimizer and schedule, the data and its plan."""

    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    data: Data
    plan: TrainingPlan
    share_prefix: bool
    pad_id: int
    metrics: MetricsLog


def train(cfg: TrainConfig, log: Callable[[str], None] = print) -> TrainResult:
    """Train a reward model as ``cfg`` says and save it to ``cfg.output_dir``.

    Raises UsageError for bad settings, TrainingDiverged (a UsageError) on a non-finite loss or
    gradient, and TrainingInterrupted after checkpointing on SIGINT/SIGTERM.
    """
    cfg.validate()
    if cfg.objective != "bt":  # ratings as targets (issue 14): its own, simpler loop
        return TrainResult(**train_regression(cfg, log))
    trackers = accelerator_kwargs(cfg)  # a missing tracker package fails here, before any work
    started = time.time()
    precision = resolve_precision(cfg.precision, run_device_type())
    with fresh_accelerate_state():  # a run never inherits another run's precision in this process
        run = start_run(cfg, precision, log, trackers)
        with finishing(run.accelerator):
            comparisons = load_data(cfg, run)  # bad data fails before the model is loaded
            model, tokenizer = load_backbone(cfg.model, dropout=cfg.dropout)
            data = encode_data(cfg, run, comparisons, make_encoder(model, tokenizer, cfg.max_length))
            with full_weights(model):  # ZeRO-3 partitions the backbone as it loads; the probe needs it whole
                share = resolve_prefix_sharing(cfg.prefix_sharing, model, tokenizer.pad_token_id, cfg.max_length,
                                               run.say)
            plan = plan_run(cfg, run, data, share)
            job = build_job(cfg, run, model, data, plan, share, tokenizer.pad_token_id)
            state = restore(run, job)
            train_seconds = fit(run, job, state)
            final, eval_rewards, stats = final_evaluation(run, job)
            publish(run, job, tokenizer, state, final, eval_rewards, stats,
                    {"seconds": round(time.time() - started, 1), "train_seconds": round(train_seconds, 1)})
            run.accelerator.wait_for_everyone()
    return TrainResult(output_dir=str(run.out), steps=plan.total_steps, pairs_seen=state.pairs_seen,
                       train_comparisons=len(data.train_enc), truncated=data.truncated, skipped=data.skipped,
                       eval_metrics=final, seconds=time.time() - started,
                       resumed_from_step=int(run.saved["step"]) if run.saved else 0, train_seconds=train_seconds)


# --------------------------------------------------------------------------------------- data


Split = tuple[list[Comparison], list[Comparison], int]  # training, held-out comparisons; invalid records skipped


def load_data(cfg: TrainConfig, run: Run) -> Split:
    """The training and held-out comparisons (a prompt-disjoint split, or --eval-data), telling the
    user what was skipped or left out."""
    source = cfg.train_data or bundled_sample()
    loaded = load_cached(source, cfg.format, cfg.skip_invalid, cfg.rating_options())
    for message in loaded.messages(source):
        run.say(message)
    skipped = len(loaded.problems)
    if not cfg.eval_data:
        train_c, eval_c = split_by_prompt(loaded.comparisons, cfg.held_out_fraction(), cfg.seed)
        return train_c, eval_c, skipped
    held = load_cached(cfg.eval_data, cfg.format, cfg.skip_invalid, cfg.rating_options())
    for message in held.messages(cfg.eval_data):
        run.say(message)
    return loaded.comparisons, held.comparisons, skipped + len(held.problems)


def encode_data(cfg: TrainConfig, run: Run, comparisons: Split, encoder: Encoder) -> Data:
    """Tokenize (through the cache), report truncation, and check a resumed run sees the same data."""
    train_c, eval_c, skipped = comparisons
    train_enc = encode_cached(encoder, train_c, lambda c: tqdm(c, desc="tokenize", disable=not run.main, leave=False))
    eval_enc = encode_cached(encoder, eval_c)
    data = Data(train_c, eval_c, train_enc, eval_enc, skipped, data_fingerprint(train_enc, eval_enc))
    run.say(f"data: {len(data.train_enc)} training comparisons, {len(data.eval_enc)} held out"
            f"{f', {skipped} invalid records skipped' if skipped else ''}; "
            f"{data.truncated} training and {data.eval_truncated} held-out comparisons truncated to "
            f"--max-length {cfg.max_length} (prompt start dropped, responses kept)")
    if run.saved is not None:
        check_resume_data(run.saved, data.fingerprint, run.resume_from,
                          lambda: legacy_data_fingerprint(train_enc, eval_enc))
    return data


def plan_run(cfg: TrainConfig, run: Run, data: Data, share: bool) -> TrainingPlan:
    """Every micro-batch of the run (see `rewardkit.training.batch_plan`)."""
    if cfg.balance_per_prompt:
        groups = group_by_prompt(data.train)
        run.say(f"balance per prompt: {len(groups)} prompts, {cfg.batch_size} whole prompts per batch, "
                "each prompt's pairs weighted to sum to 1")
    else:
        groups = [[i] for i in range(len(data.train))]
    return TrainingPlan.build(data.train_enc, groups, batch_size=cfg.batch_size, epochs=cfg.epochs, seed=cfg.seed,
                              world=run.world, grad_accum=cfg.grad_accum, share_prefix=share,
                              pass_tokens=resolve_pass_tokens(cfg.pass_tokens, run.accelerator.device, run.deepspeed))


# --------------------------------------------------------------------------------------- model and optimizer


def build_job(cfg: TrainConfig, run: Run, model: torch.nn.Module, data: Data, plan: TrainingPlan, share: bool,
              pad_id: int) -> Job:
    """Gradient checkpointing, LoRA, the reward network, AdamW and the schedule, prepared by accelerate."""
    from transformers import get_scheduler

    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if cfg.lora_r:
        model = apply_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        run.say(f"LoRA r={cfg.lora_r}: {trainable:,} of {total:,} parameters trainable "
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
                              optimizer, num_warmup_steps=int(cfg.warmup_ratio * plan.total_steps),
                              num_training_steps=plan.total_steps)
    if run.deepspeed:
        configure_deepspeed(run.accelerator, cfg.batch_size)  # no DataLoader to read the micro-batch from
    net, optimizer = run.accelerator.prepare(net, optimizer)
    # Registered, not prepared: a prepared scheduler steps once per process per optimizer step.
    run.accelerator.register_for_checkpointing(scheduler)
    if cfg.lora_r:
        save_trainable_only(run.accelerator)
    trackers = start_trackers(run.accelerator, to_dict(cfg), {"precision_resolved": run.precision.name,
                                                              "num_processes": run.world},
                              int(run.saved["step"]) if run.saved else 0)
    return Job(net, optimizer, scheduler, data, plan, share, pad_id,
               MetricsLog(run.out / "metrics.jsonl", run.main, trackers))


def fused_adamw_kwargs(params: list[torch.Tensor]) -> dict[str, bool]:
    """``fused=True`` where torch has a fused AdamW kernel for these parameters (CPU and CUDA floats).

    The default for-loop AdamW launches a dozen elementwise ops per parameter tensor; on a CPU that
    is a sizeable share of each step for a small model. transformers' Trainer (and so TRL) also
    uses the fused kernel by default, so this keeps the comparison even. Same update rule.
    """
    ok = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return {"fused": True} if ok else {}



def restore(run: Run, job: Job) -> TrainState:
    """A fresh state, or the checkpoint's (weights, optimizer, scheduler, RNG and position) on --resume."""
    if run.saved is None:
        if run.main:
            job.metrics.path.write_text("")
        return TrainState()
    load_checkpoint(run.accelerator, run.resume_from)
    state = TrainState.from_json(run.saved, with_running=run.main)
    job.metrics.truncate_after(state.step)
    run.say(f"resumed from {run.resume_from} at step {state.step} of {job.plan.total_steps} "
            f"({state.pairs_seen} pairs already seen are skipped)")
    return state


# --------------------------------------------------------------------------------------- the loop


def fit(run: Run, job: Job, state: TrainState) -> float:
    """The optimizer loop; returns its seconds. Each step: forward/backward, check, update, log,
    evaluate, checkpoint."""
    cfg, total = run.cfg, job.plan.total_steps
    bar = tqdm(total=total, initial=state.step, desc="train", disable=not run.main, unit="step")
    started = time.time()
    with StopSignals() as stop:
        while state.step < total:
            losses, accuracies, pairs = forward_backward(run, job, job.plan.step_rounds(state.step))
            grad_norm = clip_gradients(run, job)
            stopping = check_step(run, state.step + 1, losses, grad_norm, stop.received is not None, bar)
            job.optimizer.step()
            job.scheduler.step()
            job.optimizer.zero_grad(set_to_none=True)
            state.record(losses, accuracies, pairs)
            bar.update(1)
            if state.step % cfg.logging_steps == 0 or state.step == total:
                log_train(run, job, state, grad_norm, bar)
            if cfg.eval_steps and state.step % cfg.eval_steps == 0 and state.step < total:
                evaluate_now(run, job, state.step)
            if (cfg.save_steps and state.step % cfg.save_steps == 0) or stopping:
                saved = checkpoint(run, job, state)
                if stopping:
                    bar.close()
                    signum = stop.received or 15  # another process got the signal: report SIGTERM
                    raise TrainingInterrupted(f"stopped by {stop.name or 'SIGTERM'} after step {state.step} of "
                                              f"{total}; checkpoint written to {saved}; continue with --resume",
                                              128 + signum)
    bar.close()
    return time.time() - started


def forward_backward(run: Run, job: Job, rounds: list[list[list[int]]]) -> tuple[list[float], list[float], int]:
    """This process's micro-batch of every round of one step, pass by pass; gradients accumulate.

    Returns the micro-batches' losses and accuracies and the pairs the step saw on all processes.
    Gradients are all-reduced once, in the step's last pass (DDP's no_sync for all the others).
    """
    cfg, acc = run.cfg, run.accelerator
    losses, accuracies, pairs = [], [], 0
    for i, rnd in enumerate(rounds):
        passes = [collate_for([job.data.train_enc[j] for j in members], job.pad_id, job.share_prefix,
                              balance_per_prompt=cfg.balance_per_prompt, use_margin=cfg.use_margin,
                              prompt_ids=[job.plan.prompt_of[j] for j in members]).to(acc.device)
                  for members in job.plan.passes(rnd[run.rank])]
        last = i == len(rounds) - 1
        syncs = [nullcontext() if last and k == len(passes) - 1 else acc.no_sync(job.net) for k in range(len(passes))]
        loss, accuracy = backward_passes(job.net, passes, cfg, acc.backward, 1 / len(rounds), syncs)
        losses.append(loss)
        accuracies.append(accuracy)
        pairs += sum(len(b) for b in rnd)
    return losses, accuracies, pairs


def backward_passes(net: torch.nn.Module, passes: list[Batch], cfg: TrainConfig,
                    backward: Callable[[torch.Tensor], None], scale: float,
                    syncs: list[Any] | None = None) -> tuple[float, float]:
    """Forward and backward each pass of one micro-batch; returns the whole micro-batch's (loss, accuracy).

    Each pass's mean loss is weighted by its share of the micro-batch's `loss_denominator`, so the
    gradients summed over the passes are those of the whole micro-batch's loss (times ``scale``).
    ``syncs`` gives a context per pass (DDP's no_sync for all but the last of an optimizer step).
    """
    shares = [loss_denominator(batch, cfg.loss) for batch in passes]
    pairs = [len(batch.pair_better) for batch in passes]
    total_share, total_pairs = sum(shares), sum(pairs)
    loss_value = acc_value = 0.0
    for k, batch in enumerate(passes):
        with syncs[k] if syncs else nullcontext():
            loss, acc = batch_loss(compute_rewards(net, batch), batch, cfg.loss, cfg.center_coef)
            backward(loss * (scale * shares[k] / total_share))
        loss_value += loss.item() * shares[k] / total_share
        acc_value += acc.item() * pairs[k] / total_pairs
    return loss_value, acc_value


def clip_gradients(run: Run, job: Job) -> float:
    """Clip to --max-grad-norm and return the norm (clipping with an infinite norm still returns it:
    the divergence check needs it; DeepSpeed clips inside its own step and may report none)."""
    norm = run.accelerator.clip_grad_norm_(job.net.parameters(), run.cfg.max_grad_norm or math.inf)
    return float(norm) if norm is not None else 0.0


def check_step(run: Run, step: int, losses: list[float], grad_norm: float, signalled: bool, bar: Any) -> bool:
    """Stop before applying a non-finite update (on every process); return whether a stop was asked for."""
    bad_loss = next((x for x in losses if not math.isfinite(x)), None)
    bad = run.reduce_sum([float(bad_loss is not None), float(not math.isfinite(grad_norm)), float(signalled)])
    if bad[0] or bad[1]:
        bar.close()
        what = "loss" if bad[0] else "gradient"
        raise TrainingDiverged(
            f"step {step}: non-finite {what} (loss {losses[-1] if bad_loss is None else bad_loss:.4g}, "
            f"gradient norm {grad_norm:.4g}); "
            f"stopped before applying the update and no final model was written; {run.last_good()}. "
            f"Lower --lr (now {run.cfg.lr:g}), keep --max-grad-norm on, or try --precision fp32.")
    return bool(bad[2])


def log_train(run: Run, job: Job, state: TrainState, grad_norm: float, bar: Any) -> None:
    """The mean loss and accuracy since the last log line, over all processes, to metrics.jsonl and the bar."""
    loss_sum, acc_sum, count = run.reduce_sum(state.running)
    state.reset_running()
    mean_loss, mean_acc = loss_sum / count, acc_sum / count
    bar.set_postfix(loss=f"{mean_loss:.4f}", acc=f"{mean_acc:.3f}")
    job.metrics.write(split="train", step=state.step, loss=mean_loss, accuracy=mean_acc,
                      lr=job.scheduler.get_last_lr()[0], grad_norm=grad_norm, pairs_seen=state.pairs_seen,
                      epoch=state.pairs_seen / len(job.data.train_enc))


def evaluate_now(run: Run, job: Job, step: int) -> tuple[dict[str, Any], list[list[float]]] | None:
    """Held-out metrics (and rewards) at ``step``, written to metrics.jsonl; None without held-out data."""
    if not job.data.eval_enc:
        return None
    result, rewards = evaluate_net(job.net, job.data.held_out, job.data.eval_enc, job.pad_id, run.cfg.eval_batch_size,
                                   run.accelerator, job.share_prefix)
    job.metrics.write(split="eval", step=step, **{k: v for k, v in result.items() if not isinstance(v, dict)})
    if step < job.plan.total_steps:
        run.say(f"step {step}: eval accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f}")
    return result, rewards


def checkpoint(run: Run, job: Job, state: TrainState) -> Path:
    """Write OUT/checkpoint-STEP (never of broken weights)."""
    if run.any(not all_finite(job.net.parameters())):
        raise TrainingDiverged(f"step {state.step}: the weights hold NaN/inf; no checkpoint written; "
                               f"{run.last_good()}")
    saved = state.to_json(run.reduce_sum(state.running), total_steps=job.plan.total_steps,
                          num_processes=run.world, config=to_dict(run.cfg),
                          fingerprint=job.data.fingerprint)
    return save_checkpoint(run.accelerator, run.out, state.step, saved, run.cfg.save_total_limit)


# --------------------------------------------------------------------------------------- the end of a run


def final_evaluation(run: Run, job: Job) -> tuple[dict[str, Any] | None, list[list[float]], dict[str, Any]]:
    """(held-out metrics, held-out rewards, reward statistics) for the saved model.

    The statistics (mean/std for ``--normalize``) come from the held-out rewards, or without held-out
    data from a seeded sample of 512 training comparisons.
    """
    final = evaluate_now(run, job, job.plan.total_steps)
    if final is not None:
        metrics, rewards = final
        return metrics, rewards, {"rewards": [r for rs in rewards for r in rs], "source": "eval"}
    data = job.data
    sample = random.Random(run.cfg.seed).sample(range(len(data.train_enc)), min(512, len(data.train_enc)))
    _, rewards = evaluate_net(job.net, [data.train[i] for i in sample], [data.train_enc[i] for i in sample],
                              job.pad_id, run.cfg.eval_batch_size, run.accelerator, job.share_prefix)
    return None, [], {"rewards": [r for rs in rewards for r in rs], "source": "train-sample"}


def publish(run: Run, job: Job, tokenizer: Any, state: TrainState, final: dict[str, Any] | None,
            eval_rewards: list[list[float]], stats: dict[str, Any], timing: dict[str, float]) -> None:
    """Check the trained weights, then write the model, its config, report and eval.json (last:
    it marks the run finished) into the output directory, atomically per file."""
    cfg, out, rewards = run.cfg, run.out, stats["rewards"]
    run.accelerator.wait_for_everyone()
    # Sharded runs gather the full weights (a collective: every process takes part).
    full_state = run.accelerator.get_state_dict(job.net) if run.sharded else None
    broken = not all(math.isfinite(r) for r in rewards) or not all_finite(
        [v for v in full_state.values() if v.is_floating_point()] if full_state else job.net.parameters())
    if run.any(broken):
        raise TrainingDiverged(f"the trained weights hold NaN/inf or give non-finite rewards; "
                               f"no final model was written; {run.last_good()}")
    if not run.main:
        return
    mean = sum(rewards) / len(rewards)
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / len(rewards)) or 1.0
    meta = {"version": __version__, "max_length": cfg.max_length, "loss": cfg.loss,
            "normalization": {"mean": mean, "std": std, "source": stats["source"], "count": len(rewards)}}
    inner = run.accelerator.unwrap_model(job.net).model
    weights = {k.removeprefix("model."): v for k, v in full_state.items()} if full_state else None
    tmp = out / ".tmp-model"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        save_trained(inner, tokenizer, tmp, meta, state_dict=weights)
        publish_model(tmp, out)
        if cfg.merge:
            merge_adapter(out, out / "merged", overwrite=True)
        (out / "train_config.yaml").write_text(
            f"# precision: {cfg.precision} resolved to {run.precision.name} ({run.precision.reason})\n"
            + yaml.safe_dump({**to_dict(cfg), "precision": run.precision.name}, sort_keys=False))
        if final:  # the same report as `rewardkit eval --report`, for the held-out data
            from rewardkit.evaluation.report import write_report

            held_out = cfg.eval_data or f"{cfg.held_out_fraction():.0%} of the prompts"
            page = write_report(out / "report", job.data.held_out, eval_rewards, final, title="Held-out evaluation",
                                details={"model": cfg.model or "bundled MiniLM-L6", "held-out data": held_out})
            run.say(f"evaluation report: {page}")
        summary = {"steps": job.plan.total_steps, "pairs_seen": state.pairs_seen,
                   "train_comparisons": len(job.data.train_enc), "truncated": job.data.truncated,
                   "eval_truncated": job.data.eval_truncated, "skipped": job.data.skipped, **timing,
                   "prefix_sharing": job.share_prefix, "precision": run.precision.name,
                   "precision_reason": run.precision.reason, "eval": final}
        if run.saved is not None:
            summary["resumed_from_step"] = int(run.saved["step"])
        for card_dir in [out] + ([out / "merged"] if cfg.merge else []):  # README.md: how to score
            write_card(card_dir, {**to_dict(cfg), "precision": run.precision.name}, summary)
        (out / "eval.json").write_text(json.dumps(summary, indent=2) + "\n")
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UsageError(describe_os_error(e, "the final model", out) + f"; {run.last_good()}") from None
