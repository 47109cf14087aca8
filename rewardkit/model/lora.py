"""LoRA through peft: wrap a backbone so the adapters and the whole score head train.

Saving, reloading and merging an adapter directory live in `rewardkit.model.artifacts`.

Default targets are peft's ``all-linear``: every linear layer of the backbone except the output
head, whatever the architecture calls them (q_proj/.../down_proj for Llama and Qwen, c_attn/c_fc
for GPT-2, query/key/value/dense for BERT); adapting all of them trains better than attention only.
"""

from __future__ import annotations

from torch import nn

from rewardkit.errors import UsageError

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
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=r, lora_alpha=alpha or 2 * r, lora_dropout=dropout,
                        target_modules=target, modules_to_save=fresh or None)
    try:
        return get_peft_model(model, config)
    except ValueError as e:
        raise UsageError(f"--lora-target-modules {targets or 'all-linear'}: {str(e).splitlines()[0]}") from None
