"""LoRA through peft: wrap a backbone so the adapters and the whole score head train, and keep its
checkpoints to the trainable weights.

Saving, reloading and merging an adapter directory live in `rewardkit.model.artifacts`.

Default targets are peft's ``all-linear``: every linear layer of the backbone except the output
head, whatever the architecture calls them (q_proj/.../down_proj for Llama and Qwen, c_attn/c_fc
for GPT-2, query/key/value/dense for BERT); adapting all of them trains better than attention only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from rewardkit.errors import UsageError
from rewardkit.model.backbone import is_causal_lm

HEAD_NAMES = ("score", "classifier")


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
    # a causal LM (SFT, generative reward models) keeps its LM head frozen: nothing in it is new
    task = TaskType.CAUSAL_LM if is_causal_lm(model) else TaskType.SEQ_CLS
    config = LoraConfig(task_type=task, r=r, lora_alpha=alpha or 2 * r, lora_dropout=dropout,
                        target_modules=target, modules_to_save=fresh or None)
    try:
        return get_peft_model(model, config)
    except ValueError as e:
        raise UsageError(f"--lora-target-modules {targets or 'all-linear'}: {str(e).splitlines()[0]}") from None


def save_trainable_only(accelerator: Any) -> None:
    """Make accelerate checkpoints hold only trainable weights (LoRA runs: adapter + head).

    The frozen backbone is reloaded from ``--model`` on resume, so copying it into every
    checkpoint would only cost disk. Loading checks that exactly the trainable weights are present.
    """
    from safetensors.torch import load_file

    def trainable(model: nn.Module) -> set[str]:
        return {n for n, p in model.named_parameters() if p.requires_grad}

    def on_save(models: list[nn.Module], weights: list[dict[str, torch.Tensor]], _dir: str) -> None:
        for model, sd in zip(models, weights):
            keep = trainable(model)
            for key in [k for k in sd if k not in keep]:
                del sd[key]

    def on_load(models: list[nn.Module], input_dir: str) -> None:
        for i, model in enumerate(models):
            f = Path(input_dir) / ("model.safetensors" if i == 0 else f"model_{i}.safetensors")
            if not f.is_file():
                return  # sharded (FSDP/DeepSpeed) state: accelerate's own loader handles it
            sd = load_file(str(f))
            want = trainable(model)
            missing, extra = want - sd.keys(), sd.keys() - want
            if missing or extra:
                raise UsageError(f"--resume: {f} does not match this model's trainable weights "
                                 f"({len(missing)} missing, {len(extra)} unexpected; different LoRA settings?)")
            model.load_state_dict(sd, strict=False)
        models.clear()  # loaded here; accelerate must not load them again with strict checking

    accelerator.register_save_state_pre_hook(on_save)
    accelerator.register_load_state_pre_hook(on_load)
