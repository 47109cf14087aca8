"""The K-attribute regression head: its config, the target scaling it learns in, and what it saves.

A regression reward model has one output per rated attribute (``num_labels = K``, `head_config`).
The network regresses ``(value - offset) / scale`` per attribute (`Scaling`): ``range`` maps a
stated ``--score-range lo:hi`` to [0, 1]; ``standardize`` uses the training rows' mean and standard
deviation; ``none`` leaves values as they are. ``auto`` (the default) is ``range`` when every
attribute has a stated range and ``standardize`` otherwise. Scaled targets of similar size keep
one attribute's large numbers from dominating the summed loss.

At export the scaling is folded into the output layer (`fold_output_layer`) so the saved model's
logits are ratings in original units, and ``config.rewardkit`` records the attributes, their
weights in the combined reward ``sum_k w_k * value_k`` and the scaling (`RegressionMeta`), so
`RewardModel.score` returns the combined reward and `score_attributes` the ratings.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from rewardkit.data.attributes.options import COMBINED
from rewardkit.data.attributes.table import RatedResponse
from rewardkit.errors import DataError, UsageError, flag
from rewardkit.model.backbone import unwrap


def head_config(attributes: Sequence[str]) -> dict[str, Any]:
    """The transformers config fields of a K-attribute regression head (``AutoConfig`` kwargs).

    Plain transformers then knows the outputs are regression values and what each one is called.
    """
    return {"num_labels": len(attributes), "problem_type": "regression",
            "id2label": {i: a for i, a in enumerate(attributes)},
            "label2id": {a: i for i, a in enumerate(attributes)}}


@dataclass
class RegressionMeta:
    """What a regression model stores under ``config.rewardkit`` to score like it was trained.

    ``scaling`` is what the head learned; ``folded`` says the export rewrote the output layer
    (`rewardkit.model.attribute_head.fold_scaling`) so the saved logits are already in original units.
    """

    attributes: list[str]
    weights: list[float]
    scaling: Scaling
    folded: bool = False
    objective: str = "regression"
    pair_attribute: str = COMBINED

    def to_meta(self) -> dict[str, Any]:
        return {"objective": self.objective, "attributes": list(self.attributes),
                "attribute_weights": dict(zip(self.attributes, self.weights)),
                "scaling": {**self.scaling.to_dict(), "folded": self.folded},
                "pair_attribute": self.pair_attribute}

    @classmethod
    def from_meta(cls, meta: dict[str, Any], num_labels: int, where: str) -> "RegressionMeta | None":
        """None for a pairwise model; UsageError naming ``where`` for inconsistent settings."""
        attrs = meta.get("attributes")
        if not attrs:
            return None
        weights = meta.get("attribute_weights") or {}
        if len(attrs) != num_labels or set(weights) - set(attrs):
            raise UsageError(f"{where}: config.rewardkit names attributes {attrs} (weights for {sorted(weights)}) "
                             f"but the head has {num_labels} outputs")
        scaling = meta.get("scaling") or {"kind": "none", "offset": [0.0] * num_labels, "scale": [1.0] * num_labels}
        return cls(attributes=list(attrs), weights=[float(weights.get(a, 0.0)) for a in attrs],
                   scaling=Scaling.from_dict(scaling), folded=bool(scaling.get("folded", False)),
                   objective=str(meta.get("objective", "regression")),
                   pair_attribute=str(meta.get("pair_attribute", COMBINED)))

    def values(self, outputs: Sequence[float]) -> list[float]:
        """Head outputs -> ratings in original units (identity once the scaling is folded)."""
        return list(outputs) if self.folded else self.scaling.unscale(outputs)

    def reward(self, outputs: Sequence[float]) -> float:
        """The combined reward of one response's head outputs: ``sum_k w_k * value_k``."""
        return math.fsum(w * v for w, v in zip(self.weights, self.values(outputs)))

    def as_dict(self, outputs: Sequence[float]) -> dict[str, float]:
        """{attribute: value} in original units: what `RewardModel.score_attributes` returns per response."""
        return dict(zip(self.attributes, self.values(outputs)))


@dataclass
class Scaling:
    """Per-attribute affine map between original units and what the head regresses.

    ``scaled = (value - offset) / scale``; ``value = offset + scale * scaled``. Stored with the
    model (`to_dict`) so scoring returns original units.
    """

    kind: str  # "range", "standardize" or "none"
    offset: list[float]
    scale: list[float]

    def scale_values(self, values: Sequence[float | None]) -> list[float | None]:
        return [None if v is None else (v - o) / s for v, o, s in zip(values, self.offset, self.scale)]

    def unscale(self, outputs: Sequence[float]) -> list[float]:
        return [o + s * y for y, o, s in zip(outputs, self.offset, self.scale)]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "offset": list(self.offset), "scale": list(self.scale)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Scaling":
        return cls(kind=str(d["kind"]), offset=[float(x) for x in d["offset"]], scale=[float(x) for x in d["scale"]])


