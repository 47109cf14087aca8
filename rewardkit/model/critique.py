"""Critique-out-loud reward models (``--objective critique``, after Ankner et al., "Critique-out-loud
reward models"): the model first writes a critique of the response, then a scalar head reads the whole
of it.

Layout of one scored response, for a decoder::

    <bos?> prompt response <template> critique <eos>
    \\________ context ________/               ^ the reward head reads the final state here

The context is the decoder reward model's layout with the critique template where its EOS was
(`rewardkit.encoding.encoder.Encoder` with ``tail``), truncated the same way (the prompt's oldest tokens
first). The critique is at most ``max_tokens`` tokens, generated greedily with the model's KV cache
(`generate_critiques`), its own EOS dropped; one EOS always closes the sequence, so a critique cut at
``max_tokens`` is read the same way as one that ended by itself. Reference critiques (training data)
are tokenized after a space and cut to ``max_tokens`` alike (`critique_tokens`).

`CritiqueNet` reads both things the objective trains at once: with ``read_ids`` -1 a position gives the
head's reward, otherwise the LM head's log-probability of that token (the critique's language-model loss).
The head is saved beside the causal LM as ``critique_head.safetensors`` (`HEAD_FILE`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from rewardkit.encoding.encoder import Encoded
from rewardkit.errors import UsageError
from rewardkit.model.backbone import unwrap
from rewardkit.model.batching import Batch, collate, sorted_batches, target_positions
from rewardkit.model.net import RewardNet, lm_logits

HEAD_FILE = "critique_head.safetensors"


@dataclass(frozen=True)
class CritiqueSpec:
    """Where the critique starts (``template``, its token ids), how long it may be, and the EOS closing it."""

    template: str
    template_ids: list[int]
    max_tokens: int
    eos_id: int

    def to_meta(self) -> dict[str, Any]:
        return {"template": self.template, "template_ids": list(self.template_ids), "max_tokens": self.max_tokens,
                "eos_id": self.eos_id, "head_file": HEAD_FILE}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "CritiqueSpec | None":
        c = meta.get("critique")
        return cls(c["template"], list(c["template_ids"]), int(c["max_tokens"]), int(c["eos_id"])) if c else None


def resolve_critique(tokenizer: Any, template: str, max_tokens: int) -> CritiqueSpec:
    """The spec for ``tokenizer``; UsageError naming the flag for an empty template or no EOS."""
    ids = tokenizer(template, add_special_tokens=False)["input_ids"]
    if not ids:
        raise UsageError(f"--critique-template {template!r} gives no tokens: the critique needs a cue to start from")
    if tokenizer.eos_token_id is None:
        raise UsageError("--objective critique: the tokenizer has no EOS token to end a critique with")
    if max_tokens < 1:
        raise UsageError(f"--max-critique-tokens must be >= 1 (got {max_tokens})")
    return CritiqueSpec(template, list(ids), max_tokens, int(tokenizer.eos_token_id))


def critique_tokens(tokenizer: Any, text: str, spec: CritiqueSpec) -> list[int]:
    """A reference critique's tokens: tokenized after a space (it follows the template), cut to max_tokens."""
    return tokenizer(" " + text.strip(), add_special_tokens=False)["input_ids"][:spec.max_tokens]


def critiqued(context: list[int], critique: list[int], spec: CritiqueSpec) -> list[int]:
    """context + critique + EOS: the sequence the head reads (at its last token)."""
    return context + critique + [spec.eos_id]


class CritiqueNet(RewardNet):
    """A causal LM plus a scalar head on the final state. Each readout position gives the head's reward
    (``read_ids`` -1, or no ``read_ids`` at all) or the log-probability of its ``read_ids`` token."""

    def __init__(self, model: nn.Module, head: nn.Linear, **kwargs: Any):
        super().__init__(model, **kwargs)
        self.head = head

    def readout(self, inner: nn.Module, hidden: torch.Tensor, read_ids: torch.Tensor | None) -> torch.Tensor:
        reward = self.head(hidden.float()).squeeze(-1)
        if read_ids is None:
            return reward
        where = (read_ids >= 0).nonzero().squeeze(1)
        if where.numel() == 0:
            return reward
        logp = torch.log_softmax(lm_logits(inner, hidden[where]), dim=-1).gather(1, read_ids[where, None]).squeeze(1)
        return reward.index_put((where,), logp)


