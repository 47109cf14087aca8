"""``--objective regression`` and ``bt+regression``: ratings as targets, one output per attribute.

The head has one output per rated attribute (``num_labels = K``), read at the same token or pooling
as a pairwise reward, and regresses scaled targets (`rewardkit.model.attribute_head.Scaling`, fitted
on the training side only) with the masked MSE/Huber loss of `rewardkit.training.losses`.
``bt+regression`` adds Bradley-Terry on the *combined* reward of pairs derived from the same ratings
on each side of the split, so the pairwise signal trains exactly the number `RewardModel.score`
returns.

Training items are the rated rows (one-response comparisons with targets) followed by the derived
pairs (two-response comparisons without targets); ``--batch-size`` counts items. The loss of a pass
has two terms, each a mean over what it has (observed ratings; the pairs' weight), weighted 1 and
``--pairwise-weight``. The saved model folds the scaling into its output layer, so its logits are
ratings in original units, and ``config.rewardkit`` names attributes, weights and scaling.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch import nn

from rewardkit.config import TrainConfig
from rewardkit.data.attributes.options import attribute_options_from, resolve_weights
from rewardkit.data.attributes.pairs import pair_score_weights, pairs_from_records
from rewardkit.data.attributes.table import AttributeTable, RatedResponse, load_attribute_table, split_records
from rewardkit.data.records import Comparison, describe_dropped, describe_problems
from rewardkit.encoding.encoder import Encoded, Encoder
from rewardkit.errors import UsageError
from rewardkit.evaluation.held_out import score_sharded
from rewardkit.evaluation.rating_metrics import flat_metrics, pair_rewards_from, regression_metrics
from rewardkit.model.artifacts import is_peft_model
from rewardkit.model.attribute_head import (RegressionMeta, Scaling, fit_scaling, fold_output_layer, head_config,
                                            output_layer)
from rewardkit.model.backbone import load_backbone
from rewardkit.model.batching import Batch, BatchLayout, collate_for
from rewardkit.training.losses import bradley_terry, combined_reward, regression_loss
from rewardkit.training.objectives.base import Data, Evaluation, Objective, Readout, Traits
from rewardkit.training.resume import data_fingerprint

if TYPE_CHECKING:
    from rewardkit.training.startup import Run


def numbers(xs: Sequence[float]) -> str:
    """``[0.5, 1.25]`` with 4 significant digits, for log lines."""
    return "[" + ", ".join(f"{x:.4g}" for x in xs) + "]"


class RatedRows(Data):
    """Rated rows of a multi-attribute table, split by prompt; for bt+regression, pairs derived from them on
    each side. The target scaling is the readout's (`AttributeHead` fits it once the head is known)."""

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg)
        self.attributes: list[str] = []
        self.weights: list[float] = []
        self.ranges: list[tuple[float, float] | None] = []
        self.train: list[RatedResponse] = []
        self.held_rows: list[RatedResponse] = []
        self.train_pairs: list[Comparison] = []
        self.held_pairs: list[Comparison] = []
        self.scaling: Scaling | None = None
        self.targets = torch.empty(0)
        self.observed = torch.empty(0, dtype=torch.bool)

    def _table(self, run: Run, source: str) -> AttributeTable:
        table = load_attribute_table(source, attribute_options_from(self.cfg), self.cfg.skip_invalid)
        for note in table.notes:
            run.say(note)
        if table.problems:
            run.say(describe_problems(table.problems, source))
        if table.dropped:
            run.say(describe_dropped(table.dropped, source))
        self.skipped += len(table.problems)
        return table

    def load(self, run: Run) -> None:
        """Rated rows of both sides, the weights, and for bt+regression the pairs derived on each side."""
        cfg = self.cfg
        table = self._table(run, cfg.train_data)
        self.attributes, self.ranges = table.attributes, table.ranges
        if cfg.eval_data:
            held_table = self._table(run, cfg.eval_data)
            if held_table.attributes != self.attributes:
                raise UsageError(f"--eval-data {cfg.eval_data}: attributes {held_table.attributes} differ from the "
                                 f"training data's {self.attributes}")
            self.train, self.held_rows = list(table.records), list(held_table.records)
        else:
            self.train, self.held_rows = split_records(table.records, cfg.held_out_fraction(), cfg.seed)
        self.weights = resolve_weights(cfg.attribute_weights, self.attributes)
        pair_score_weights(cfg.pair_attribute, self.attributes, self.weights)  # an unknown --pair-attribute fails here
        if cfg.objective == "bt+regression":
            loaded = self._pairs(self.train)
            for note in loaded.notes:
                run.say(note)
            self.train_pairs = loaded.comparisons
            if not self.train_pairs:
                raise UsageError("--objective bt+regression: the ratings give no pair (every prompt needs 2+ answers "
                                 "with different ratings); use --objective regression")
        self.held_pairs = self._pairs(self.held_rows).comparisons if self.held_rows else []
        run.say(f"data: {len(self.train)} rated training rows, {len(self.held_rows)} held out, attributes "
                f"{', '.join(self.attributes)}"
                + (f"; {len(self.train_pairs)} training pairs from the ratings" if self.train_pairs else "")
                + (f"; {len(self.held_pairs)} held-out pairs" if self.held_pairs else ""))

    def _pairs(self, records: list[RatedResponse]) -> Any:
        return pairs_from_records(records, self.attributes, self.weights, self.cfg.pair_attribute,
                                  self.cfg.rating_options())

    def encode(self, run: Run, encoder: Encoder) -> None:
        """Each rated row is a one-response comparison; pairs are ordinary two-response comparisons."""
        assert self.scaling is not None
        run.say(f"target scaling {self.scaling.kind}: offset {numbers(self.scaling.offset)}, "
                f"scale {numbers(self.scaling.scale)}; combined reward weights {numbers(self.weights)}")
        rows = [encoder.encode_texts(r.prompt, [r.response]) for r in self.train]
        self.items = rows + [encoder.encode(c) for c in self.train_pairs]
        self.held = [encoder.encode_texts(r.prompt, [r.response]) for r in self.held_rows]
        scaled = [self.scaling.scale_values(r.values) for r in self.train]
        self.targets = torch.tensor([[0.0 if v is None else v for v in row] for row in scaled], dtype=torch.float32)
        self.observed = torch.tensor([[v is not None for v in row] for row in scaled], dtype=torch.bool)

    def fingerprint(self) -> str:
        """Token shapes of every item and held-out row, the ratings of both sides, the fitted scaling and
        weights: a resume on other data is refused."""
        assert self.scaling is not None
        shapes = data_fingerprint(self.items, self.held)
        ratings = json.dumps([[r.values for r in self.train], [r.values for r in self.held_rows],
                              self.scaling.to_dict(), self.weights, len(self.train_pairs), len(self.held_pairs)])
        return hashlib.sha256(f"{shapes}|{ratings}".encode()).hexdigest()[:16]

    def counts(self) -> dict[str, Any]:
        return {"train_rows": len(self.train), "train_pairs": len(self.train_pairs), "eval_rows": len(self.held_rows)}


