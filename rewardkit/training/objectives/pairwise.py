"""``--objective bt``: preference comparisons, Bradley-Terry (margins, centering) or Plackett-Luce.

Each training item is one comparison (a prompt and K >= 2 responses, best first), all its responses
in one forward pass. With ``--balance-per-prompt`` the comparisons of one prompt form a prompt group
(one micro-batch, pair weights summing to 1); decoders may encode each comparison's prompt once
(``--prefix-sharing``). The loss of a pass is `rewardkit.training.losses.batch_loss`, a mean over
the pairs' weight (Plackett-Luce: over rankings), and the loop logs it with the pairwise accuracy.
"""

from __future__ import annotations

import statistics
from itertools import combinations
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from rewardkit.data.file_cache import load_cached
from rewardkit.data.loading import bundled_sample, group_by_prompt, split_by_prompt
from rewardkit.data.records import Comparison, input_kind
from rewardkit.encoding.cache import encode_cached
from rewardkit.encoding.encoded_set import truncated_count
from rewardkit.encoding.encoder import Encoded, Encoder
from rewardkit.evaluation.held_out import evaluate_net
from rewardkit.model.backbone import load_backbone
from rewardkit.model.batching import Batch, BatchLayout, collate_for
from rewardkit.training.losses import batch_loss, loss_denominator
from rewardkit.training.objectives.base import Evaluation, Objective
from rewardkit.training.resume import data_fingerprint, legacy_data_fingerprint


class PairwiseObjective(Objective):
    """Comparisons in, one scalar reward per response out (see the module doc)."""

    name = "bt"
    unit = "pairs"
    logged = ("loss", "accuracy")
    term_weights = {"pairwise": 1.0}
    prefix_sharing = True

    def __init__(self, cfg: Any):
        super().__init__(cfg)
        self.train: list[Comparison] = []
        self.held_out: list[Comparison] = []
        self.held_enc: list[Encoded] = []

    # ------------------------------------------------------------------ data
    def load(self, run: Any) -> None:
        cfg = self.cfg
        source = cfg.train_data or bundled_sample()
        loaded = load_cached(source, cfg.format, cfg.skip_invalid, cfg.rating_options())
        for message in loaded.messages(source):
            run.say(message)
        self.skipped = len(loaded.problems)
        if not cfg.eval_data:
            self.train, self.held_out = split_by_prompt(loaded.comparisons, cfg.held_out_fraction(), cfg.seed)
            return
        held = load_cached(cfg.eval_data, cfg.format, cfg.skip_invalid, cfg.rating_options())
        for message in held.messages(cfg.eval_data):
            run.say(message)
        self.train, self.held_out = loaded.comparisons, held.comparisons
        self.skipped += len(held.problems)

    def load_model(self) -> tuple[nn.Module, Any]:
        return load_backbone(self.cfg.model, dropout=self.cfg.dropout)

    def encode(self, run: Any, encoder: Encoder) -> None:
        """Tokenize (through the cache) and report truncation."""
        self.items = encode_cached(encoder, self.train,
                                   lambda c: tqdm(c, desc="tokenize", disable=not run.main, leave=False))
        self.held_enc = encode_cached(encoder, self.held_out)
        run.say(f"data: {len(self.items)} training comparisons, {len(self.held_enc)} held out"
                f"{f', {self.skipped} invalid records skipped' if self.skipped else ''}; "
                f"{self.truncated} training and {truncated_count(self.held_enc)} held-out comparisons truncated to "
                f"--max-length {self.cfg.max_length} (prompt start dropped, responses kept)")

    def prompt_groups(self) -> list[list[int]]:
        if not self.cfg.balance_per_prompt:
            return super().prompt_groups()
        return group_by_prompt(self.train)

    def fingerprint(self) -> str:
        return data_fingerprint(self.items, self.held_enc)

    def legacy_fingerprint(self) -> str | None:
        return legacy_data_fingerprint(self.items, self.held_enc)

    @property
    def truncated(self) -> int:
        return truncated_count(self.items)

    def inputs(self) -> str:
        return input_kind(self.train + self.held_out)

    # ------------------------------------------------------------------ the step
    def collate(self, members: list[int], pad_id: int, layout: BatchLayout, prompt_ids: list[int]) -> Batch:
        return collate_for([self.items[j] for j in members], pad_id, layout.share_prefix, layout.pack,
                           balance_per_prompt=self.cfg.balance_per_prompt, use_margin=self.cfg.use_margin,
                           prompt_ids=prompt_ids)

    def counts(self, batch: Batch) -> dict[str, float]:
        return {"pairwise": loss_denominator(batch, self.cfg.loss), "accuracy": float(len(batch.pair_better))}

    def loss(self, outputs: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        loss, accuracy = batch_loss(outputs, batch, self.cfg.loss, self.cfg.center_coef)
        return {"pairwise": loss, "accuracy": accuracy}

    # ------------------------------------------------------------------ evaluation and the saved model
    def evaluate(self, run: Any, net: nn.Module, pad_id: int, layout: BatchLayout) -> Evaluation | None:
        if not self.held_enc:
            return None
        metrics, rewards = evaluate_net(net, self.held_out, self.held_enc, pad_id, self.cfg.eval_batch_size,
                                        run.accelerator, layout.share_prefix, layout.pack)
        return Evaluation(metrics, [r for rs in rewards for r in rs], rewards)

    def describe(self, metrics: dict[str, Any]) -> str:
        return f"eval accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f}"

    def results_table(self, metrics: dict[str, Any]) -> str:
        from rewardkit.evaluation.evaluate import metrics_table

        return metrics_table(metrics, f"held-out evaluation ({metrics['pairs']} pairs):")

    def mean_margin(self) -> float | None:
        """The mean margin m of the training pairs when the loss was -logsigmoid(r_c - r_r - m), by the
        rule of `rewardkit.model.batching.collate_for` (a ranking's score gaps, else a pair's margin);
        None when no pair had one (--no-use-margin, --loss pl, or data without margins)."""
        if not self.cfg.use_margin or self.cfg.loss == "pl":
            return None
        margins = []
        for c in self.train:
            k = len(c.responses)
            for i, j in combinations(range(k), 2):
                if c.scores is not None:
                    margins.append(c.scores[i] - c.scores[j])
                else:
                    margins.append(c.margin if c.margin is not None and k == 2 else 0.0)
        return statistics.fmean(margins) if any(margins) else None

    def write_report(self, path: Path, evaluation: Evaluation, details: dict[str, str]) -> Path:
        """The held-out report, with the run's loss curve (its metrics.jsonl) and margin note."""
        from rewardkit.evaluation.report import TrainingRun, write_report

        training = TrainingRun(Path(self.cfg.output_dir) / "metrics.jsonl", self.mean_margin())
        return write_report(path, self.held_out, evaluation.details, evaluation.metrics,
                            title="Held-out evaluation", details=details, training=training)

    def summary(self) -> tuple[dict[str, Any], dict[str, Any]]:
        counts = {"train_comparisons": len(self.items), "truncated": self.truncated,
                  "eval_truncated": truncated_count(self.held_enc)}
        return counts, {}
