"""Train on ratings as targets: ``--objective regression`` and ``bt+regression`` (issue 14).

One output per attribute (``num_labels = K``), read at the same token / pooling as the pairwise
reward (`rewardkit.model.net.RewardNet`), trained with the masked MSE/Huber loss of
`rewardkit.model.attribute_head` on scaled targets (`rewardkit.data.attributes.table.Scaling`, fitted on the training
split only). ``bt+regression`` adds Bradley-Terry on the *combined* reward of pairs derived from the
same ratings, so the pairwise signal trains exactly the number ``RewardModel.score`` returns.

The run's surroundings are the pairwise run's (`rewardkit.training.startup`: accelerator and precision, output
directory checks, ``metrics.jsonl``), and the saved directory is the same plain transformers model,
with the scaling folded into the output layer so its logits are ratings in original units
(``config.rewardkit`` names attributes, weights and scaling), and the same model card
(`rewardkit.card.text`), whose snippet returns the combined reward. This loop is deliberately simpler
than `rewardkit.training.trainer.fit`: one process (v1), a seeded shuffle per epoch, micro-batches of
``--batch-size`` items where an item is a rated row or (bt+regression) a derived pair. It
checkpoints every ``--save-steps`` and on SIGINT/SIGTERM, and ``--resume`` continues from there
(`rewardkit.training.checkpoints`'s atomic writes and resume contract); ``--report-to`` trackers get the
metrics.jsonl scalars as in pairwise runs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from rewardkit.card.text import write_card
from rewardkit.config import TrainConfig, to_dict
from rewardkit.data.attributes.options import attribute_options_from, resolve_weights
from rewardkit.data.attributes.pairs import pair_score_weights, pairs_from_records
from rewardkit.data.attributes.table import AttributeTable, RatedResponse, load_attribute_table, split_records
from rewardkit.data.records import Comparison, text_key
from rewardkit.encoding.encoder import Encoded, Encoder
from rewardkit.errors import TrainingDiverged, TrainingInterrupted, UsageError
from rewardkit.evaluation.rating_metrics import flat_metrics, regression_metrics
from rewardkit.model.artifacts import merge_adapter, publish_model, save_trained
from rewardkit.model.attribute_head import (
    RegressionMeta,
    Scaling,
    fit_scaling,
    fold_output_layer,
    head_config,
    output_layer,
)
from rewardkit.model.backbone import load_backbone, make_encoder
from rewardkit.model.batching import Batch, collate_for
from rewardkit.model.lora import apply_lora
from rewardkit.model.net import RewardNet, compute_rewards, score_encoded
from rewardkit.model.precision import resolve_precision
from rewardkit.model.lora import save_trainable_only
from rewardkit.training.checkpoints import load_checkpoint, save_checkpoint
from rewardkit.training.divergence import all_finite
from rewardkit.training.resume import check_resume_data, data_fingerprint
from rewardkit.training.signals import StopSignals
from rewardkit.training.losses import combined_reward, regression_loss
from rewardkit.training.startup import fresh_accelerate_state, Run, run_device_type, start_run
from rewardkit.training.tracking import MetricsLog
from rewardkit.training.tracking import accelerator_kwargs, finishing, start_trackers
from rewardkit.version import __version__


@dataclass
class RatedData:
    """A regression run's data: rated rows (and derived pairs) of both splits, encoded."""

    attributes: list[str]
    weights: list[float]
    train: list[RatedResponse]
    held: list[RatedResponse]
    train_pairs: list[Comparison]
    held_pairs: list[Comparison]
    skipped: int
    ranges: list[tuple[float, float] | None]
    scaling: Scaling | None = None
    train_enc: list[Encoded] | None = None
    pair_enc: list[Encoded] | None = None
    held_enc: list[Encoded] | None = None


