"""How a run computes, decided once: precision, prefix sharing, packed rows, compile, flex attention, passes.

Every setting here changes speed or memory, never what is learned (each path is exact: tests compare it
with the plain one). They are resolved in one place (`resolve_speed`, after the model is loaded; the
precision before the accelerator is made, flex attention once the network is prepared), said in one
line, saved in ``train_config.yaml`` and ``eval.json``, and read from the `SpeedPlan` everywhere else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import nn

from rewardkit.config import TrainConfig
from rewardkit.model.backbone import resolve_compile
from rewardkit.model.batching import BatchLayout
from rewardkit.model.precision import Precision
from rewardkit.model.prefix_sharing import resolve_packing, resolve_prefix_sharing
from rewardkit.training.batch_plan import resolve_pass_tokens
from rewardkit.training.sharding import full_weights

if TYPE_CHECKING:
    from rewardkit.training.objectives import Objective
    from rewardkit.training.startup import Run


@dataclass(frozen=True)
class SpeedPlan:
    """The resolved speed settings of a run (see the module doc)."""

    precision: Precision
    prefix_sharing: bool = False  # a comparison's prompt encoded once (decoders)
    packing: bool = False  # several comparisons per row
    compile: bool = False  # torch.compile of the backbone's body
    pass_tokens: int = 0  # cap on a pass's tokens (padded, or real with packed rows); 0: none
    flex_attention: str = "off"  # "on", or why not (packed rows on a GPU only)

    @property
    def layout(self) -> BatchLayout:
        """How batches lay comparisons out in rows."""
        return BatchLayout(self.prefix_sharing, self.packing)

    def describe(self) -> str:
        """One line for the log."""
        on = lambda x: "on" if x else "off"  # noqa: E731
        budget = (f"{self.pass_tokens} {'real' if self.packing else 'padded'} tokens per pass" if self.pass_tokens
                  else "one pass per micro-batch")
        return (f"speed: {self.precision.describe().removeprefix('precision: ')}; prefix sharing "
                f"{on(self.prefix_sharing)}, packed rows {on(self.packing)}, compile {on(self.compile)}, flex attention "
                f"{self.flex_attention}; {budget}")

    def to_dict(self) -> dict[str, Any]:
        """What train_config.yaml and eval.json record."""
        return {"precision": self.precision.name, "precision_reason": self.precision.reason,
                "prefix_sharing": self.prefix_sharing, "packing": self.packing, "compile": self.compile,
                "pass_tokens": self.pass_tokens, "flex_attention": self.flex_attention}


def resolve_speed(cfg: TrainConfig, run: Run, objective: Objective, model: nn.Module, pad_id: int) -> SpeedPlan:
    """Every speed setting of the run, once its model is loaded (the precision is the run's already)."""
    device = run.accelerator.device
    share = False
    if objective.traits.prefix_sharing:
        with full_weights(model):  # ZeRO-3 partitions the backbone as it loads; the probe needs it whole
            share = resolve_prefix_sharing(cfg.prefix_sharing, objective.readout.net(model), pad_id, cfg.max_length,
                                           run.say)
    packing = objective.traits.packing and resolve_packing(cfg.packing, model, device.type, cfg.max_length)
    return SpeedPlan(run.precision, share, packing, resolve_compile(cfg.compile, device.type),
                     resolve_pass_tokens(cfg.pass_tokens, device, run.deepspeed, packed=packing))


def with_flex_attention(plan: SpeedPlan, why_not: str | None) -> SpeedPlan:
    """The plan once the prepared network tried flex attention (`rewardkit.model.prefix_sharing`)."""
    return dataclasses.replace(plan, flex_attention="on" if why_not is None else f"off ({why_not})")
