"""Batches: every response of every comparison in one padded tensor, one forward pass.

Worked example, two comparisons, a pair (K=2) and a ranking (K=3), right padding::

    comparisons  [(c0, r0), (a1, b1, c1)]          best first inside each
    input_ids    rows 0..4 = c0, r0, a1, b1, c1    padded to the longest row
    sizes        [2, 3]                            responses per comparison
    reward_row   [0, 1, 2, 3, 4]                   row holding response n
    reward_col   [len(c0)-1, len(r0)-1, ...]       its last real token
    pair_better  [0, 2, 2, 3]                      every (better, worse) pair ...
    pair_worse   [1, 3, 4, 4]
    pair_weight  [1, 1, 1, 1]                      ... or 1/C(K,2) each with balance_per_prompt

Per-prompt balancing (InstructGPT) weights every pair by 1/(pairs of its prompt in the batch), so
each prompt carries weight 1 however many responses it has. By default each comparison is its
own prompt (a K-way ranking: 1/C(K,2) per pair); ``prompt_ids`` puts several comparisons of one
prompt (pair records sharing a prompt, or the pairs of a rating table) in one *prompt group*; the
training plan (`rewardkit.training.batch_plan`) keeps a prompt group inside one micro-batch so its weights sum
to 1. Pair records of one prompt are deliberately *not* merged into one K-way ranking: they need
not form a consistent order, and even when they do, a ranking would add pairs the data never
stated (a rating table's --min-gap or thresholds exclude some); grouping keeps exactly the given
pairs at the cost of encoding a response once per pair it appears in.

Rewards come out as a flat vector over responses; Bradley-Terry reads the pair index, Plackett-Luce
reads ``sizes``. ``reward_row``/``reward_col`` let the packed layout below use the same losses
unchanged.

Packed layout (prefix sharing, decoders only), same two comparisons, prompt P shared inside each::

    input_ids    row 0 = P0 c0 r0, row 1 = P1 a1 b1 c1     the prompt once per comparison
    attention    [rows, 1, L, L] boolean: a response token sees its prompt and, causally, its own
                 response; never a sibling response. Prompt tokens are plainly causal.
    position_ids each response continues from len(P), as if it followed the prompt alone
    reward_row   [0, 0, 1, 1, 1]
    reward_col   [end of c0, end of r0, end of a1, ...]

A causal decoder's states at the response tokens are then exactly those of the unshared rows, so
each comparison costs prompt + responses tokens instead of K * prompt + responses.

Rows of several comparisons (``--packing``, decoders only): each sequence, or each packed
comparison, is a *unit*; units are packed first-fit into rows as wide as the longest unit (rounded
up to a ``multiple``), so a batch holds almost no padding. A token sees only its own unit (and inside
a packed comparison, as above: its prompt and its own response); position ids restart in every
unit. ``segments`` keeps (unit, part) per token, from which the dense 4D mask is made here and a
flex-attention block mask on a GPU (`rewardkit.model.net`); both say the same thing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields
from itertools import combinations
from typing import Any, Sequence

import torch

from rewardkit.encoding.encoder import Encoded, packed_length
from rewardkit.progress import phase_bar


@dataclass
class Batch:
    input_ids: torch.Tensor  # [rows, L]
    attention_mask: torch.Tensor  # [rows, L] of 0/1, or [rows, 1, L, L] boolean (packed layout)
    token_type_ids: torch.Tensor | None
    position_ids: torch.Tensor  # [rows, L], counts real tokens only, so left padding is harmless
    reward_row: torch.Tensor  # [N]
    reward_col: torch.Tensor  # [N]
    sizes: torch.Tensor  # [C] responses per comparison
    pair_better: torch.Tensor  # [P]
    pair_worse: torch.Tensor  # [P]
    pair_margin: torch.Tensor  # [P]
    pair_weight: torch.Tensor  # [P]
    targets: torch.Tensor | None = None  # [N, K] per-response targets (regression objectives), else None
    target_mask: torch.Tensor | None = None  # [N, K] which targets exist
    read_ids: torch.Tensor | None = None  # [N] the token whose log-probability each position reads (SFT)
    segments: torch.Tensor | None = None  # [2, rows, L]: unit and part of every token of packed rows

    def to(self, device: torch.device | str) -> "Batch":
        """The batch on ``device``. To a GPU the copies go through pinned memory without blocking, so the
        host goes on collating the next pass while the copy and the current pass run."""
        gpu = torch.device(device).type == "cuda"

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None:
                return None
            return t.pin_memory().to(device, non_blocking=True) if gpu and t.device.type == "cpu" else t.to(device)

        return Batch(**{f.name: move(getattr(self, f.name)) for f in fields(self)})

    @property
    def num_comparisons(self) -> int:
        return len(self.sizes)

    def inputs(self) -> dict[str, torch.Tensor | None]:
        """The keyword arguments of `rewardkit.model.net.RewardNet.forward`."""
        inputs = {"input_ids": self.input_ids, "attention_mask": self.attention_mask,
                  "position_ids": self.position_ids, "reward_row": self.reward_row, "reward_col": self.reward_col,
                  "token_type_ids": self.token_type_ids}
        if self.read_ids is not None:
            inputs["read_ids"] = self.read_ids
        if self.segments is not None:
            inputs["segments"] = self.segments
        return inputs


def collate(items: list[Encoded], pad_id: int, padding_side: str = "right",
            balance_per_prompt: bool = False, use_margin: bool = True,
            prompt_ids: list[int] | None = None) -> Batch:
    """Pad every response of ``items`` into one batch and index its comparison pairs (see top)."""
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

    return Batch(input_ids=ids, attention_mask=mask, token_type_ids=tt, position_ids=pos,
                 reward_row=torch.arange(len(seqs)), reward_col=torch.tensor(cols),
                 **_pair_index(items, balance_per_prompt, use_margin, prompt_ids))


def _pair_index(items: list[Encoded], balance_per_prompt: bool, use_margin: bool,
                prompt_ids: list[int] | None = None) -> dict[str, torch.Tensor]:
    """Responses per comparison and (better, worse, margin, weight) of every pair, in order.

    ``prompt_ids`` (one per item) only matters with ``balance_per_prompt``: the pairs of all items
    sharing an id split one unit of weight. Without it every item is its own prompt.
    """
    prompt_of = prompt_ids if prompt_ids is not None else list(range(len(items)))
    prompt_pairs: dict[int, int] = {}
    for e, g in zip(items, prompt_of):
        prompt_pairs[g] = prompt_pairs.get(g, 0) + len(e.input_ids) * (len(e.input_ids) - 1) // 2
    better, worse, margin, weight = [], [], [], []
    offset = 0
    for e, g in zip(items, prompt_of):
        k = len(e.input_ids)
        n_pairs = prompt_pairs[g]
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
    return dict(
        sizes=torch.tensor([len(e.input_ids) for e in items]),
        pair_better=torch.tensor(better, dtype=torch.long), pair_worse=torch.tensor(worse, dtype=torch.long),
        pair_margin=torch.tensor(margin, dtype=torch.float32), pair_weight=torch.tensor(weight, dtype=torch.float32),
    )


def target_positions(items: list[Encoded], first_row: int = 0) -> tuple[list[int], list[int], list[int]]:
    """(rows, columns, token ids) of every position that predicts a target token of ``items``' first
    sequences, item k in row ``first_row + k``: the tokens after ``prompt_len``, each read one position before."""
    rows, cols, ids = [], [], []
    for k, e in enumerate(items):
        seq = e.input_ids[0]
        first = max(e.prompt_len, 1)  # a token with nothing before it has no prediction to read
        rows += [first_row + k] * (len(seq) - first)
        cols += range(first - 1, len(seq) - 1)
        ids += seq[first:]
    return rows, cols, ids


def collate_lm(items: list[Encoded], pad_id: int) -> Batch:
    """Language-model batches (SFT): one right-padded row per item (its first sequence), read at every
    position that predicts a response token, including the final EOS.

    Worked example, an item of prompt_len 3 and 6 tokens ``p0 p1 p2 r0 r1 eos``: positions 2, 3, 4
    read the log-probabilities of ``r0``, ``r1``, ``eos`` (``read_ids``); the prompt itself is never
    a target, so the loss is on response tokens only.
    """
    batch = collate([Encoded(e.input_ids[:1], e.token_type_ids[:1] if e.token_type_ids else None, e.prompt_len,
                             e.truncated) for e in items], pad_id)
    rows, cols, ids = target_positions(items)
    batch.reward_row, batch.reward_col = torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long)
    batch.read_ids = torch.tensor(ids, dtype=torch.long)
    return batch


def collate_packed(items: list[Encoded], pad_id: int, balance_per_prompt: bool = False,
                   use_margin: bool = True, prompt_ids: list[int] | None = None) -> Batch:
    """One right-padded row per comparison: prompt + response_1 + ... + response_K (see top).

    Only valid for causal decoders: an encoder's prompt tokens attend to the response, so there is
    no response-independent prompt to share. Raises ValueError when the sequences of a comparison
    do not actually start with the same ``prompt_len`` tokens.
    """
    width = max(packed_length(e) for e in items)
    rows = len(items)
    ids = torch.full((rows, width), pad_id, dtype=torch.long)
    pos = torch.zeros((rows, width), dtype=torch.long)
    segment = torch.full((rows, width), -1, dtype=torch.long)  # -1 padding, 0 prompt, k response k
    reward_row, reward_col = [], []
    for g, e in enumerate(items):
        p = e.prompt_len
        head = e.input_ids[0][:p]
        ids[g, :p] = torch.tensor(head, dtype=torch.long)
        pos[g, :p] = torch.arange(p)
        segment[g, :p] = 0
        at = p
        for k, s in enumerate(e.input_ids, start=1):
            if s[:p] != head:
                raise ValueError("collate_packed: the responses of a comparison do not share their first "
                                 f"prompt_len={p} tokens")
            n = len(s) - p
            ids[g, at:at + n] = torch.tensor(s[p:], dtype=torch.long)
            pos[g, at:at + n] = torch.arange(p, p + n)
            segment[g, at:at + n] = k
            at += n
            reward_row.append(g)
            reward_col.append(at - 1)
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    key_seg = segment[:, None, :]
    query_seg = segment[:, :, None]
    allowed = causal & (key_seg >= 0) & (query_seg >= 0) & ((key_seg == 0) | (key_seg == query_seg))
    # padding queries see themselves only: a row with nothing to attend to would give NaN
    allowed |= torch.eye(width, dtype=torch.bool) & (query_seg < 0)
    return Batch(input_ids=ids, attention_mask=allowed[:, None], token_type_ids=None, position_ids=pos,
                 reward_row=torch.tensor(reward_row), reward_col=torch.tensor(reward_col),
                 **_pair_index(items, balance_per_prompt, use_margin, prompt_ids))


def pack_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """First-fit decreasing: the indices of units placed in each row, no row holding more than
    ``capacity`` tokens (a unit longer than that gets a row of its own)."""
    rows: list[list[int]] = []
    free: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        row = next((r for r, room in enumerate(free) if room >= lengths[i]), None)
        if row is None:
            rows.append([])
            free.append(capacity)
            row = len(rows) - 1
        rows[row].append(i)
        free[row] -= lengths[i]
    return rows


def _units(items: list[Encoded], share_prefix: bool) -> list[tuple[list[int], list[int], list[int]]]:
    """(token ids, part of each token, readout offset of each response) per unit, items in order: a
    packed comparison (prompt part 0, response k part k), or one sequence (part 1)."""
    units = []
    for e in items:
        if share_prefix and len(e.input_ids) > 1:
            p = e.prompt_len
            ids, parts, ends = list(e.input_ids[0][:p]), [0] * p, []
            for k, seq in enumerate(e.input_ids, start=1):
                ids += seq[p:]
                parts += [k] * (len(seq) - p)
                ends.append(len(ids) - 1)
            units.append((ids, parts, ends))
        else:
            units += [(list(seq), [1] * len(seq), [len(seq) - 1]) for seq in e.input_ids]
    return units


def collate_rows(items: list[Encoded], pad_id: int, share_prefix: bool = False, multiple: int = 1,
                 balance_per_prompt: bool = False, use_margin: bool = True,
                 prompt_ids: list[int] | None = None) -> Batch:
    """Several comparisons per row, no padding but the rows' tails (see the module doc). Decoders only:
    a token sees its own unit causally, so the rewards are exactly those of `collate`/`collate_packed`."""
    if items and items[0].token_type_ids is not None:
        raise ValueError("collate_rows: packed rows are for decoders (no token type ids)")
    units = _units(items, share_prefix)
    longest = max(len(ids) for ids, _, _ in units)
    width = -(-longest // multiple) * multiple
    rows = pack_rows([len(ids) for ids, _, _ in units], width)
    ids_t = torch.full((len(rows), width), pad_id, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    seg = torch.full((2, len(rows), width), -1, dtype=torch.long)
    where: list[tuple[int, int]] = [(0, 0)] * len(units)  # unit -> (row, start column)
    for r, members in enumerate(rows):
        at = 0
        for u in members:
            ids, parts, _ = units[u]
            n = len(ids)
            part = torch.tensor(parts)
            ids_t[r, at:at + n] = torch.tensor(ids)
            seg[0, r, at:at + n], seg[1, r, at:at + n] = u, part
            # positions: the prompt counts from 0, every response continues from the prompt's end
            prompt = int((part == 0).sum())
            pos[r, at:at + n] = torch.where(part == 0, torch.arange(n), prompt + _part_offsets(parts))
            where[u] = (r, at)
            at += n
    reward_row = [where[u][0] for u, (_, _, ends) in enumerate(units) for _ in ends]
    reward_col = [where[u][1] + end for u, (_, _, ends) in enumerate(units) for end in ends]
    return Batch(input_ids=ids_t, attention_mask=segment_mask(seg), token_type_ids=None, position_ids=pos,
                 reward_row=torch.tensor(reward_row), reward_col=torch.tensor(reward_col), segments=seg,
                 **_pair_index(items, balance_per_prompt, use_margin, prompt_ids))


def _part_offsets(parts: list[int]) -> torch.Tensor:
    """Each token's index inside its own part (a response's tokens count from 0)."""
    out, seen = [], {}
    for p in parts:
        out.append(seen.get(p, 0))
        seen[p] = out[-1] + 1
    return torch.tensor(out)


def segment_mask(segments: torch.Tensor) -> torch.Tensor:
    """The dense ``[rows, 1, L, L]`` "may attend" mask of packed rows: same unit, causal, and a key in the
    prompt (part 0) or in the query's own part; padding sees itself only (no row without a key)."""
    unit, part = segments[0], segments[1]
    width = unit.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool, device=unit.device).tril()
    same = unit[:, :, None] == unit[:, None, :]
    visible = (part[:, None, :] == 0) | (part[:, None, :] == part[:, :, None])
    allowed = causal & same & visible & (unit[:, :, None] >= 0)
    allowed |= torch.eye(width, dtype=torch.bool, device=unit.device) & (unit[:, :, None] < 0)
    return allowed[:, None]


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
    for start in phase_bar(range(0, len(order), span), desc="plan", unit=" buckets"):
        bucket = sorted(order[start:start + span], key=lambda i: lengths[i])
        batches += [bucket[j:j + batch_size] for j in range(0, len(bucket), batch_size)]
    rng.shuffle(batches)
    return batches


