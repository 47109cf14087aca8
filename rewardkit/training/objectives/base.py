"""What an objective plugs into the one training loop.

The loop (`rewardkit.training.loop`, driven by `rewardkit.training.trainer`) owns everything that
does not depend on what is learned: the accelerator and its processes, the plan of micro-batches,
rounds and passes, AdamW with no-decay groups and its schedule, clipping, the divergence check,
checkpoints and ``--resume``, ``metrics.jsonl`` and the trackers, and publishing the model
directory. An `Objective` owns the rest, in the order the loop asks for it:

* **data**: `load` reads the training and held-out sides and tells the user what it read;
  `load_model` builds the backbone with the objective's head; `encode` tokenizes. Then `items` are
  the training items (one `Encoded` each: a comparison, a rated row, ...), `prompt_groups` the items
  that must share a micro-batch, `fingerprint` what a resumed run must see again.
* **the step**: `collate` makes one pass's `Batch` (targets included); `net` runs it (a scalar-head
  `RewardNet` by default; a causal-LM objective returns token log-probabilities instead); `counts`
  says, from the batch alone, what each value of the pass averages over, so the loop can weight
  every pass by its share of the micro-batch before any backward; `loss` returns each loss term's
  mean over the pass and the statistics it logs. The objective's loss is
  ``sum(term_weights[t] * term_t)``.
* **evaluation and the saved model**: `evaluate` scores the held-out side (sharded over processes)
  and returns its metrics; `reward_items` / `rewards_of` give the rewards behind the normalisation
  statistics stored with the model; `model_meta` says what ``config.rewardkit`` holds beyond the
  common fields (and may fold a scaling into the head); `write_report`, `summary` and
  `checkpoint_meta` add the objective's parts to the output directory.

Every objective therefore gets multi-process runs, ``--pass-tokens``, ``--grad-accum``, fused AdamW,
tracking, checkpoints and resume, LoRA and the model card from the loop, without a line of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from rewardkit.config import TrainConfig
from rewardkit.encoding.encoder import Encoded, Encoder
from rewardkit.model.backbone import make_encoder
from rewardkit.model.batching import Batch, BatchLayout
from rewardkit.model.net import RewardNet


@dataclass
class Evaluation:
    """Held-out results: ``metrics`` (eval.json's ``eval``), the flat ``rewards`` behind the stored
    normalisation statistics, and what the objective's report draws (``details``)."""

    metrics: dict[str, Any]
    rewards: list[float]
    details: Any = None


class Objective:
    """An objective of the one training loop (see the module doc). Subclasses fill in every method."""

    name = ""  # the --objective value
    unit = "pairs"  # what `<unit>_seen` counts in metrics.jsonl, checkpoints and eval.json
    logged: tuple[str, ...] = ("loss",)  # per-micro-batch values averaged into each metrics.jsonl train row
    term_weights: dict[str, float] = {}  # loss term -> its weight in the objective's loss
    prefix_sharing = False  # whether its batches may encode a comparison's prompt once (decoders)
    length_grouped = True  # micro-batches of similar length (little padding); False: drawn at random
    reward_statistics = True  # whether the saved model gets reward statistics (a language model has none)
    packing = True  # whether its batches may pack several comparisons per row (`BatchLayout.pack`)

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.skipped = 0  # invalid records skipped under --skip-invalid
        self.items: Sequence[Encoded] = []  # the training items, once encoded

    # ------------------------------------------------------------------ data
    def load(self, run: Any) -> None:
        """Read the training and held-out data (a prompt-disjoint split or --eval-data)."""
        raise NotImplementedError

    def load_model(self) -> tuple[nn.Module, Any]:
        """The backbone with this objective's head, and its tokenizer."""
        raise NotImplementedError

    def encoder(self, model: nn.Module, tokenizer: Any) -> Encoder:
        """How this objective lays out and truncates text for ``model`` (`rewardkit.model.backbone.make_encoder`)."""
        return make_encoder(model, tokenizer, self.cfg.max_length)

    def encode(self, run: Any, encoder: Encoder) -> None:
        """Tokenize both sides; afterwards `items` holds the training items."""
        raise NotImplementedError

    def prompt_groups(self) -> list[list[int]]:
        """Items that must share a micro-batch (default: each item alone)."""
        return [[i] for i in range(len(self.items))]

    def fingerprint(self) -> str:
        """A hash of the encoded data: a resumed run must see the same."""
        raise NotImplementedError

    def legacy_fingerprint(self) -> str | None:
        """The fingerprint as older checkpoints computed it, or None (asked only on a mismatch)."""
        return None

    @property
    def truncated(self) -> int:
        """Training items truncated to --max-length."""
        return sum(e.truncated for e in self.items)

    # ------------------------------------------------------------------ the step
    def net(self, model: nn.Module) -> nn.Module:
        """The module the loop trains and prepares: the backbone plus this objective's readout."""
        return RewardNet(model)

    def collate(self, members: list[int], pad_id: int, layout: BatchLayout, prompt_ids: list[int]) -> Batch:
        """One pass's batch of training items ``members`` (targets included)."""
        raise NotImplementedError

    def counts(self, batch: Batch) -> dict[str, float]:
        """What each value `loss` returns averages over in ``batch`` (its pairs' weight, observed
        ratings, pairs, ...): known before the forward pass."""
        raise NotImplementedError

    def loss(self, outputs: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        """Each loss term's mean over the pass (the names of `term_weights`), and any statistic the
        loop logs (accuracy, ...), from the network's outputs. A value with nothing to average in this
        pass (count 0) must be a finite 0."""
        raise NotImplementedError

    # ------------------------------------------------------------------ evaluation and the saved model
    def evaluate(self, run: Any, net: nn.Module, pad_id: int, layout: BatchLayout) -> Evaluation | None:
        """Held-out metrics, on every process (scoring is sharded); None without held-out data."""
        raise NotImplementedError

    def eval_record(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """The flat fields of a metrics.jsonl eval row."""
        return {k: v for k, v in metrics.items() if not isinstance(v, dict)}

    def describe(self, metrics: dict[str, Any]) -> str:
        """One line on held-out metrics during training."""
        raise NotImplementedError

    def results_table(self, metrics: dict[str, Any]) -> str:
        """The held-out metrics as `rewardkit train` prints them at the end (default: one per line)."""
        lines = ["held-out evaluation:"]
        for key, value in metrics.items():
            if not isinstance(value, dict):
                lines.append(f"  {key:<28} {value:.4f}" if isinstance(value, float) else f"  {key:<28} {value}")
        return "\n".join(lines)

    def reward_items(self) -> Sequence[Encoded]:
        """Training items whose rewards may stand in for held-out ones in the normalisation statistics."""
        return self.items

    def rewards_of(self, outputs: list[list[Any]]) -> list[float]:
        """Rewards, flat, from the head's outputs for items of `reward_items`."""
        return [float(r) for per in outputs for r in per]

    def model_meta(self, model: nn.Module, weights: dict[str, torch.Tensor] | None) -> dict[str, Any]:
        """``config.rewardkit`` entries beyond version, max length, loss and normalisation. May rewrite
        the head (``weights``: the gathered full state of a sharded run, else None)."""
        return {}

    @property
    def loss_name(self) -> str:
        """``config.rewardkit.loss``: what the model was trained with."""
        return self.cfg.loss

    def write_report(self, path: Path, evaluation: Evaluation, details: dict[str, str]) -> Path | None:
        """The held-out HTML report under ``path``; returns the page, or None for an objective without one."""
        return None

    def summary(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """eval.json's objective-specific fields: (data counts, run facts)."""
        raise NotImplementedError

    def checkpoint_meta(self) -> dict[str, Any]:
        """Extra trainer-state fields: what `rewardkit export` needs to turn a checkpoint into a model."""
        return {"loss_name": self.loss_name, "inputs": self.inputs()}

    def inputs(self) -> str:
        """``config.rewardkit.inputs``: the texts trained on (`rewardkit.data.records.input_kind`)."""
        return "text"

    def tracker_config(self) -> dict[str, Any]:
        """Extra hyperparameters for the --report-to trackers."""
        return {}
