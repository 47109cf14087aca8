"""Score held-out data with the network being trained, sharded across processes, and measure it.

The numbers themselves are pure functions of the rewards (`rewardkit.evaluation.metrics`); this
module runs the network to get them. ``rewardkit eval`` scores through
`rewardkit.model.reward_model` instead.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch

from rewardkit.data.records import Comparison
from rewardkit.encoding.encoder import Encoded
from rewardkit.evaluation.metrics import pair_metrics, pairs_of
from rewardkit.model.net import score_encoded, score_steps_encoded


def shard_indices(n: int, accelerator: Any) -> tuple[list[int], int]:
    """This process's share of ``n`` items (every ``world``-th) and how many of them are its own.

    Shares are evened out with repeats of one item, because DDP and FSDP forward passes are collective:
    every process must run the same number of batches. The repeats are to be ignored (the gather in
    `score_sharded` de-duplicates them; `shard` gives them weight 0).
    """
    rank, world = accelerator.process_index, accelerator.num_processes
    mine = list(range(rank, n, world))
    real = len(mine)
    return mine + [mine[0] if mine else 0] * (math.ceil(n / world) - real), real


def shard(items: Sequence[Any], accelerator: Any) -> list[tuple[Any, float]]:
    """(item, weight) for this process's share of ``items``: weight 1 for its own, 0 for the repeats."""
    mine, real = shard_indices(len(items), accelerator)
    return [(items[i], 1.0 if k < real else 0.0) for k, i in enumerate(mine)]


def on_shards(work: Callable[[list[Any]], list[Any]], items: Sequence[Any], accelerator: Any) -> list[Any]:
    """``work`` on this process's share of ``items`` (every ``world``-th), the results gathered: every
    process gets one result per item, in input order."""
    from accelerate.utils import gather_object

    mine, _ = shard_indices(len(items), accelerator)
    pairs = list(zip(mine, work([items[i] for i in mine])))
    if accelerator.num_processes > 1:
        pairs = gather_object(pairs)
    by_index = dict(pairs)
    return [by_index[i] for i in range(len(items))]


def in_eval_mode(net: torch.nn.Module, accelerator: Any, score: Callable[[list[Any]], list[Any]]
                 ) -> Callable[[list[Any]], list[Any]]:
    """``score`` run with ``net`` in eval mode under the run's autocast, its training mode restored after."""
    def run(mine: list[Any]) -> list[Any]:
        was_training = net.training
        net.eval()
        try:
            with accelerator.autocast():
                return score(mine)
        finally:
            net.train(was_training)
    return run


def score_sharded(net: torch.nn.Module, encoded: Sequence[Encoded], pad_id: int, batch_size: int, accelerator: Any,
                  share_prefix: bool = False, pack: bool = False, collate: Any = None) -> list[list[Any]]:
    """The head's outputs for every response of every item, in input order, on every process (`on_shards`).

    One output is a float (a 1-output head) or a list of K floats (one per rated attribute).
    """
    return on_shards(in_eval_mode(net, accelerator, lambda mine: score_encoded(
        net, pad_id, mine, batch_size, accelerator.device, share_prefix=share_prefix, pack=pack, collate=collate)),
        encoded, accelerator)


def evaluate_net(net: torch.nn.Module, comps: Sequence[Comparison], encoded: Sequence[Encoded], pad_id: int,
                 batch_size: int, accelerator: Any, share_prefix: bool = False, pack: bool = False
                 ) -> tuple[dict[str, Any], list[list[float]]]:
    """Pairwise metrics of the held-out comparisons (`score_sharded`), and their rewards."""
    rewards = score_sharded(net, encoded, pad_id, batch_size, accelerator, share_prefix, pack)
    return pair_metrics(pairs_of(comps, rewards)), rewards


def score_steps_sharded(net: torch.nn.Module, encoded: Sequence[Encoded], pad_id: int, batch_size: int,
                        accelerator: Any) -> list[list[float]]:
    """A process reward model's step logits for every solution, in input order, on every process (`on_shards`)."""
    return on_shards(in_eval_mode(net, accelerator, lambda mine: score_steps_encoded(
        net, pad_id, mine, batch_size, accelerator.device)), encoded, accelerator)
