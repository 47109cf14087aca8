"""scripts/synthetic_attributes.py: the data has the structure it claims, and a linear model on word
counts recovers it (the sanity check behind the acceptance run)."""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "synthetic_attributes.py"


@pytest.fixture(scope="module")
def synth():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("synthetic_attributes", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_words_are_disjoint_and_levels_are_counts(synth) -> None:  # type: ignore[no-untyped-def]
    words = synth.word_lists()
    flat = [w for good, bad in words.values() for w in good + bad]
    assert len(flat) == len(set(flat)) == len(synth.ATTRIBUTES) * synth.WORDS_PER_ATTRIBUTE
    rows = synth.make_rows(20, 3, seed=5, noise=0.0, missing=0.0)
    for r in rows:
        tokens = r["response"].replace(".", " ").split()
        for name, q in zip(synth.ATTRIBUTES, r["levels"]):
            good, bad = words[name]
            assert sum(t in good for t in tokens) == q and sum(t in bad for t in tokens) == synth.SLOTS - q
        assert r["ratings"] == r["levels"]  # no noise, nothing missing


def test_written_files_and_bow_baseline(synth, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("numpy")
    args = argparse.Namespace(train=120, test=30, per_prompt=4, noise=0.5, missing=0.15, test_missing=0.05,
                              pair_min_gap=1.0, seed=3)
    train, test = synth.write_dataset(tmp_path, args)
    with open(tmp_path / "train.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["prompt", "response", *synth.ATTRIBUTES] and len(rows) == 480
    assert any(v == "" for r in rows for v in r.values())  # some ratings are missing (empty cells)
    assert {r["prompt"] for r in train}.isdisjoint({r["prompt"] for r in test})  # held-out prompts
    pairs = [json.loads(line) for line in (tmp_path / "test_pairs.jsonl").read_text().splitlines()]
    level = {r["response"]: r["levels"] for r in test}
    assert pairs and all(synth.combined(level[p["chosen"]]) - synth.combined(level[p["rejected"]]) >= 1 for p in pairs)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["attributes"] == synth.ATTRIBUTES and meta["test_pairs"] == len(pairs)
    result = synth.run_baseline("bow", tmp_path, args)
    assert all(m["spearman"] > 0.9 for m in result["attributes"].values()), result
    assert result["accuracy"] > 0.95
