"""`rewardkit export`: a checkpoint or a LoRA adapter -> a model directory other tools load.

* ``checkpoint-N`` of a full fine-tuning run -> a plain transformers model directory.
* ``checkpoint-N`` of a LoRA run -> a peft adapter directory, or merged plain weights with ``merge``.
* a LoRA output (adapter) directory -> merged plain weights (``merge`` required, to say so).

Checkpoints carry their run's configuration, so the backbone is rebuilt from ``--model`` exactly
as training built it and the saved weights are loaded on top. Reward statistics are computed at
the end of a run only, so a model exported from a checkpoint has none (``--normalize`` refuses).
A regression run's checkpoint also carries its attributes, weights and target scaling, so its export
scores like the run's final model (ratings from the logits, the weighted sum as the reward).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from rewardkit.card.text import write_card
from rewardkit.config import TrainConfig
from rewardkit.errors import UsageError
from rewardkit.model.artifacts import (is_adapter_dir, is_causal_lm_meta, merge_adapter, model_meta, save_adapter,
                                      save_model)
from rewardkit.model.attribute_head import RegressionMeta, fold_output_layer, head_config
from rewardkit.model.backbone import load_backbone, load_causal_lm
from rewardkit.model.lora import apply_lora
from rewardkit.model.critique import HEAD_FILE
from rewardkit.training.checkpoints import checkpoint_weights, read_state, STATE_FILE


def export(src: str | Path, out: str | Path, merge: bool = False, overwrite: bool = False) -> Path:
    """Write ``src`` (checkpoint or adapter directory) as a loadable model to ``out``; return ``out``."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise UsageError(f"{src}: no such directory")
    if out.resolve() == src.resolve():
        raise UsageError("-o: the output directory must differ from the source")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise UsageError(f"-o: {out} already exists and is not empty (pass --overwrite to replace it)")
    if is_adapter_dir(src):
        if not merge:
            raise UsageError(f"{src} is a LoRA adapter directory already; pass --merge to write merged weights")
        merged = merge_adapter(src, out, overwrite=True)
        write_card(merged, *run_facts(src))  # README.md: the adapter's run settings and metrics, if at hand
        return merged
    if not (src / STATE_FILE).is_file():
        raise UsageError(f"{src}: neither a rewardkit checkpoint ({STATE_FILE}) nor a LoRA adapter "
                         "directory (adapter_config.json)")
    return _export_checkpoint(src, out, merge)


def _export_checkpoint(src: Path, out: Path, merge: bool) -> Path:
    state = read_state(src)
    known = {f for f in TrainConfig.__dataclass_fields__}
    cfg = TrainConfig(**{k: v for k, v in state.get("config", {}).items() if k in known})
    if merge and not cfg.lora_r:
        raise UsageError(f"--merge: {src} is from a full fine-tuning run; there is no adapter to merge")
    regression = state.get("regression")  # a regression run's attributes, weights and training scaling
    if is_causal_lm_meta(state):  # SFT, generative, judge and token-readout PRM runs keep the LM head
        model, tokenizer = load_causal_lm(cfg.model, dropout=False, what=f"--objective {cfg.objective}")
    else:
        model, tokenizer = load_backbone(cfg.model, dropout=False,
                                         head=head_config(regression["attributes"]) if regression else None)
    if cfg.lora_r:
        model = apply_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)
    if cfg.objective == "gating":
        raise UsageError(f"{src}: a gating run's checkpoint holds its gate, which export does not rebuild; "
                         "resume the run to its end (rewardkit train ... --resume) for the model")
    weights = checkpoint_weights(src)
    head = {k.removeprefix("head."): weights.pop(k) for k in list(weights)  # a critique model's reward head
            if cfg.objective == "critique" and k.startswith("head.")}
    result = model.load_state_dict(weights, strict=not cfg.lora_r)
    if cfg.lora_r:
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        if trainable & set(result.missing_keys) or result.unexpected_keys:
            raise UsageError(f"{src}: its weights do not match the model its configuration describes")
    if cfg.lora_r and merge:
        model = model.merge_and_unload()
    # what the objective saves with a model, without the run's reward statistics (computed at its end)
    if regression:
        extra = _regression_head(model, regression, folded=not (cfg.lora_r and not merge), where=src).to_meta()
    elif state.get("verdict"):  # a generative reward model or a judge
        extra = {"objective": cfg.objective, "verdict": state["verdict"]}
    elif state.get("prm"):
        extra = {"objective": "prm", "prm": state["prm"]}
    elif state.get("critique"):  # a critique model: its head beside the causal LM
        extra = {"objective": cfg.objective, "critique": state["critique"]}
    elif cfg.objective == "sft":
        extra = {"objective": "sft"}
    else:
        extra = {}
    loss = state.get("loss_name") or (regression.get("objective", "regression") if regression else cfg.loss)
    meta = model_meta(cfg.max_length, loss, checkpoint_step=state.get("step"), inputs=state.get("inputs", "text"),
                      **extra)
    tmp = out.with_name(f".tmp-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if cfg.lora_r and not merge:
        save_adapter(model, tokenizer, tmp, meta)
    else:
        save_model(model, tokenizer, tmp, meta)
    if head:
        from safetensors.torch import save_file

        save_file({k: v.float().contiguous() for k, v in head.items()}, str(tmp / HEAD_FILE))
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    tmp.rename(out)
    seen = {k: v for k, v in state.items() if k.endswith("_seen")}  # pairs_seen, rows_seen, responses_seen, ...
    write_card(out, {**state.get("config", {})}, {"checkpoint_step": state.get("step"), **seen})
    return out


def _regression_head(model: Any, saved: dict[str, Any], folded: bool, where: Path) -> RegressionMeta:
    """A regression checkpoint's attributes, weights and scaling; full and merged models get the training
    scaling folded into their output layer, as `rewardkit train` saves them, so logits are ratings."""
    reg = RegressionMeta.from_meta(saved, len(saved["attributes"]), str(where))
    assert reg is not None
    if folded:
        fold_output_layer(model, reg.scaling.offset, reg.scaling.scale)
    reg.folded = folded
    return reg


def run_facts(run_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(settings, summary) of a finished run's output directory: train_config.yaml and eval.json."""
    import yaml

    d = Path(run_dir)
    settings, summary = {}, {}
    try:
        if (d / "train_config.yaml").is_file():
            settings = yaml.safe_load((d / "train_config.yaml").read_text()) or {}
        if (d / "eval.json").is_file():
            summary = json.loads((d / "eval.json").read_text())
    except (OSError, ValueError, yaml.YAMLError):
        pass  # a card without the run's numbers beats no card
    return settings, summary
