"""Slow: the real default backbone (MiniLM-L6) on real hh-rlhf pairs, with a seeded accuracy floor.

Run with `pytest -m slow`; skipped when ../shared/data is absent (outside CI and development).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rewardkit import RewardModel, TrainConfig, train


@pytest.mark.slow
def test_minilm_learns_hh_rlhf_preferences(shared_hh: Path, tmp_path: Path) -> None:
    # 1,849 pairs -> ~1,480 train / ~370 held out (prompt-disjoint), max length 256 to keep it to minutes.
    cfg = TrainConfig(train_data=str(shared_hh), output_dir=str(tmp_path / "out"), eval_split=0.2,
                      max_length=256, batch_size=16, lr=1e-4, seed=0, precision="fp32")
    result = train(cfg, log=lambda _m: None)
    assert result.pairs_seen == result.train_comparisons  # one epoch, nothing dropped
    assert result.eval_metrics["pairs"] > 300
    assert result.eval_metrics["accuracy"] >= 0.58, result.eval_metrics
    rm = RewardModel.from_pretrained(tmp_path / "out", device="cpu")
    assert rm.meta["normalization"]["count"] == 2 * result.eval_metrics["pairs"]

    # the directory is a plain transformers model giving rewardkit's rewards
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rewardkit.data.loading import load_comparisons

    comps = load_comparisons(str(shared_hh)).comparisons[:8]
    ours = rm.score_batch([c.prompt for c in comps], [c.chosen for c in comps])
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "out", truncation_side="left")  # oldest prompt tokens go
    for c, r in zip(comps, ours):
        enc = tok(c.prompt, c.chosen, truncation="only_first", max_length=256, return_tensors="pt")
        with torch.no_grad():
            assert abs(plain(**enc).logits.item() - r) < 1e-5
