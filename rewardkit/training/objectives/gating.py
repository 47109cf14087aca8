"""``--objective gating``: prompt-gated attribute weights on a frozen multi-attribute regression model.

``--model`` is a decoder regression model (``--objective regression``: K attributes in ``config.rewardkit``).
Its backbone and attribute head stay frozen; a small gate reads the prompt's last hidden state and weights
the attributes (`rewardkit.model.gating`), and the reward ``scale * sum_k w_k * attribute_k`` is trained with
Bradley-Terry on preference pairs. Held-out metrics: the pairwise ones, plus the mean weight of every
attribute per subset. The saved model is the regression model as it was, its gate in
``gating.safetensors`` and ``config.rewardkit.gating`` saying how to combine them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from rewardkit.config import TrainConfig
from rewardkit.errors import UsageError
from rewardkit.evaluation.held_out import score_sharded
from rewardkit.evaluation.metrics import mean_gate_weights, pair_metrics, pairs_of
from rewardkit.model.artifacts import read_meta
from rewardkit.model.backbone import load_backbone, uses_last_token
from rewardkit.model.batching import Batch, BatchLayout
from rewardkit.model.gating import GATE_FILE, Gate, GatedNet, collate_gated, gate_state, prompt_states
from rewardkit.training.objectives.base import Evaluation, Objective, Readout, Traits
from rewardkit.training.objectives.pairwise import PairwiseObjective
from rewardkit.training.objectives.parts import ComparisonData

if TYPE_CHECKING:
    from rewardkit.training.startup import Run


class GateOnRegression(Readout):
    """The regression model of --model, frozen, and a fresh `Gate` over its attributes."""

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg)
        self.attributes: list[str] = []
        self.gate: Gate | None = None

    def load_model(self) -> tuple[nn.Module, Any]:
        meta = read_meta(self.cfg.model) if self.cfg.model and Path(self.cfg.model).is_dir() else {}
        self.attributes = list(meta.get("attributes") or [])
        if len(self.attributes) < 2:
            raise UsageError(f"--objective gating: --model {self.cfg.model or '(the bundled MiniLM)'} is not a "
                             "multi-attribute regression model (config.rewardkit names no attributes); train one with "
                             "--objective regression first")
        model, tokenizer = load_backbone(self.cfg.model, dropout=False, head={"num_labels": len(self.attributes)})
        if not uses_last_token(model):
            raise UsageError(f"--objective gating: --model {self.cfg.model} is an encoder; the gate reads the "
                             "prompt's own last hidden state, which only a decoder has")
        model.rewardkit_fresh_modules = []  # nothing of the model trains, LoRA or not
        for p in model.parameters():
            p.requires_grad_(False)
        torch.manual_seed(self.cfg.seed)
        self.gate = Gate(model.config.hidden_size, len(self.attributes), self.cfg.gate_width)
        return model, tokenizer

    def net(self, model: nn.Module) -> nn.Module:
        assert self.gate is not None
        return GatedNet(model, self.gate)

    def meta(self) -> dict[str, Any]:
        assert self.gate is not None
        return {"objective": "gating", "attributes": self.attributes,
                "gating": {"attributes": self.attributes, "hidden": int(self.gate.mlp[0].in_features),
                           "width": int(self.gate.mlp[0].out_features), "file": GATE_FILE}}


class GatingObjective(Objective):
    """Pairs in, a gate over frozen attributes learnt with Bradley-Terry (see the module doc)."""

    name = "gating"
    traits = Traits(unit="pairs", logged=("loss", "accuracy"), packing=False, reward_statistics=True)
    term_weights = {"pairwise": 1.0}

    def __init__(self, cfg: TrainConfig):
        if cfg.lora_r:
            raise UsageError("--lora-r does not apply to --objective gating: only the gate trains")
        self.data: ComparisonData
        self.readout: GateOnRegression
        super().__init__(cfg, ComparisonData(cfg), GateOnRegression(cfg))

    def collate(self, members: list[int], pad_id: int, layout: BatchLayout, prompt_ids: list[int]) -> Batch:
        return collate_gated([self.items[j] for j in members], pad_id, balance_per_prompt=self.cfg.balance_per_prompt,
                             use_margin=self.cfg.use_margin, prompt_ids=prompt_ids)

    counts = PairwiseObjective.counts  # Bradley-Terry on the gated rewards, as a pairwise model's
    loss = PairwiseObjective.loss

    def evaluate(self, run: Run, net: nn.Module, pad_id: int, layout: BatchLayout) -> Evaluation | None:
        data = self.data
        if not data.held:
            return None
        rewards = score_sharded(net, data.held, pad_id, self.cfg.eval_batch_size, run.accelerator, collate=collate_gated)
        inner = run.accelerator.unwrap_model(net)
        inner.weights_only = True
        try:
            weights = score_sharded(net, data.held, pad_id, self.cfg.eval_batch_size, run.accelerator,
                                    collate=collate_gated)
        finally:
            inner.weights_only = False
        metrics = pair_metrics(pairs_of(data.held_out, rewards))
        metrics["gate_weights"] = mean_gate_weights(self.readout.attributes, data.held_out, weights)
        return Evaluation(metrics, [r for rs in rewards for r in rs], rewards)

    def start(self, run: Run, net: nn.Module, pad_id: int) -> None:
        """Standardise the gate's input by the training prompts' states (`Gate.fit_standardisation`):
        every distinct prompt once, in a fixed order, so every process and a resumed run get the same."""
        prompts = sorted({tuple(e.input_ids[0][:e.prompt_len]) for e in self.items})
        with run.accelerator.autocast():
            states = prompt_states(net, [list(p) for p in prompts], pad_id, self.cfg.eval_batch_size,
                                   run.accelerator.device)
        assert self.readout.gate is not None
        self.readout.gate.fit_standardisation(states.to(self.readout.gate.center.device))
        run.say(f"gate: input standardised over {len(prompts)} training prompts")

    def write_report(self, path: Path, evaluation: Evaluation, details: dict[str, str]) -> Path:
        """The held-out report with the gate's weights per subset and the run's loss curve."""
        from rewardkit.evaluation.report import TrainingRun, write_report

        return write_report(path, self.data.held_out, evaluation.details, evaluation.metrics,
                            title="Held-out evaluation", details=details,
                            training=TrainingRun(Path(self.cfg.output_dir) / "metrics.jsonl"))

    def describe(self, metrics: dict[str, Any]) -> str:
        return f"eval accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f}"

    def results_table(self, metrics: dict[str, Any]) -> str:
        from rewardkit.evaluation.evaluate import metrics_table

        return metrics_table(metrics, f"held-out evaluation ({metrics['pairs']} pairs):")

    @property
    def loss_name(self) -> str:
        return "gating"

    def model_meta(self, model: nn.Module, weights: dict[str, torch.Tensor] | None) -> dict[str, Any]:
        """The regression model's attributes, weights and scaling as it saved them, and the gate."""
        regression = read_meta(self.cfg.model)
        keep = ("attributes", "attribute_weights", "scaling", "pair_attribute")
        return {**{k: regression[k] for k in keep if k in regression}, **self.readout.meta()}

    def save_extra(self, directory: Path) -> None:
        from safetensors.torch import save_file

        assert self.readout.gate is not None
        save_file(gate_state(self.readout.gate), str(directory / GATE_FILE))
