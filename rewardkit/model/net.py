"""The reward network: run the backbone, read the reward at the right token.

`RewardNet` wraps a transformers model (full, peft-wrapped, or DDP/FSDP-prepared) with rewardkit's
pooling as one module, so accelerate's DDP and autocast wrappers see every call, including the
decoder path that runs the backbone and head separately:

* decoders: the backbone runs with position ids counted over real tokens only, and the per-token
  ``score`` head is applied at each response's last real token (``reward_row``/``reward_col``),
  whatever the padding side; packed rows (prefix sharing) arrive with a 4D attention mask;
* encoders: the model pools natively; BERT classifiers take the exact [CLS]-only last layer.

Readouts other than a score head read the language-model head at the same positions:
`VerdictNet` (a generative reward model's yes/no log-odds) and `TokenLogProbNet` (SFT's token
log-probabilities, read at every position that predicts a response token).

The reward head runs in fp32 (outside autocast), so bf16 training only rounds the backbone.
On CPU each batch runs in length-sorted row chunks (`rewardkit.model.fast_paths`), also exact.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from rewardkit.encoding.encoder import Encoded
from rewardkit.model.backbone import accepts, is_decoder, no_autocast, param_dtype, unwrap
from rewardkit.model.batching import Batch, batch_length, collate_for, sorted_batches
from rewardkit.model.fast_paths import (bert_cls_capable, bert_cls_rewards, flex_block_mask, row_chunks,
                                       verify_cls_fast_path)


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean "may attend" mask -> additive float mask, for eager attention."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


class RewardNet(nn.Module):
    """A transformers model plus rewardkit's pooling, as one module.

    Wrapping the whole reward computation in one ``forward`` lets accelerate's DDP and autocast
    wrappers see every call, including the decoder path that runs the backbone and head separately.
    The reward head runs in fp32 (outside autocast) so bf16 training only rounds the backbone.
    """

    def __init__(self, model: nn.Module, cls_fast_path: bool | None = None, row_chunk: int | None = None):
        super().__init__()
        self.model = model
        inner = unwrap(model)
        self.last_token = is_decoder(inner)
        self.pass_positions = accepts(inner, "position_ids")
        # FSDP's transformer auto-wrap policy looks for the layer classes here.
        self._no_split_modules = getattr(inner, "_no_split_modules", None)
        # None: decide by a one-off check against the plain forward on the first call
        self.cls_fast = False if not bert_cls_capable(inner) else cls_fast_path
        # None: planned chunks on CPU, whole batch elsewhere; n > 0: fixed chunks of n rows; 0: off
        self.row_chunk = row_chunk
        # packed rows through flex_attention with a block mask (`enable_flex_attention`, GPUs), else dense
        self.flex_attention = False
        hidden = getattr(inner.config, "hidden_size", None) or 1024
        self.attention_tokens = 6 * hidden  # a row of L tokens costs L * (1 + L / this) token-units

    def _chunks(self, attention_mask: torch.Tensor, reward_row: torch.Tensor, reward_col: torch.Tensor
                ) -> list[tuple[torch.Tensor, int, int]] | None:
        return row_chunks(attention_mask, reward_row, reward_col, self.row_chunk, self.attention_tokens)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                reward_row: torch.Tensor, reward_col: torch.Tensor,
                token_type_ids: torch.Tensor | None = None, read_ids: torch.Tensor | None = None,
                segments: torch.Tensor | None = None) -> torch.Tensor:
        """One value per readout position (``reward_row``, ``reward_col``): a reward, or with ``read_ids``
        the log-probability of that token there (`TokenLogProbNet`). ``segments`` describes packed rows
        (`rewardkit.model.batching.collate_rows`) for attention that takes a block mask instead of
        ``attention_mask``'s dense one."""
        if self.flex_attention and segments is not None:  # packed rows on a GPU: a block mask, not L x L
            attention_mask = flex_block_mask(segments)
            return self._rewards(input_ids, attention_mask, position_ids, reward_row, reward_col, token_type_ids,
                                 read_ids)
        chunks = self._chunks(attention_mask, reward_row, reward_col)
        if chunks is None:
            return self._rewards(input_ids, attention_mask, position_ids, reward_row, reward_col, token_type_ids,
                                 read_ids)
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
                None if token_type_ids is None else token_type_ids[rows, lo:hi],
                None if read_ids is None else read_ids[sel]))
            where.append(sel)
        return torch.cat(pieces)[torch.argsort(torch.cat(where))]

    def _rewards(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                 reward_row: torch.Tensor, reward_col: torch.Tensor,
                 token_type_ids: torch.Tensor | None = None, read_ids: torch.Tensor | None = None) -> torch.Tensor:
        inner = unwrap(self.model)
        if self.last_token:
            body = getattr(inner, inner.base_model_prefix)
            if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 4 and \
                    inner.config._attn_implementation != "sdpa":
                attention_mask = additive_mask(attention_mask, param_dtype(body))
            out = body(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
            hidden = out.last_hidden_state[reward_row, reward_col]
            with no_autocast(hidden.device):
                return self.readout(inner, hidden, read_ids)
        if self.cls_fast is None:
            self.cls_fast = verify_cls_fast_path(inner, input_ids, attention_mask, position_ids,
                                                             token_type_ids)
        if self.cls_fast:
            return bert_cls_rewards(inner, input_ids, attention_mask, position_ids,
                                                   token_type_ids)[reward_row]
        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        if self.pass_positions:
            kwargs["position_ids"] = position_ids
        return self.model(**kwargs).logits.squeeze(-1)[reward_row].float()

    def readout(self, inner: nn.Module, hidden: torch.Tensor, read_ids: torch.Tensor | None) -> torch.Tensor:
        """A decoder's value at its readout positions (``hidden``: their final states): the score head,
        in its weights' dtype, returned in fp32."""
        return inner.score(hidden.to(param_dtype(inner.score))).squeeze(-1).float()


class VerdictNet(RewardNet):
    """A generative reward model: the LM head's log-odds of a yes over a no token, read after the verdict
    question, ``log P(yes) - log P(no) = logit(yes) - logit(no)`` (the softmax normaliser cancels).
    Nothing new is initialised: what the language model knows is the reward model."""

    def __init__(self, model: nn.Module, yes_id: int, no_id: int, **kwargs: Any):
        super().__init__(model, **kwargs)
        self.verdict = (yes_id, no_id)

    def readout(self, inner: nn.Module, hidden: torch.Tensor, read_ids: torch.Tensor | None) -> torch.Tensor:
        return verdict_log_odds(inner, hidden, *self.verdict)


class TokenLogProbNet(RewardNet):
    """A causal LM's log-probability of ``read_ids`` at each readout position (the position before the
    token): the quantity SFT maximises on response tokens and perplexity measures."""

    def readout(self, inner: nn.Module, hidden: torch.Tensor, read_ids: torch.Tensor | None) -> torch.Tensor:
        assert read_ids is not None, "TokenLogProbNet reads the log-probability of given tokens"
        logits = lm_logits(inner, hidden)
        return torch.log_softmax(logits, dim=-1).gather(1, read_ids[:, None]).squeeze(1)


def lm_logits(inner: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """fp32 next-token logits from final hidden states, as the model's own forward computes them
    (soft-capped where the config says so, e.g. Gemma 2)."""
    head = inner.get_output_embeddings()
    logits = head(hidden.to(param_dtype(head))).float()
    cap = getattr(inner.config, "final_logit_softcapping", None)
    return cap * torch.tanh(logits / cap) if cap else logits


def verdict_log_odds(inner: nn.Module, hidden: torch.Tensor, yes_id: int, no_id: int) -> torch.Tensor:
    """``logit(yes) - logit(no)`` at each row of ``hidden``: the generative reward."""
    logits = lm_logits(inner, hidden)
    return logits[:, yes_id] - logits[:, no_id]



def compute_rewards(net: nn.Module, batch: Batch) -> torch.Tensor:
    """fp32 rewards, one per response of the batch, from one forward pass."""
    return net(**batch.inputs())


@torch.inference_mode()
def score_encoded(net: nn.Module, pad_id: int, encoded: Sequence[Encoded], batch_size: int,
                  device: torch.device, progress: Any = None, share_prefix: bool = False,
                  pack: bool = False, collate: Any = None) -> list[list[float]]:
    """Rewards of every response of every encoded comparison, in input order.

    Batches are sorted by length so each pads only to its own longest member; no autograd state.
    With ``share_prefix`` (decoders) each comparison is one packed row holding its prompt once; with
    ``pack`` several of them share a row (`rewardkit.model.batching.collate_rows`); ``collate`` replaces how
    a batch is laid out (a network that reads other positions, e.g. `rewardkit.model.gating.collate_gated`).
    """
    out: list[list[float]] = [[] for _ in encoded]
    for idx in sorted_batches([batch_length(e, share_prefix) for e in encoded], batch_size):
        members = [encoded[i] for i in idx]
        batch = (collate(members, pad_id) if collate else collate_for(members, pad_id, share_prefix, pack)).to(device)
        rewards = compute_rewards(net, batch).tolist()
        offset = 0
        for i in idx:
            k = len(encoded[i].input_ids)
            out[i] = rewards[offset:offset + k]
            offset += k
        if progress is not None:
            progress.update(len(idx))
    return out


@torch.inference_mode()
def score_steps_encoded(net: nn.Module, pad_id: int, encoded: Sequence[Encoded], batch_size: int,
                        device: torch.device) -> list[list[float]]:
    """A process reward model's value at every kept step's separator, per solution, in input order
    (`rewardkit.model.batching.collate_steps`): logits (sigmoid for the probability the step is right)."""
    from rewardkit.model.batching import collate_steps

    out: list[list[float]] = [[] for _ in encoded]
    for idx in sorted_batches([e.longest for e in encoded], batch_size):
        batch = collate_steps([encoded[i] for i in idx], pad_id).to(device)
        values = compute_rewards(net, batch).tolist()
        offset = 0
        for i in idx:
            k = len(getattr(encoded[i], "positions", None) or [])
            out[i] = values[offset:offset + k]
            offset += k
    return out
