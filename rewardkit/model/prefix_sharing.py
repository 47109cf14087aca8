"""Prefix sharing for decoders: a comparison's prompt encoded once, every response attending to it.

A causal decoder's states at a response's tokens depend only on the tokens before them, so all K
responses of a comparison can sit in one packed row after a single copy of the prompt, each
attending to the prompt and (causally) to itself through a 4D mask (`rewardkit.model.batching`): a pair
then costs prompt + chosen + rejected tokens instead of twice the prompt. `resolve_prefix_sharing`
decides whether a model may do it: `prefix_sharing_blocker` rules out what cannot work (encoders,
attention implementations without custom masks, short sliding windows), and a probe batch must
reproduce the unshared rewards. Packed rows (several comparisons per row, `resolve_packing`) rest on
the same custom masks and are ruled out by the same blockers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rewardkit.encoding.encoder import Encoded
from rewardkit.errors import UsageError
from rewardkit.model.backbone import accepts, is_decoder, no_autocast, param_dtype, unwrap
from rewardkit.model.batching import PACK_MULTIPLE, collate, collate_packed, collate_rows
from rewardkit.model.fast_paths import enable_flex_attention
from rewardkit.model.net import RewardNet, compute_rewards


def _inner(model: nn.Module) -> nn.Module:
    """The transformers model of a reward network or of a (wrapped) model."""
    return unwrap(model.model if isinstance(model, RewardNet) else model)


def prefix_sharing_blocker(model: nn.Module, max_length: int) -> str | None:
    """Why ``model`` cannot score a comparison as one packed row, or None when it can."""
    inner = _inner(model)
    if not is_decoder(inner):
        return ("encoders attend bidirectionally: the prompt's states depend on the response, "
                "so there is no shared prefix to encode once")
    cfg = inner.config
    impl = getattr(cfg, "_attn_implementation", None)
    if impl not in ("sdpa", "eager"):
        return f"attention implementation {impl!r} takes no custom 4D mask (use sdpa or eager)"
    body = getattr(inner, inner.base_model_prefix)
    if not accepts(body, "position_ids"):
        return f"{type(body).__name__} takes no position_ids"
    window = getattr(cfg, "sliding_window", None)
    layer_types = getattr(cfg, "layer_types", None) or []
    sliding = getattr(cfg, "use_sliding_window", True) and (not layer_types or "sliding_attention" in layer_types)
    if window and sliding and window < max_length:
        return f"sliding-window attention ({window}) shorter than --max-length {max_length}"
    return None


def _probe_items(vocab: int, pad_id: int | None) -> list[Encoded]:
    """Two small comparisons (K=2 and K=3) with distinct lengths, from fixed token ids."""
    def tok(i: int) -> int:
        t = (97 * i + 13) % vocab
        return (t + 1) % vocab if t == pad_id else t

    items = []
    for g, (p, lens) in enumerate([(6, [3, 7]), (4, [5, 2, 4])]):
        prompt = [tok(100 * g + i) for i in range(p)]
        seqs = [prompt + [tok(100 * g + 10 * (k + 1) + j) for j in range(n)] for k, n in enumerate(lens)]
        items.append(Encoded(input_ids=seqs, token_type_ids=None, prompt_len=p, truncated=False))
    return items


@torch.no_grad()
def verify_prefix_sharing(model: nn.Module, pad_id: int) -> float:
    """Largest |packed - unshared| reward difference on a probe batch, in the model's own dtype.

    ``model`` is a reward network (the readout it will train or score with: a score head, a verdict)
    or a plain model, wrapped in a `RewardNet`.
    """
    net = model if isinstance(model, RewardNet) else RewardNet(model)
    inner = unwrap(net.model)
    was_training = inner.training
    inner.eval()
    try:
        device = next(inner.parameters()).device
        items = _probe_items(inner.get_input_embeddings().weight.shape[0], pad_id)
        with no_autocast(device):
            plain = compute_rewards(net, collate(items, pad_id).to(device))
            packed = compute_rewards(net, collate_packed(items, pad_id).to(device))
        return float((plain - packed).abs().max())
    finally:
        inner.train(was_training)


def resolve_packing(setting: str, model: nn.Module, device_type: str, max_length: int) -> bool:
    """--packing: whether several comparisons share a row (`rewardkit.model.batching.collate_rows`).

    ``auto`` packs decoders on a GPU (on a CPU, row chunks already skip padding); ``on`` raises
    UsageError with the reason when the model cannot (an encoder, attention without custom masks).
    """
    if setting == "off":
        return False
    if setting not in ("auto", "on"):
        raise UsageError(f"--packing must be auto, on or off (got {setting!r})")
    reason = prefix_sharing_blocker(model, max_length)
    if reason is not None and setting == "on":
        raise UsageError(f"--packing on: {reason}")
    return reason is None and (setting == "on" or device_type == "cuda")


def resolve_flex_attention(net: RewardNet, pad_id: int, pack: bool, share_prefix: bool) -> str | None:
    """With packed rows on a GPU, run attention through flex_attention block masks when a probe batch
    reproduces the dense mask's rewards (`rewardkit.model.fast_paths.enable_flex_attention`); returns why
    not, or None. Without packed rows, or on a CPU, nothing changes."""
    inner = _inner(net)
    device = next(inner.parameters()).device
    if not pack or device.type != "cuda":
        return "no packed rows on a GPU"
    items = _probe_items(inner.get_input_embeddings().weight.shape[0], pad_id)
    probe = collate_rows(items, pad_id, share_prefix, PACK_MULTIPLE).to(device)
    tol = 1e-4 if param_dtype(inner) == torch.float32 else 3e-2
    return enable_flex_attention(net, probe, tol)


def resolve_prefix_sharing(setting: str, model: nn.Module, pad_id: int, max_length: int,
                           warn: Any = None) -> bool:
    """Whether to pack comparisons (``--prefix-sharing auto|on|off``).

    ``auto`` turns it on for decoders that support it and reproduce the unshared rewards on a
    probe batch; ``on`` raises UsageError with the reason when that is not the case.
    """
    if setting == "off":
        return False
    if setting not in ("auto", "on"):
        raise UsageError(f"--prefix-sharing must be auto, on or off (got {setting!r})")
    reason = prefix_sharing_blocker(model, max_length)
    if reason is None:
        dtype = param_dtype(_inner(model))
        tol = 1e-4 if dtype == torch.float32 else 3e-2
        try:
            diff = verify_prefix_sharing(model, pad_id)
        except Exception as e:  # noqa: BLE001 - an architecture that rejects the packed inputs
            diff, reason = float("inf"), f"packed forward failed: {type(e).__name__}: {e}"
        if reason is None and not diff <= tol:
            reason = f"packed rewards differ from unshared ones by {diff:.2e} on a probe batch"
    if reason is None:
        return True
    if setting == "on":
        raise UsageError(f"--prefix-sharing on: {reason}")
    if warn is not None and is_decoder(_inner(model)):
        warn(f"prefix sharing off: {reason}")
    return False