def token_budget_batches(widths: Sequence[int], rows: Sequence[int], budget: int) -> list[list[int]]:
    """Units (comparisons, prompt groups, queued items), longest first, cut into batches whose padded
    size (rows x widest row) stays within ``budget`` tokens; a unit larger than the budget goes alone.

    The one token-budget cut: the training plan's passes and the server's forward passes use it. Cut
    from the longest down, every batch is padded to nearly its own length. Worked example, budget
    1200, (width, rows) = (400, 2), (300, 2), (100, 2)::

        [[0], [1, 2]]      0 + 1 would be 4 rows x 400 = 1600; 1 + 2 is 4 x 300 = 1200
    """
    out: list[list[int]] = []
    current: list[int] = []
    width = count = 0  # of the batch being filled
    for i in sorted(range(len(widths)), key=lambda i: -widths[i]):
        if current and max(width, widths[i]) * (count + rows[i]) > budget:
            out.append(current)
            current, width, count = [], 0, 0
        current.append(i)
        width, count = max(width, widths[i]), count + rows[i]
    if current:
        out.append(current)
    return out


def sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Inference batches, longest first (an out-of-memory error shows up at once, not at the end)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[j:j + batch_size] for j in range(0, len(order), batch_size)]


@dataclass(frozen=True)
class BatchLayout:
    """How a run lays comparisons out in rows: ``share_prefix`` (a comparison's prompt once, decoders),
    ``pack`` (several comparisons per row, `collate_rows`, rows rounded up to a multiple of
    `PACK_MULTIPLE` tokens so a compiled step sees few shapes)."""

    share_prefix: bool = False
    pack: bool = False


