"""The batched encoder and the compact EncodedSet give exactly the per-item `Encoder.encode` result."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from rewardkit.encoding import cache
from rewardkit.encoding import encoded_set as es
from rewardkit.data.records import Comparison
from rewardkit.encoding.encoder import Encoder
from rewardkit.encoding.encoder import packed_length


def _tok(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def _varied(n: int = 23) -> list[Comparison]:
    """Short, long-prompt, long-response, 3-way, empty-ish and BOS-led items, with margins/scores."""
    long = " ".join(f"word{i} helpful answer" for i in range(60))
    out = []
    for i in range(n):
        kind = i % 6
        if kind == 0:
            out.append(Comparison(f"Question {i}: how?", [f"Good answer {i}.", "No."], margin=float(i)))
        elif kind == 1:
            out.append(Comparison(f"{long} question {i}", [f"short {i}", "bad"]))
        elif kind == 2:
            out.append(Comparison(f"q{i}", [f"{long} end {i}", f"tiny {i}"]))
        elif kind == 3:
            out.append(Comparison(f"rank {i}", [f"best {i}", "middle", "worst"], scores=[3.0, 2.0, 1.0]))
        elif kind == 4:
            out.append(Comparison(f"<s>starts with bos {i}", [" yes", "x"]))
        else:
            out.append(Comparison(f"{long} {long}", [f"{long} a {i}", f"{long} b"]))
    return out


def _chat(n: int = 9) -> list[Comparison]:
    long = " ".join(f"the quick brown fox {i}" for i in range(40))
    return [Comparison([{"role": "system", "content": "Be kind."}, {"role": "user", "content": f"Q{i} {long if i % 2 else ''}"}],
                       [[{"role": "assistant", "content": f"Answer {i}"}], [{"role": "assistant", "content": "no"}]])
            for i in range(n)]


@pytest.fixture(scope="module")
def encoders(bert_dir: Path, llama_dir: Path, qwen_dir: Path) -> dict[str, Encoder]:
    return {"bert": Encoder(_tok(bert_dir), 40, pair_template=True),
            "llama": Encoder(_tok(llama_dir), 40, pair_template=False),
            "qwen": Encoder(_tok(qwen_dir), 40, pair_template=False)}


@pytest.mark.parametrize("name", ["bert", "llama", "qwen"])
def test_batched_encoding_equals_per_item(encoders: dict[str, Encoder], name: str) -> None:
    enc = encoders[name]
    comps = _varied() + _chat()
    expected = [enc.encode(c) for c in comps]
    assert any(e.truncated for e in expected) and not all(e.truncated for e in expected)
    assert enc.encode_batch(comps) == expected
    assert list(es.encode_set(enc, comps, workers=1)) == expected


@pytest.mark.parametrize("name", ["bert", "qwen"])
def test_pool_of_workers_gives_the_same_set(encoders: dict[str, Encoder], name: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(es, "CHUNK", 5)  # several chunks over two worker processes
    enc = encoders[name]
    comps = _varied() + _chat()
    got = es.encode_set(enc, comps, workers=2)
    assert got == [enc.encode(c) for c in comps]


def test_a_failing_worker_raises_instead_of_hanging(encoders: dict[str, Encoder],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(es, "CHUNK", 2)
    comps = _varied()[:6]
    comps[3] = Comparison(prompt="p", responses=[])  # no response to render: the worker fails
    with pytest.raises(RuntimeError, match="(?s)worker process failed.*IndexError"):
        es.encode_set(encoders["bert"], comps, workers=2)


def test_workers_do_not_rerun_an_unguarded_main_script(encoders: dict[str, Encoder], tmp_path: Path) -> None:
    """multiprocessing's spawn would re-import this script in every worker and encode again there."""
    import pickle
    import subprocess
    import sys

    (tmp_path / "enc.pkl").write_bytes(pickle.dumps(encoders["bert"]))
    script = tmp_path / "script.py"
    script.write_text(
        "import pickle, sys\n"
        "from rewardkit.encoding import encoded_set as es\n"
        "from rewardkit.data.records import Comparison\n"
        "print('script body ran', file=sys.stderr)\n"
        f"enc = pickle.load(open({str(tmp_path / 'enc.pkl')!r}, 'rb'))\n"
        "es.CHUNK = 3\n"
        "comps = [Comparison(prompt=f'q{i}', responses=[f'a{i}', f'b{i}']) for i in range(10)]\n"
        "got = es.encode_set(enc, comps, workers=2)\n"
        "assert list(got) == [enc.encode(c) for c in comps]\n"
        "print('ok', len(got))\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(Path(es.__file__).resolve().parents[2])})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok 10"
    assert done.stderr.count("script body ran") == 1


def test_container_is_a_sequence_with_vectorised_accessors(encoders: dict[str, Encoder]) -> None:
    enc = encoders["bert"]
    comps = _varied()
    items = [enc.encode(c) for c in comps]
    s = es.encode_set(enc, comps, workers=1)
    assert len(s) == len(items)
    assert s[-1] == items[-1] and s[3] == items[3] and s[2:7] == items[2:7]
    with pytest.raises(IndexError):
        s[len(items)]
    assert s[3].scores == [3.0, 2.0, 1.0] and s[0].margin == 0.0
    assert s.longest().tolist() == [e.longest for e in items]
    assert s.packed().tolist() == [packed_length(e) for e in items]
    assert s.seq_lengths().tolist() == [len(x) for e in items for x in e.input_ids]
    assert s.truncated_count() == es.truncated_count(items) == sum(e.truncated for e in items)
    for share in (False, True):
        assert es.widths_of(s, share) == es.widths_of(items, share)
        assert es.rows_of(s, share) == es.rows_of(items, share)
    assert s.prefix.dtype == np.uint16  # MiniLM's 30,522 ids fit in two bytes


def test_memory_follows_token_count(encoders: dict[str, Encoder]) -> None:
    """About 2 bytes per stored token plus a few offsets per comparison, the prompt stored once."""
    enc = encoders["bert"]
    comps = _varied(60)
    s = es.encode_set(enc, comps, workers=1)
    stored = len(s.prefix) + len(s.suffix)
    full = int(s.seq_lengths().sum())
    assert stored < full  # the shared prompt is not repeated per response
    assert s.nbytes() <= 2 * stored + 8 * (3 * len(s) + len(s.suffix_off)) + 2 * len(s) + 64


def test_empty_input(encoders: dict[str, Encoder]) -> None:
    s = es.encode_set(encoders["llama"], [])
    assert len(s) == 0 and list(s) == [] and s.longest().tolist() == []


def test_cache_hit_loads_the_set_without_tokenizing(encoders: dict[str, Encoder], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REWARDKIT_CACHE", str(tmp_path / "c"))
    enc = encoders["qwen"]
    comps = _varied() + _chat()
    first = cache.encode_cached(enc, comps)
    assert isinstance(first, es.EncodedSet)

    def boom(*_a, **_k):  # noqa: ANN002, ANN003
        raise AssertionError("tokenized although the cache holds this data")

    monkeypatch.setattr(Encoder, "tokenize_batch", boom)
    monkeypatch.setattr(Encoder, "encode", boom)
    again = cache.encode_cached(enc, comps)
    assert isinstance(again, es.EncodedSet) and again == first == [enc.encode_texts(c.prompt, c.responses, c.margin,
                                                                                     c.scores) for c in comps]


def test_arrays_that_do_not_match_the_data_are_refused(encoders: dict[str, Encoder]) -> None:
    enc = encoders["bert"]
    comps = _varied(6)
    s = es.encode_set(enc, comps, workers=1)
    with pytest.raises(ValueError):
        es.from_arrays(s.arrays(), enc, comps[:-1])
    three = [Comparison(c.prompt, c.responses + ["extra"]) for c in comps]
    with pytest.raises(ValueError):
        es.from_arrays(s.arrays(), enc, three)


def test_progress_bar_advances_per_chunk(encoders: dict[str, Encoder], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(es, "CHUNK", 4)

    class Bar:  # what train.py passes: tqdm(comps, ...) — an object with update/close
        def __init__(self, items) -> None:  # noqa: ANN001
            self.total, self.steps, self.closed = len(items), [], False

        def update(self, k: int) -> None:
            self.steps.append(k)

        def close(self) -> None:
            self.closed = True

    bars: list[Bar] = []
    es.encode_set(encoders["bert"], _varied(10), progress=lambda c: bars.append(Bar(c)) or bars[-1], workers=1)
    assert bars[0].steps == [4, 4, 2] and bars[0].closed and bars[0].total == 10


def test_phase_bars_are_silent_off_the_main_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from rewardkit.progress import phase_bar

    monkeypatch.setenv("RANK", "1")
    assert phase_bar(range(3), desc="load").disable
    monkeypatch.setenv("RANK", "0")
    bar = phase_bar(range(3), desc="load")
    assert not bar.disable and bar.delay > 0  # shows only once a phase has run a while
    bar.close()


def test_default_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REWARDKIT_DATA_WORKERS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert es.default_workers(100) == 1  # small inputs: no pool
    monkeypatch.setenv("REWARDKIT_DATA_WORKERS", "3")
    assert es.default_workers(100) == 3
    monkeypatch.delenv("REWARDKIT_DATA_WORKERS")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "64")
    assert es.default_workers(10 ** 6) == 1  # cores shared by the processes of a launch


def test_common_prefix_by_bisection_matches_a_character_loop() -> None:
    import random

    from rewardkit.data.formats import _common_prefix_len

    def loop(a: str, b: str) -> int:
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return n

    rng = random.Random(0)
    for _ in range(3000):
        a = "".join(rng.choice("ab") for _ in range(rng.randint(0, 12)))
        b = "".join(rng.choice("ab") for _ in range(rng.randint(0, 12)))
        assert _common_prefix_len(a, b) == loop(a, b)


def test_hh_prompt_split_fast_path_matches_the_common_prefix_rule() -> None:
    """The prompt is the shared prefix up to its last '\\n\\nAssistant:', whichever path finds it."""
    import random

    from rewardkit.data.formats import ASSISTANT_MARKER, RecordError, _common_prefix_len, _shared_prompt

    def reference(a: str, b: str) -> tuple[str, str, str] | None:
        cut = a.rfind(ASSISTANT_MARKER, 0, _common_prefix_len(a, b))
        if cut < 0:
            return None
        end = cut + len(ASSISTANT_MARKER)
        return a[:end], a[end:], b[end:]

    rng = random.Random(1)
    pieces = ["\n\nHuman: hi", ASSISTANT_MARKER, " ok", " no", "\n\n", "x"]
    for _ in range(3000):
        common = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 4)))
        a = common + "".join(rng.choice(pieces) for _ in range(rng.randint(0, 3)))
        b = common + "".join(rng.choice(pieces) for _ in range(rng.randint(0, 3)))
        want = reference(a, b)
        if want is None:
            with pytest.raises(RecordError):
                _shared_prompt(a, b)
        else:
            assert _shared_prompt(a, b) == want


def test_data_fingerprint_is_the_same_for_a_list_and_a_set(encoders: dict[str, Encoder]) -> None:
    from rewardkit.errors import UsageError
    from rewardkit.training.resume import check_resume_data, data_fingerprint

    enc = encoders["bert"]
    comps = _varied()
    items = [enc.encode(c) for c in comps]
    s = es.encode_set(enc, comps, workers=1)
    fp = data_fingerprint(s, items[:2])
    assert fp == data_fingerprint(items, items[:2]) and len(fp) == 16
    assert data_fingerprint(items, items[:3]) != fp  # another held-out set
    longer = enc.encode(Comparison(prompt=comps[0].prompt, responses=[r + " more" for r in comps[0].responses]))
    assert data_fingerprint([longer] + items[1:], items[:2]) != fp  # one sequence's length
    check_resume_data({"fingerprint": fp}, fp, Path("ckpt"))
    with pytest.raises(UsageError, match="the data differs"):
        check_resume_data({"fingerprint": "0" * 16}, fp, Path("ckpt"))