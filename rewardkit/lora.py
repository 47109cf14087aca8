"""LoRA through peft: wrap a backbone, save the adapter with its score head, reload it, merge it.

A LoRA run's output directory is a peft adapter directory: ``adapter_config.json``,
``adapter_model.safetensors`` (the LoRA matrices plus full copies of the modules in
``modules_to_save``: the score head and any other freshly initialised module, and the embeddings
when a pad token had to be added), the tokenizer, and ``rewardkit.json`` with the settings that
``config.rewardkit`` holds for full models. `merge_adapter` turns it into plain transformers
weights that load without peft.

Default targets are peft's ``all-linear``: every linear layer of the backbone except the output
head, whatever the architecture calls them (q_proj/.../down_proj for Llama and Qwen, c_attn/c_fc
for GPT-2, query/key/value/dense for BERT); adapting all of them trains better than attention only.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from torch import nn

from .config import UsageError

ADAPTER_CONFIG = "adapter_config.json"
META_FILE = "rewardkit.json"
HEAD_NAMES = ("score", "classifier")


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def is_peft_model(model: nn.Module) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def apply_lora(model: nn.Module, r: int, alpha: float, dropout: float, targets: str | None) -> nn.Module:
    """Wrap ``model`` in a peft LoRA model whose head (and fresh modules) train in full.

    ``alpha`` 0 means 2 * r; ``targets`` is a comma-separated list of module names or
    ``all-linear`` (the default).
    """
    from peft import LoraConfig, TaskType, get_peft_model

    names = [t.strip() for t in (targets or "all-linear").split(",") if t.strip()]
    target: str | list[str] = names[0] if names == ["all-linear"] else names
    # peft's SEQ_CLS task adds the `score`/`classifier` head to modules_to_save by itself; other
    # freshly initialised modules (e.g. DeBERTa's pooler) are added here.
    fresh = [m for m in getattr(model, "rewardkit_fresh_modules", []) if m not in HEAD_NAMES]
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=r, lora_alpha=alpha or 2 * r, lora_dropout=dropout,
                        target_modules=target, modules_to_save=fresh or None)
    try:
        return get_peft_model(model, config)
    except ValueError as e:
        raise UsageError(f"--lora-target-modules {targets or 'all-linear'}: {str(e).splitlines()[0]}") from None


def save_adapter(peft_model: nn.Module, tokenizer: Any, out_dir: Path, meta: dict[str, Any],
                 state_dict: dict[str, Any] | None = None) -> None:
    """Write the adapter (with head) and tokenizer; embeddings too when the vocabulary grew."""
    from transformers import AutoConfig

    base = peft_model.peft_config["default"].base_model_name_or_path
    rows = peft_model.get_base_model().get_input_embeddings().weight.shape[0]
    try:
        resized = AutoConfig.from_pretrained(base).vocab_size != rows
    except (OSError, ValueError):
        resized = True  # cannot tell: saving the embeddings costs disk, not correctness
    peft_model.save_pretrained(str(out_dir), state_dict=state_dict, save_embedding_layers=resized)
    tokenizer.save_pretrained(str(out_dir))
    (Path(out_dir) / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def load_adapter(path: str | Path) -> tuple[nn.Module, Any, dict[str, Any]]:
    """(peft model, tokenizer, rewardkit settings) of an adapter directory, ready for scoring."""
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    p = Path(path)
    config = json.loads((p / ADAPTER_CONFIG).read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise UsageError(f"{p / ADAPTER_CONFIG}: no base_model_name_or_path; cannot rebuild the model")
    try:
        base_config = AutoConfig.from_pretrained(base, num_labels=1)
        model = AutoModelForSequenceClassification.from_pretrained(base, config=base_config)
    except (OSError, ValueError) as e:
        raise UsageError(f"{p}: cannot load the adapter's base model {base!r}: {str(e).splitlines()[0]}") from None
    tokenizer = AutoTokenizer.from_pretrained(str(p))
    if len(tokenizer) != model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))  # the saved embeddings fill the new rows
    model.config.pad_token_id = tokenizer.pad_token_id
    tokenizer.padding_side = "right"
    meta_file = p / META_FILE
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    return PeftModel.from_pretrained(model, str(p)), tokenizer, meta


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write merged weights of ``adapter_dir`` to ``out_dir``: a plain transformers model directory.

    Built from the saved adapter rather than the live training model so it works the same after
    FSDP or DeepSpeed runs, and what it writes is exactly what the adapter reloads to.
    """
    from .model import save_model

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise UsageError(f"{out} already exists and is not empty (pass --overwrite to replace it)")
    model, tokenizer, meta = load_adapter(adapter_dir)
    merged = model.merge_and_unload()
    tmp = out.with_name(f".tmp-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(merged, tokenizer, tmp, meta)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out
