"""Score held-out data with the network being trained, sharded across processes, and measure it.

The numbers themselves are pure functions of the rewards (`rewardkit.evaluation.metrics`); this
module runs the network to get them. ``rewardkit eval`` scores through
`rewardkit.model.reward_model` instead.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from rewardkit.data.records import Comparison
from rewardkit.encoding.encoder import Encoded
from rewardkit.evaluation.metrics import pair_metrics, pairs_of
from rewardkit.model.net import score_encoded


def score_sharded(net: torch.nn.Module, encoded: Sequence[Encoded], pad_id: int, batch_size: int, accelerator: Any,
                  share_prefix: bool = False) -> list[list[Any]]:
    """The head's outputs for every response of every item, in input order, on every process.

    Each process scores every ``world``-th item; the results are gathered. One output is a float
    (a 1-output head) or a list of K floats (one per rated attribute).
    """
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
        outputs = score_encoded(net, pad_id, [encoded[i] for i in mine], batch_size, accelerator.device,
                                share_prefix=share_prefix)
    net.train(was_training)
    pairs = list(zip(mine, outputs))
    if world > 1:
        pairs = gather_object(pairs)
    by_index = dict(pairs)
    return [by_index[i] for i in range(len(encoded))]


def evaluate_net(net: torch.nn.Module, comps: Sequence[Comparison], encoded: Sequence[Encoded], pad_id: int,
                 batch_size: int, accelerator: Any, share_prefix: bool = False
                 ) -> tuple[dict[str, Any], list[list[float]]]:
    """Pairwise metrics of the held-out comparisons (`score_sharded`), and their rewards."""
    rewards = score_sharded(net, encoded, pad_id, batch_size, accelerator, share_prefix)
    return pair_metrics(pairs_of(comps, rewards)), rewards
