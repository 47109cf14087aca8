"""The training plan: every micro-batch of the run, fixed up front from the seed.

Planning the whole run before the first step means a step number alone says where the data stands:
``--resume`` rebuilds the same plan and starts at the saved step. The words used for splitting work,
each with one meaning everywhere in rewardkit:

* **comparison**: one prompt with K >= 2 responses, best first (a pair is K = 2).
* **prompt group**: the comparisons that share a prompt. With ``--balance-per-prompt`` a group is
  never split and its pair weights sum to 1; otherwise every comparison is its own group.
* **micro-batch**: the prompt groups one process runs for one gradient contribution
  (``--batch-size`` of them), length-grouped so little compute goes to padding.
* **round**: one micro-batch per process, run at the same time by all processes.
* **step**: ``--grad-accum`` rounds, then one optimizer step.
* **pass**: one forward + backward over part of a micro-batch; ``--pass-tokens`` cuts a long
  micro-batch into passes of whole prompt groups whose gradients add up to the micro-batch's own.
* **chunk**: rows of one forward pass run separately inside the network (`rewardkit.model.fast_paths`),
  an exact CPU speed path that never changes the loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from rewardkit.encoding.encoded_set import rows_of, tokens_of, widths_of
from rewardkit.encoding.encoder import Encoded
from rewardkit.errors import UsageError
from rewardkit.model.batching import length_grouped_batches, token_budget_batches

# Padded tokens per forward/backward pass on CPU (--pass-tokens): 16 pairs of 512 tokens would keep
# ~3 GB of MiniLM activations alive at once; 8192 halves that and costs <1% more padding on hh-rlhf.
CPU_PASS_TOKENS = 8192
# Real tokens per forward/backward pass on a GPU with packed rows (--packing): big enough to keep the
# chip busy (issue 20 asks for >= 32k), small enough for the activations of a 0.5B model.
GPU_PACKED_PASS_TOKENS = 32768
# Length grouping sorts this many micro-batches' worth of comparisons by length before cutting them.
LENGTH_BUCKET_BATCHES = 50


def resolve_pass_tokens(setting: int | None, device: torch.device, deepspeed: bool, packed: bool = False) -> int:
    """--pass-tokens: the default cap on CPU; on a GPU none, or with packed rows a budget of real tokens
    (`GPU_PACKED_PASS_TOKENS`); none under DeepSpeed (one backward per step)."""
    if deepspeed:
        if setting:
            raise UsageError("--pass-tokens is not supported under DeepSpeed (it steps inside backward); "
                             "use --pass-tokens 0 or a smaller --batch-size")
        return 0
    if setting is None:
        return CPU_PASS_TOKENS if device.type == "cpu" else GPU_PACKED_PASS_TOKENS if packed else 0
    return setting



def plan_rounds(batches: list[list[int]], world: int) -> list[list[list[int]]]:
    """Group batches into rounds of ``world`` (one per process), using every comparison once.

    When the last round is short, its comparisons are re-dealt into ``world`` smaller batches so
    every process takes a step and no data is dropped.
    """
    full = len(batches) - len(batches) % world
    rounds = [batches[i:i + world] for i in range(0, full, world)]
    rest = [i for b in batches[full:] for i in b]
    if rest:
        share = [rest[r::world] for r in range(world)]
        rounds.append([s if s else rest[:1] for s in share])
    return rounds



def plan_micro_batches(prompt_groups: list[list[int]], lengths: list[int], batch_size: int, epochs: float, seed: int,
                       world: int, length_grouped: bool = True) -> list[list[list[int]]]:
    """Every micro-batch of the run: rounds of one micro-batch (comparison indices) per process.

    Micro-batches hold ``batch_size`` prompt groups each and never split one (see the module doc),
    so a prompt's pair weights sum to 1 inside its micro-batch. A group's length is its longest
    member's. ``length_grouped`` False draws every micro-batch at random instead (buckets of one
    batch), for objectives whose targets follow length.
    """
    group_lengths = [lengths[g[0]] if len(g) == 1 else max(lengths[i] for i in g) for g in prompt_groups]
    per_epoch = math.ceil(len(prompt_groups) / batch_size)
    micro_total = max(1, math.ceil(epochs * per_epoch))
    batches: list[list[int]] = []
    epoch = 0
    while len(batches) < micro_total:
        batches += length_grouped_batches(group_lengths, batch_size, seed + epoch,
                                          LENGTH_BUCKET_BATCHES if length_grouped else 1)
        epoch += 1
    return [[[i for g in batch for i in prompt_groups[g]] for batch in rnd]
            for rnd in plan_rounds(batches[:micro_total], world)]



def split_into_passes(members: list[int], lengths: list[int], rows: list[int], prompt_of: list[int],
                      budget: int) -> list[list[int]]:
    """Cut one micro-batch into passes whose padded size (rows x longest row) fits ``budget`` tokens.

    ``lengths[i]``/``rows[i]`` are comparison i's padded width and row count; comparisons of one
    prompt group (same ``prompt_of``) stay in one pass, so per-prompt pair weights come out as in
    the whole batch. The losses are sums over comparisons, so back-propagating each pass's share of
    the batch loss in turn gives the whole batch's gradient while only one pass's activations are
    alive at a time: peak memory follows ``budget``, not the batch's longest member times its row
    count. The prompt groups are cut by `rewardkit.model.batching.token_budget_batches`; one pass of
    everything, untouched, when it fits or when ``budget`` is 0.
    """
    if not budget or max(lengths[i] for i in members) * sum(rows[i] for i in members) <= budget:
        return [members]
    by_prompt: dict[int, list[int]] = {}
    for i in members:
        by_prompt.setdefault(prompt_of[i], []).append(i)
    groups = list(by_prompt.values())
    cut = token_budget_batches([max(lengths[i] for i in g) for g in groups], [sum(rows[i] for i in g) for g in groups],
                               budget)
    return [[i for g in batch for i in groups[g]] for batch in cut]


@dataclass
class TrainingPlan:
    """The rounds of the whole run, and what cutting a micro-batch into passes needs to know."""

    rounds: list[list[list[int]]]  # round -> one micro-batch (comparison indices) per process
    grad_accum: int
    # what a pass costs, as rows x widest row: each comparison's padded width (its packed row, or its
    # longest response) and rows (1 packed row, or one per response); with packed rows (--packing) its
    # real tokens as that many width-1 rows
    widths: list[int]
    rows: list[int]
    prompt_of: list[int]  # prompt group of each comparison
    pass_tokens: int  # --pass-tokens in force (0: one pass per micro-batch)

    @classmethod
    def build(cls, encoded: Sequence[Encoded], prompt_groups: list[list[int]], *, batch_size: int,
              epochs: float, seed: int, world: int, grad_accum: int, share_prefix: bool,
              pass_tokens: int, length_grouped: bool = True, packed: bool = False) -> "TrainingPlan":
        widths = widths_of(encoded, share_prefix)
        prompt_of = [0] * len(encoded)
        for g, members in enumerate(prompt_groups):
            for i in members:
                prompt_of[i] = g
        rounds = plan_micro_batches(prompt_groups, widths, batch_size, epochs, seed, world, length_grouped)
        if packed:
            return cls(rounds, grad_accum, [1] * len(widths), tokens_of(encoded, share_prefix), prompt_of, pass_tokens)
        return cls(rounds, grad_accum, widths, rows_of(encoded, share_prefix), prompt_of, pass_tokens)

    @property
    def total_steps(self) -> int:
        return math.ceil(len(self.rounds) / self.grad_accum)

    def step_rounds(self, step: int) -> list[list[list[int]]]:
        """The rounds of optimizer step ``step`` (0-based); the last step may have fewer."""
        return self.rounds[step * self.grad_accum:(step + 1) * self.grad_accum]

    def passes(self, micro_batch: list[int]) -> list[list[int]]:
        """The micro-batch in passes under --pass-tokens (see `widths`)."""
        return split_into_passes(micro_batch, self.widths, self.rows, self.prompt_of, self.pass_tokens)
