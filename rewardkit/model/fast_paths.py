"""Exact speed paths inside the reward network: the same rewards for less compute.

* **Row chunks** (CPU): a batch pads every row to its longest one, and the chosen and rejected
  responses of a pair often differ a lot in length, so after length grouping ~7% of a batch's
  tokens are still padding (more in packed rows, one per comparison). On a CPU a matrix product of
  a few rows x a few hundred tokens runs about as fast per token as a big one, so `row_chunks`
  sorts the rows by length and cuts them where `plan_chunks` finds the fewest padded tokens plus a
  small cost per chunk; each chunk is trimmed to its own longest row. On GPUs big batches matter
  more and chunking stays off unless asked for.
* **[CLS]-only last layer** (BERT-architecture classifiers: MiniLM, BGE, E5, ...): the pooler reads
  position 0 of the last layer and nothing else, so that layer needs keys and values for every
  token but queries, attention output and feed-forward for ``[CLS]`` alone: the same reward for
  about a sixth less compute on a 6-layer model. `verify_cls_fast_path` checks it against the plain
  forward on a real batch before first use, so a transformers release that changes BERT's
  internals costs speed, never correctness.

* **Block masks for packed rows** (GPUs): rows of several comparisons (`rewardkit.model.batching.
  collate_rows`) need a mask that keeps every sequence to itself; as a dense ``[rows, L, L]`` tensor it
  rules out SDPA's fused kernels and grows with L squared. ``flex_attention`` takes the same rule as a
  block mask built from the rows' segments (`flex_block_mask`) and skips the blocks nothing attends to.
  `enable_flex_attention` switches a decoder to it only when it reproduces the dense rewards on a
  probe batch (it needs a GPU: torch's CPU path is not used).

Prefix sharing (decoders: the prompt encoded once per comparison) is decided in
`rewardkit.model.prefix_sharing`; the packed rows it produces are chunked here like any others.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from rewardkit.model.backbone import no_autocast, param_dtype, unwrap

# Fixed cost of one extra chunk (a few hundred op dispatches, forward and backward), in padded
# tokens: it keeps the planner from cutting a batch into many tiny chunks.
CHUNK_OVERHEAD_TOKENS = 64


def plan_chunks(lengths: list[int], attention_tokens: float, overhead: float) -> list[int]:
    """Where to cut rows sorted longest first so the chunks cost least; returns the cut indices.

    A chunk of n rows padded to its first (longest) row L costs ``n * L * (1 + L / attention_tokens)``
    (the feed-forward and projection work per token, plus attention growing with L) and
    ``overhead`` for being a separate pass. Exact dynamic programming over the O(n^2) cut points.

    Worked example, overhead 10, attention ignored: lengths [100, 98, 20, 18] cost 392 as one
    chunk, and 2 * 100 + 10 + 2 * 20 + 10 = 260 cut after the second row: returns [2].
    """
    n = len(lengths)
    best = [0.0] + [math.inf] * n  # best[j]: cheapest cover of the first j rows
    cut_at = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j):
            width = lengths[i]
            cost = best[i] + (j - i) * width * (1 + width / attention_tokens) + overhead
            if cost < best[j]:
                best[j], cut_at[j] = cost, i
    cuts, j = [], n
    while j:
        j = cut_at[j]
        if j:
            cuts.append(j)
    return cuts[::-1]



def row_chunks(attention_mask: torch.Tensor, reward_row: torch.Tensor, reward_col: torch.Tensor,
               size: int | None, attention_tokens: float) -> list[tuple[torch.Tensor, int, int]] | None:
    """Length-sorted groups of rows to run separately: (rows, first column, end column) each, or None.

    ``size`` None plans the cuts with `plan_chunks` on CPU and runs the batch whole elsewhere;
    ``n > 0`` cuts fixed chunks of n rows (n / 2 packed rows: a packed row holds a whole
    comparison); 0 turns chunking off. ``attention_tokens`` weighs attention's cost (see plan_chunks).
    """
    if size == 0 or (size is None and attention_mask.device.type != "cpu"):
        return None
    packed = attention_mask.dim() == 4
    rows = attention_mask.shape[0]
    if packed:  # right-padded; a row ends at the last token of its last response
        lengths = torch.zeros(rows, dtype=torch.long, device=reward_row.device).scatter_reduce(
            0, reward_row, reward_col + 1, reduce="amax")
    else:
        lengths = attention_mask.sum(1)
    order = torch.argsort(lengths, descending=True, stable=True)
    if size is None:
        cuts = plan_chunks(lengths[order].tolist(), attention_tokens, CHUNK_OVERHEAD_TOKENS)
    else:
        size = max(1, size // 2) if packed else size
        cuts = list(range(size, rows, size)) if rows >= 2 * size else []
    if not cuts:
        return None
    chunks = torch.tensor_split(order, cuts)
    if packed:
        return [(r, 0, int(lengths[r].max())) for r in chunks]
    out = []
    for r in chunks:
        cols = attention_mask[r].any(0).nonzero().squeeze(1)
        out.append((r, int(cols[0]), int(cols[-1]) + 1) if cols.numel() else (r, 0, 1))
    return out


def bert_cls_capable(inner: nn.Module) -> bool:
    """A BERT classifier whose reward depends on the final layer's [CLS] state alone."""
    try:
        from transformers import BertForSequenceClassification
    except ImportError:  # pragma: no cover
        return False
    cfg = inner.config
    return (type(inner) is BertForSequenceClassification and not cfg.is_decoder
            and getattr(inner.bert, "pooler", None) is not None
            and getattr(cfg, "_attn_implementation", None) in ("sdpa", "eager")
            and not getattr(cfg, "chunk_size_feed_forward", 0))



