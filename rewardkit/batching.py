"""Batches: every response of every comparison in one padded tensor, one forward pass.

Worked example, two comparisons, a pair (K=2) and a ranking (K=3), right padding::

    comparisons  [(c0, r0), (a1, b1, c1)]          best first inside each
    input_ids    rows 0..4 = c0, r0, a1, b1, c1    padded to the longest row
    group_sizes  [2, 3]
    reward_row   [0, 1, 2, 3, 4]                   row holding response n
    reward_col   [len(c0)-1, len(r0)-1, ...]       its last real token
    pair_better  [0, 2, 2, 3]                      every (better, worse) pair ...
    pair_worse   [1, 3, 4, 4]
    pair_weight  [1, 1, 1, 1]                      ... or 1/C(K,2) each with balance_per_prompt

Per-prompt balancing (InstructGPT) weights every pair by 1/(pairs of its prompt in the batch), so
each prompt carries weight 1 however many responses it has. A prompt is a *group*: by default
each comparison is its own group (a K-way ranking: 1/C(K,2)); ``groups`` puts several comparisons
of one prompt (pair records sharing a prompt, or the pairs of a rating table) in one group; the
training planner (`rewardkit.train.plan_training`) keeps a group inside one batch so its weights
sum to 1. Pair records of one prompt are deliberately *not* merged into one K-way ranking: they
need not form a consistent order, and even when they do, a ranking would add pairs the data never
stated (a rating table's --min-gap or thresholds exclude some); grouping keeps exactly the given
pairs at the cost of encoding a response once per pair it appears in.

Rewards come out as a flat vector over responses; Bradley-Terry reads the pair index, Plackett-Luce
reads the groups. ``reward_row``/``reward_col`` let a future packed layout (several responses per
row sharing one prompt) use the same losses unchanged.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields
from itertools import combinations

import torch

from .encode import Encoded


@dataclass
class Batch:
    input_ids: torch.Tensor  # [rows, L]
    attention_mask: torch.Tensor  # [rows, L]
    token_type_ids: torch.Tensor | None
    position_ids: torch.Tensor  # [rows, L], counts real tokens only, so left padding is harmless
    reward_row: torch.Tensor  # [N]
    reward_col: torch.Tensor  # [N]
    group_sizes: torch.Tensor  # [G]
    pair_better: torch.Tensor  # [P]
    pair_worse: torch.Tensor  # [P]
    pair_margin: torch.Tensor  # [P]
    pair_weight: torch.Tensor  # [P]

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(**{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name).to(device))
                        for f in fields(self)})

    @property
    def num_groups(self) -> int:
        return len(self.group_sizes)


def collate(items: list[Encoded], pad_id: int, padding_side: str = "right",
            balance_per_prompt: bool = False, use_margin: bool = True,
            groups: list[int] | None = None) -> Batch:
    """Pad every response of ``items`` into one batch and index its comparison pairs.

    ``groups`` (one prompt id per item) only matters with ``balance_per_prompt``: the pairs of all
    items sharing an id split one unit of weight. Without it every item is its own prompt.
    """
    group_of = groups if groups is not None else list(range(len(items)))
    group_pairs: dict[int, int] = {}
    for e, g in zip(items, group_of):
        group_pairs[g] = group_pairs.get(g, 0) + len(e.input_ids) * (len(e.input_ids) - 1) // 2
    seqs = [s for e in items for s in e.input_ids]
    types = [t for e in items for t in e.token_type_ids] if items[0].token_type_ids is not None else None
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    tt = torch.zeros((len(seqs), width), dtype=torch.long) if types is not None else None
    pos = torch.zeros((len(seqs), width), dtype=torch.long)
    cols = []
    for i, s in enumerate(seqs):
        start = 0 if padding_side == "right" else width - len(s)
        ids[i, start:start + len(s)] = torch.tensor(s)
        mask[i, start:start + len(s)] = 1
        pos[i, start:start + len(s)] = torch.arange(len(s))
        if tt is not None:
            tt[i, start:start + len(s)] = torch.tensor(types[i])
        cols.append(start + len(s) - 1)

    better, worse, margin, weight = [], [], [], []
    offset = 0
    for e, g in zip(items, group_of):
        k = len(e.input_ids)
        n_pairs = group_pairs[g]
        for i, j in combinations(range(k), 2):
            better.append(offset + i)
            worse.append(offset + j)
            m = 0.0
            if use_margin:
                if e.scores is not None:
                    m = e.scores[i] - e.scores[j]
                elif e.margin is not None and k == 2:
                    m = e.margin
            margin.append(m)
            weight.append(1.0 / n_pairs if balance_per_prompt else 1.0)
        offset += k
    return Batch(
        input_ids=ids, attention_mask=mask, token_type_ids=tt, position_ids=pos,
        reward_row=torch.arange(len(seqs)), reward_col=torch.tensor(cols),
        group_sizes=torch.tensor([len(e.input_ids) for e in items]),
        pair_better=torch.tensor(better, dtype=torch.long), pair_worse=torch.tensor(worse, dtype=torch.long),
        pair_margin=torch.tensor(margin, dtype=torch.float32), pair_weight=torch.tensor(weight, dtype=torch.float32),
    )


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int, bucket_batches: int = 50
                           ) -> list[list[int]]:
    """Batches of similar length, in random order.

    Indices are shuffled, cut into buckets of ``bucket_batches`` batches, sorted by length inside
    each bucket and chunked; then the batch order is shuffled. Padding waste drops to a few
    percent while every epoch still sees a fresh random order of batches.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    span = batch_size * bucket_batches
    batches: list[list[int]] = []
    for start in range(0, len(order), span):
        bucket = sorted(order[start:start + span], key=lambda i: lengths[i])
        batches += [bucket[j:j + batch_size] for j in range(0, len(bucket), batch_size)]
    rng.shuffle(batches)
    return batches


def sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Inference batches, longest first (an out-of-memory error shows up at once, not at the end)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[j:j + batch_size] for j in range(0, len(order), batch_size)]