def train_regression(cfg: TrainConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train a K-attribute regression reward model as ``cfg`` says; the fields of `TrainResult`."""
    trackers = accelerator_kwargs(cfg)  # a missing tracker package fails here, before any work
    started = time.time()
    precision = resolve_precision(cfg.precision, run_device_type())
    with fresh_accelerate_state():
        run = start_run(cfg, precision, log, trackers)
        if run.world > 1:
            raise UsageError(f"--objective {cfg.objective} runs in one process for now (got {run.world})")
        with finishing(run.accelerator):
            return _train_rated(cfg, run, started)


def _train_rated(cfg: TrainConfig, run: Run, started: float) -> dict[str, Any]:
    """Load, train, evaluate and publish inside `train_regression`'s accelerator and trackers."""
    data = load_rated(cfg, run)
    model, tokenizer = load_backbone(cfg.model, dropout=cfg.dropout, head=head_config(data.attributes))
    center = output_layer(model).bias is not None  # a bias-less head cannot absorb an offset at export
    data.scaling = fit_scaling(cfg.target_scaling, data.train, data.ranges, data.attributes,
                               center=center)
    run.say(f"target scaling {data.scaling.kind}: offset {_fmt(data.scaling.offset)}, "
            f"scale {_fmt(data.scaling.scale)}; combined reward weights {_fmt(data.weights)}")
    encode_rated(data, make_encoder(model, tokenizer, cfg.max_length))
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if cfg.lora_r:
        model = apply_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)
    net = RewardNet(model)
    resumed = int(run.saved["step"]) if run.saved else 0
    tracker = start_trackers(run.accelerator, to_dict(cfg), {"precision_resolved": run.precision.name,
                                                             "attributes": ",".join(data.attributes)}, resumed)
    metrics = MetricsLog(run.out / "metrics.jsonl", run.main, tracker)
    t0 = time.time()
    steps, seen = fit_rated(run, net, data, tokenizer.pad_token_id, metrics)
    train_seconds = time.time() - t0
    final, pred, combined = evaluate_rated(run, net, data, tokenizer.pad_token_id)
    if final is not None:
        metrics.write(split="eval", step=steps, **flat_metrics(final))
    publish_rated(run, net, tokenizer, data, final, pred, combined,
                  {"steps": steps, "rows_seen": seen, "seconds": round(time.time() - started, 1),
                   "train_seconds": round(train_seconds, 1), **({"resumed_from_step": resumed} if resumed else {})})
    return {"output_dir": str(run.out), "steps": steps, "pairs_seen": seen, "train_comparisons": len(data.train),
            "truncated": sum(e.truncated for e in data.train_enc or []), "skipped": data.skipped,
            "eval_metrics": final, "seconds": time.time() - started, "train_seconds": train_seconds,
            "resumed_from_step": resumed}


def _fmt(xs: Sequence[float]) -> str:
    return "[" + ", ".join(f"{x:.4g}" for x in xs) + "]"


def _load_table(cfg: TrainConfig, run: Run, source: str) -> AttributeTable:
    table = load_attribute_table(source, attribute_options_from(cfg), cfg.skip_invalid)
    for note in table.notes:
        run.say(note)
    if table.problems:
        from rewardkit.data.records import describe_problems

        run.say(describe_problems(table.problems, source))
    if table.dropped:
        from rewardkit.data.records import describe_dropped

        run.say(describe_dropped(table.dropped, source))
    return table


def load_rated(cfg: TrainConfig, run: Run) -> RatedData:
    """Rated rows of the training and held-out sides (prompt-disjoint split or --eval-data), weights,
    and for bt+regression the pairs derived on each side separately."""
    table = _load_table(cfg, run, cfg.train_data)
    attrs = table.attributes
    skipped = len(table.problems)
    if cfg.eval_data:
        held_table = _load_table(cfg, run, cfg.eval_data)
        if held_table.attributes != attrs:
            raise UsageError(f"--eval-data {cfg.eval_data}: attributes {held_table.attributes} differ from the "
                             f"training data's {attrs}")
        train_r, held_r = table.records, held_table.records
        skipped += len(held_table.problems)
    else:
        train_r, held_r = split_records(table.records, cfg.held_out_fraction(), cfg.seed)
    weights = resolve_weights(cfg.attribute_weights, attrs)
    pair_score_weights(cfg.pair_attribute, attrs, weights)  # an unknown --pair-attribute fails here
    train_pairs: list[Comparison] = []
    if cfg.objective == "bt+regression":
        loaded = pairs_from_records(train_r, attrs, weights, cfg.pair_attribute, cfg.rating_options())
        for note in loaded.notes:
            run.say(note)
        train_pairs = loaded.comparisons
        if not train_pairs:
            raise UsageError("--objective bt+regression: the ratings give no pair (every prompt needs 2+ answers "
                             "with different ratings); use --objective regression")
    held_pairs = (pairs_from_records(held_r, attrs, weights, cfg.pair_attribute, cfg.rating_options()).comparisons
                  if held_r else [])
    run.say(f"data: {len(train_r)} rated training rows, {len(held_r)} held out, attributes {', '.join(attrs)}"
            + (f"; {len(train_pairs)} training pairs from the ratings" if train_pairs else "")
            + (f"; {len(held_pairs)} held-out pairs" if held_pairs else ""))
    return RatedData(attrs, weights, list(train_r), list(held_r), train_pairs, held_pairs, skipped, table.ranges)


