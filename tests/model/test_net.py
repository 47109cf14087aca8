"""Pooling at the last real token, pad-token setup, and exports that plain transformers loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rewardkit.model.artifacts import save_model
from rewardkit.model.backbone import load_backbone, make_encoder
from rewardkit.model.batching import collate
from rewardkit.model.net import RewardNet, compute_rewards
from rewardkit.model.reward_model import RewardModel

TEXTS = [("Human: bake bread? Assistant:", [" Mix flour and water then bake it for an hour.", " No."]),
         ("Human: capital of France? Assistant:", [" Paris.", " It is Paris, the capital and largest city of France."])]


def _encoded(model, tok, max_length=64):
    enc = make_encoder(model, tok, max_length)
    return [enc.encode_texts(p, rs) for p, rs in TEXTS]


@pytest.mark.parametrize("fixture", ["llama_dir", "qwen_dir", "bert_dir"])
def test_rewards_do_not_depend_on_padding(fixture: str, request: pytest.FixtureRequest) -> None:
    model, tok = load_backbone(str(request.getfixturevalue(fixture)))
    net = RewardNet(model).eval()
    items = _encoded(model, tok)
    with torch.no_grad():
        right = compute_rewards(net, collate(items, tok.pad_token_id, "right"))
        alone = torch.cat([compute_rewards(net, collate([e], tok.pad_token_id)) for e in items])
        assert torch.allclose(right, alone, atol=1e-5)  # padding never leaks into a reward
        if net.last_token:  # decoders: read at the last real token under either padding side
            left = compute_rewards(net, collate(items, tok.pad_token_id, "left"))
            assert torch.allclose(right, left, atol=1e-5)


def test_decoder_without_pad_token_gets_a_distinct_one(llama_dir: Path) -> None:
    model, tok = load_backbone(str(llama_dir))
    assert tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id
    assert model.config.pad_token_id == tok.pad_token_id
    assert model.get_input_embeddings().weight.shape[0] >= len(tok)


def test_dropout_is_off_by_default(bert_dir: Path) -> None:
    model, _ = load_backbone(str(bert_dir))
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    model, _ = load_backbone(str(bert_dir), dropout=True)
    assert any(m.p > 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))


@pytest.mark.parametrize("fixture", ["llama_dir", "bert_dir"])
def test_export_loads_in_plain_transformers_with_the_same_rewards(fixture: str, request: pytest.FixtureRequest,
                                                                  tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    model, tok = load_backbone(str(request.getfixturevalue(fixture)))
    torch.nn.init.normal_(next(p for n, p in model.named_parameters() if "score" in n or "classifier" in n))
    save_model(model, tok, tmp_path, {"max_length": 64})
    assert (tmp_path / "model.safetensors").is_file()
    assert not list(tmp_path.glob("*.bin"))
    rm = RewardModel.from_pretrained(tmp_path, device="cpu")
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    items = _encoded(rm.model, rm.tokenizer)
    batch = collate(items, rm.tokenizer.pad_token_id)  # right-padded, as the tokenizer is saved
    with torch.no_grad():
        kwargs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        if batch.token_type_ids is not None:
            kwargs["token_type_ids"] = batch.token_type_ids
        plain_rewards = plain(**kwargs).logits.squeeze(-1)
    ours = torch.tensor([r for p, rs in TEXTS for r in rm.score_batch([p] * len(rs), rs)])
    assert torch.allclose(plain_rewards, ours, atol=1e-5)
    assert plain.config.pad_token_id == rm.tokenizer.pad_token_id


def test_compare_is_sigmoid_of_reward_difference(bert_dir: Path, tmp_path: Path) -> None:
    model, tok = load_backbone(str(bert_dir))
    save_model(model, tok, tmp_path, {"max_length": 64})
    rm = RewardModel.from_pretrained(tmp_path, device="cpu")
    p, (a, b) = TEXTS[0]
    ra, rb = rm.score(p, a), rm.score(p, b)
    assert abs(rm.compare(p, a, b) - torch.sigmoid(torch.tensor(ra - rb)).item()) < 1e-5
