"""LoRA: the decoder path trains adapters and head, adapters reload exactly, merged weights load in plain transformers."""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any, Iterator
from pathlib import Path

import pytest
import torch
from conftest import pairs_records, write_jsonl

from rewardkit.config import TrainConfig
from rewardkit.data.records import Comparison
from rewardkit.errors import UsageError
from rewardkit.model.artifacts import merge_adapter, save_adapter
from rewardkit.model.backbone import load_backbone, make_encoder
from rewardkit.model.batching import collate
from rewardkit.model.lora import apply_lora
from rewardkit.model.net import RewardNet, compute_rewards
from rewardkit.model.reward_model import RewardModel
from rewardkit.training.trainer import train

PAIRS = [("How do I bake bread?", "Mix flour, water and yeast, then bake.", "No."),
         ("Tell me a joke.", "Why did the chicken cross the road?", "I will not, it is not my problem."),
         ("What is the capital of France?", "Paris.", "Figure it out yourself.")]


def _lora_model(model_dir: Path, r: int = 4):
    model, tok = load_backbone(str(model_dir))
    encoder = make_encoder(model, tok, 64)
    model = apply_lora(model, r=r, alpha=0, dropout=0.0, targets=None)
    return model, tok, encoder


def _perturb(model: torch.nn.Module) -> None:
    """Stand-in for training: non-zero LoRA B matrices and a changed head, so merging matters."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.2 * torch.randn(p.shape, generator=g))


def _rewards(model: torch.nn.Module, tok, encoder) -> torch.Tensor:
    net = RewardNet(model).eval()
    items = [encoder.encode(Comparison(prompt=p, responses=[c, r])) for p, c, r in PAIRS]
    with torch.no_grad():
        return compute_rewards(net, collate(items, tok.pad_token_id))


@pytest.mark.parametrize("fixture", ["llama_dir", "bert_dir"])
def test_training_step_updates_adapters_and_head_only(fixture: str, request) -> None:
    model, tok, encoder = _lora_model(request.getfixturevalue(fixture))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    head = "score" if fixture == "llama_dir" else "classifier"
    assert any(".lora_A." in n for n in trainable)
    assert any(f"{head}.modules_to_save." in n for n in trainable)
    assert not any(f"{head}.original_module" in n for n in trainable)
    _perturb(model)  # LoRA B starts at zero, which would zero every A gradient
    net = RewardNet(model).train()
    items = [encoder.encode(Comparison(prompt=p, responses=[c, r])) for p, c, r in PAIRS]
    rewards = compute_rewards(net, collate(items, tok.pad_token_id))
    (-torch.nn.functional.logsigmoid(rewards[0::2] - rewards[1::2]).mean()).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    # every LoRA matrix and the head's weight get gradient (a head bias cancels in r_c - r_r)
    checked = [n for n in grads if ".lora_" in n or n.endswith(f"{head}.modules_to_save.default.weight")]
    assert len(checked) > 4
    assert all(grads[n] is not None and grads[n].abs().sum() > 0 for n in checked)
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert frozen and all(p.grad is None for p in frozen)


@pytest.mark.parametrize("fixture", ["llama_dir", "bert_dir"])
def test_adapter_reloads_and_merged_export_matches(fixture: str, request, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    model, tok, encoder = _lora_model(request.getfixturevalue(fixture))
    _perturb(model)
    model.eval()
    expected = _rewards(model, tok, encoder)

    save_adapter(model, tok, tmp_path / "adapter", {"max_length": 64})
    names = {p.name for p in (tmp_path / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "rewardkit.json"} <= names
    assert "config.json" not in names and "model.safetensors" not in names
    reloaded = RewardModel.from_pretrained(tmp_path / "adapter", device="cpu")
    got = reloaded.rewards_for([encoder.encode(Comparison(prompt=p, responses=[c, r])) for p, c, r in PAIRS])
    assert torch.tensor(got).flatten() == pytest.approx(expected, abs=1e-5)

    merge_adapter(tmp_path / "adapter", tmp_path / "merged")
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged").eval()
    assert not hasattr(plain, "peft_config")
    # plain transformers, one unpadded sequence at a time: its own pooling, no rewardkit code
    items = [encoder.encode(Comparison(prompt=p, responses=[c, r])) for p, c, r in PAIRS]
    seqs = [(s, (e.token_type_ids or [None, None])[k]) for e in items for k, s in enumerate(e.input_ids)]
    with torch.no_grad():
        plain_rewards = []
        for ids, types in seqs:
            kwargs = {"input_ids": torch.tensor([ids])}
            if types is not None:
                kwargs["token_type_ids"] = torch.tensor([types])
            plain_rewards.append(plain(**kwargs).logits[0, 0].item())
    assert plain_rewards == pytest.approx(expected.tolist(), abs=1e-5)
    merged_rm = RewardModel.from_pretrained(tmp_path / "merged", device="cpu")
    assert merged_rm.meta["max_length"] == 64


def test_bad_target_modules_is_a_usage_error(llama_dir: Path) -> None:
    model, _ = load_backbone(str(llama_dir))
    with pytest.raises(UsageError, match="--lora-target-modules no_such_proj"):
        apply_lora(model, r=4, alpha=0, dropout=0.0, targets="no_such_proj")


def test_explicit_targets_and_alpha(llama_dir: Path) -> None:
    model, _ = load_backbone(str(llama_dir))
    peft_model = apply_lora(model, r=2, alpha=0, dropout=0.1, targets="q_proj, v_proj")
    cfg = peft_model.peft_config["default"]
    assert set(cfg.target_modules) == {"q_proj", "v_proj"} and cfg.lora_alpha == 4 and cfg.lora_dropout == 0.1
    assert not any("k_proj.lora" in n for n, _ in peft_model.named_parameters())


def _cfg(model: Path, data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(model=str(model), train_data=str(data), output_dir=str(out), batch_size=4, lr=5e-3,
                max_length=64, precision="fp32", eval_split=0.25, seed=0, lora_r=4)
    base.update(kw)
    return TrainConfig(**base)


@contextmanager
def capture_transformers_log() -> Iterator[list[Any]]:
    """Every record transformers' loggers emit inside the block."""
    import logging

    records: list[Any] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    root = logging.getLogger("transformers")
    handler = Keep()
    root.addHandler(handler)
    try:
        yield records
    finally:
        root.removeHandler(handler)


