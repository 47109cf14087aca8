"""Prompt-gated attribute weights (``--objective gating``, after ArmoRM: Wang et al., "Interpretable
preferences via multi-objective reward modeling and mixture-of-experts").

A multi-attribute regression model rates every response on K attributes; which attributes matter depends
on the prompt (a safety question wants harmlessness, a coding one correctness). A small gating network
reads the prompt's hidden state (at its last token) and outputs non-negative weights summing to 1; the
reward is ``scale * sum_k w_k(prompt) * attribute_k(response)``, the attributes from the regression head,
frozen with the backbone, so only the gate and the scale learn (Bradley-Terry on preference pairs).

Every batch reads two positions per response (`collate_gated`): the response's last token (the
attributes) and its prompt's last token (the gate). The gate's weights are saved beside the model as
``gating.safetensors`` (`GATE_FILE`), described in ``config.rewardkit.gating``.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from rewardkit.encoding.encoder import Encoded
from rewardkit.model.backbone import param_dtype
from rewardkit.model.batching import Batch, collate_for, sorted_batches
from rewardkit.model.net import RewardNet

GATE_FILE = "gating.safetensors"


class Gate(nn.Module):
    """hidden -> K non-negative weights summing to 1 (standardised features, a two-layer MLP and a softmax),
    and a learned scale.

    The features are standardised by the training prompts' own mean and standard deviation (``center``
    and ``spread``, fixed before the first step by `fit_standardisation`): a frozen backbone's states share
    one large common direction and differ between kinds of prompt by a small fraction of their norm
    (measured: 2% on the task of ``scripts/synthetic_gating.py``), and on raw states the gate barely moved
    in 100 steps. Fixed statistics, unlike a BatchNorm's running ones, do not depend on the batch size or
    the number of processes.
    """

    def __init__(self, hidden: int, attributes: int, width: int = 64):
        super().__init__()
        self.register_buffer("center", torch.zeros(hidden))
        self.register_buffer("spread", torch.ones(hidden))
        self.mlp = nn.Sequential(nn.Linear(hidden, width), nn.ReLU(), nn.Linear(width, attributes))
        self.log_scale = nn.Parameter(torch.zeros(()))

    def forward(self, prompt_hidden: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.mlp((prompt_hidden.float() - self.center) / self.spread), dim=-1)

    @torch.no_grad()
    def fit_standardisation(self, states: torch.Tensor) -> None:
        """Set ``center`` and ``spread`` from prompt states (one row per prompt)."""
        states = states.double()
        self.center.copy_(states.mean(0))
        self.spread.copy_((states.var(0, unbiased=False) + 1e-5).sqrt())


class GatedNet(RewardNet):
    """A frozen decoder regression model plus a `Gate`: one reward per response (``weights_only``: the gate's
    K weights instead, for reports)."""

    def __init__(self, model: nn.Module, gate: Gate, **kwargs: Any):
        # no CPU row chunks: a chunk's readout must see its responses' and its prompts' positions together
        super().__init__(model, **{"row_chunk": 0, **kwargs})
        self.gate = gate
        self.weights_only = False
        self.prompt_states = False  # the prompts' raw states instead (`prompt_states`)

    def readout(self, inner: nn.Module, hidden: torch.Tensor, read_ids: torch.Tensor | None) -> torch.Tensor:
        n = hidden.shape[0] // 2  # the responses' last tokens, then their prompts' (`collate_gated`)
        if self.prompt_states:
            return hidden[n:].float()
        weights = self.gate(hidden[n:])
        if self.weights_only:
            return weights
        attributes = inner.score(hidden[:n].to(param_dtype(inner.score))).float()
        return self.gate.log_scale.exp() * (weights * attributes).sum(-1)


def collate_gated(items: list[Encoded], pad_id: int, **kwargs: Any) -> Batch:
    """`collate_for`'s rows (one per response, never packed), then every response's prompt end appended to
    the readout positions: ``reward_row/col`` hold N response ends followed by the same N rows' prompt ends."""
    batch = collate_for(items, pad_id, False, False, **kwargs)
    ends = [e.prompt_len - 1 for e in items for _ in e.input_ids]
    batch.reward_row = torch.cat([batch.reward_row, batch.reward_row])
    batch.reward_col = torch.cat([batch.reward_col, torch.tensor(ends, dtype=torch.long)])
    return batch


@torch.inference_mode()
def score_gated(net: GatedNet, pad_id: int, encoded: Sequence[Encoded], batch_size: int,
                device: torch.device) -> list[list[Any]]:
    """Gated rewards (or, with ``net.weights_only``, gate weights) of every response, in input order."""
    out: list[list[Any]] = [[] for _ in encoded]
    for idx in sorted_batches([e.longest for e in encoded], batch_size):
        values = net(**collate_gated([encoded[i] for i in idx], pad_id).to(device).inputs()).tolist()
        at = 0
        for i in idx:
            k = len(encoded[i].input_ids)
            out[i] = values[at:at + k]
            at += k
    return out


@torch.no_grad()
def prompt_states(net: nn.Module, prompts: Sequence[list[int]], pad_id: int, batch_size: int,
                  device: torch.device) -> torch.Tensor:
    """The state at the last token of every prompt (token ids), one row each, through ``net`` (a `GatedNet`,
    possibly wrapped by accelerate) in eval mode."""
    inner = net.module if hasattr(net, "module") else net
    was_training = net.training
    net.eval()
    inner.prompt_states = True
    try:
        rows = []
        for at in range(0, len(prompts), batch_size):
            items = [Encoded([p], None, len(p), False) for p in prompts[at:at + batch_size]]
            rows.append(net(**collate_gated(items, pad_id).to(device).inputs()).float().cpu())
    finally:
        inner.prompt_states = False
        net.train(was_training)
    return torch.cat(rows)


def gate_state(gate: Gate) -> dict[str, torch.Tensor]:
    return {k: (v.detach().float() if v.is_floating_point() else v).contiguous().cpu() for k, v in gate.state_dict().items()}


def load_gate(directory: Any, hidden: int, attributes: int, width: int) -> Gate:
    from pathlib import Path

    from safetensors.torch import load_file

    gate = Gate(hidden, attributes, width)
    gate.load_state_dict(load_file(str(Path(directory) / GATE_FILE)))
    return gate.eval()
