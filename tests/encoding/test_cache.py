"""Tokenize once: encoded comparisons come back from the cache only for exactly the same work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import pairs_records, write_jsonl

from rewardkit.data.file_cache import cache_dir
from rewardkit.encoding import cache
from rewardkit.data.records import Comparison
from rewardkit.encoding.encoder import Encoder
from rewardkit.model.backbone import load_backbone, make_encoder


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "cache"
    monkeypatch.setenv("REWARDKIT_CACHE", str(home))
    return home


@pytest.fixture(scope="module")
def bert(bert_dir: Path):
    return load_backbone(str(bert_dir))


def _comps(n: int = 5, margin: float | None = None) -> list[Comparison]:
    return [Comparison(prompt=f"Question {i}: how do I do task {i}?",
                       responses=[f"Step one for task {i} is reading the manual.", "No."], margin=margin)
            for i in range(n)]


def _entries(home: Path) -> list[Path]:
    return sorted((home / "encoded").glob("*.safetensors"))


def _forbid_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self, comp):  # noqa: ANN001
        raise AssertionError("encoded although the cache holds this data")

    monkeypatch.setattr(Encoder, "encode", boom)
    monkeypatch.setattr(Encoder, "tokenize_batch", lambda self, texts: boom(self, texts))  # the batched path


def test_second_call_reads_the_cache(bert, cache_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, tok = bert
    enc = make_encoder(model, tok, 64)
    comps = _comps()
    first = cache.encode_cached(enc, comps)
    assert first == [enc.encode(c) for c in comps]
    assert len(_entries(cache_home)) == 1
    _forbid_encoding(monkeypatch)
    again = cache.encode_cached(make_encoder(model, tok, 64), comps)
    assert again == first  # ids, token types, prompt_len, truncated, margin all equal
    assert again[0].token_type_ids is not None


def test_margins_come_from_the_data_not_the_cache(bert, cache_home: Path) -> None:
    model, tok = bert
    enc = make_encoder(model, tok, 64)
    cache.encode_cached(enc, _comps(margin=None))
    hit = cache.encode_cached(enc, _comps(margin=1.5))
    assert len(_entries(cache_home)) == 1
    assert [e.margin for e in hit] == [1.5] * 5


def test_key_covers_texts_length_and_tokenizer(bert, llama_dir: Path, cache_home: Path) -> None:
    model, tok = bert
    comps = _comps()
    base = cache.cache_key(make_encoder(model, tok, 64), comps)
    changed = _comps()
    changed[3] = Comparison(prompt=changed[3].prompt, responses=[changed[3].responses[0], "Nope."])
    llama, ltok = load_backbone(str(llama_dir))
    keys = {
        base,
        cache.cache_key(make_encoder(model, tok, 32), comps),          # max_length
        cache.cache_key(make_encoder(model, tok, 64), changed),        # one response
        cache.cache_key(make_encoder(model, tok, 64), comps[:4]),      # the subset (another split)
        cache.cache_key(make_encoder(llama, ltok, 64), comps),         # another tokenizer
    }
    assert len(keys) == 5
    assert cache.cache_key(make_encoder(model, tok, 64), _comps()) == base


def test_key_tells_apart_texts_that_concatenate_alike(bert, cache_home: Path) -> None:
    model, tok = bert
    enc = make_encoder(model, tok, 64)
    keys = {
        cache.cache_key(enc, [Comparison(prompt="ab", responses=["c", "d"])]),
        cache.cache_key(enc, [Comparison(prompt="a", responses=["bc", "d"])]),
        cache.cache_key(enc, [Comparison(prompt="a", responses=["b", "cd"])]),
        cache.cache_key(enc, [Comparison(prompt="a", responses=["b"]), Comparison(prompt="c", responses=["d"])]),
        cache.cache_key(enc, [Comparison(prompt=[{"role": "user", "content": "ab"}], responses=["c", "d"])]),
    }
    assert len(keys) == 5


def test_chat_template_is_part_of_the_key(qwen_dir: Path, cache_home: Path) -> None:
    model, tok = load_backbone(str(qwen_dir))
    comps = _comps()
    before = cache.cache_key(make_encoder(model, tok, 64), comps)
    tok.chat_template = tok.chat_template.replace("<|", "<<|")
    assert cache.cache_key(make_encoder(model, tok, 64), comps) != before


def test_off_switch_and_unwritable_directory(bert, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, tok = bert
    enc = make_encoder(model, tok, 64)
    monkeypatch.setenv("REWARDKIT_CACHE", "off")
    assert cache_dir() is None
    assert len(cache.encode_cached(enc, _comps())) == 5
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("REWARDKIT_CACHE", str(blocker / "cache"))  # cannot be created
    assert cache.encode_cached(enc, _comps()) == [enc.encode(c) for c in _comps()]


def test_default_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("REWARDKIT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "rewardkit"


def test_corrupt_entry_is_replaced(bert, cache_home: Path) -> None:
    model, tok = bert
    enc = make_encoder(model, tok, 64)
    expected = cache.encode_cached(enc, _comps())
    entry = _entries(cache_home)[0]
    entry.write_bytes(b"not a safetensors file")
    assert cache.encode_cached(enc, _comps()) == expected
    assert entry.stat().st_size > 100


def test_old_entries_are_pruned(bert, cache_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, tok = bert
    monkeypatch.setattr(cache, "MAX_ENTRIES", 2)
    for n in (1, 2, 3):
        cache.encode_cached(make_encoder(model, tok, 64), _comps(n))
    assert len(_entries(cache_home)) == 2


def test_train_tokenizes_once(bert_dir: Path, tmp_path: Path, cache_home: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    from rewardkit.config import TrainConfig
    from rewardkit.training.trainer import train

    data = write_jsonl(tmp_path / "pairs.jsonl", pairs_records(16))
    cfg = dict(model=str(bert_dir), train_data=str(data), batch_size=8, max_length=48, eval_split=0.25,
               precision="fp32")
    train(TrainConfig(output_dir=str(tmp_path / "a"), **cfg), log=lambda m: None)
    assert len(_entries(cache_home)) == 2  # train and held-out sets
    _forbid_encoding(monkeypatch)
    train(TrainConfig(output_dir=str(tmp_path / "b"), **cfg), log=lambda m: None)
    a = json.loads((tmp_path / "a" / "eval.json").read_text())
    b = json.loads((tmp_path / "b" / "eval.json").read_text())
    assert a["eval"]["accuracy"] == b["eval"]["accuracy"] and a["train_comparisons"] == b["train_comparisons"]


# ---------------------------------------------------------------------- loaded data files