def encode_rated(data: RatedData, encoder: Encoder) -> None:
    """Each rated row is a one-response comparison; pairs are ordinary two-response comparisons."""
    data.train_enc = [encoder.encode_texts(r.prompt, [r.response]) for r in data.train]
    data.held_enc = [encoder.encode_texts(r.prompt, [r.response]) for r in data.held]
    data.pair_enc = [encoder.encode(c) for c in data.train_pairs]


# --------------------------------------------------------------------------------------- the loop


def _items(data: RatedData) -> list[tuple[str, int]]:
    return [("row", i) for i in range(len(data.train))] + [("pair", j) for j in range(len(data.train_pairs))]


def make_batch(data: RatedData, items: Sequence[tuple[str, int]], pad_id: int, use_margin: bool
               ) -> tuple[Batch, torch.Tensor, torch.Tensor]:
    """One padded batch of rated rows and pairs, with targets [N, K] and their mask (pair responses: none)."""
    assert data.scaling is not None and data.train_enc is not None and data.pair_enc is not None
    enc = [data.train_enc[i] if kind == "row" else data.pair_enc[i] for kind, i in items]
    batch = collate_for(enc, pad_id, False, use_margin=use_margin)
    k = len(data.attributes)
    target, mask = [], []
    for kind, i in items:
        if kind == "row":
            scaled = data.scaling.scale_values(data.train[i].values)
            target.append([0.0 if v is None else v for v in scaled])
            mask.append([v is not None for v in scaled])
        else:
            target += [[0.0] * k, [0.0] * k]
            mask += [[False] * k, [False] * k]
    return batch, torch.tensor(target, dtype=torch.float32), torch.tensor(mask, dtype=torch.bool)


def rated_loss(outputs: torch.Tensor, batch: Batch, target: torch.Tensor, mask: torch.Tensor, cfg: TrainConfig,
               data: RatedData) -> tuple[torch.Tensor, float, float]:
    """(loss, regression term, pairwise term): masked regression + pairwise_weight * Bradley-Terry on
    the combined reward; an empty term is 0, never NaN."""
    assert data.scaling is not None
    if outputs.dim() == 1:  # one attribute: RewardNet returns [N]
        outputs = outputs.unsqueeze(-1)
    reg = regression_loss(outputs, target, mask, cfg.regression_loss, cfg.huber_delta)
    loss, bt_value = reg, 0.0
    if len(batch.pair_better):
        pw = torch.tensor(pair_score_weights(cfg.pair_attribute, data.attributes, data.weights))
        r = combined_reward(outputs, pw, torch.tensor(data.scaling.offset), torch.tensor(data.scaling.scale))
        diff = r[batch.pair_better] - r[batch.pair_worse] - (batch.pair_margin if cfg.use_margin else 0.0)
        bt = (-F.logsigmoid(diff) * batch.pair_weight).sum() / batch.pair_weight.sum()
        loss = reg + cfg.pairwise_weight * bt
        bt_value = bt.item()
    return loss, reg.item(), bt_value


@dataclass
class RatedState:
    """Where a regression run stands; beside accelerate's files, what its checkpoints hold.

    ``micro`` (micro-batches consumed) is the data position: the order is a seeded reshuffle
    (`micro_batches`), so a resumed run replays it up to there. ``running`` sums loss, regression
    loss, pairwise loss and micro-batches since the last logged step.
    """

    step: int = 0
    micro: int = 0
    seen: int = 0
    running: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])