def new_head(hidden: int, seed: int) -> nn.Linear:
    """A fresh reward head, seeded (as transformers initialises a score head: small normal weights, no bias
    drift), in fp32."""
    gen = torch.Generator().manual_seed(seed)
    head = nn.Linear(hidden, 1)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=gen) * 0.02)
        head.bias.zero_()
    return head


def head_state(head: nn.Linear) -> dict[str, torch.Tensor]:
    return {k: v.detach().float().contiguous().cpu() for k, v in head.state_dict().items()}


def load_head(directory: str | Path) -> nn.Linear:
    from safetensors.torch import load_file

    state = load_file(str(Path(directory) / HEAD_FILE))
    head = nn.Linear(state["weight"].shape[1], 1)
    head.load_state_dict(state)
    return head.eval()


@torch.no_grad()
def generate_critiques(model: nn.Module, contexts: Sequence[list[int]], spec: CritiqueSpec, pad_id: int,
                       batch_size: int, device: torch.device, progress: Any = None) -> list[list[int]]:
    """Greedy critiques (token ids, EOS dropped) after every context, in input order: length-sorted batches,
    left-padded, through transformers' ``generate`` with its KV cache. ``model`` must be in eval mode."""
    from transformers import GenerationConfig

    lm = lm_module(model)
    config = GenerationConfig(max_new_tokens=spec.max_tokens, do_sample=False, eos_token_id=spec.eos_id,
                              pad_token_id=pad_id)
    out: list[list[int]] = [[] for _ in contexts]
    for idx in sorted_batches([len(c) for c in contexts], batch_size):
        width = max(len(contexts[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, width - len(contexts[i]):] = torch.tensor(contexts[i])
            mask[row, width - len(contexts[i]):] = 1
        generated = lm.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                generation_config=config)[:, width:].tolist()
        for row, i in enumerate(idx):
            tokens = generated[row]
            out[i] = tokens[:tokens.index(spec.eos_id)] if spec.eos_id in tokens else tokens
        if progress is not None:
            progress.update(len(idx))
    return out


def collate_critique(items: list[Encoded], reference_contexts: list[tuple[int, int]], pad_id: int) -> Batch:
    """A training batch of critiqued pairs.

    Each item holds four sequences: the chosen and rejected responses with the model's own critiques (read by
    the head at their last token, ``read_ids`` -1), then both with their reference critiques (read at every
    position that predicts a critique token or the final EOS, as `rewardkit.model.batching.collate_lm`).
    ``reference_contexts``: the context length of each item's two reference sequences.

    Worked example, one pair whose reference sequences are ``c0 c1 c2 k0 k1 eos`` (context 3): rows 0 and 1
    give two rewards (pair 0 > 1); row 2 gives the log-probabilities of ``k0 k1 eos`` at columns 2, 3, 4.
    """
    pairs = [Encoded(e.input_ids[:2], None, e.prompt_len, e.truncated, e.margin) for e in items]
    refs = [Encoded([seq], None, n, False) for e, lens in zip(items, reference_contexts)
            for seq, n in zip(e.input_ids[2:], lens)]
    batch = collate(pairs + refs, pad_id, use_margin=False)
    rewards = 2 * len(pairs)
    rows, cols, ids = target_positions(refs, first_row=rewards)
    batch.reward_row = torch.cat([batch.reward_row[:rewards], torch.tensor(rows, dtype=torch.long)])
    batch.reward_col = torch.cat([batch.reward_col[:rewards], torch.tensor(cols, dtype=torch.long)])
    batch.read_ids = torch.cat([torch.full((rewards,), -1, dtype=torch.long), torch.tensor(ids, dtype=torch.long)])
    batch.sizes = batch.sizes[:len(pairs)]
    return batch


def lm_module(model: nn.Module) -> nn.Module:
    """The module that generates: a peft model itself, else the plain transformers model."""
    return model if hasattr(model, "generate") else unwrap(model)
