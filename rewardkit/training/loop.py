"""The optimizer loop, one for every objective: forward/backward, check, update, log, evaluate, checkpoint.

Every micro-batch of the run is planned up front from the seed (`rewardkit.training.batch_plan`,
which also defines the words used here: micro-batch, round, step, pass), so a step number alone says
where the data stands. One step runs this process's micro-batch of each of its ``--grad-accum``
rounds, pass by pass (DDP all-reduces once, in the step's last pass), then clips, checks for
divergence (`rewardkit.training.divergence`), steps the optimizer and the schedule. What is learned
is the objective's (`rewardkit.training.objectives`): its batches, its loss terms, its evaluation.

Multi-process runs (``accelerate launch``): each round gives every process one micro-batch, so the
global batch is ``batch_size * processes * grad_accum``; logged values are reduced over all
processes and files are written by the main process only.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from rewardkit.config import to_dict
from rewardkit.errors import TrainingInterrupted, UsageError
from rewardkit.model.batching import Batch, BatchLayout
from rewardkit.training.batch_plan import TrainingPlan
from rewardkit.training.checkpoints import load_checkpoint, save_checkpoint
from rewardkit.training.divergence import check_step, check_weights
from rewardkit.training.objectives import Evaluation, Objective
from rewardkit.training.resume import TrainState
from rewardkit.training.signals import StopSignals
from rewardkit.training.startup import Run
from rewardkit.training.tracking import MetricsLog


@dataclass
class TrainingJob:
    """What the loop runs: the prepared network, its optimizer and schedule, the objective and its plan."""

    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    objective: Objective
    plan: TrainingPlan
    layout: BatchLayout  # prefix sharing and packed rows
    pad_id: int
    metrics: MetricsLog
    fingerprint: str  # of the training data: every checkpoint stores it, a resume checks it


def restore(run: Run, job: TrainingJob) -> TrainState:
    """A fresh state (and an empty metrics.jsonl), or the checkpoint's weights, optimizer, scheduler,
    RNG and position on --resume."""
    objective = job.objective
    if run.saved is None:
        if run.main:
            job.metrics.path.write_text("")
        return TrainState(objective.logged, objective.unit)
    if "micro_batches_done" in run.saved:
        raise UsageError(f"--resume: {run.resume_from} was written by an earlier rewardkit whose regression runs "
                         "ordered their batches differently; start over with --overwrite")
    load_checkpoint(run.accelerator, run.resume_from)
    state = TrainState.from_json(run.saved, objective.logged, objective.unit, with_running=run.main)
    job.metrics.truncate_after(state.step)
    run.say(f"resumed from {run.resume_from} at step {state.step} of {job.plan.total_steps} "
            f"({state.seen} {objective.unit} already seen are skipped)")
    return state


WARMUP_STEPS = 5  # steps timed apart: compilation, allocator and kernel warm-up land in the first few


def fit(run: Run, job: TrainingJob, state: TrainState) -> dict[str, Any]:
    """The optimizer loop; returns its timing (`step_timing`). Each step: forward/backward, check, update,
    log, evaluate, checkpoint."""
    cfg, total, first = run.cfg, job.plan.total_steps, state.step
    started = time.time()
    warm = min(WARMUP_STEPS, (total - first) // 2)
    warmed_up = started
    with StopSignals() as stop, tqdm(total=total, initial=state.step, desc="train", disable=not run.main,
                                     unit="step") as bar:
        while state.step < total:
            values, seen = forward_backward(run, job, job.plan.step_rounds(state.step), state.step + 1)
            grad_norm = clip_gradients(run, job)
            stopping = check_step(run, state.step + 1, [v["loss"] for v in values], grad_norm,
                                  stop.received is not None, before_update=not run.deepspeed)
            job.optimizer.step()
            job.scheduler.step()
            job.optimizer.zero_grad(set_to_none=True)
            state.record(values, seen)
            bar.update(1)
            if state.step - first == warm:
                warmed_up = time.time()
            if state.step % cfg.logging_steps == 0 or state.step == total:
                log_train(run, job, state, grad_norm, bar)
            if cfg.eval_steps and state.step % cfg.eval_steps == 0 and state.step < total:
                evaluate_now(run, job, state.step)
            # one process stops at the end of the step a signal arrives in; several agree on it in the
            # next step's divergence check (a collective), so that they all stop after the same step
            stopping = stopping or (run.world == 1 and stop.received is not None)
            if (cfg.save_steps and state.step % cfg.save_steps == 0) or stopping:
                saved = checkpoint(run, job, state)
                if stopping:
                    signum = stop.received or 15  # another process got the signal: report SIGTERM
                    raise TrainingInterrupted(f"stopped by {stop.name or 'SIGTERM'} after step {state.step} of "
                                              f"{total}; checkpoint written to {saved}; continue with --resume",
                                              128 + signum)
    return step_timing(started, warmed_up, time.time(), warm, total - first - warm)


def step_timing(started: float, warmed_up: float, ended: float, warm_steps: int, steady_steps: int) -> dict[str, Any]:
    """The loop's seconds, with its first steps (compilation, warm-up) apart from the steady state."""
    steady = ended - warmed_up
    return {"train_seconds": ended - started, "warmup_steps": warm_steps,
            "warmup_seconds": round(warmed_up - started, 2),
            "steady_steps_per_second": round(steady_steps / steady, 3) if steady_steps and steady > 0 else None}