def micro_batches(items: Sequence[tuple[str, int]], size: int, seed: int) -> Iterator[list[tuple[str, int]]]:
    """Micro-batches of ``size`` items from endless seeded reshuffles (an epoch's tail joins the next)."""
    rng = random.Random(seed)
    order: list[tuple[str, int]] = []
    while True:
        if len(order) < size:
            more = list(items)
            rng.shuffle(more)
            order += more
        chunk, order = order[:size], order[size:]
        yield chunk


def fit_rated(run: Run, net: RewardNet, data: RatedData, pad_id: int, metrics: MetricsLog) -> tuple[int, int]:
    """AdamW over seeded, shuffled micro-batches for --epochs, checkpointing every --save-steps and on
    SIGINT/SIGTERM; returns (optimizer steps, items seen)."""
    from transformers import get_scheduler

    cfg, acc = run.cfg, run.accelerator
    items = _items(data)
    micro = max(1, round(math.ceil(len(items) / cfg.batch_size) * cfg.epochs))
    total = math.ceil(micro / cfg.grad_accum)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = get_scheduler(cfg.scheduler if cfg.scheduler != "constant" else "constant_with_warmup", optimizer,
                              num_warmup_steps=int(cfg.warmup_ratio * total), num_training_steps=total)
    net, optimizer = acc.prepare(net, optimizer)
    acc.register_for_checkpointing(scheduler)
    if cfg.lora_r:
        save_trainable_only(acc)
    fingerprint = rated_fingerprint(data)  # once: every checkpoint stores it, a resume checks it
    state = restore_rated(run, fingerprint, metrics, total)
    batches = itertools.islice(micro_batches(items, cfg.batch_size, cfg.seed), state.micro, None)
    net.train()
    with StopSignals() as stop:
        for m in range(state.micro, micro):
            chunk = next(batches)
            batch, target, mask = make_batch(data, chunk, pad_id, cfg.use_margin)
            batch, target, mask = batch.to(acc.device), target.to(acc.device), mask.to(acc.device)
            loss, reg, bt = rated_loss(compute_rewards(net, batch), batch, target, mask, cfg, data)
            if not math.isfinite(loss.item()):
                raise TrainingDiverged(f"step {state.step + 1}: non-finite loss {loss.item():.4g}; no model was "
                                       f"written. Lower --lr (now {cfg.lr:g}) or try --precision fp32.")
            acc.backward(loss / cfg.grad_accum)
            state.micro, state.seen = m + 1, state.seen + len(chunk)
            state.running = [a + b for a, b in zip(state.running, (loss.item(), reg, bt, 1))]
            if (m + 1) % cfg.grad_accum and m + 1 < micro:
                continue
            grad_norm = acc.clip_grad_norm_(net.parameters(), cfg.max_grad_norm or math.inf)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            if state.step % cfg.logging_steps == 0 or state.step == total:
                n = state.running[3]
                metrics.write(split="train", step=state.step, loss=state.running[0] / n,
                              regression_loss=state.running[1] / n, pairwise_loss=state.running[2] / n,
                              lr=scheduler.get_last_lr()[0], grad_norm=float(grad_norm), rows_seen=state.seen,
                              epoch=state.seen / len(items))
                state.running = [0.0, 0.0, 0.0, 0.0]
            if cfg.eval_steps and state.step % cfg.eval_steps == 0 and state.step < total:
                _evaluate_during(run, net, data, pad_id, metrics, state.step)
                net.train()
            if (cfg.save_steps and state.step % cfg.save_steps == 0) or stop.received:
                saved = checkpoint_rated(run, net, data, state, total, fingerprint)
                if stop.received:
                    raise TrainingInterrupted(f"stopped by {stop.name} after step {state.step} of {total}; "
                                              f"checkpoint written to {saved}; continue with --resume",
                                              128 + stop.received)
    return state.step, state.seen


def _evaluate_during(run: Run, net: nn.Module, data: RatedData, pad_id: int, metrics: MetricsLog,
                     step: int) -> None:
    result, _, _ = evaluate_rated(run, net, data, pad_id)
    if result is not None:
        metrics.write(split="eval", step=step, **flat_metrics(result))
        run.say(f"step {step}: eval mean spearman {result['mean_spearman']:.4f}"
                + (f", combined accuracy {result['accuracy']:.4f}" if "accuracy" in result else ""))


