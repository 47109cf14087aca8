"""A trained model directory, full or LoRA: save, load, publish and merge it in one place.

* A full model directory is a plain transformers model (safetensors weights, ``config.json``,
  tokenizer); rewardkit's own settings live under ``config.rewardkit`` (max length, loss, reward
  normalisation statistics) so the scorer renders and normalises exactly as training did.
* A LoRA run's directory is a peft adapter directory: ``adapter_config.json``,
  ``adapter_model.safetensors`` (the LoRA matrices plus full copies of the modules in
  ``modules_to_save``: the score head and any other freshly initialised module, and the embeddings
  when a pad token had to be added), the tokenizer, and ``rewardkit.json`` holding what
  ``config.rewardkit`` holds for full models. `merge_adapter` turns it into plain transformers
  weights that load without peft.

`load_model_dir` reads either kind; `publish_model` moves a freshly saved model into an output directory
so that it never looks like both kinds at once.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rewardkit.errors import UsageError
from rewardkit.version import __version__
from rewardkit.model.attribute_head import fold_output_layer, head_config
from rewardkit.model.backbone import unwrap
from rewardkit.model.gguf import loadable
from rewardkit.model.hf_logging import quiet_loading

ADAPTER_CONFIG = "adapter_config.json"
EXTRA_FILES = ("critique_head.safetensors", "gating.safetensors")  # saved beside a model by its objective
CAUSAL_LM_OBJECTIVES = ("sft", "generative", "judge", "critique", "critique-lm")
META_FILE = "rewardkit.json"
# Files of a finished model, full or LoRA.
MODEL_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", ADAPTER_CONFIG,
               "adapter_model.safetensors", META_FILE)


def model_meta(max_length: int, loss: str, **extra: Any) -> dict[str, Any]:
    """What ``config.rewardkit`` (``rewardkit.json`` for adapters) holds: the rewardkit version, the max
    length and loss trained with, then ``extra`` (reward statistics, a regression head's attributes,
    the checkpoint an export came from)."""
    return {"version": __version__, "max_length": max_length, "loss": loss, **extra}


def is_causal_lm_meta(meta: dict[str, Any]) -> bool:
    """A saved model that keeps its language-model head (SFT, generative reward models): it loads with
    ``AutoModelForCausalLM``; every other rewardkit model with ``AutoModelForSequenceClassification``."""
    return meta.get("objective") in CAUSAL_LM_OBJECTIVES or (meta.get("prm") or {}).get("readout") == "tokens"


def as_token_classification(model: nn.Module, state_dict: dict[str, torch.Tensor] | None
                            ) -> tuple[dict[str, torch.Tensor] | None, str | None]:
    """A process reward model's head read at every step: saved as the family's token classifier where its
    weights are the sequence classifier's (Llama, Qwen2, Mistral, ...: ``model.*`` and ``score``, plus a
    bias, written as zeros), so ``AutoModelForTokenClassification`` gives every token's reward. Other
    families keep the sequence classifier (the card's snippet reads the head per token itself)."""
    from transformers import AutoModelForTokenClassification
    from transformers.models.auto.modeling_auto import MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES

    name = MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES.get(model.config.model_type)
    if not name or not isinstance(name, str):
        return state_dict, None
    state = dict(state_dict if state_dict is not None else model.state_dict())
    with torch.device("meta"):
        skeleton = AutoModelForTokenClassification.from_config(model.config)
    wanted = set(skeleton.state_dict())
    if "score.bias" in wanted and "score.bias" not in state:
        state["score.bias"] = torch.zeros(model.config.num_labels, dtype=state["score.weight"].dtype)
    if set(state) != wanted:
        return state_dict, None
    return state, name


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def is_peft_model(model: nn.Module) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")



def save_model(model: nn.Module, tokenizer: Any, out_dir: str | Path, meta: dict[str, Any],
               state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """Write safetensors weights, config (with ``rewardkit`` settings) and tokenizer.

    ``state_dict`` is the gathered full state for sharded (FSDP/DeepSpeed) runs, whose live
    modules each hold only a shard.
    """
    inner = unwrap(model)
    inner.config.rewardkit = meta
    if not is_causal_lm_meta(meta) and int(getattr(inner.config, "num_labels", 1)) == 1:
        # vLLM's pooling runner applies a sigmoid to a 1-output classifier unless it is a regression: the
        # reward would come back squashed into (0, 1). transformers reads problem_type only for a loss.
        inner.config.problem_type = "regression"
    token_cls = None
    if (meta.get("prm") or {}).get("readout") == "head":
        state_dict, token_cls = as_token_classification(inner, state_dict)
    inner.save_pretrained(str(out_dir), safe_serialization=True, state_dict=state_dict)
    if token_cls:  # save_pretrained writes the live class's name
        config_file = Path(out_dir) / "config.json"
        config = json.loads(config_file.read_text())
        config["architectures"] = [token_cls]
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    tokenizer.save_pretrained(str(out_dir))



def save_adapter(peft_model: nn.Module, tokenizer: Any, out_dir: Path, meta: dict[str, Any],
                 state_dict: dict[str, Any] | None = None) -> None:
    """Write the adapter (with head) and tokenizer; embeddings too when the vocabulary grew."""
    from transformers import AutoConfig

    base = peft_model.peft_config["default"].base_model_name_or_path
    rows = peft_model.get_base_model().get_input_embeddings().weight.shape[0]
    try:
        resized = AutoConfig.from_pretrained(loadable(base)).vocab_size != rows
    except (OSError, ValueError, UsageError):
        resized = True  # cannot tell: saving the embeddings costs disk, not correctness
    peft_model.save_pretrained(str(out_dir), state_dict=state_dict, save_embedding_layers=resized)
    tokenizer.save_pretrained(str(out_dir))
    (Path(out_dir) / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")



def save_trained(model: nn.Module, tokenizer: Any, out_dir: Path, meta: dict[str, Any],
         state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """A peft model as an adapter directory, anything else as a full model directory."""
    if is_peft_model(model):
        save_adapter(model, tokenizer, out_dir, meta, state_dict=state_dict)
    else:
        save_model(model, tokenizer, out_dir, meta, state_dict=state_dict)


def load_adapter(path: str | Path) -> tuple[nn.Module, Any, dict[str, Any]]:
    """(peft model, tokenizer, rewardkit settings) of an adapter directory, ready for scoring."""
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    p = Path(path)
    config = json.loads((p / ADAPTER_CONFIG).read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise UsageError(f"{p / ADAPTER_CONFIG}: no base_model_name_or_path; cannot rebuild the model")
    meta_file = p / META_FILE
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    # a regression adapter's head has one output per attribute; SFT and generative adapters keep the LM head
    head = head_config(meta["attributes"]) if meta.get("attributes") else {"num_labels": 1}
    base = loadable(base, f"{p / ADAPTER_CONFIG}: base_model_name_or_path")
    try:
        with quiet_loading():  # the base lacks the head the adapter holds: no "MISSING ..." report
            if is_causal_lm_meta(meta):
                model = AutoModelForCausalLM.from_pretrained(base)
            else:
                base_config = AutoConfig.from_pretrained(base, **head)
                model = AutoModelForSequenceClassification.from_pretrained(
                    base, config=base_config, **({"ignore_mismatched_sizes": True} if meta.get("attributes") else {}))
    except (OSError, ValueError) as e:
        raise UsageError(f"{p}: cannot load the adapter's base model {base!r}: {str(e).splitlines()[0]}") from None
    tokenizer = AutoTokenizer.from_pretrained(str(p))
    with quiet_loading():
        if len(tokenizer) != model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(len(tokenizer))  # the saved embeddings fill the new rows
        model.config.pad_token_id = tokenizer.pad_token_id
        tokenizer.padding_side = "right"
        return PeftModel.from_pretrained(model, str(p)), tokenizer, meta



def read_meta(path: str | Path) -> dict[str, Any]:
    """The rewardkit settings of a full or LoRA model directory, without loading weights."""
    if is_adapter_dir(path):
        f = Path(path) / META_FILE
        return json.loads(f.read_text()) if f.is_file() else {}
    return json.loads((Path(path) / "config.json").read_text()).get("rewardkit") or {}


def load_model_dir(path: str | Path, dtype: torch.dtype | None = None) -> tuple[nn.Module, Any, dict[str, Any]]:
    """(model, tokenizer, rewardkit settings) of a full or LoRA model directory.

    ``dtype`` loads full weights directly in it, so a bf16 model never holds an fp32 copy.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    p = Path(path)
    if is_adapter_dir(p):
        return load_adapter(p)
    if not (p / "config.json").is_file():
        raise UsageError(f"{p}: not a model directory (no config.json)")
    auto = AutoModelForCausalLM if is_causal_lm_meta(read_meta(p)) else AutoModelForSequenceClassification
    with quiet_loading():
        model = auto.from_pretrained(str(p), **({"dtype": dtype} if dtype else {}))
    tokenizer = AutoTokenizer.from_pretrained(str(p))
    return model, tokenizer, dict(getattr(model.config, "rewardkit", None) or {})


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write merged weights of ``adapter_dir`` to ``out_dir``: a plain transformers model directory.

    Built from the saved adapter rather than the live training model so it works the same after
    FSDP or DeepSpeed runs, and what it writes is exactly what the adapter reloads to.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise UsageError(f"{out} already exists and is not empty (pass --overwrite to replace it)")
    model, tokenizer, meta = load_adapter(adapter_dir)
    merged = model.merge_and_unload()
    scaling = meta.get("scaling")
    if scaling and not scaling.get("folded"):  # regression: merged logits in original units, as full exports
        fold_output_layer(merged, scaling["offset"], scaling["scale"])
        meta = {**meta, "scaling": {**scaling, "folded": True}}
    tmp = out.with_name(f".tmp-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(merged, tokenizer, tmp, meta)
    for name in EXTRA_FILES:  # what an objective saves beside the model (a critique model's head)
        if (Path(adapter_dir) / name).is_file():
            shutil.copy2(Path(adapter_dir) / name, tmp / name)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out



def publish_model(tmp: Path, out: Path) -> None:
    """Move a freshly saved model from ``tmp`` into ``out``, config files last.

    Model files of the other kind (full vs. LoRA) from an earlier run are removed first so the
    directory never looks like both.
    """
    for name in MODEL_FILES:
        (out / name).unlink(missing_ok=True)
    entries = sorted(tmp.iterdir(), key=lambda p: p.name in ("config.json", ADAPTER_CONFIG))
    for entry in entries:
        target = out / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(entry, target)
    tmp.rmdir()
