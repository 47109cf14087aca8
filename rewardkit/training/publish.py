"""The end of a run: the final evaluation and the output directory (model, card, report, eval.json).

The weights are checked first (on every process, over every shard), then the main process writes
the model with its ``config.rewardkit`` (`rewardkit.model.artifacts.model_meta`: the objective's
entries and the reward statistics that ``--normalize`` applies), the merged weights of a LoRA run
with ``--merge``, ``train_config.yaml``, the held-out report, the model card and, last, eval.json,
which marks the run finished. A failed write (disk full) names the file and the last good checkpoint.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from typing import Any

import yaml

from rewardkit.card.text import write_card
from rewardkit.config import to_dict
from rewardkit.errors import TrainingDiverged, UsageError, describe_os_error
from rewardkit.evaluation.held_out import score_sharded
from rewardkit.model.artifacts import merge_adapter, model_meta, publish_model, save_trained
from rewardkit.training.checkpoints import list_checkpoints
from rewardkit.training.divergence import all_finite
from rewardkit.training.loop import TrainingJob, evaluate_now
from rewardkit.training.objectives import Evaluation
from rewardkit.training.resume import TrainState
from rewardkit.training.startup import Run

STATS_SAMPLE = 512  # training items scored for the reward statistics of a run without held-out data


def final_evaluation(run: Run, job: TrainingJob) -> tuple[Evaluation | None, dict[str, Any]]:
    """(held-out evaluation, reward statistics) of the trained network.

    The statistics (mean/std for ``--normalize``) come from the held-out rewards, or without held-out
    data from a seeded sample of training items; none for an objective without rewards (SFT).
    """
    final = evaluate_now(run, job, job.plan.total_steps)
    if not job.objective.traits.reward_statistics:
        return final, {}
    if final is not None:
        rewards, source = final.rewards, "eval"
    else:
        items = job.objective.reward_items()
        sample = random.Random(run.cfg.seed).sample(range(len(items)), min(STATS_SAMPLE, len(items)))
        outputs = score_sharded(job.net, [items[i] for i in sample], job.pad_id, run.cfg.eval_batch_size,
                                run.accelerator, job.layout.share_prefix, job.layout.pack)
        rewards, source = job.objective.rewards_of(outputs), "train-sample"
    if not all(math.isfinite(r) for r in rewards):
        return final, {"rewards": rewards, "source": source, "broken": True}
    mean = sum(rewards) / len(rewards)
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / len(rewards)) or 1.0
    return final, {"mean": mean, "std": std, "source": source, "count": len(rewards)}


def publish(run: Run, job: TrainingJob, tokenizer: Any, state: TrainState, final: Evaluation | None,
            stats: dict[str, Any], timing: dict[str, float]) -> None:
    """Check the trained weights, then write the model and everything beside it (see the module doc)."""
    run.accelerator.wait_for_everyone()
    # Sharded runs gather the full weights (a collective: every process takes part).
    full_state = run.accelerator.get_state_dict(job.net) if run.sharded else None
    broken = stats.get("broken", False) or not all_finite(
        [v for v in full_state.values() if v.is_floating_point()] if full_state else job.net.parameters())
    if run.any(broken):
        raise TrainingDiverged(f"the trained weights hold NaN/inf or give non-finite rewards; "
                               f"no final model was written; {run.last_good()}")
    if not run.main:
        return
    cfg, out = run.cfg, run.out
    inner = run.accelerator.unwrap_model(job.net).model
    weights = {k.removeprefix("model."): v for k, v in full_state.items()} if full_state else None
    meta = model_meta(cfg.max_length, job.objective.loss_name, inputs=job.objective.data.inputs(),
                      **({"normalization": stats} if stats else {}), **job.objective.model_meta(inner, weights))
    tmp = out / ".tmp-model"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        save_trained(inner, tokenizer, tmp, meta, state_dict=weights)
        job.objective.save_extra(tmp)
        publish_model(tmp, out)
        if cfg.merge:
            merge_adapter(out, out / "merged", overwrite=True)
        write_run_files(run, job, state, final, timing)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UsageError(describe_os_error(e, "the final model", out) + f"; {run.last_good()}") from None


def report_details(run: Run, job: TrainingJob) -> dict[str, str]:
    """The report header's facts about the run: a report read alone must say what was trained on what."""
    cfg = run.cfg
    loss = job.objective.loss_name
    return {"model": cfg.model or "bundled MiniLM-L6",
            "training data": cfg.train_data or "bundled quickstart sample (hh-rlhf harmless)",
            "held-out data": cfg.eval_data or f"{cfg.held_out_fraction():.0%} of the prompts",
            "objective": cfg.objective if loss == cfg.objective else f"{cfg.objective}, loss {loss}",
            "max length": str(cfg.max_length),
            "batch size": str(cfg.batch_size) + (f" x {cfg.grad_accum} accumulated" if cfg.grad_accum > 1 else ""),
            "learning rate": f"{cfg.lr:g}", "epochs": f"{cfg.epochs:g}", "precision": run.precision.name}


def write_run_files(run: Run, job: TrainingJob, state: TrainState, final: Evaluation | None,
                    timing: dict[str, float]) -> None:
    """train_config.yaml, the held-out report, the model card(s) and eval.json (last)."""
    cfg, out, objective = run.cfg, run.out, job.objective
    settings = {**to_dict(cfg), "precision": run.precision.name}
    (out / "train_config.yaml").write_text(
        f"# precision: {cfg.precision} resolved to {run.precision.name} ({run.precision.reason})\n"
        f"# {job.speed.describe()}\n" + yaml.safe_dump(settings, sort_keys=False))
    # the same report as `rewardkit eval --report`, for the held-out data (objectives that draw one)
    page = final and objective.write_report(out / "report", final, report_details(run, job))
    if page:
        run.say(f"evaluation report: {page}")
    counts, facts = objective.summary()
    summary = {"steps": job.plan.total_steps, f"{objective.traits.unit}_seen": state.seen, **counts,
               "skipped": objective.data.skipped, **timing, **job.speed.to_dict(), **facts,
               "eval": final.metrics if final else None}
    if run.saved is not None:
        summary["resumed_from_step"] = int(run.saved["step"])
    for card_dir in [out] + ([out / "merged"] if cfg.merge else []):  # README.md: how to score
        write_card(card_dir, settings, summary)
    (out / "eval.json").write_text(json.dumps(summary, indent=2) + "\n")
    if cfg.save_total_limit is None:  # the model is written: its checkpoints are no longer needed
        for _, checkpoint in list_checkpoints(out):
            shutil.rmtree(checkpoint, ignore_errors=True)