# --------------------------------------------------------------------------------------- checkpoints and resume


def rated_fingerprint(data: RatedData) -> str:
    """The data a checkpoint was trained on: token shapes of every item (`data_fingerprint`), the
    ratings of both splits and the fitted scaling and weights. A resume on other data is refused."""
    assert data.train_enc is not None and data.scaling is not None
    shapes = data_fingerprint(list(data.train_enc) + list(data.pair_enc or []), data.held_enc or [])
    ratings = json.dumps([[r.values for r in data.train], [r.values for r in data.held], data.scaling.to_dict(),
                          data.weights, len(data.train_pairs), len(data.held_pairs)])
    return hashlib.sha256(f"{shapes}|{ratings}".encode()).hexdigest()[:16]


def regression_meta(cfg: TrainConfig, data: RatedData, folded: bool) -> dict[str, Any]:
    """What ``config.rewardkit`` says about the attributes (`RegressionMeta.to_meta`)."""
    assert data.scaling is not None
    return RegressionMeta(data.attributes, data.weights, data.scaling, folded=folded, objective=cfg.objective,
                          pair_attribute=cfg.pair_attribute).to_meta()


def checkpoint_rated(run: Run, net: nn.Module, data: RatedData, state: RatedState, total: int,
                     fingerprint: str) -> Path:
    """Write OUT/checkpoint-STEP (never of broken weights): accelerate's files plus the trainer state,
    which carries the regression meta so `rewardkit export` can turn the checkpoint into a model."""
    if not all_finite(net.parameters()):
        raise TrainingDiverged(f"step {state.step}: the weights hold NaN/inf; no checkpoint written")
    saved = {"step": state.step, "total_steps": total, "micro_batches_done": state.micro, "rows_seen": state.seen,
             "running": state.running, "num_processes": run.world, "fingerprint": fingerprint,
             "version": __version__, "config": to_dict(run.cfg), "regression": regression_meta(run.cfg, data, False)}
    return save_checkpoint(run.accelerator, run.out, state.step, saved, run.cfg.save_total_limit)


def restore_rated(run: Run, fingerprint: str, metrics: MetricsLog, total: int) -> RatedState:
    """A fresh state (and an empty metrics.jsonl), or, on --resume, the checkpoint's weights, optimizer,
    scheduler, RNG and position once its data is known to be this run's."""
    if run.saved is None:
        if run.main:
            metrics.path.write_text("")
        return RatedState()
    assert run.resume_from is not None
    check_resume_data(run.saved, fingerprint, run.resume_from)
    saved = load_checkpoint(run.accelerator, run.resume_from)
    metrics.truncate_after(int(saved["step"]))
    state = RatedState(int(saved["step"]), int(saved["micro_batches_done"]), int(saved["rows_seen"]),
                       [float(x) for x in saved["running"]])
    run.say(f"resumed from {run.resume_from} at step {state.step} of {total} "
            f"({state.micro} micro-batches already trained on are skipped)")
    return state


# --------------------------------------------------------------------------------------- evaluation and saving


def predict_rows(net: nn.Module, pad_id: int, enc: Sequence[Encoded], scaling: Scaling, batch_size: int,
                 device: torch.device) -> list[list[float]]:
    """Predicted ratings in original units, one list of K values per one-response item."""
    outs = score_encoded(net, pad_id, enc, batch_size, device)
    return [scaling.unscale(o[0] if isinstance(o[0], list) else [o[0]]) for o in outs]


def pair_rewards_from(records: Sequence[RatedResponse], combined: Sequence[float], pairs: Sequence[Comparison]
                      ) -> list[tuple[float, float]]:
    """(better, worse) predicted combined rewards of ``pairs``, looked up from the scored rated rows
    (a response rated twice: the mean), so pairs need no second forward pass."""
    sums: dict[tuple[str, str], list[float]] = {}
    for r, c in zip(records, combined):
        sums.setdefault((r.prompt_key(), text_key(r.response)), []).append(c)
    mean = {k: sum(v) / len(v) for k, v in sums.items()}
    return [(mean[(c.prompt_key(), text_key(c.responses[0]))], mean[(c.prompt_key(), text_key(c.responses[-1]))])
            for c in pairs]


