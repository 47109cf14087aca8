"""What decides how a saved model must be scored, read from its directory (`Layout`).

Everything model-specific in the card is read from the saved directory, never assumed per family:
the layout comes from the saved tokenizer through the same `Encoder` that training and scoring use
(special tokens around a text or a text pair, BOS/EOS handling, chat template), the pooling family
(``[CLS]`` or last token) from the saved config, ``max_length`` and the reward statistics from
``config.rewardkit`` (``rewardkit.json`` for LoRA adapters). The encoder snippet's sentence-pair
call is checked against `Encoder` on probe texts before the card offers it.
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from rewardkit.model.artifacts import ADAPTER_CONFIG, is_adapter_dir, is_causal_lm_meta, read_meta
from rewardkit.model.attribute_head import RegressionMeta
from rewardkit.model.backbone import make_encoder
from rewardkit.model.gguf import loadable
from rewardkit.model.verdict import Verdict

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")

@dataclass
class Layout:
    """Facts about a saved model that decide how it must be scored."""

    decoder: bool  # reward read at the last token (EOS), else the encoder's native [CLS] pooling
    adapter: bool  # a peft LoRA adapter directory rather than plain weights
    max_length: int
    meta: dict[str, Any]
    tokenizer: Any
    encoder: Any  # rewardkit.encoding.encoder.Encoder for this tokenizer and layout
    adapter_base: str | None = None
    pair_call_ok: bool = False  # encoders: tok(prompt, response) reproduces rewardkit's ids
    regression: RegressionMeta | None = None  # K rated attributes; the reward is their weighted sum
    verdict: Verdict | None = None  # a generative reward model: yes/no log-odds after this question

    @property
    def causal_lm(self) -> bool:
        """Saved with its language-model head (SFT, generative): loads with ``AutoModelForCausalLM``."""
        return is_causal_lm_meta(self.meta)

    @property
    def sft(self) -> bool:
        """An SFT warm start (or a critique model's first stage): a language model, not a reward model."""
        return self.meta.get("objective") in ("sft", "critique-lm")


def is_hub_id(name: str | None) -> bool:
    """A Hugging Face Hub id (``org/name``), not a local path: the Hub rejects paths in front matter."""
    return bool(name) and not Path(str(name)).expanduser().exists() and bool(_HUB_ID.match(str(name)))


@contextmanager
def _without_zero3_init() -> Iterator[None]:
    """Build a module plainly even while a DeepSpeed ZeRO-3 run has registered its config with
    transformers: the card is written by the main process alone, and ZeRO-3's partitioned init
    would wait in a broadcast for processes that never come."""
    try:
        from transformers.integrations import deepspeed as hf_deepspeed
    except ImportError:  # pragma: no cover
        yield
        return
    saved = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed._hf_deepspeed_config_weak_ref = None
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = saved


def read_layout(model_dir: str | Path) -> Layout:
    """Learn the scoring layout of a saved model directory (full weights or LoRA adapter)."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    d = Path(model_dir)
    adapter = is_adapter_dir(d)
    base = json.loads((d / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path") if adapter else None
    config = AutoConfig.from_pretrained(loadable(base) if adapter and base else str(d))
    with torch.device("meta"), _without_zero3_init():  # the architecture alone: decides the pooling family
        skeleton = AutoModelForSequenceClassification.from_config(config)
    meta = read_meta(d)
    tokenizer = AutoTokenizer.from_pretrained(str(d))
    max_length = int(meta.get("max_length", 512))
    verdict = Verdict.from_meta(meta)
    critique = meta.get("critique")
    tail = verdict.template_ids if verdict else list(critique["template_ids"]) if critique else None
    encoder = make_encoder(skeleton, tokenizer, max_length, tail=tail,
                           chat=meta.get("inputs") == "messages")
    regression = RegressionMeta.from_meta(meta, len(meta.get("attributes") or []), str(d))
    layout = Layout(decoder=not encoder.pair_template, adapter=adapter, max_length=max_length, meta=meta,
                    tokenizer=tokenizer, encoder=encoder, adapter_base=base, regression=regression,
                    verdict=verdict)
    layout.pair_call_ok = not layout.decoder and _pair_call_matches(layout)
    return layout


def _pair_call_matches(layout: Layout) -> bool:
    """Does ``tok(prompt, response, truncation="only_first")`` with left truncation give rewardkit's ids?

    Checked on a short pair and on one whose prompt must lose its oldest tokens.
    """
    tok, enc = layout.tokenizer, layout.encoder
    side = tok.truncation_side
    tok.truncation_side = "left"
    try:
        long_prompt = " ".join(f"word{i} more" for i in range(layout.max_length))
        for prompt, response in [("How do I boil an egg?", "Simmer it for eight minutes."),
                                 (long_prompt, "A short answer that fits.")]:
            want = enc.encode_texts(prompt, [response])
            got = tok(prompt, response, truncation="only_first", max_length=layout.max_length,
                      return_token_type_ids=True)
            if list(got["input_ids"]) != want.input_ids[0]:
                return False
            if want.token_type_ids is not None and list(got["token_type_ids"]) != want.token_type_ids[0]:
                return False
        return True
    except Exception:  # noqa: BLE001 - a tokenizer that refuses the call: offer no pair-call snippet
        return False
    finally:
        tok.truncation_side = side


def tokens_comment(tok: Any, ids: list[int]) -> str:
    """Token ids as the tokens they are, for comments and prose ("nothing" for none)."""
    return " ".join(tok.convert_ids_to_tokens(ids)) if ids else "nothing"
