"""Prefix sharing: a comparison's prompt encoded once, responses attending to it through a 4D mask.

The packed layout must give the same rewards (and gradients) as one full row per response, for
every decoder family and attention implementation rewardkit enables it for.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import pairs_records, write_jsonl

from rewardkit.data.records import Comparison
from rewardkit.encoding.encoder import Encoded
from rewardkit.errors import UsageError
from rewardkit.model.backbone import load_backbone, make_encoder
from rewardkit.model.batching import collate, collate_packed, packed_length
from rewardkit.model.net import RewardNet, compute_rewards, score_encoded
from rewardkit.model.prefix_sharing import prefix_sharing_blocker, resolve_prefix_sharing
from rewardkit.model.reward_model import RewardModel
from rewardkit.training.losses import bradley_terry


def _comparisons() -> list[Comparison]:
    """Pairs and a 3-way ranking with prompts and responses of very different lengths."""
    long_prompt = "Human: " + " ".join(["how do I bake good bread at home"] * 6) + "\n\nAssistant:"
    return [
        Comparison(prompt="Human: Tell me a joke.\n\nAssistant:",
                   responses=[" Why did the chicken cross the road?", " No."]),
        Comparison(prompt=long_prompt, responses=[" Mix flour, water, yeast and salt, then bake it.", " Bake."]),
        Comparison(prompt="Human: What is the capital of France?\n\nAssistant:",
                   responses=[" Paris.", " Paris is the capital of France, a lovely city.", " Lyon, I think."]),
        Comparison(prompt=[{"role": "user", "content": "Tell me a joke about bread."}],
                   responses=[" The quick brown fox.", " A good helpful harmful answer to the question."]),
    ]


def _load(path: Path, attn: str = "sdpa") -> tuple[torch.nn.Module, object]:
    model, tok = load_backbone(str(path))
    model.set_attn_implementation(attn)
    model.eval()
    return model, tok


def test_packed_layout_worked_example() -> None:
    # prompt [5, 6] shared; responses [7, 8] and [9]; second comparison prompt [1], response [2, 3]
    items = [Encoded(input_ids=[[5, 6, 7, 8], [5, 6, 9]], token_type_ids=None, prompt_len=2, truncated=False,
                     margin=0.5),
             Encoded(input_ids=[[1, 2, 3], [1, 4]], token_type_ids=None, prompt_len=1, truncated=False)]
    assert [packed_length(e) for e in items] == [5, 4]
    b = collate_packed(items, pad_id=0)
    assert b.input_ids.tolist() == [[5, 6, 7, 8, 9], [1, 2, 3, 4, 0]]
    assert b.position_ids.tolist() == [[0, 1, 2, 3, 2], [0, 1, 2, 1, 0]]
    assert b.reward_row.tolist() == [0, 0, 1, 1]
    assert b.reward_col.tolist() == [3, 4, 2, 3]
    assert b.pair_better.tolist() == [0, 2] and b.pair_worse.tolist() == [1, 3]
    assert b.pair_margin.tolist() == [0.5, 0.0]
    assert b.attention_mask.shape == (2, 1, 5, 5) and b.attention_mask.dtype == torch.bool
    assert b.attention_mask[0, 0].int().tolist() == [
        [1, 0, 0, 0, 0],   # prompt: causal
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],   # response 1 sees the prompt and itself
        [1, 1, 1, 1, 0],
        [1, 1, 0, 0, 1],   # response 2 sees the prompt, not response 1
    ]
    assert b.attention_mask[1, 0].int().tolist() == [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],
        [1, 0, 0, 1, 0],
        [0, 0, 0, 0, 1],   # padding sees only itself (a fully masked row would be NaN)
    ]


def test_packed_rejects_unshared_prefix() -> None:
    bad = Encoded(input_ids=[[5, 6, 7], [5, 9, 8]], token_type_ids=None, prompt_len=2, truncated=False)
    with pytest.raises(ValueError, match="do not share"):
        collate_packed([bad], pad_id=0)


@pytest.mark.parametrize("family", ["llama", "qwen"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_rewards_equal_unshared(family: str, attn: str, request: pytest.FixtureRequest) -> None:
    model, tok = _load(request.getfixturevalue(f"{family}_dir"), attn)
    enc = make_encoder(model, tok, max_length=64)
    items = [enc.encode(c) for c in _comparisons()]
    assert all(e.prompt_len > 1 for e in items)
    net = RewardNet(model)
    with torch.no_grad():
        plain = compute_rewards(net, collate(items, tok.pad_token_id))
        packed = compute_rewards(net, collate_packed(items, tok.pad_token_id))
        alone = torch.cat([compute_rewards(net, collate([e], tok.pad_token_id)) for e in items])
    assert packed.shape == plain.shape == (9,)
    assert plain.std() > 1e-3  # the rewards differ, so equality below means something
    torch.testing.assert_close(packed, plain, rtol=0, atol=1e-4)
    torch.testing.assert_close(packed, alone, rtol=0, atol=1e-4)
    assert packed.dtype == torch.float32


def test_packed_rows_hold_fewer_tokens(llama_dir: Path) -> None:
    model, tok = _load(llama_dir)
    enc = make_encoder(model, tok, max_length=64)
    items = [enc.encode(c) for c in _comparisons()]
    shared = sum(packed_length(e) for e in items)
    unshared = sum(len(s) for e in items for s in e.input_ids)
    prompts = sum(e.prompt_len * (len(e.input_ids) - 1) for e in items)
    assert unshared - shared == prompts > 0


def test_packed_gradients_equal_unshared(llama_dir: Path) -> None:
    model, tok = _load(llama_dir)
    enc = make_encoder(model, tok, max_length=64)
    items = [enc.encode(c) for c in _comparisons()[:2]]
    net = RewardNet(model)
    grads = []
    for make in (collate, collate_packed):
        model.zero_grad()
        b = make(items, tok.pad_token_id)
        r = compute_rewards(net, b)
        bradley_terry(r[b.pair_better], r[b.pair_worse], b.pair_margin, b.pair_weight).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert grads[0].abs().max() > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-5)


def test_packed_scoring_matches_under_bf16_autocast(llama_dir: Path) -> None:
    model, tok = _load(llama_dir)
    enc = make_encoder(model, tok, max_length=64)
    items = [enc.encode(c) for c in _comparisons()]
    net = RewardNet(model)
    fp32 = score_encoded(net, tok.pad_token_id, items, 8, torch.device("cpu"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        b_plain = score_encoded(net, tok.pad_token_id, items, 8, torch.device("cpu"))
        b_packed = score_encoded(net, tok.pad_token_id, items, 8, torch.device("cpu"), share_prefix=True)
    flat = lambda rs: torch.tensor([r for row in rs for r in row])  # noqa: E731
    assert flat(b_packed).dtype == torch.float32
    torch.testing.assert_close(flat(b_packed), flat(fp32), rtol=0, atol=5e-2)
    torch.testing.assert_close(flat(b_packed), flat(b_plain), rtol=0, atol=5e-2)


def test_resolve_prefix_sharing(llama_dir: Path, bert_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    llama, ltok = _load(llama_dir)
    bert, btok = load_backbone(str(bert_dir))
    assert resolve_prefix_sharing("auto", llama, ltok.pad_token_id, 64) is True
    assert resolve_prefix_sharing("on", llama, ltok.pad_token_id, 64) is True
    assert resolve_prefix_sharing("off", llama, ltok.pad_token_id, 64) is False
    assert resolve_prefix_sharing("auto", bert, btok.pad_token_id, 64) is False
    with pytest.raises(UsageError, match="bidirectional"):
        resolve_prefix_sharing("on", bert, btok.pad_token_id, 64)

    llama.config.sliding_window = 32
    assert "sliding-window" in (prefix_sharing_blocker(llama, 64) or "")
    assert prefix_sharing_blocker(llama, 32) is None
    llama.config.sliding_window = None

    # a model whose packed forward does not reproduce the unshared rewards is caught by the probe
    monkeypatch.setattr("rewardkit.model.prefix_sharing.verify_prefix_sharing", lambda model, pad: 0.5)
    notes: list[str] = []
    assert resolve_prefix_sharing("auto", llama, ltok.pad_token_id, 64, notes.append) is False
    assert "differ" in notes[0]
    with pytest.raises(UsageError, match="differ"):
        resolve_prefix_sharing("on", llama, ltok.pad_token_id, 64)


def test_reward_model_scores_identically_with_and_without_sharing(qwen_dir: Path, tmp_path: Path) -> None:
    model, tok = load_backbone(str(qwen_dir))
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    shared = RewardModel.from_pretrained(tmp_path, device="cpu")
    plain = RewardModel.from_pretrained(tmp_path, device="cpu", prefix_sharing="off")
    assert shared.share_prefix and not plain.share_prefix
    comps = _comparisons()
    a = torch.tensor([r for rs in shared.score_comparisons(comps, batch_size=3) for r in rs])
    b = torch.tensor([r for rs in plain.score_comparisons(comps, batch_size=3) for r in rs])
    torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
    assert shared.compare("Hi", "Hello there.", "Go away.") == pytest.approx(
        plain.compare("Hi", "Hello there.", "Go away."), abs=1e-4)


def test_train_with_prefix_sharing(llama_dir: Path, tmp_path: Path) -> None:
    from rewardkit.config import TrainConfig
    from rewardkit.training.trainer import train

    data = write_jsonl(tmp_path / "pairs.jsonl", pairs_records(24))
    out = tmp_path / "out"
    result = train(TrainConfig(model=str(llama_dir), train_data=str(data), output_dir=str(out), batch_size=4,
                               max_length=64, eval_split=0.25, prefix_sharing="on", precision="fp32"), log=lambda m: None)
    assert result.pairs_seen == 18 and result.eval_metrics["pairs"] == 6
    import json

    assert json.loads((out / "eval.json").read_text())["prefix_sharing"] is True
    with pytest.raises(UsageError, match="bidirectional"):
        train(TrainConfig(model=None, train_data=str(data), output_dir=str(tmp_path / "o2"),
                          prefix_sharing="on"), log=lambda m: None)


def test_cli_eval_same_metrics_with_and_without_sharing(llama_dir: Path, bert_dir: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from rewardkit.cli import main

    model, tok = load_backbone(str(llama_dir))
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs_records(10))
    results = []
    for mode in ("on", "off"):
        assert main(["eval", str(tmp_path / "m"), str(data), "--json", "--prefix-sharing", mode]) == 0
        results.append(json.loads(capsys.readouterr().out))
    assert results[0]["pairs"] == 10
    assert results[0]["accuracy"] == results[1]["accuracy"]
    assert results[0]["mean_margin"] == pytest.approx(results[1]["mean_margin"], abs=1e-4)
    assert main(["eval", str(bert_dir), str(data), "--json", "--prefix-sharing", "on"]) == 2
    assert "bidirectional" in capsys.readouterr().err


def test_packed_rows_in_chunks_equal_whole_batch(llama_dir: Path) -> None:
    model, tok = _load(llama_dir)
    enc = make_encoder(model, tok, max_length=64)
    items = [enc.encode(c) for c in _comparisons()] * 2
    b = collate_packed(items, tok.pad_token_id)
    chunked, whole = RewardNet(model, row_chunk=2), RewardNet(model, row_chunk=0)
    chunks = chunked._chunks(b.attention_mask, b.reward_row, b.reward_col)
    assert chunks is not None and len(chunks) == 8
    assert [hi for _, _, hi in chunks] == sorted((hi for _, _, hi in chunks), reverse=True)
    with torch.no_grad():
        torch.testing.assert_close(compute_rewards(chunked, b), compute_rewards(whole, b), rtol=0, atol=1e-5)
        unshared = compute_rewards(whole, collate(items, tok.pad_token_id))
        torch.testing.assert_close(compute_rewards(chunked, b), unshared, rtol=0, atol=1e-4)