def evaluate_rated(run: Run, net: nn.Module, data: RatedData, pad_id: int
                   ) -> tuple[dict[str, Any] | None, list[list[float]], list[float]]:
    """(regression metrics, predicted ratings, combined rewards) of the held-out rows; None without any."""
    if not data.held:
        return None, [], []
    assert data.scaling is not None and data.held_enc is not None
    net.eval()
    pred = predict_rows(net, pad_id, data.held_enc, data.scaling, run.cfg.eval_batch_size, run.accelerator.device)
    combined = [math.fsum(w * v for w, v in zip(data.weights, p)) for p in pred]
    pairs = pair_rewards_from(data.held, combined, data.held_pairs) if data.held_pairs else None
    return regression_metrics(pred, [r.values for r in data.held], data.attributes, pairs), pred, combined


def _stats(run: Run, net: nn.Module, data: RatedData, pad_id: int, combined: list[float]) -> dict[str, Any]:
    source = "eval"
    if not combined:  # no held-out rows: a seeded sample of training rows
        assert data.train_enc is not None and data.scaling is not None
        idx = random.Random(run.cfg.seed).sample(range(len(data.train_enc)), min(512, len(data.train_enc)))
        pred = predict_rows(net, pad_id, [data.train_enc[i] for i in idx], data.scaling, run.cfg.eval_batch_size,
                            run.accelerator.device)
        combined, source = [math.fsum(w * v for w, v in zip(data.weights, p)) for p in pred], "train-sample"
    if not all(math.isfinite(c) for c in combined):
        raise TrainingDiverged("the trained model gives non-finite rewards; no final model was written")
    mean = sum(combined) / len(combined)
    std = math.sqrt(sum((c - mean) ** 2 for c in combined) / len(combined)) or 1.0
    return {"mean": mean, "std": std, "source": source, "count": len(combined)}


def publish_rated(run: Run, net: nn.Module, tokenizer: Any, data: RatedData, final: dict[str, Any] | None,
                  pred: list[list[float]], combined: list[float], summary: dict[str, Any]) -> None:
    """Write the model (scaling folded into full models; adapters keep it in rewardkit.json), its
    settings, eval.json and the attribute report."""
    cfg, out = run.cfg, run.out
    assert data.scaling is not None
    stats = _stats(run, net, data, pad_id=tokenizer.pad_token_id, combined=combined)
    inner = run.accelerator.unwrap_model(net).model
    from rewardkit.model.artifacts import is_peft_model

    folded = not is_peft_model(inner)
    if folded:
        fold_output_layer(inner, data.scaling.offset, data.scaling.scale)
    meta = {"version": __version__, "max_length": cfg.max_length, "loss": cfg.objective, "normalization": stats,
            **regression_meta(cfg, data, folded)}
    tmp = out / ".tmp-model"
    shutil.rmtree(tmp, ignore_errors=True)
    save_trained(inner, tokenizer, tmp, meta)
    publish_model(tmp, out)
    if cfg.merge:
        merge_adapter(out, out / "merged", overwrite=True)
    settings = {**to_dict(cfg), "precision": run.precision.name}
    (out / "train_config.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    if final:
        from rewardkit.evaluation.rating_report import write_attribute_report

        held_out = cfg.eval_data or f"{cfg.held_out_fraction():.0%} of the prompts"
        page = write_attribute_report(out / "report", final, pred, [r.values for r in data.held], data.attributes,
                                      title="Held-out evaluation",
                                      details={"model": cfg.model or "bundled MiniLM-L6", "held-out data": held_out})
        run.say(f"evaluation report: {page}")
    full = {**summary, "train_rows": len(data.train), "train_pairs": len(data.train_pairs),
            "eval_rows": len(data.held), "skipped": data.skipped, "objective": cfg.objective,
            "attributes": data.attributes, "precision": run.precision.name, "eval": final}
    for card_dir in [out] + ([out / "merged"] if cfg.merge else []):  # README.md: how to score
        write_card(card_dir, settings, full)
    (out / "eval.json").write_text(json.dumps(full, indent=2) + "\n")
