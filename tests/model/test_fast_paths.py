"""Speed paths that must not change results: [CLS]-only last layer, bf16 autocast, fused AdamW."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rewardkit.data.records import Comparison
from rewardkit.model.backbone import load_backbone, make_encoder
from rewardkit.model.batching import collate
from rewardkit.model.net import RewardNet, compute_rewards
from rewardkit.training.losses import bradley_terry
from rewardkit.training.trainer import fused_adamw_kwargs


def _batch(model, tok):  # noqa: ANN001, ANN202
    enc = make_encoder(model, tok, 64)
    comps = [Comparison(prompt="How do I bake bread?", responses=["Mix flour, water and yeast, then bake.", "No."]),
             Comparison(prompt="Tell me a joke about a very lazy dog and a quick brown fox please",
                        responses=["The fox jumps over the dog.", "Ask someone else."])]
    return collate([enc.encode(c) for c in comps], tok.pad_token_id)


def _grads(model, net, b):  # noqa: ANN001, ANN202
    model.zero_grad()
    r = compute_rewards(net, b)
    bradley_terry(r[b.pair_better], r[b.pair_worse], b.pair_margin, b.pair_weight).backward()
    return r.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_bert_cls_only_last_layer_is_exact(bert_dir: Path, attn: str) -> None:
    model, tok = load_backbone(str(bert_dir))
    model.set_attn_implementation(attn)
    b = _batch(model, tok)
    fast, plain = RewardNet(model), RewardNet(model, cls_fast_path=False)
    r_fast, g_fast = _grads(model, fast, b)
    assert fast.cls_fast is True
    r_plain, g_plain = _grads(model, plain, b)
    with torch.no_grad():
        logits = model(input_ids=b.input_ids, attention_mask=b.attention_mask,
                       token_type_ids=b.token_type_ids).logits.squeeze(-1)
    torch.testing.assert_close(r_fast, logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(r_fast, r_plain, rtol=0, atol=1e-5)
    assert set(g_fast) == set(g_plain)  # every parameter still gets its gradient
    for name in g_plain:
        torch.testing.assert_close(g_fast[name], g_plain[name], rtol=1e-4, atol=1e-6, msg=name)


def test_cls_path_that_disagrees_is_not_used(bert_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, tok = load_backbone(str(bert_dir))
    b = _batch(model, tok)
    broken = lambda *a: torch.zeros(a[1].shape[0])  # noqa: E731
    monkeypatch.setattr("rewardkit.model.fast_paths.bert_cls_rewards", broken)  # what the check compares
    monkeypatch.setattr("rewardkit.model.net.bert_cls_rewards", broken)  # what the network would run
    net = RewardNet(model)
    with torch.no_grad():
        r = compute_rewards(net, b)
        logits = model(input_ids=b.input_ids, attention_mask=b.attention_mask,
                       token_type_ids=b.token_type_ids).logits.squeeze(-1)
    assert net.cls_fast is False
    torch.testing.assert_close(r, logits)


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_bf16_autocast_rewards_close_and_head_in_fp32(family: str, request: pytest.FixtureRequest) -> None:
    model, tok = load_backbone(str(request.getfixturevalue(f"{family}_dir")))
    model.eval()
    b = _batch(model, tok)
    net = RewardNet(model)
    head = model.score if family == "llama" else model.classifier
    seen: list[torch.dtype] = []
    head.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with torch.no_grad():
        fp32 = compute_rewards(net, b)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = compute_rewards(net, b)
    assert bf16.dtype == torch.float32 and seen[-1] == torch.float32  # the bf16 call's head
    assert fp32.abs().max() > 0
    torch.testing.assert_close(bf16, fp32, rtol=0, atol=3e-2)


def test_fused_adamw_takes_the_same_step() -> None:
    torch.manual_seed(0)
    w = [torch.randn(5, 3, requires_grad=True), torch.randn(3, requires_grad=True)]
    v = [p.detach().clone().requires_grad_() for p in w]
    kwargs = fused_adamw_kwargs(w)
    assert kwargs == {"fused": True}
    opt_a, opt_b = torch.optim.AdamW(w, lr=1e-2, **kwargs), torch.optim.AdamW(v, lr=1e-2)
    for _ in range(3):
        for ps, opt in ((w, opt_a), (v, opt_b)):
            opt.zero_grad()
            (ps[0].sum() * 2 + (ps[1] ** 2).sum()).backward()
            opt.step()
    for a, b in zip(w, v):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert fused_adamw_kwargs([torch.zeros(2, dtype=torch.long)]) == {}


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_row_chunks_give_the_same_rewards_and_gradients(family: str, request: pytest.FixtureRequest) -> None:
    import random

    model, tok = load_backbone(str(request.getfixturevalue(f"{family}_dir")))
    enc = make_encoder(model, tok, 64)
    rng = random.Random(0)
    words = "the quick brown fox jumps over the lazy dog good bad helpful harmful".split()
    say = lambda n: " ".join(rng.choice(words) for _ in range(n))  # noqa: E731
    comps = [Comparison(prompt=say(rng.randint(2, 20)), responses=[say(rng.randint(1, 20)) + " a",
                                                                   say(rng.randint(1, 20)) + " b"])
             for _ in range(10)]
    b = collate([enc.encode(c) for c in comps], tok.pad_token_id)
    whole, chunked = RewardNet(model, row_chunk=0), RewardNet(model, row_chunk=3)
    chunks = chunked._chunks(b.attention_mask, b.reward_row, b.reward_col)
    assert chunks is not None and len(chunks) == 7
    assert whole._chunks(b.attention_mask, b.reward_row, b.reward_col) is None
    planned = RewardNet(model)  # CPU default: cuts planned by plan_chunks
    assert len(planned._chunks(b.attention_mask, b.reward_row, b.reward_col) or []) >= 2
    r_whole, g_whole = _grads(model, whole, b)
    for net in (chunked, planned):
        r_chunk, g_chunk = _grads(model, net, b)
        torch.testing.assert_close(r_chunk, r_whole, rtol=0, atol=1e-5)
        for name in g_whole:
            torch.testing.assert_close(g_chunk[name], g_whole[name], rtol=1e-4, atol=1e-6, msg=name)
    # rows no reward is read from are skipped, and rewards still come back in response order
    sub = torch.tensor([5, 0, 7])
    with torch.no_grad():
        part = chunked(b.input_ids, b.attention_mask, b.position_ids, sub, b.reward_col[sub], b.token_type_ids)
    torch.testing.assert_close(part, r_whole[sub], rtol=0, atol=1e-5)


def test_plan_chunks_finds_the_cheapest_cuts() -> None:
    import itertools
    import random

    from rewardkit.model.fast_paths import plan_chunks

    assert plan_chunks([100, 98, 20, 18], 1e18, 10) == [2]  # the docstring's worked example
    assert plan_chunks([512] * 32, 2304, 64) == []  # equal rows: nothing to trim

    def cost(lengths: list[int], cuts: list[int], attn: float, overhead: float) -> float:
        bounds = [0, *cuts, len(lengths)]
        return sum((b - a) * lengths[a] * (1 + lengths[a] / attn) + overhead for a, b in zip(bounds, bounds[1:]))

    rng = random.Random(0)
    for _ in range(30):
        lengths = sorted((rng.randint(1, 512) for _ in range(rng.randint(1, 8))), reverse=True)
        attn, overhead = rng.choice([300.0, 2304.0]), rng.choice([0.0, 64.0, 500.0])
        brute = min(cost(lengths, list(c), attn, overhead) for k in range(len(lengths))
                    for c in itertools.combinations(range(1, len(lengths)), k))
        assert cost(lengths, plan_chunks(lengths, attn, overhead), attn, overhead) == pytest.approx(brute)


def test_flex_block_mask_says_what_the_dense_mask_says(llama_dir: Path) -> None:
    """The block mask's rule (evaluated token by token, as flex_attention does) equals segment_mask for
    packed rows with prefix sharing; on a CPU the flex path is not taken."""
    from rewardkit.data.records import Comparison
    from rewardkit.model.backbone import load_backbone, make_encoder
    from rewardkit.model.batching import collate_rows, segment_mask
    from rewardkit.model.fast_paths import flex_block_mask
    from rewardkit.model.net import RewardNet
    from rewardkit.model.prefix_sharing import resolve_flex_attention

    model, tok = load_backbone(str(llama_dir))
    enc = make_encoder(model, tok, 64)
    items = [enc.encode(Comparison(prompt=f"q{i} " * (i + 1), responses=[f"a{j} " * (j + 2) for j in range(2 + i % 2)]))
             for i in range(5)]
    batch = collate_rows(items, tok.pad_token_id, share_prefix=True, multiple=16)
    block = flex_block_mask(batch.segments)
    rows, width = batch.input_ids.shape
    b, q, kv = torch.meshgrid(torch.arange(rows), torch.arange(width), torch.arange(width), indexing="ij")
    assert torch.equal(block.mask_mod(b, None, q, kv), segment_mask(batch.segments)[:, 0])
    assert resolve_flex_attention(RewardNet(model), tok.pad_token_id, 16, True) == "no packed rows on a GPU"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="flex_attention runs on a GPU")
def test_flex_attention_rewards_equal_the_dense_mask_on_a_gpu(llama_dir: Path) -> None:
    from rewardkit.model.backbone import load_backbone
    from rewardkit.model.net import RewardNet
    from rewardkit.model.prefix_sharing import resolve_flex_attention

    model, tok = load_backbone(str(llama_dir))
    net = RewardNet(model.cuda())
    assert resolve_flex_attention(net, tok.pad_token_id, 64, True) is None and net.flex_attention