def test_train_lora_end_to_end_with_merge_and_resume(tmp_path: Path, llama_dir: Path) -> None:
    from safetensors import safe_open
    from transformers import AutoModelForSequenceClassification

    data = write_jsonl(tmp_path / "pairs.jsonl", pairs_records(32))
    out = tmp_path / "lora"
    result = train(_cfg(llama_dir, data, out, merge=True, save_steps=2, save_total_limit=0), log=lambda _m: None)
    assert (out / "adapter_config.json").is_file() and not (out / "config.json").exists()
    assert json.loads((out / "rewardkit.json").read_text())["normalization"]["count"] > 0

    # checkpoints hold the trainable weights only (the frozen backbone comes from --model)
    with safe_open(str(out / "checkpoint-2" / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all(".lora_" in k or "modules_to_save" in k for k in keys)

    adapter = RewardModel.from_pretrained(out, device="cpu")
    merged = RewardModel.from_pretrained(out / "merged", device="cpu")
    prompts, responses = [p for p, _, _ in PAIRS], [c for _, c, _ in PAIRS]
    assert merged.score_batch(prompts, responses) == pytest.approx(adapter.score_batch(prompts, responses), abs=1e-5)
    assert type(AutoModelForSequenceClassification.from_pretrained(out / "merged")).__name__ == \
        "LlamaForSequenceClassification"
    # the held-out accuracy train() reported is what the saved adapter gives
    evaluated = json.loads((out / "eval.json").read_text())["eval"]
    assert result.eval_metrics["accuracy"] == evaluated["accuracy"]

    # resuming a LoRA run from a checkpoint reproduces the uninterrupted adapter
    (out / "eval.json").unlink()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (out / name).unlink()
    again = train(_cfg(llama_dir, data, out, merge=True, save_steps=2, save_total_limit=0,
                       resume=str(out / "checkpoint-2")), log=lambda _m: None)
    assert again.resumed_from_step == 2 and again.pairs_seen == result.pairs_seen
    resumed = RewardModel.from_pretrained(out, device="cpu")
    assert resumed.score_batch(prompts, responses) == pytest.approx(adapter.score_batch(prompts, responses), abs=1e-5)


def test_an_adapter_on_a_headless_base_loads_quietly_with_its_head(tmp_path: Path) -> None:
    """The base (a causal LM) has no score head; the adapter holds it. Loading must not print
    transformers' "MISSING ... newly initialized ... Consider training" report (it reads as if the model
    were untrained), and the head must really come from the adapter."""
    import logging

    from serve_util import spread_causal_llama
    from transformers.utils import logging as hf_logging

    base = spread_causal_llama(tmp_path / "base")
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs_records(16))
    out = tmp_path / "lora"
    train(_cfg(base, data, out, lr=1e-2), log=lambda _m: None)
    hf_logging.set_verbosity_warning()  # as a notebook has it: the loader itself must keep quiet
    try:
        with capture_transformers_log() as said:
            first = RewardModel.from_pretrained(out, device="cpu")
    finally:
        hf_logging.set_verbosity_error()
    assert not [r.getMessage()[:200] for r in said if r.levelno >= logging.WARNING]
    second = RewardModel.from_pretrained(out, device="cpu")  # a fresh head would be drawn anew each load
    prompts, responses = [p for p, _, _ in PAIRS], [c for _, c, _ in PAIRS]
    assert first.score_batch(prompts, responses) == second.score_batch(prompts, responses)


def test_export_lora_checkpoint(tmp_path: Path, llama_dir: Path) -> None:
    from rewardkit.cli import main

    data = write_jsonl(tmp_path / "pairs.jsonl", pairs_records(16))
    out = tmp_path / "run"
    train(_cfg(llama_dir, data, out, save_steps=1, save_total_limit=0, epochs=0.5), log=lambda _m: None)
    ckpt = out / "checkpoint-2"
    assert main(["export", str(ckpt), "-o", str(tmp_path / "ad")]) == 0
    assert (tmp_path / "ad" / "adapter_config.json").is_file()
    assert main(["export", str(ckpt), "-o", str(tmp_path / "mg"), "--merge"]) == 0
    assert (tmp_path / "mg" / "config.json").is_file()
    # the final adapter equals the step-2 checkpoint here (2 steps in all)
    final = RewardModel.from_pretrained(out, device="cpu").score("a question", "an answer")
    assert RewardModel.from_pretrained(tmp_path / "ad", device="cpu").score("a question", "an answer") == \
        pytest.approx(final, abs=1e-5)
    assert RewardModel.from_pretrained(tmp_path / "mg", device="cpu").score("a question", "an answer") == \
        pytest.approx(final, abs=1e-5)
    assert main(["export", str(out), "-o", str(tmp_path / "x")]) == 2  # adapter dir without --merge
    assert main(["export", str(ckpt), "-o", str(tmp_path / "mg"), "--merge"]) == 2  # exists


def test_gradient_checkpointing_gives_the_same_gradients(llama_dir: Path) -> None:
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model, tok = load_backbone(str(llama_dir))
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        encoder = make_encoder(model, tok, 64)
        net = RewardNet(model).train()
        items = [encoder.encode(Comparison(prompt=p, responses=[c, r])) for p, c, r in PAIRS]
        compute_rewards(net, collate(items, tok.pad_token_id)).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_train_with_gradient_checkpointing_and_lora(tmp_path: Path, llama_dir: Path) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs_records(16))
    plain = train(_cfg(llama_dir, data, tmp_path / "a", epochs=0.5), log=lambda _m: None)
    checkpointed = train(_cfg(llama_dir, data, tmp_path / "b", epochs=0.5, gradient_checkpointing=True),
                         log=lambda _m: None)
    assert checkpointed.eval_metrics["mean_margin"] == pytest.approx(plain.eval_metrics["mean_margin"], abs=1e-5)
    assert plain.eval_metrics["mean_margin"] != 0.0