def fit_scaling(kind: str, records: Sequence[RatedResponse], ranges: Sequence[tuple[float, float] | None],
                attributes: Sequence[str], center: bool = True) -> Scaling:
    """The `Scaling` for ``--target-scaling`` (see module doc), fitted on training records only.

    ``center=False`` keeps every offset at 0 (divide only): for heads without a bias (Llama, Qwen,
    GPT-2 ``score``), into which a scale can be folded at export but an offset cannot
    (`rewardkit.model.attribute_head.fold_scaling`).
    """
    k = len(attributes)
    if kind == "auto":
        kind = "range" if all(r is not None for r in ranges) else "standardize"
    if kind == "none":
        return Scaling("none", [0.0] * k, [1.0] * k)
    if kind == "range":
        missing = [a for a, r in zip(attributes, ranges) if r is None]
        if missing:
            raise UsageError(f"{flag('target_scaling')} range needs {flag('score_range')} for "
                             f"{', '.join(missing)}")
        lows = [r[0] if center else 0.0 for r in ranges]  # type: ignore[index]
        return Scaling("range", lows, [r[1] - r[0] for r in ranges])  # type: ignore[index]
    offset, scale = [], []
    for j, name in enumerate(attributes):
        seen = [r.values[j] for r in records if r.values[j] is not None]
        if not seen:
            raise DataError(f"attribute {name!r} has no value in the training data")
        mean = statistics.fmean(seen)  # type: ignore[arg-type]
        std = statistics.pstdev(seen) if len(seen) > 1 else 0.0  # type: ignore[arg-type]
        offset.append(mean if center else 0.0)
        scale.append(std if std > 0 else 1.0)  # a constant attribute: centre it, do not divide by 0
    return Scaling("standardize", offset, scale)


def target_matrix(records: Sequence[RatedResponse], scaling: Scaling) -> tuple[list[list[float]], list[list[bool]]]:
    """Scaled targets [N][K] (0.0 where missing) and the observed mask [N][K], ready for tensors."""
    targets, mask = [], []
    for r in records:
        scaled = scaling.scale_values(r.values)
        targets.append([0.0 if v is None else v for v in scaled])
        mask.append([v is not None for v in scaled])
    return targets, mask


@torch.no_grad()
def fold_scaling(weight: torch.Tensor, bias: torch.Tensor | None, offset: torch.Tensor, scale: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The output layer's (weight [K, H], bias [K]) rewritten to emit ``offset + scale * output``.

    Training regresses scaled targets; folding the scaling into the last linear layer at export
    makes the saved model's logits the ratings in original units, so plain transformers and
    `RewardModel.score_attributes` give the same numbers. A bias-less layer (decoder ``score``
    heads) can absorb a scale but not an offset: ValueError unless every offset is 0.
    """
    scale = scale.to(torch.float32)
    offset = offset.to(torch.float32)
    new_weight = (weight.float() * scale[:, None]).to(weight.dtype)
    if bias is None:
        if bool((offset != 0).any()):
            raise ValueError("the output layer has no bias to fold a non-zero offset into "
                             "(fit the scaling with center=False for this head)")
        return new_weight, None
    return new_weight, (bias.float() * scale + offset).to(bias.dtype)


def output_layer(model: nn.Module) -> nn.Linear:
    """The linear layer that produces the K logits (``score`` for decoders, ``classifier`` or
    ``classifier.out_proj`` for encoders); under peft, the trained copy."""
    inner = unwrap(model)
    k = inner.config.num_labels
    for name in ("score", "classifier"):
        head = getattr(inner, name, None)
        if head is None:
            continue
        saved = getattr(head, "modules_to_save", None)
        if saved is not None and "default" in saved:
            head = saved["default"]
        linears = [m for m in head.modules() if isinstance(m, nn.Linear) and m.out_features == k]
        if linears:
            return linears[-1]
    raise UsageError(f"{type(inner).__name__}: cannot find the output layer with {k} outputs")


def fold_output_layer(model: nn.Module, offset: Sequence[float], scale: Sequence[float],
                      weights: dict[str, torch.Tensor] | None = None) -> None:
    """Rewrite the output layer so the model's logits are ratings in original units (`fold_scaling`).

    ``weights``: a sharded run's gathered full state dict (keys as in ``model``), rewritten instead
    of the live module, whose parameters are each process's shards.
    """
    layer = output_layer(model)
    if weights is not None:
        name = next(n for n, m in model.named_modules() if m is layer)
        keys = [f"{name}.weight", f"{name}.bias" if layer.bias is not None else None]
        w, b = fold_scaling(weights[keys[0]], weights[keys[1]] if keys[1] else None,
                            torch.tensor(list(offset)), torch.tensor(list(scale)))
        weights[keys[0]] = w
        if keys[1]:
            weights[keys[1]] = b
        return
    w, b = fold_scaling(layer.weight.data, None if layer.bias is None else layer.bias.data,
                        torch.tensor(list(offset)), torch.tensor(list(scale)))
    layer.weight.data.copy_(w)
    if b is not None:
        layer.bias.data.copy_(b)