def forward_backward(run: Run, job: TrainingJob, rounds: list[list[list[int]]], step: int
                     ) -> tuple[list[dict[str, torch.Tensor]], int]:
    """This process's micro-batch of every round of one step, pass by pass; gradients accumulate.

    Returns each micro-batch's logged values and the items the step saw on all processes.
    Gradients are all-reduced once, in the step's last pass (DDP's no_sync for all the others).
    Under DeepSpeed, which steps inside backward, a pass's loss is checked before its backward.
    """
    acc, plan = run.accelerator, job.plan
    check = (lambda loss: check_step(run, step, [loss], 0.0, False)) if run.deepspeed else None
    values, seen = [], 0
    for i, rnd in enumerate(rounds):
        passes = [job.objective.collate(members, job.pad_id, job.layout, [plan.prompt_of[j] for j in members])
                  for members in plan.passes(rnd[run.rank])]
        counts = [job.objective.counts(batch) for batch in passes]  # on the host: no wait for the GPU
        passes = [batch.to(acc.device) for batch in passes]
        last = i == len(rounds) - 1
        syncs = [nullcontext() if last and k == len(passes) - 1 else acc.no_sync(job.net) for k in range(len(passes))]
        values.append(backward_passes(job.objective, job.net, passes, acc.backward, 1 / len(rounds), syncs, check,
                                      counts))
        seen += sum(len(b) for b in rnd)
    return values, seen


def backward_passes(objective: Objective, net: torch.nn.Module, passes: list[Batch],
                    backward: Callable[[torch.Tensor], None], scale: float, syncs: list[Any] | None = None,
                    check: Callable[[float], Any] | None = None,
                    counts: list[dict[str, float]] | None = None) -> dict[str, torch.Tensor]:
    """Forward and backward each pass of one micro-batch; returns the whole micro-batch's logged values.

    Each loss term's mean over a pass is weighted by the pass's share of what that term averages
    over in the whole micro-batch (`Objective.counts`), so the gradients summed over the passes are
    those of the whole micro-batch's loss (times ``scale``), whatever the passes hold. ``syncs``
    gives a context per pass (DDP's no_sync for all but the last of an optimizer step); ``check``
    sees each pass's loss before its backward; ``counts`` are the passes' `Objective.counts` when the
    caller took them before moving the batches to a GPU. The logged values stay on the device (float64, in the
    order a Python float sum would take): reading them would wait for the GPU, so the loop reads
    them only when it logs.
    """
    counts = counts or [objective.counts(batch) for batch in passes]
    totals = {name: sum(c[name] for c in counts) for name in counts[0]}
    values: dict[str, Any] = dict.fromkeys(totals, 0.0)  # a value with nothing to average here stays 0
    for k, batch in enumerate(passes):
        with syncs[k] if syncs else nullcontext():
            outputs = net(**batch.inputs())
            means = objective.loss(outputs, batch)
            parts = [objective.term_weights[t] * means[t] * (scale * counts[k][t] / totals[t])
                     for t in objective.term_weights if totals[t]]
            loss = sum(parts) if parts else outputs.sum() * 0.0
            if check is not None:
                check(float(loss.detach()))
            backward(loss)
        for name, mean in means.items():
            if totals[name]:
                values[name] = values[name] + mean.detach().double() * counts[k][name] / totals[name]
    loss_value = sum(objective.term_weights[t] * values[t] for t in objective.term_weights)
    return {"loss": loss_value, **values}


def clip_gradients(run: Run, job: TrainingJob) -> torch.Tensor | float:
    """Clip to --max-grad-norm and return the norm, on the device (clipping with an infinite norm still
    returns it: the divergence check needs it; DeepSpeed clips inside its own step and may report none)."""
    norm = run.accelerator.clip_grad_norm_(job.net.parameters(), run.cfg.max_grad_norm or math.inf)
    return norm if norm is not None else 0.0


def log_train(run: Run, job: TrainingJob, state: TrainState, grad_norm: torch.Tensor | float, bar: Any) -> None:
    """The mean of each logged value since the last log line, over all processes, to metrics.jsonl
    (and the trackers) and the bar."""
    *sums, count = run.reduce_sum(state.running)
    state.reset_running()
    means = {name: total / count for name, total in zip(state.names, sums)}
    bar.set_postfix({name: f"{value:.4f}" for name, value in means.items()})
    job.metrics.write(split="train", step=state.step, **means, lr=job.scheduler.get_last_lr()[0],
                      grad_norm=float(grad_norm),
                      **{f"{state.unit}_seen": state.seen}, epoch=state.seen / len(job.objective.items))


def evaluate_now(run: Run, job: TrainingJob, step: int) -> Evaluation | None:
    """Held-out metrics at ``step``, written to metrics.jsonl; None without held-out data."""
    result = job.objective.evaluate(run, job.net, job.pad_id, job.layout)
    if result is None:
        return None
    job.metrics.write(split="eval", step=step, **job.objective.eval_record(result.metrics))
    if step < job.plan.total_steps:
        run.say(f"step {step}: {job.objective.describe(result.metrics)}")
    return result


def checkpoint(run: Run, job: TrainingJob, state: TrainState) -> Path:
    """Write OUT/checkpoint-STEP (never of broken weights)."""
    check_weights(run, job.net.parameters(), f"step {state.step}", "no checkpoint written")
    saved = state.to_json(run.reduce_sum(state.running), total_steps=job.plan.total_steps,
                          num_processes=run.world, config=to_dict(run.cfg), fingerprint=job.fingerprint,
                          extra={**job.objective.checkpoint_meta(), "precision": run.precision.name})
    limit = run.cfg.save_total_limit
    return save_checkpoint(run.accelerator, run.out, state.step, saved, 2 if limit is None else limit)
