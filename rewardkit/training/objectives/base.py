"""What an objective plugs into the one training loop: a small contract, filled by composition.

The loop (`rewardkit.training.loop`, driven by `rewardkit.training.trainer`) owns everything that
does not depend on what is learned: the accelerator and its processes, the plan of micro-batches,
AdamW and its schedule, clipping, the divergence check, checkpoints and ``--resume``,
``metrics.jsonl`` and the trackers, the output directory. An objective brings three parts:

* **its data**, a `Data` component: what it reads (`load`), how it becomes training items
  (`encode`: one `Encoded` per comparison, rated row, answer, ...), which items must share a
  micro-batch (`prompt_groups`), what a resumed run must see again (`fingerprint`);
* **its readout**, a `Readout` component: the model it trains (`load_model`), how text is laid out
  for it (`encoder`), the network the loop runs (`net`: the backbone plus where the reward is read)
  and what the saved model says about it (`meta`);
* **its step and evaluation**, the objective's own five methods: `collate` one pass's batch,
  `counts` (what each loss term averages over, from the batch alone), `loss` (each term's mean over
  the pass; the objective's loss is ``sum(term_weights[t] * term_t)``), `evaluate` the held-out side,
  and `describe` its metrics in one line.

Shared components live in `rewardkit.training.objectives.parts` (comparisons from any preference
file; a scalar head, a verdict read from the LM head, a language model); an objective made only of
those is a few dozen lines (`pairwise.py`). ARCHITECTURE.md's "Adding an objective" walks through one.
Every objective gets multi-process runs, ``--pass-tokens``, ``--grad-accum``, tracking, checkpoints and
resume, LoRA and the model card from the loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch import nn

from rewardkit.config import TrainConfig
from rewardkit.encoding.encoded_set import truncated_count
from rewardkit.encoding.encoder import Encoded, Encoder
from rewardkit.model.backbone import make_encoder
from rewardkit.model.batching import Batch, BatchLayout
from rewardkit.model.net import RewardNet

if TYPE_CHECKING:
    from rewardkit.training.startup import Run


@dataclass
class Evaluation:
    """Held-out results: ``metrics`` (eval.json's ``eval``), the flat ``rewards`` behind the stored
    normalisation statistics, and what the objective's report draws (``details``)."""

    metrics: dict[str, Any]
    rewards: list[float]
    details: Any = None


@dataclass(frozen=True)
class Traits:
    """What the loop may do with an objective's items."""

    unit: str = "pairs"  # what `<unit>_seen` counts in metrics.jsonl, checkpoints and eval.json
    logged: tuple[str, ...] = ("loss",)  # per-micro-batch values averaged into each metrics.jsonl train row
    prefix_sharing: bool = False  # its batches may encode a comparison's prompt once (decoders)
    packing: bool = True  # its batches may pack several comparisons per row
    length_grouped: bool = True  # micro-batches of similar length (little padding); False: drawn at random
    reward_statistics: bool = True  # the saved model gets reward statistics (a language model has none)


class Data(ABC):
    """An objective's data: read, split into training and held-out sides, encoded into items."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.items: Sequence[Encoded] = []  # the training items, once encoded
        self.held: Sequence[Encoded] = []  # the held-out items
        self.skipped = 0  # invalid records skipped under --skip-invalid

    @abstractmethod
    def load(self, run: Run) -> None:
        """Read the training and held-out sides (a prompt-disjoint split or --eval-data); tell the user."""

    @abstractmethod
    def encode(self, run: Run, encoder: Encoder) -> None:
        """Tokenize both sides into `items` and `held`."""

    @abstractmethod
    def fingerprint(self) -> str:
        """A hash of what was encoded: a resumed run must see the same."""

    def prompt_groups(self) -> list[list[int]]:
        """Items that must share a micro-batch (default: each item alone)."""
        return [[i] for i in range(len(self.items))]

    @property
    def truncated(self) -> int:
        """Training items truncated to --max-length."""
        return truncated_count(self.items)

    def counts(self) -> dict[str, Any]:
        """eval.json's data counts."""
        return {"truncated": self.truncated}

    def inputs(self) -> str:
        """``config.rewardkit.inputs``: the texts trained on (`rewardkit.data.records.input_kind`)."""
        return "text"


class Readout(ABC):
    """The model an objective trains and where its reward is read."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg

    @abstractmethod
    def load_model(self) -> tuple[nn.Module, Any]:
        """The backbone with this readout's head, and its tokenizer."""

    def encoder(self, model: nn.Module, tokenizer: Any) -> Encoder:
        """How text is laid out and truncated for ``model`` (`rewardkit.model.backbone.make_encoder`)."""
        return make_encoder(model, tokenizer, self.cfg.max_length)

    def net(self, model: nn.Module) -> nn.Module:
        """The module the loop trains and prepares: the backbone plus this readout."""
        return RewardNet(model)

    def meta(self) -> dict[str, Any]:
        """What ``config.rewardkit`` (and every checkpoint) says about this readout."""
        return {}


class Objective(ABC):
    """An objective of the one training loop: a `Data` and a `Readout`, and its own step and evaluation."""

    name = ""  # the --objective value
    traits = Traits()
    term_weights: dict[str, float] = {}  # loss term -> its weight in the objective's loss

    def __init__(self, cfg: TrainConfig, data: Data, readout: Readout):
        self.cfg = cfg
        self.data = data
        self.readout = readout

    @property
    def items(self) -> Sequence[Encoded]:
        return self.data.items

    # ------------------------------------------------------------------ the step
    @abstractmethod
    def collate(self, members: list[int], pad_id: int, layout: BatchLayout, prompt_ids: list[int]) -> Batch:
        """One pass's batch of training items ``members`` (targets included)."""

    @abstractmethod
    def counts(self, batch: Batch) -> dict[str, float]:
        """What each value `loss` returns averages over in ``batch`` (its pairs' weight, observed ratings,
        tokens, ...): known before the forward pass."""

    @abstractmethod
    def loss(self, outputs: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        """Each loss term's mean over the pass (the names of `term_weights`), and any statistic the loop logs
        (`Traits.logged`), from the network's outputs. A value with nothing to average (count 0) is a finite 0."""

    # ------------------------------------------------------------------ evaluation
    @abstractmethod
    def evaluate(self, run: Run, net: nn.Module, pad_id: int, layout: BatchLayout) -> Evaluation | None:
        """Held-out metrics, on every process (scoring is sharded); None without held-out data."""

    @abstractmethod
    def describe(self, metrics: dict[str, Any]) -> str:
        """One line on held-out metrics during training."""

    def results_table(self, metrics: dict[str, Any]) -> str:
        """The held-out metrics as `rewardkit train` prints them at the end (default: one per line)."""
        lines = ["held-out evaluation:"]
        for key, value in metrics.items():
            if not isinstance(value, dict):
                lines.append(f"  {key:<28} {value:.4f}" if isinstance(value, float) else f"  {key:<28} {value}")
        return "\n".join(lines)

    def eval_record(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """The flat fields of a metrics.jsonl eval row."""
        return {k: v for k, v in metrics.items() if not isinstance(v, dict)}

    # ------------------------------------------------------------------ the saved model
    def reward_items(self) -> Sequence[Encoded]:
        """Training items whose rewards may stand in for held-out ones in the normalisation statistics."""
        return self.data.items

    def rewards_of(self, outputs: list[list[Any]]) -> list[float]:
        """Rewards, flat, from the head's outputs for items of `reward_items`."""
        return [float(r) for per in outputs for r in per]

    def model_meta(self, model: nn.Module, weights: dict[str, torch.Tensor] | None) -> dict[str, Any]:
        """``config.rewardkit`` entries beyond version, max length, loss and normalisation. May rewrite the
        head (``weights``: the gathered full state of a sharded run, else None)."""
        return self.readout.meta()

    @property
    def loss_name(self) -> str:
        """``config.rewardkit.loss``: what the model was trained with."""
        return self.cfg.loss

    def write_report(self, path: Path, evaluation: Evaluation, details: dict[str, str]) -> Path | None:
        """The held-out HTML report under ``path``; returns the page, or None for an objective without one."""
        return None

    def save_extra(self, directory: Path) -> None:
        """Files of the saved model beyond transformers' (written into ``directory`` before it is published)."""

    def start(self, run: Run, net: nn.Module, pad_id: int) -> None:
        """Called once the network is prepared (on its device), before the first step, also on resume:
        for what must be fitted from the data before training (the gate's feature statistics)."""

    def summary(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """eval.json's objective-specific fields: (data counts, run facts)."""
        return self.data.counts(), ({"objective": self.name} if self.name != "bt" else {})

    def checkpoint_meta(self) -> dict[str, Any]:
        """Extra trainer-state fields: what `rewardkit export` needs to turn a checkpoint into a model."""
        return {"loss_name": self.loss_name, "inputs": self.data.inputs(), **self.readout.meta()}

    def tracker_config(self) -> dict[str, Any]:
        """Extra hyperparameters for the --report-to trackers."""
        return {}
