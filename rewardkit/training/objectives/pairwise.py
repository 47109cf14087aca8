"""``--objective bt``: preference comparisons, Bradley-Terry (margins, centering) or Plackett-Luce.

Each training item is one comparison (a prompt and K >= 2 responses, best first), all its responses
in one forward pass. With ``--balance-per-prompt`` the comparisons of one prompt form a prompt group
(one micro-batch, pair weights summing to 1); decoders may encode each comparison's prompt once
(``--prefix-sharing``). The loss of a pass is `rewardkit.training.losses.batch_loss`, a mean over
the pairs' weight (Plackett-Luce: over rankings), and the loop logs it with the pairwise accuracy.

The same objective with a `VerdictHead` readout is ``--objective generative`` on comparisons
(`rewardkit.training.objectives.generative`): only where the reward is read changes.
"""

from __future__ import annotations

import statistics
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from rewardkit.config import TrainConfig
from rewardkit.evaluation.held_out import evaluate_net
from rewardkit.model.batching import Batch, BatchLayout, collate_for
from rewardkit.training.losses import batch_loss, loss_denominator
from rewardkit.training.objectives.base import Evaluation, Objective, Readout, Traits
from rewardkit.training.objectives.parts import ComparisonData, ScalarHead

if TYPE_CHECKING:
    from rewardkit.training.startup import Run


class PairwiseObjective(Objective):
    """Comparisons in, one reward per response out (see the module doc)."""

    name = "bt"
    traits = Traits(unit="pairs", logged=("loss", "accuracy"), prefix_sharing=True)
    term_weights = {"pairwise": 1.0}

    def __init__(self, cfg: TrainConfig, readout: Readout | None = None, name: str = "bt"):
        self.data: ComparisonData
        super().__init__(cfg, ComparisonData(cfg), readout or ScalarHead(cfg))
        self.name = name

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

    # ------------------------------------------------------------------ evaluation and the report
    def evaluate(self, run: Run, net: nn.Module, pad_id: int, layout: BatchLayout) -> Evaluation | None:
        if not self.data.held:
            return None
        metrics, rewards = evaluate_net(net, self.data.held_out, self.data.held, pad_id, self.cfg.eval_batch_size,
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
        for c in self.data.train:
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
        return write_report(path, self.data.held_out, evaluation.details, evaluation.metrics,
                            title="Held-out evaluation", details=details, training=training)