def bert_cls_rewards(inner: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      position_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
    """BertForSequenceClassification's logits, computing the last layer for [CLS] only.

    The pooler reads position 0 of the last layer and nothing else, so that layer needs keys and
    values for every token but queries, attention output and feed-forward for [CLS] alone. Every
    other step is the model's own module, called in the model's order.
    """
    from transformers.masking_utils import create_bidirectional_mask

    body = inner.bert
    hidden = body.embeddings(input_ids=input_ids, token_type_ids=token_type_ids, position_ids=position_ids)
    mask = create_bidirectional_mask(config=body.config, inputs_embeds=hidden, attention_mask=attention_mask)
    layers = body.encoder.layer
    for layer in layers[:-1]:
        hidden = layer(hidden, mask)
    last = layers[-1]
    sa = last.attention.self
    rows, heads, size = hidden.shape[0], sa.num_attention_heads, sa.attention_head_size
    cls = hidden[:, :1]
    q = sa.query(cls).view(rows, 1, heads, size).transpose(1, 2)
    k = sa.key(hidden).view(rows, -1, heads, size).transpose(1, 2)
    v = sa.value(hidden).view(rows, -1, heads, size).transpose(1, 2)
    cls_mask = None if mask is None else mask[:, :, :1, :]
    if cls_mask is not None and cls_mask.dtype != torch.bool:
        cls_mask = cls_mask.to(q.dtype)
    attn = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=cls_mask, dropout_p=sa.dropout.p if sa.training else 0.0, scale=sa.scaling)
    attn = attn.transpose(1, 2).reshape(rows, 1, heads * size)
    cls = last.attention.output(attn, cls)
    cls = last.feed_forward_chunk(cls)
    pooled = body.pooler(cls)
    with no_autocast(pooled.device):
        logits = inner.classifier(inner.dropout(pooled.to(param_dtype(inner.classifier))))
    return logits.squeeze(-1).float()



def verify_cls_fast_path(inner: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                         position_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> bool:
    """Compare the [CLS]-only path with the plain forward on (a slice of) a real batch, once.

    A transformers release that changes BERT's internals then costs speed, never correctness.
    """
    n = min(2, input_ids.shape[0])
    args = (input_ids[:n], attention_mask[:n], position_ids[:n],
            None if token_type_ids is None else token_type_ids[:n])
    was_training = inner.training
    inner.eval()
    try:
        with torch.no_grad(), no_autocast(input_ids.device):
            kwargs: dict[str, Any] = {"input_ids": args[0], "attention_mask": args[1], "position_ids": args[2]}
            if args[3] is not None:
                kwargs["token_type_ids"] = args[3]
            plain = inner(**kwargs).logits.squeeze(-1).float()
            fast = bert_cls_rewards(inner, *args)
        tol = 1e-4 if param_dtype(inner) == torch.float32 else 2e-2
        ok = bool(torch.allclose(fast, plain, rtol=tol, atol=tol))
    except Exception:  # noqa: BLE001 - any failure means: use the plain path
        ok = False
    finally:
        inner.train(was_training)
    return ok


def flex_block_mask(segments: torch.Tensor) -> Any:
    """The flex-attention block mask of packed rows: the rule of `rewardkit.model.batching.segment_mask`
    (same unit, causal, a key in the prompt or in the query's own part; padding sees itself)."""
    from torch.nn.attention.flex_attention import create_block_mask

    unit, part = segments[0], segments[1]

    def mask_mod(b: Any, h: Any, q: Any, kv: Any) -> Any:
        visible = (part[b, kv] == 0) | (part[b, kv] == part[b, q])
        real = (unit[b, q] == unit[b, kv]) & visible & (q >= kv) & (unit[b, q] >= 0)
        return real | ((q == kv) & (unit[b, q] < 0))

    rows, width = unit.shape
    return create_block_mask(mask_mod, B=rows, H=None, Q_LEN=width, KV_LEN=width, device=unit.device)


def enable_flex_attention(net: Any, probe: Any, tolerance: float) -> str | None:
    """Switch ``net``'s decoder to flex_attention over packed rows when, on the packed ``probe`` batch (on
    the model's GPU), its rewards match the dense mask's within ``tolerance``; returns why not, or None.

    Needs a GPU and a transformers model that takes ``set_attn_implementation("flex_attention")``; the
    model is put back on its dense attention whenever the check fails."""
    inner = unwrap(net.model)
    if probe.input_ids.device.type != "cuda":
        return "flex attention is used on GPUs only"
    try:
        from torch.nn.attention.flex_attention import create_block_mask  # noqa: F401
    except ImportError:
        return "this torch has no flex_attention"
    dense_impl = inner.config._attn_implementation
    try:
        with torch.no_grad():
            want = net(**probe.inputs())
            inner.set_attn_implementation("flex_attention")
            net.flex_attention = True
            got = net(**probe.inputs())
        diff = float((want - got).abs().max())
        if not diff <= tolerance:
            raise ValueError(f"flex rewards differ from the dense mask's by {diff:.2e} on a probe batch")
        return None
    except Exception as e:  # noqa: BLE001 - any failure leaves the dense path in place
        net.flex_attention = False
        inner.set_attn_implementation(dense_impl)
        return f"flex attention unusable here: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