PACK_MULTIPLE = 64  # packed rows are rounded up to a multiple of this many tokens: few shapes to compile


def collate_for(items: list[Encoded], pad_id: int, share_prefix: bool, pack: bool = False, **kwargs: Any) -> Batch:
    """Several comparisons per row with ``pack``; packed comparisons when sharing pays (some comparison
    has 2+ responses); plain rows otherwise."""
    if pack:
        return collate_rows(items, pad_id, share_prefix, PACK_MULTIPLE, **kwargs)
    if share_prefix and any(len(e.input_ids) > 1 for e in items):
        return collate_packed(items, pad_id, **kwargs)
    return collate(items, pad_id, **kwargs)


def batch_length(e: Encoded, share_prefix: bool) -> int:
    """The padded width ``e`` needs: its packed row, or its longest response row."""
    return packed_length(e) if share_prefix else e.longest


def collate_steps(items: list[Encoded], pad_id: int, last_only: bool = False) -> Batch:
    """Process-reward batches: one right-padded row per solution, read at every kept step's separator
    (`rewardkit.encoding.steps.StepEncoded.positions`; with ``last_only``, the last step's alone, TRL's
    ``train_on_last_step_only``), the steps' labels as ``targets`` (1.0 right, 0.0 wrong) when known.

    Worked example: a solution ``p0 p1 s0 s0 SEP s1 SEP`` (positions [4, 6], labels [True, False]) gives
    ``reward_row = [0, 0]``, ``reward_col = [4, 6]``, ``targets = [1.0, 0.0]``.
    """
    batch = collate([Encoded(e.input_ids[:1], None, e.prompt_len, e.truncated) for e in items], pad_id)
    rows, cols, targets = [], [], []
    for i, e in enumerate(items):
        positions = list(getattr(e, "positions", None) or [])
        labels = getattr(e, "labels", None)
        chosen = range(len(positions) - 1, len(positions)) if last_only else range(len(positions))
        rows += [i] * len(chosen)
        cols += [positions[k] for k in chosen]
        if labels is not None:
            targets += [float(labels[k]) for k in chosen]
    batch.reward_row, batch.reward_col = torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long)
    batch.targets = torch.tensor(targets) if len(targets) == len(rows) and rows else None
    return batch