class AttributeHead(Readout):
    """A backbone with one output per rated attribute; the target scaling fitted to the head (a head without
    a bias cannot absorb an offset at export, so it learns a divide-only scaling)."""

    def __init__(self, cfg: TrainConfig, data: RatedRows):
        super().__init__(cfg)
        self.data = data

    def load_model(self) -> tuple[nn.Module, Any]:
        data = self.data
        model, tokenizer = load_backbone(self.cfg.model, dropout=self.cfg.dropout, head=head_config(data.attributes))
        data.scaling = fit_scaling(self.cfg.target_scaling, data.train, data.ranges, data.attributes,
                                   center=output_layer(model).bias is not None)
        return model, tokenizer


class RegressionObjective(Objective):
    """Rated rows (and, for bt+regression, pairs derived from them) in; K attribute values out."""

    # Ratings often follow length (verbosity, thoroughness): length-grouped micro-batches would each see a
    # narrow band of targets, and regression to them learned worse (spread over seeds) than random ones.
    traits = Traits(unit="rows", logged=("loss", "regression_loss", "pairwise_loss"), length_grouped=False)

    def __init__(self, cfg: TrainConfig):
        self.data: RatedRows
        data = RatedRows(cfg)
        super().__init__(cfg, data, AttributeHead(cfg, data))
        self.name = cfg.objective
        self.term_weights = {"regression_loss": 1.0, "pairwise_loss": cfg.pairwise_weight}

    @property
    def attributes(self) -> list[str]:
        return self.data.attributes

    @property
    def scaling(self) -> Scaling | None:
        return self.data.scaling

    # ------------------------------------------------------------------ the step
    def collate(self, members: list[int], pad_id: int, layout: BatchLayout, prompt_ids: list[int]) -> Batch:
        """Rows and pairs in one padded batch; targets [responses, K] and their mask (a pair's
        responses have none: they train the pairwise term only)."""
        batch = collate_for([self.items[j] for j in members], pad_id, layout.share_prefix, layout.pack,
                            use_margin=self.cfg.use_margin,
                            prompt_ids=prompt_ids)
        k, rows = len(self.attributes), len(self.data.train)
        targets, observed = [], []
        for j in members:
            if j < rows:
                targets.append(self.data.targets[j:j + 1])
                observed.append(self.data.observed[j:j + 1])
            else:
                targets.append(torch.zeros(2, k))
                observed.append(torch.zeros(2, k, dtype=torch.bool))
        batch.targets, batch.target_mask = torch.cat(targets), torch.cat(observed)
        return batch

    def counts(self, batch: Batch) -> dict[str, float]:
        return {"regression_loss": float(batch.target_mask.sum()), "pairwise_loss": float(batch.pair_weight.sum())}

    def loss(self, outputs: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        """Masked regression on the scaled outputs, Bradley-Terry on the combined reward; an empty term is 0."""
        assert self.scaling is not None
        if outputs.dim() == 1:  # one attribute: the network returns [N]
            outputs = outputs.unsqueeze(-1)
        terms = {"regression_loss": regression_loss(outputs, batch.targets, batch.target_mask,
                                                    self.cfg.regression_loss, self.cfg.huber_delta)}
        if len(batch.pair_better):
            pw = torch.tensor(pair_score_weights(self.cfg.pair_attribute, self.attributes, self.data.weights))
            r = combined_reward(outputs, pw, torch.tensor(self.scaling.offset), torch.tensor(self.scaling.scale))
            margin = batch.pair_margin if self.cfg.use_margin else None
            terms["pairwise_loss"] = bradley_terry(r[batch.pair_better], r[batch.pair_worse], margin, batch.pair_weight)
        else:
            terms["pairwise_loss"] = outputs.new_zeros(())
        return terms

    # ------------------------------------------------------------------ evaluation and the saved model
    def _predict(self, run: Run, net: nn.Module, pad_id: int, rows: Sequence[Encoded],
                 pack: bool) -> list[list[float]]:
        """Predicted ratings in original units, one list of K values per row."""
        assert self.scaling is not None
        outs = score_sharded(net, rows, pad_id, self.cfg.eval_batch_size, run.accelerator, pack=pack)
        return [self.scaling.unscale(o[0] if isinstance(o[0], list) else [o[0]]) for o in outs]

    def _combined(self, pred: list[list[float]]) -> list[float]:
        return [math.fsum(w * v for w, v in zip(self.data.weights, p)) for p in pred]

    def evaluate(self, run: Run, net: nn.Module, pad_id: int, layout: BatchLayout) -> Evaluation | None:
        data = self.data
        if not data.held_rows:
            return None
        pred = self._predict(run, net, pad_id, data.held, layout.pack)
        combined = self._combined(pred)
        pairs = pair_rewards_from(data.held_rows, combined, data.held_pairs) if data.held_pairs else None
        return Evaluation(regression_metrics(pred, [r.values for r in data.held_rows], self.attributes, pairs),
                          combined, pred)

    def eval_record(self, metrics: dict[str, Any]) -> dict[str, Any]:
        return flat_metrics(metrics)

    def results_table(self, metrics: dict[str, Any]) -> str:
        from rewardkit.evaluation.rated import attribute_metrics_table

        return attribute_metrics_table(metrics, f"held-out evaluation ({metrics['responses']} rated responses):")

    def describe(self, metrics: dict[str, Any]) -> str:
        return (f"eval mean spearman {metrics['mean_spearman']:.4f}"
                + (f", combined accuracy {metrics['accuracy']:.4f}" if "accuracy" in metrics else ""))

    def reward_items(self) -> Sequence[Encoded]:
        return self.items[:len(self.data.train)]  # the rated rows

    def rewards_of(self, outputs: list[list[Any]]) -> list[float]:
        assert self.scaling is not None
        return self._combined([self.scaling.unscale(o[0] if isinstance(o[0], list) else [o[0]]) for o in outputs])

    @property
    def loss_name(self) -> str:
        return self.cfg.objective

    def meta(self, folded: bool) -> dict[str, Any]:
        """What ``config.rewardkit`` says about the attributes (`RegressionMeta.to_meta`)."""
        assert self.scaling is not None
        return RegressionMeta(self.attributes, self.data.weights, self.scaling, folded=folded, objective=self.cfg.objective,
                              pair_attribute=self.cfg.pair_attribute).to_meta()

    def model_meta(self, model: nn.Module, weights: dict[str, torch.Tensor] | None) -> dict[str, Any]:
        """Full models get the scaling folded into the output layer (logits = ratings); an adapter keeps
        its head as trained and says so (`RewardModel` unscales it)."""
        assert self.scaling is not None
        folded = not is_peft_model(model)
        if folded:
            fold_output_layer(model, self.scaling.offset, self.scaling.scale, weights)
        return self.meta(folded)

    def write_report(self, path: Path, evaluation: Evaluation, details: dict[str, str]) -> Path:
        """The attribute report, with the run's loss curve (its metrics.jsonl)."""
        from rewardkit.evaluation.rating_report import write_attribute_report
        from rewardkit.evaluation.report import TrainingRun

        return write_attribute_report(path, evaluation.metrics, evaluation.details, [r.values for r in self.data.held_rows],
                                      self.attributes, title="Held-out evaluation", details=details,
                                      training=TrainingRun(Path(self.cfg.output_dir) / "metrics.jsonl"))

    def summary(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return self.data.counts(), {"objective": self.cfg.objective, "attributes": self.attributes}

    def checkpoint_meta(self) -> dict[str, Any]:
        return {**super().checkpoint_meta(), "regression": self.meta(folded=False)}

    def tracker_config(self) -> dict[str, Any]:
        return {"attributes": ",".join(self.attributes)}
