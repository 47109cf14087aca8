"""The parsed-file cache: a large data file is parsed once, keyed by its bytes, options and parsing code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import pairs_records, write_jsonl

from rewardkit.data import file_cache
from rewardkit.data import loading as data_mod


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "cache"
    monkeypatch.setenv("REWARDKIT_CACHE", str(home))
    return home




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
    from rewardkit.data.loading import load_comparisons

    monkeypatch.setattr(file_cache, "LOAD_MIN_BYTES", 0)
    data = write_jsonl(tmp_path / "prefs.jsonl", _records_with_variety())
    first = file_cache.load_cached(str(data), skip_invalid=True)
    assert first == load_comparisons(str(data), skip_invalid=True)
    assert len(first.problems) == 1 and first.records == 10 and len(list((cache_home / "loaded").glob("*.marshal"))) == 1

    def boom(*a: Any, **k: Any) -> None:
        raise AssertionError("parsed although the cache holds this file")

    monkeypatch.setattr(file_cache, "load_comparisons", boom)
    again = file_cache.load_cached(str(data), skip_invalid=True)
    assert again == first and again.comparisons[7].order == first.comparisons[7].order
    assert again.messages(str(data)) == first.messages(str(data))


def test_loaded_cache_key_follows_bytes_and_options(tmp_path: Path, cache_home: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from rewardkit.errors import DataError

    monkeypatch.setattr(file_cache, "LOAD_MIN_BYTES", 0)
    data = write_jsonl(tmp_path / "prefs.jsonl", pairs_records(4))
    assert len(file_cache.load_cached(str(data)).comparisons) == 4
    write_jsonl(data, pairs_records(5))  # same path, new content
    assert len(file_cache.load_cached(str(data)).comparisons) == 5
    write_jsonl(data, _records_with_variety())
    assert len(file_cache.load_cached(str(data), skip_invalid=True).problems) == 1
    with pytest.raises(DataError, match="prefs.jsonl:10"):  # the cached skip_invalid load does not leak
        file_cache.load_cached(str(data))
    for entry in (cache_home / "loaded").glob("*.marshal"):
        entry.write_bytes(b"not marshal")  # corrupt: parsed afresh and replaced
    assert len(file_cache.load_cached(str(data), skip_invalid=True).comparisons) == 9


def test_small_files_and_disabled_cache_write_nothing(tmp_path: Path, cache_home: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_jsonl(tmp_path / "prefs.jsonl", pairs_records(4))
    assert len(file_cache.load_cached(str(data)).comparisons) == 4  # far below LOAD_MIN_BYTES
    assert not (cache_home / "loaded").exists()
    monkeypatch.setattr(file_cache, "LOAD_MIN_BYTES", 0)
    monkeypatch.setenv("REWARDKIT_CACHE", "off")
    assert len(file_cache.load_cached(str(data)).comparisons) == 4
    assert not (cache_home / "loaded").exists()


def test_large_loads_are_frozen_out_of_later_collections(tmp_path: Path, cache_home: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import gc


    path = write_jsonl(tmp_path / "prefs.jsonl", pairs_records(6))
    monkeypatch.setattr(file_cache, "LOAD_MIN_BYTES", 0)
    before = gc.get_freeze_count()
    try:
        file_cache.load_cached(str(path))  # 6 comparisons: below FREEZE_MIN, nothing frozen
        assert gc.get_freeze_count() == before
        monkeypatch.setattr(data_mod, "FREEZE_MIN", 1)
        for _ in range(2):  # parsed, then read back from the cache
            loaded = file_cache.load_cached(str(path))
            assert gc.get_freeze_count() > before and gc.isenabled()
            assert not any(gc.is_tracked(c) and c in gc.get_objects() for c in loaded.comparisons)
            gc.unfreeze()
    finally:
        gc.unfreeze()
