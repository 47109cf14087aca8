"""Tokenize once: encoded comparisons come back from the cache only for exactly the same work."""

from __future__ import annotations

import json
from typing import Any
from pathlib import Path

import pytest

from rewardkit import cache
from rewardkit.records import Comparison
from rewardkit.encode import Encoder
from rewardkit.backbone import load_backbone, make_encoder

from conftest import pairs_records, write_jsonl


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
    assert cache.cache_dir() is None
    assert len(cache.encode_cached(enc, _comps())) == 5
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("REWARDKIT_CACHE", str(blocker / "cache"))  # cannot be created
    assert cache.encode_cached(enc, _comps()) == [enc.encode(c) for c in _comps()]


def test_default_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("REWARDKIT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.cache_dir() == tmp_path / "rewardkit"


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
    from rewardkit.train import train

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
def _records_with_variety() -> list[Any]:
    recs: list[Any] = pairs_records(6)
    recs.append({"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go away",
                 "margin": 1.5, "subset": "hh"})
    recs.append({"prompt": [{"role": "user", "content": "2+2?"}], "chosen": [{"role": "assistant", "content": "4"}],
                 "rejected": [{"role": "assistant", "content": "5"}]})
    recs.append({"prompt": "rank", "responses": ["a", "b", "c"], "scores": [1, 3, 2]})
    recs.append({"prompt": "broken"})  # invalid: kept as a problem with --skip-invalid
    return recs


def test_loaded_file_is_parsed_once(tmp_path: Path, cache_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rewardkit.data import load_comparisons

    monkeypatch.setattr(cache, "LOAD_MIN_BYTES", 0)
    data = write_jsonl(tmp_path / "prefs.jsonl", _records_with_variety())
    first = cache.load_cached(str(data), skip_invalid=True)
    assert first == load_comparisons(str(data), skip_invalid=True)
    assert len(first.problems) == 1 and first.records == 10 and len(list((cache_home / "loaded").glob("*.marshal"))) == 1

    def boom(*a: Any, **k: Any) -> None:
        raise AssertionError("parsed although the cache holds this file")

    monkeypatch.setattr(cache, "load_comparisons", boom)
    again = cache.load_cached(str(data), skip_invalid=True)
    assert again == first and again.comparisons[7].order == first.comparisons[7].order
    assert again.messages(str(data)) == first.messages(str(data))


def test_loaded_cache_key_follows_bytes_and_options(tmp_path: Path, cache_home: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from rewardkit.errors import DataError

    monkeypatch.setattr(cache, "LOAD_MIN_BYTES", 0)
    data = write_jsonl(tmp_path / "prefs.jsonl", pairs_records(4))
    assert len(cache.load_cached(str(data)).comparisons) == 4
    write_jsonl(data, pairs_records(5))  # same path, new content
    assert len(cache.load_cached(str(data)).comparisons) == 5
    write_jsonl(data, _records_with_variety())
    assert len(cache.load_cached(str(data), skip_invalid=True).problems) == 1
    with pytest.raises(DataError, match="prefs.jsonl:10"):  # the cached skip_invalid load does not leak
        cache.load_cached(str(data))
    for entry in (cache_home / "loaded").glob("*.marshal"):
        entry.write_bytes(b"not marshal")  # corrupt: parsed afresh and replaced
    assert len(cache.load_cached(str(data), skip_invalid=True).comparisons) == 9


def test_small_files_and_disabled_cache_write_nothing(tmp_path: Path, cache_home: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_jsonl(tmp_path / "prefs.jsonl", pairs_records(4))
    assert len(cache.load_cached(str(data)).comparisons) == 4  # far below LOAD_MIN_BYTES
    assert not (cache_home / "loaded").exists()
    monkeypatch.setattr(cache, "LOAD_MIN_BYTES", 0)
    monkeypatch.setenv("REWARDKIT_CACHE", "off")
    assert len(cache.load_cached(str(data)).comparisons) == 4
    assert not (cache_home / "loaded").exists()


def test_large_loads_are_frozen_out_of_later_collections(tmp_path: Path, cache_home: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    from rewardkit import data as data_mod

    path = write_jsonl(tmp_path / "prefs.jsonl", pairs_records(6))
    monkeypatch.setattr(cache, "LOAD_MIN_BYTES", 0)
    before = gc.get_freeze_count()
    try:
        cache.load_cached(str(path))  # 6 comparisons: below FREEZE_MIN, nothing frozen
        assert gc.get_freeze_count() == before
        monkeypatch.setattr(data_mod, "FREEZE_MIN", 1)
        for _ in range(2):  # parsed, then read back from the cache
            loaded = cache.load_cached(str(path))
            assert gc.get_freeze_count() > before and gc.isenabled()
            assert not any(gc.is_tracked(c) and c in gc.get_objects() for c in loaded.comparisons)
            gc.unfreeze()
    finally:
        gc.unfreeze()
