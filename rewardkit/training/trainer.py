"""Train a reward model: `train` runs the phases of a run in order, for every objective.

    [sft_stage | critique_stage] -> start_run -> data.load -> readout.load_model -> data.encode -> prepare_output
                -> resolve_speed -> plan_run -> build_job -> restore -> fit -> final_evaluation -> publish

What is learned is the objective's (`rewardkit.training.objectives`: its data, its readout, its loss
and evaluation); how fast it computes is the `rewardkit.training.speed.SpeedPlan`, resolved once;
everything else is this one path: the accelerator and output directory
(`rewardkit.training.startup`), the plan of micro-batches (`rewardkit.training.batch_plan`), the
network and optimizer built here, the loop (`rewardkit.training.loop`) and the output directory
(`rewardkit.training.publish`). Never lose a run: checkpoints are atomic, SIGINT/SIGTERM checkpoint
and stop at the end of the current step, ``--resume`` rebuilds the same plan and starts at the saved
step, and a non-finite loss or gradient stops the run before the bad update.

accelerate provides DDP/FSDP/DeepSpeed and mixed precision; rewardkit never reimplements them.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from rewardkit.config import TrainConfig, to_dict
from rewardkit.model.backbone import compile_backbone
from rewardkit.model.lora import apply_lora, save_trainable_only
from rewardkit.model.precision import resolve_precision
from rewardkit.model.prefix_sharing import resolve_flex_attention
from rewardkit.training.batch_plan import TrainingPlan
from rewardkit.training.loop import TrainingJob, fit, restore
from rewardkit.training.objectives import Objective, objective_for
from rewardkit.training.output_dir import check_output_dir
from rewardkit.training.publish import final_evaluation, publish
from rewardkit.training.resume import check_resume_data
from rewardkit.training.sharding import configure_deepspeed
from rewardkit.training.speed import SpeedPlan, resolve_speed, with_flex_attention
from rewardkit.training.startup import Run, fresh_accelerate_state, prepare_output, run_device_type, start_run
from rewardkit.training.tracking import MetricsLog, accelerator_kwargs, finishing, start_trackers


@dataclass
class TrainResult:
    output_dir: str
    steps: int
    pairs_seen: int  # training items seen (pairs or rankings; rated rows and pairs for regression)
    train_comparisons: int  # training items
    truncated: int
    skipped: int
    eval_metrics: dict[str, Any] | None
    seconds: float
    resumed_from_step: int = 0
    train_seconds: float = 0.0  # the optimizer loop alone (no loading, tokenizing, evaluation, saving)
    eval_table: str = ""  # the held-out metrics as the objective prints them ("" without held-out data)


def train(cfg: TrainConfig, log: Callable[[str], None] = print, objective: Objective | None = None) -> TrainResult:
    """Train a reward model as ``cfg`` says and save it to ``cfg.output_dir``.

    ``objective``: one built outside the registry (`rewardkit.training.objectives.OBJECTIVES`), e.g. a
    method of one's own (ARCHITECTURE.md, "Adding an objective"); default: the one ``--objective`` names.
    Raises UsageError for bad settings or data, TrainingDiverged (a UsageError) on a non-finite loss
    or gradient, and TrainingInterrupted after checkpointing on SIGINT/SIGTERM.
    """
    cfg.validate()
    if cfg.sft_epochs:
        cfg = sft_stage(cfg, log)
    elif cfg.objective == "critique" and cfg.critique_sft_epochs:
        cfg = critique_stage(cfg, log)
    trackers = accelerator_kwargs(cfg)  # a missing tracker package fails here, before any work
    started = time.time()
    precision = resolve_precision(cfg.precision, run_device_type())
    with fresh_accelerate_state():  # a run never inherits another run's precision in this process
        run = start_run(cfg, precision, log, trackers)
        with finishing(run.accelerator):
            objective = objective or objective_for(cfg)
            data, readout = objective.data, objective.readout
            data.load(run)  # bad data fails before the model is loaded
            model, tokenizer = readout.load_model()
            fresh = getattr(model, "rewardkit_fresh_modules", [])
            run.say(f"model: {type(model).__name__} from {cfg.model or 'the bundled MiniLM-L6'}"
                    + (f"; freshly initialised: {', '.join(fresh)}" if fresh else ""))
            data.encode(run, readout.encoder(model, tokenizer))
            fingerprint = data.fingerprint()
            if run.saved is not None:
                check_resume_data(run.saved, fingerprint, run.resume_from)
            prepare_output(run)  # only now: bad data, a wrong model or a bad setting changed nothing
            speed = resolve_speed(cfg, run, objective, model, tokenizer.pad_token_id)
            plan = plan_run(cfg, run, objective, speed)
            job = build_job(cfg, run, objective, model, plan, speed, tokenizer.pad_token_id, fingerprint)
            run.say(job.speed.describe())
            state = restore(run, job)
            timing = fit(run, job, state)
            final, stats = final_evaluation(run, job)
            publish(run, job, tokenizer, state, final, stats, {"seconds": round(time.time() - started, 1), **timing,
                                                               "train_seconds": round(timing["train_seconds"], 1)})
            run.accelerator.wait_for_everyone()
    return TrainResult(output_dir=str(run.out), steps=plan.total_steps, pairs_seen=state.seen,
                       train_comparisons=len(data.items), truncated=data.truncated,
                       skipped=data.skipped, eval_metrics=final.metrics if final else None,
                       seconds=time.time() - started,
                       resumed_from_step=int(run.saved["step"]) if run.saved else 0,
                       train_seconds=timing["train_seconds"],
                       eval_table=objective.results_table(final.metrics) if final else "")


def sft_stage(cfg: TrainConfig, log: Callable[[str], None]) -> TrainConfig:
    """``--sft-epochs``: train the SFT stage in OUTPUT_DIR/sft and return the reward model's settings
    (`first_stage`)."""
    return first_stage(cfg, log, "sft", cfg.sft_epochs, "SFT stage", "--objective sft")


def critique_stage(cfg: TrainConfig, log: Callable[[str], None]) -> TrainConfig:
    """``--objective critique``: learn to write the reference critiques in OUTPUT_DIR/critique-lm first
    (`first_stage`), then the reward stage starts from that model."""
    return first_stage(cfg, log, "critique-lm", cfg.critique_sft_epochs, "critique stage 1",
                       "--objective critique-lm (learning to write the reference critiques)")


def first_stage(cfg: TrainConfig, log: Callable[[str], None], objective: str, epochs: float, what: str,
                does: str) -> TrainConfig:
    """Train a language-model stage in OUTPUT_DIR/<objective> (on ``--resume``: finish it, or skip it once
    finished) and return the reward model's settings, which start from its weights (LoRA runs: from its
    merged weights). The stage shares every setting but those only a reward model has."""
    check_output_dir(cfg)  # a reward model's directory that would be refused is refused now, not after stage 1
    stage_dir = Path(cfg.output_dir) / objective
    if cfg.resume and (stage_dir / "eval.json").is_file():
        log(f"{what}: finished in {stage_dir}; training the reward model from it")
    else:
        log(f"{what}: {epochs:g} epoch(s) of {does} in {stage_dir}, then the reward model from it")
        train(dataclasses.replace(cfg, objective=objective, epochs=epochs, sft_epochs=0.0, output_dir=str(stage_dir),
                                  merge=bool(cfg.lora_r), loss="bt", balance_per_prompt=False, center_coef=0.0,
                                  resume="auto" if cfg.resume else None), log)
    # the reward model resumes from its own checkpoint when it has one (else it starts after the first stage)
    return dataclasses.replace(cfg, model=str(stage_dir / "merged" if cfg.lora_r else stage_dir),
                               resume="auto" if cfg.resume else None)


def plan_run(cfg: TrainConfig, run: Run, objective: Objective, speed: SpeedPlan) -> TrainingPlan:
    """Every micro-batch of the run (see `rewardkit.training.batch_plan`)."""
    groups = objective.data.prompt_groups()
    if cfg.balance_per_prompt:
        run.say(f"balance per prompt: {len(groups)} prompts, {cfg.batch_size} whole prompts per batch, "
                "each prompt's pairs weighted to sum to 1")
    return TrainingPlan.build(objective.items, groups, batch_size=cfg.batch_size, epochs=cfg.epochs, seed=cfg.seed,
                              world=run.world, grad_accum=cfg.grad_accum, share_prefix=speed.prefix_sharing,
                              pass_tokens=speed.pass_tokens, length_grouped=objective.traits.length_grouped,
                              packed=speed.packing)


def build_job(cfg: TrainConfig, run: Run, objective: Objective, model: torch.nn.Module, plan: TrainingPlan,
              speed: SpeedPlan, pad_id: int, fingerprint: str) -> TrainingJob:
    """Gradient checkpointing, LoRA, the objective's network, AdamW and the schedule, prepared by accelerate."""
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
    if speed.compile:
        compile_backbone(model)
    net = objective.readout.net(model)
    net.train()
    optimizer = build_optimizer(cfg, net)
    scheduler = get_scheduler(cfg.scheduler if cfg.scheduler != "constant" else "constant_with_warmup",
                              optimizer, num_warmup_steps=int(cfg.warmup_ratio * plan.total_steps),
                              num_training_steps=plan.total_steps)
    if run.deepspeed:
        configure_deepspeed(run.accelerator, cfg.batch_size)  # no DataLoader to read the micro-batch from
    net, optimizer = run.accelerator.prepare(net, optimizer)
    objective.start(run, net, pad_id)
    if speed.packing and run.accelerator.device.type == "cuda":
        speed = with_flex_attention(speed, resolve_flex_attention(run.accelerator.unwrap_model(net), pad_id, True,
                                                                  speed.prefix_sharing))
    # Registered, not prepared: a prepared scheduler steps once per process per optimizer step.
    run.accelerator.register_for_checkpointing(scheduler)
    if cfg.lora_r:
        save_trainable_only(run.accelerator)
    trackers = start_trackers(run.accelerator, to_dict(cfg), {"precision_resolved": run.precision.name,
                                                              "num_processes": run.world, **objective.tracker_config()},
                              int(run.saved["step"]) if run.saved else 0)
    return TrainingJob(net, optimizer, scheduler, objective, plan, speed, pad_id,
                       MetricsLog(run.out / "metrics.jsonl", run.main, trackers), fingerprint)


def build_optimizer(cfg: TrainConfig, net: torch.nn.Module) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only (biases and norms are left alone), fused where torch can."""
    decay, no_decay = [], []
    for name, p in net.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr,
                             **fused_adamw_kwargs(decay + no_decay))


def fused_adamw_kwargs(params: list[torch.Tensor]) -> dict[str, bool]:
    """``fused=True`` where torch has a fused AdamW kernel for these parameters (CPU and CUDA floats).

    The default for-loop AdamW launches a dozen elementwise ops per parameter tensor; on a CPU that
    is a sizeable share of each step for a small model. transformers' Trainer (and so TRL) also
    uses the fused kernel by default, so this keeps the comparison even. Same update rule.
    """
    ok = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return {"fused": True} if ok else {}
