"""Evaluate a network on comparisons while it trains: score them (sharded across processes), measure.

The numbers themselves are pure functions of the rewards (`rewardkit.evaluation.metrics`); this module runs
the network to get the rewards. ``rewardkit eval`` scores through `rewardkit.model.reward_model` instead.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from rewardkit.data.records import Comparison
from rewardkit.encoding.encoder import Encoded
from rewardkit.evaluation.metrics import pair_metrics, pairs_of
from rewardkit.model.net import score_encoded


def evaluate_net(net: torch.nn.Module, comps: Sequence[Comparison], encoded: Sequence[Encoded], pad_id: int,
                 batch_size: int, accelerator: Any, share_prefix: bool = False
                 ) -> tuple[dict[str, Any], list[list[float]]]:
    """Score the eval set (sharded across processes) and compute metrics on the main process."""
    from accelerate.utils import gather_object

    rank, world = accelerator.process_index, accelerator.num_processes
    mine = list(range(rank, len(encoded), world))
    # Equal shard sizes: DDP and FSDP forward passes are collective, so every process must run
    # the same number of batches. Padding repeats one item; the gather below de-duplicates it.
    per_process = math.ceil(len(encoded) / world)
    mine += [mine[0] if mine else 0] * (per_process - len(mine))
    was_training = net.training
    net.eval()
    with accelerator.autocast():
        rewards = score_encoded(net, pad_id, [encoded[i] for i in mine], batch_size, accelerator.device,
                                share_prefix=share_prefix)
    net.train(was_training)
    pairs = list(zip(mine, rewards))
    if world > 1:
        pairs = gather_object(pairs)
    by_index = dict(pairs)
    all_rewards = [by_index[i] for i in range(len(encoded))]
    return pair_metrics(pairs_of(comps, all_rewards)), all_rewards
