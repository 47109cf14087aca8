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
from typing import Any

import torch
from tqdm.auto import tqdm

from rewardkit.config import to_dict
from rewardkit.errors import TrainingInterrupted
from rewardkit.model.batching import Batch, BatchLayout
from rewardkit.training.batch_plan import TrainingPlan
from rewardkit.training.checkpoints import load_checkpoint, save_checkpoint
from rewardkit.training.divergence import check_step, check_weights
from rewardkit.training.objectives import Evaluation, Objective
from rewardkit.training.resume import TrainState
from rewardkit.training.signals import StopSignals
from rewardkit.training.speed import SpeedPlan
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
    speed: SpeedPlan  # precision, prefix sharing, packed rows, compile, flex attention, pass budget
    pad_id: int
    metrics: MetricsLog
    fingerprint: str  # of the training data: every checkpoint stores it, a resume checks it

    @property
    def layout(self) -> BatchLayout:
        return self.speed.layout


def restore(run: Run, job: TrainingJob) -> TrainState:
    """A fresh state (and an empty metrics.jsonl), or the checkpoint's weights, optimizer, scheduler,
    RNG and position on --resume."""
    objective = job.objective
    if run.saved is None:
        if run.main:
            job.metrics.path.write_text("")
        return TrainState(objective.traits.logged, objective.traits.unit)
    load_checkpoint(run.accelerator, run.resume_from)
    state = TrainState.from_json(run.saved, objective.traits.logged, objective.traits.unit, with_running=run.main)
    job.metrics.truncate_after(state.step)
    run.say(f"resumed from {run.resume_from} at step {state.step} of {job.plan.total_steps} "
            f"({state.seen} {objective.traits.unit} already seen are skipped)")
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
            values, seen = train_step(run, job, state.step + 1)
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


def train_step(run: Run, job: TrainingJob, step: int) -> tuple[list[dict[str, torch.Tensor]], int]:
    """One optimizer step's forward and backward: this process's micro-batch of every round, pass by pass.

    Per pass: collate -> forward -> each loss term's mean -> backward. A term's mean over a pass is
    weighted by the pass's share of what the term averages over in its micro-batch (`Objective.counts`,
    read from the batch on the host, before it moves to a GPU), so the gradients summed over the passes
    are those of the micro-batch's whole loss, whatever the passes hold; ``--grad-accum`` rounds each
    weigh ``1 / rounds``. DDP all-reduces once, in the step's last pass (no_sync for all the others);
    under DeepSpeed, which steps inside backward, a pass's loss is checked before its backward. Returns
    each micro-batch's logged values (kept on the device, in the order a Python float sum takes; read
    only when a line is logged) and the items the step saw on all processes.
    """
    acc, plan, objective = run.accelerator, job.plan, job.objective
    rounds = plan.step_rounds(step - 1)
    values, seen = [], 0
    for i, rnd in enumerate(rounds):
        batches = [objective.collate(members, job.pad_id, job.layout, [plan.prompt_of[j] for j in members])
                   for members in plan.passes(rnd[run.rank])]
        counts = [objective.counts(batch) for batch in batches]
        totals = {name: sum(c[name] for c in counts) for name in counts[0]}
        logged: dict[str, Any] = dict.fromkeys(totals, 0.0)  # a value with nothing to average here stays 0
        for k, batch in enumerate(batches):
            last = i == len(rounds) - 1 and k == len(batches) - 1
            with nullcontext() if last else acc.no_sync(job.net):
                batch = batch.to(acc.device)
                outputs = job.net(**batch.inputs())
                means = objective.loss(outputs, batch)
                parts = [objective.term_weights[t] * means[t] * (1 / len(rounds) * counts[k][t] / totals[t])
                         for t in objective.term_weights if totals[t]]
                loss = sum(parts) if parts else outputs.sum() * 0.0
                if run.deepspeed:
                    check_step(run, step, [float(loss.detach())], 0.0, False)
                acc.backward(loss)
            for name, mean in means.items():
                if totals[name]:
                    logged[name] = logged[name] + mean.detach().double() * counts[k][name] / totals[name]
        values.append({"loss": sum(objective.term_weights[t] * logged[t] for t in objective.term_weights), **logged})
        seen += sum(len(b) for b in rnd)
    return values, seen


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
