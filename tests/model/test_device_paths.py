"""The fast paths against the plain one, on every device present: packed rows, prefix sharing, LoRA,
compiled bodies and flex attention give the rewards and gradients of one padded row per sequence.

On a CPU these run in fp32 (and bound the error at 1e-5); on a GPU (`benchmarks/gpu_suite.sh` runs
this file there) in fp32 and under bf16 autocast. The bf16 bound is stated, not exact: packed and
plain rows multiply the same bf16-rounded values in matrices of other shapes, so their fp32 sums are
accumulated in another order. Tiny random decoders give rewards of order 1, so 3e-2 absolute on
rewards and a gradient cosine of 0.999 leave room only for reordering, not for a wrong mask or
position (those move rewards by tenths).
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest
import torch

from rewardkit.data.records import Comparison
from rewardkit.model.backbone import load_backbone, make_encoder
from rewardkit.model.batching import collate, collate_for
from rewardkit.model.net import RewardNet, compute_rewards
from rewardkit.training.losses import bradley_terry

CUDA = torch.cuda.is_available()
CASES = [("cpu", "fp32")] + ([("cuda", "fp32"), ("cuda", "bf16")] if CUDA else [])
TOLERANCE = {"fp32": (1e-5, 1 - 1e-6), "bf16": (3e-2, 0.999)}  # reward abs, gradient cosine


def _autocast(device: str, precision: str) -> Any:
    return torch.autocast(device, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()


def _items(enc: Any) -> list[Any]:
    comps = [Comparison(prompt=f"question {i} " + "and more " * (i % 4),
                        responses=[f"answer {j} " + "word " * ((i + j) % 5) for j in range(2 + i % 2)])
             for i in range(7)]
    return [enc.encode(c) for c in comps]


def _model(model_dir: Path, device: str, lora: bool = False) -> tuple[Any, Any]:
    model, tok = load_backbone(str(model_dir))
    torch.manual_seed(0)
    for p in model.parameters():  # wide weights: rewards that differ visibly between texts
        p.data.normal_(0, 0.2)
    head = getattr(model, "score", None) or model.classifier
    head.weight.data.mul_(20)
    if lora:
        from rewardkit.model.lora import apply_lora

        model = apply_lora(model, r=4, alpha=0, dropout=0.0, targets=None)
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.data.normal_(0, 0.2)  # B starts at zero, which would zero every A gradient
    return model.to(device), tok


def _rewards_and_grads(model: Any, net: RewardNet, batch: Any, device: str, precision: str
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    model.zero_grad()
    batch = batch.to(torch.device(device))
    with _autocast(device, precision):
        r = compute_rewards(net, batch)
    bradley_terry(r[batch.pair_better].float(), r[batch.pair_worse].float(), batch.pair_margin,
                  batch.pair_weight).backward()
    grads = torch.cat([p.grad.flatten().float() for p in model.parameters() if p.grad is not None])
    return r.detach().float().cpu(), grads


def _assert_same(got: tuple[torch.Tensor, torch.Tensor], want: tuple[torch.Tensor, torch.Tensor],
                 precision: str, atol: float | None = None) -> None:
    atol, cosine = (atol or TOLERANCE[precision][0]), TOLERANCE[precision][1]
    assert want[0].std() > 0.05  # rewards that tell texts apart
    assert got[0].tolist() == pytest.approx(want[0].tolist(), abs=atol)
    assert torch.nn.functional.cosine_similarity(got[1], want[1], dim=0).item() > cosine
    assert got[1].norm().item() == pytest.approx(want[1].norm().item(), rel=1e-4 if precision == "fp32" else 2e-2)


@pytest.mark.parametrize("device,precision", CASES)
@pytest.mark.parametrize("family,share_prefix,lora", [("llama_dir", False, False), ("llama_dir", True, False),
                                                      ("qwen_dir", True, False), ("llama_dir", True, True)])
def test_packed_rows_match_plain_rows(device: str, precision: str, family: str, share_prefix: bool, lora: bool,
                                      request: pytest.FixtureRequest) -> None:
    model, tok = _model(request.getfixturevalue(family), device, lora)
    items = _items(make_encoder(model, tok, 64))
    net = RewardNet(model, row_chunk=0)
    want = _rewards_and_grads(model, net, collate(items, tok.pad_token_id), device, precision)
    got = _rewards_and_grads(model, net, collate_for(items, tok.pad_token_id, share_prefix, pack=True), device, precision)
    _assert_same(got, want, precision)


@pytest.mark.parametrize("device,precision", CASES)
def test_encoder_cls_only_last_layer_matches_the_full_layer(device: str, precision: str, bert_dir: Path) -> None:
    """Encoders are not packed; their [CLS]-only last layer gives the full layer's rewards and gradients,
    and in fp32 a GPU gives the CPU's."""
    model, tok = _model(bert_dir, "cpu")
    items = _items(make_encoder(model, tok, 64))
    batch = collate(items, tok.pad_token_id)
    on_cpu = _rewards_and_grads(model, RewardNet(model, cls_fast_path=False), batch, "cpu", "fp32")
    model = model.to(device)
    want = _rewards_and_grads(model, RewardNet(model, cls_fast_path=False), batch, device, precision)
    got = _rewards_and_grads(model, RewardNet(model), batch, device, precision)
    _assert_same(got, want, precision)
    if precision == "fp32":
        _assert_same((want[0], want[1].cpu()), on_cpu, "fp32", atol=1e-4)  # other kernels, other sum orders


@pytest.mark.skipif(not CUDA, reason="compiling on a CPU is covered by the slow training test")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_compiled_body_matches_eager_on_the_gpu(precision: str, llama_dir: Path) -> None:
    from rewardkit.model.backbone import compile_backbone

    model, tok = _model(llama_dir, "cuda")
    items = _items(make_encoder(model, tok, 64))
    net = RewardNet(model, row_chunk=0)
    batch = collate_for(items, tok.pad_token_id, True, pack=True)
    want = _rewards_and_grads(model, net, batch, "cuda", precision)
    compile_backbone(model)
    got = _rewards_and_grads(model, net, batch, "cuda", precision)
    _assert_same(got, want, precision)


@pytest.mark.skipif(not CUDA, reason="flex_attention runs on a GPU")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_flex_attention_matches_the_dense_mask_on_the_gpu(precision: str, llama_dir: Path) -> None:
    from rewardkit.model.prefix_sharing import resolve_flex_attention

    model, tok = _model(llama_dir, "cuda")
    items = _items(make_encoder(model, tok, 64))
    batch = collate_for(items, tok.pad_token_id, True, pack=True)
    dense = RewardNet(model, row_chunk=0)
    want = _rewards_and_grads(model, dense, batch, "cuda", precision)
    flex = RewardNet(model, row_chunk=0)
    assert resolve_flex_attention(flex, tok.pad_token_id, 64, True) is None and flex.flex_attention
    got = _rewards_and_grads(model, flex, batch, "cuda", precision)
    _assert_same(got, want, precision)
