"""Length-grouped batching changes only which comparisons share a batch, never their rewards.

Padding, batch composition and (for decoders) packing must be invisible in the rewards and the
per-pair losses; otherwise sorting by length would silently change what is trained.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from rewardkit.data.records import Comparison
from rewardkit.model.backbone import load_backbone, make_encoder
from rewardkit.model.batching import collate, length_grouped_batches, packed_length, sorted_batches
from rewardkit.model.net import RewardNet, compute_rewards
from rewardkit.training.batch_plan import split_into_passes
from rewardkit.training.losses import bradley_terry


def _comparisons(n: int = 24) -> list[Comparison]:
    rng = random.Random(1)
    words = "the quick brown fox jumps over the lazy dog good bad helpful harmful answer question".split()
    out = []
    for i in range(n):
        prompt = "Human: " + " ".join(rng.choice(words) for _ in range(rng.randint(2, 40))) + "\n\nAssistant:"
        resp = [" " + " ".join(rng.choice(words) for _ in range(rng.randint(1, 25))) for _ in range(2)]
        if resp[0] == resp[1]:
            resp[1] += " no"
        out.append(Comparison(prompt=prompt, responses=resp))
    return out


def _pair_losses(net: RewardNet, items: list, batches: list[list[int]], pad_id: int) -> dict[int, tuple]:
    """(r_chosen, r_rejected, loss) of every comparison, computed inside the given batches."""
    out = {}
    with torch.no_grad():
        for idx in batches:
            b = collate([items[i] for i in idx], pad_id)
            r = compute_rewards(net, b)
            for j, i in enumerate(idx):
                rc, rr = r[b.pair_better[j]], r[b.pair_worse[j]]
                loss = bradley_terry(rc[None], rr[None], b.pair_margin[j:j + 1], b.pair_weight[j:j + 1])
                out[i] = (float(rc), float(rr), float(loss))
    return out


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_bucketed_and_random_batches_give_the_same_rewards(family: str, request: pytest.FixtureRequest) -> None:
    model, tok = load_backbone(str(request.getfixturevalue(f"{family}_dir")))
    model.eval()
    enc = make_encoder(model, tok, max_length=96)
    items = [enc.encode(c) for c in _comparisons()]
    lengths = [e.longest for e in items]
    assert max(lengths) > 2 * min(lengths)  # random batches really pad
    net = RewardNet(model)
    order = list(range(len(items)))
    random.Random(0).shuffle(order)
    unbucketed = _pair_losses(net, items, [order[i:i + 8] for i in range(0, len(order), 8)], tok.pad_token_id)
    bucketed = _pair_losses(net, items, length_grouped_batches(lengths, 8, seed=3, bucket_batches=2),
                            tok.pad_token_id)
    alone = _pair_losses(net, items, [[i] for i in range(len(items))], tok.pad_token_id)
    assert sorted(bucketed) == sorted(unbucketed) == list(range(len(items)))
    for i in range(len(items)):
        assert bucketed[i] == pytest.approx(unbucketed[i], abs=1e-5)
        assert bucketed[i] == pytest.approx(alone[i], abs=1e-5)
    assert len({round(v[0], 4) for v in alone.values()}) > 1


def test_bucketing_pads_less_than_random_batches() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(10, 500) for _ in range(400)]
    grouped = length_grouped_batches(lengths, 16, seed=0)
    order = list(range(400))
    rng.shuffle(order)
    randomly = [order[i:i + 16] for i in range(0, 400, 16)]
    padded = lambda bs: sum(max(lengths[i] for i in b) * len(b) for b in bs)  # noqa: E731
    assert padded(grouped) < 0.75 * padded(randomly)


def test_length_grouped_batches_use_every_index_once_and_reshuffle() -> None:
    lengths = [random.Random(i).randint(1, 100) for i in range(103)]
    a = length_grouped_batches(lengths, 8, seed=0, bucket_batches=4)
    b = length_grouped_batches(lengths, 8, seed=1, bucket_batches=4)
    assert sorted(i for x in a for i in x) == list(range(103))
    assert sorted(i for x in b for i in x) == list(range(103))
    assert a == length_grouped_batches(lengths, 8, seed=0, bucket_batches=4)
    assert a != b
    assert all(len(x) <= 8 for x in a)


def test_sorted_batches_longest_first() -> None:
    assert sorted_batches([3, 9, 1, 7, 5], 2) == [[1, 3], [4, 0], [2]]


def test_packed_length_counts_the_prompt_once(llama_dir: Path) -> None:
    model, tok = load_backbone(str(llama_dir))
    e = make_encoder(model, tok, 96).encode(_comparisons(1)[0])
    assert packed_length(e) == sum(len(s) for s in e.input_ids) - e.prompt_len


def test_scoring_is_length_sorted_inference_mode_and_in_input_order(bert_dir: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import rewardkit.model.net as model_mod
    from rewardkit.model.reward_model import RewardModel

    model, tok = load_backbone(str(bert_dir))
    rm = RewardModel(model, tok, max_length=96, device="cpu")
    comps = _comparisons(10)
    seen: list[tuple[bool, bool, int, int]] = []
    real = model_mod.compute_rewards

    def spy(net, batch):  # noqa: ANN001, ANN202
        seen.append((torch.is_inference_mode_enabled(), torch.is_grad_enabled(), batch.input_ids.shape[1],
                     int(batch.attention_mask.sum(1).max())))
        return real(net, batch)

    monkeypatch.setattr(model_mod, "compute_rewards", spy)
    prompts = [c.prompt for c in comps]
    responses = [c.responses[0] for c in comps]
    batched = rm.score_batch(prompts, responses, batch_size=3)
    assert len(seen) == 4 and all(inf and not grad for inf, grad, _, _ in seen)
    widths = [w for _, _, w, _ in seen]
    assert widths == sorted(widths, reverse=True)          # longest batch first
    assert all(w == longest for _, _, w, longest in seen)  # each padded only to its own longest
    one_by_one = [rm.score(p, r) for p, r in zip(prompts, responses)]
    assert batched == pytest.approx(one_by_one, abs=1e-5)  # input order, same numbers


def test_split_by_tokens_keeps_groups_whole_and_respects_the_budget() -> None:
    lengths, rows = [400, 300, 100], [2, 2, 2]
    assert split_into_passes([0, 1, 2], lengths, rows, [0, 1, 2], 1200) == [[0], [1, 2]]  # the docstring's example
    assert split_into_passes([2, 0, 1], lengths, rows, [0, 1, 2], 0) == [[2, 0, 1]]  # off: untouched
    assert split_into_passes([2, 0, 1], lengths, rows, [0, 1, 2], 2400) == [[2, 0, 1]]  # fits: untouched
    rng = random.Random(0)
    lengths = [rng.randint(5, 200) for _ in range(40)]
    rows = [rng.choice([1, 2, 3]) for _ in range(40)]
    groups = [i // 3 for i in range(40)]
    parts = split_into_passes(list(range(40)), lengths, rows, groups, 600)
    assert sorted(i for p in parts for i in p) == list(range(40))
    for p in parts:
        mine = {groups[i] for i in p}
        assert all(groups[i] not in mine for q in parts if q is not p for i in q)
        if len({groups[i] for i in p}) > 1:  # a part may exceed the budget only as one lone group
            assert max(lengths[i] for i in p) * sum(rows[i] for i in p) <= 600


def test_token_budget_batches_respect_the_budget() -> None:
    """The one token-budget cut (training passes, server forward passes): every unit once, longest first,
    rows x widest row within the budget unless a unit alone exceeds it."""
    from rewardkit.model.batching import token_budget_batches

    widths, rows = [10, 50, 20, 50, 5, 30, 40], [1, 1, 1, 1, 1, 1, 2]
    passes = token_budget_batches(widths, rows, budget=100)
    assert sorted(i for p in passes for i in p) == list(range(len(widths)))
    for p in passes:
        assert sum(rows[i] for i in p) * max(widths[i] for i in p) <= 100 or len(p) == 1
    assert [widths[p[0]] for p in passes] == sorted((widths[p[0]] for p in passes), reverse=True)
    assert token_budget_batches([500], [1], budget=100) == [[0]]  # too big for the budget: alone
    assert token_budget_batches([400, 300, 100], [2, 2, 2], budget=1200) == [[0], [1, 2]]  # the docstring's example



@pytest.mark.parametrize("share_prefix", [False, True])
def test_packed_rows_give_the_rewards_of_one_row_per_sequence(llama_dir: Path, share_prefix: bool) -> None:
    """collate_rows packs several comparisons per row with a block mask and restarted positions: the
    rewards are those of plain rows, for pairs and rankings, and the rows hold almost no padding."""
    from rewardkit.model.batching import collate_rows, pack_rows
    from rewardkit.model.net import RewardNet

    model, tok = load_backbone(str(llama_dir))
    model.eval()
    torch.manual_seed(0)
    for p in model.parameters():  # wide weights: rewards that differ visibly between texts
        p.data.normal_(0, 0.2)
    enc = make_encoder(model, tok, 64)
    comps = [Comparison(prompt=f"question {i} " + "and more " * (i % 4),
                        responses=[f"answer {j} " + "word " * ((i + j) % 5) for j in range(2 + i % 2)]) for i in range(7)]
    items = [enc.encode(c) for c in comps]
    net = RewardNet(model, row_chunk=0)
    packed = collate_rows(items, tok.pad_token_id, share_prefix, multiple=16)
    with torch.no_grad():
        want = net(**collate(items, tok.pad_token_id).inputs())
        got = net(**packed.inputs())
    assert got.tolist() == pytest.approx(want.tolist(), abs=1e-5) and want.std() > 0.01
    real = sum(len(s) for e in items for s in e.input_ids) if not share_prefix else sum(packed_length(e) for e in items)
    assert packed.input_ids.numel() < 1.5 * real  # vs one padded row per sequence
    assert packed.input_ids.shape[1] % 16 == 0
    assert pack_rows([5, 9, 3, 7, 2], 10) == [[1], [3, 2], [0, 4]]  # first fit, longest first
