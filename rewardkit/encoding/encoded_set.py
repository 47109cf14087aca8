"""Encoded comparisons at scale: a compact container and a batched, multi-process encoder.

A list of `Encoded` holds a Python ``int`` object (28 bytes plus an 8-byte pointer) per token, per
response, with the prompt repeated in every response's row: about 19 MB per 1,000 hh-rlhf pairs,
so a million pairs do not fit beside a model. `EncodedSet` keeps the same information in a few
flat numpy arrays, the shared prefix (special head + prompt + separator) once per comparison and
the suffix (response + closing specials) once per response, in 2 bytes per token when the
vocabulary fits ``uint16``. Token type ids are not stored: they follow from the encoder's layout.

It behaves like the list it replaces (``len``, ``enc[i] -> Encoded`` built on demand, iteration,
slices give lists), so training code that collates a batch of ``enc[j]`` is unchanged, and it has
vectorised accessors for what planning needs (`longest`, `packed`, `seq_lengths`,
`truncated_count`). The module-level helpers (`widths_of`, `rows_of`,
`truncated_count`) accept either a list of `Encoded` or an `EncodedSet`.

`encode_set` produces one: texts go to the fast tokenizer in batches (two calls per chunk of
comparisons) and, for large inputs, chunks are spread over one worker process per core
(`rewardkit.encoding.workers`); the ids and truncation are exactly `Encoder.encode`'s (it reuses `Encoder.fit`).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from rewardkit.data.records import Comparison
from rewardkit.encoding.encoder import Encoded, Encoder, packed_length
from rewardkit.encoding.workers import Texts, encode_chunk, id_dtype, map_chunks
from rewardkit.progress import phase_bar

CHUNK = 2048  # comparisons per tokenizer batch / pool task
POOL_MIN = 16384  # below this many comparisons starting workers (~3 s) costs more than it saves
PROGRESS_MIN = 10000  # no default progress bar for less (it would flash by)

# The arrays an EncodedSet is made of (also the cache entry's tensors).
ARRAYS = ("prefix", "prefix_off", "suffix", "suffix_off", "resp_off", "head_len", "truncated")


class EncodedSet(Sequence[Encoded]):
    """Encoded comparisons in flat arrays; ``enc[i]`` is ``Encoder.encode(comps[i])``, rebuilt on demand.

    ``prefix[prefix_off[i]:prefix_off[i+1]]`` are comparison i's shared leading tokens (its
    ``prompt_len``); its responses are rows ``resp_off[i]:resp_off[i+1]`` of the suffix table,
    ``suffix[suffix_off[j]:suffix_off[j+1]]``. ``head_len[i]`` says whether the encoder's head
    specials were used (a chat template may already emit BOS), which fixes the token types.
    """

    def __init__(self, arrays: dict[str, np.ndarray], layout: dict[str, Any],
                 margins: list[float | None], scores: list[list[float] | None]):
        for name in ARRAYS:
            setattr(self, name, arrays[name])
        self.layout = layout
        self.margins, self.scores = margins, scores
        n = len(self.truncated)
        if len(self.prefix_off) != n + 1 or len(self.resp_off) != n + 1 or len(margins) != n \
                or len(self.suffix_off) != int(self.resp_off[-1]) + 1:
            raise ValueError("inconsistent EncodedSet arrays")

    # ------------------------------------------------------------------ sequence protocol
    def __len__(self) -> int:
        return len(self.truncated)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self._item(j) for j in range(*i.indices(len(self)))]
        n = len(self)
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(i)
        return self._item(i)

    def __eq__(self, other: object) -> bool:
        """Equal to a list (or set) of the same Encoded items, so it can stand in for one."""
        if not isinstance(other, (list, tuple, EncodedSet)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __iter__(self) -> Iterator[Encoded]:
        return (self._item(i) for i in range(len(self)))

    def _item(self, i: int) -> Encoded:
        lay = self.layout
        pre = self.prefix[self.prefix_off[i]:self.prefix_off[i + 1]].tolist()
        rows = range(int(self.resp_off[i]), int(self.resp_off[i + 1]))
        sufs = [self.suffix[self.suffix_off[j]:self.suffix_off[j + 1]].tolist() for j in rows]
        types = None
        if lay["uses_token_types"]:
            h = int(self.head_len[i])
            pre_t = lay["head_types"][:h] + [lay["prompt_type"]] * (len(pre) - h - lay["mid_len"]) + lay["mid_types"]
            types = [pre_t + [lay["response_type"]] * (len(s) - lay["tail_len"]) + lay["tail_types"] for s in sufs]
        return Encoded(input_ids=[pre + s for s in sufs], token_type_ids=types, prompt_len=len(pre),
                       truncated=bool(self.truncated[i]), margin=self.margins[i], scores=self.scores[i])

    # ------------------------------------------------------------------ vectorised accessors
    def prompt_lens(self) -> np.ndarray:
        return np.diff(self.prefix_off)

    def responses(self) -> np.ndarray:
        """Responses (rows) per comparison."""
        return np.diff(self.resp_off)

    def seq_lengths(self) -> np.ndarray:
        """Length of every full sequence (prefix + suffix), comparisons in order, best response first."""
        return np.repeat(self.prompt_lens(), self.responses()) + np.diff(self.suffix_off)

    def longest(self) -> np.ndarray:
        """``Encoded.longest`` of every comparison."""
        if not len(self):
            return np.zeros(0, dtype=np.int64)
        return self.prompt_lens() + np.maximum.reduceat(np.diff(self.suffix_off), self.resp_off[:-1])

    def packed(self) -> np.ndarray:
        """``batching.packed_length`` of every comparison: the prefix once plus every suffix."""
        if not len(self):
            return np.zeros(0, dtype=np.int64)
        return self.prompt_lens() + np.add.reduceat(np.diff(self.suffix_off), self.resp_off[:-1])

    def truncated_count(self) -> int:
        return int(self.truncated.sum())

    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in ARRAYS)

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in ARRAYS}


# ---------------------------------------------------------------------- list-or-set helpers
def widths_of(enc: Sequence[Encoded], share_prefix: bool) -> list[int]:
    """Padded width of every comparison (`model.batch_length`), vectorised for an EncodedSet."""
    if isinstance(enc, EncodedSet):
        return (enc.packed() if share_prefix else enc.longest()).tolist()

    return [packed_length(e) if share_prefix else e.longest for e in enc]


def tokens_of(enc: Sequence[Encoded], share_prefix: bool) -> list[int]:
    """Real tokens of every comparison: its packed row, or the sum of its sequences (packed rows hold
    these and almost no padding)."""
    if share_prefix:
        return widths_of(enc, True)
    if isinstance(enc, EncodedSet):
        if not len(enc):
            return []
        return np.add.reduceat(enc.seq_lengths(), enc.resp_off[:-1]).tolist()
    return [sum(len(s) for s in e.input_ids) for e in enc]


def rows_of(enc: Sequence[Encoded], share_prefix: bool) -> list[int]:
    """Rows each comparison takes in a batch: 1 packed, else one per response."""
    if share_prefix:
        return [1] * len(enc)
    if isinstance(enc, EncodedSet):
        return enc.responses().tolist()
    return [len(e.input_ids) for e in enc]


def truncated_count(enc: Sequence[Encoded]) -> int:
    if isinstance(enc, EncodedSet):
        return enc.truncated_count()
    return sum(e.truncated for e in enc)


def shape_arrays(enc: Sequence[Encoded]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(every sequence's length, responses per comparison, prompt_len per comparison), as int64 arrays.

    What `checkpoint.data_fingerprint` hashes; vectorised for an EncodedSet.
    """
    if isinstance(enc, EncodedSet):
        seq, k, prompt = enc.seq_lengths(), enc.responses(), enc.prompt_lens()
    else:
        seq = [len(s) for e in enc for s in e.input_ids]
        k = [len(e.input_ids) for e in enc]
        prompt = [e.prompt_len for e in enc]
    return tuple(np.asarray(a, dtype=np.int64) for a in (seq, k, prompt))  # type: ignore[return-value]


def layout_of(encoder: Encoder) -> dict[str, Any]:
    """What `EncodedSet` needs from the encoder to rebuild token types."""
    return {"uses_token_types": bool(encoder.uses_token_types), "head_types": list(encoder.head_types),
            "prompt_type": encoder.prompt_type, "mid_types": list(encoder.mid_types), "mid_len": len(encoder.mid),
            "response_type": encoder.response_type, "tail_types": list(encoder.tail_types),
            "tail_len": len(encoder.tail)}


def _offsets(lengths: list[np.ndarray]) -> np.ndarray:
    out = np.zeros(sum(len(x) for x in lengths) + 1, dtype=np.int64)
    if len(out) > 1:
        np.cumsum(np.concatenate(lengths), out=out[1:])
    return out


def assemble(chunks: list[dict[str, np.ndarray]], encoder: Encoder, comps: Sequence[Comparison]) -> EncodedSet:
    """One EncodedSet from per-chunk arrays (in order)."""
    dtype = id_dtype(encoder)

    def cat(name: str, dt: np.dtype) -> np.ndarray:
        return np.concatenate([c[name] for c in chunks]) if chunks else np.zeros(0, dtype=dt)

    arrays = {
        "prefix": cat("prefix", dtype), "prefix_off": _offsets([c["prefix_len"] for c in chunks]),
        "suffix": cat("suffix", dtype), "suffix_off": _offsets([c["suffix_len"] for c in chunks]),
        "resp_off": _offsets([c["responses"] for c in chunks]), "head_len": cat("head_len", np.dtype(np.uint8)),
        "truncated": cat("truncated", np.dtype(bool)),
    }
    return from_arrays(arrays, encoder, comps)


def from_arrays(arrays: dict[str, np.ndarray], encoder: Encoder, comps: Sequence[Comparison]) -> EncodedSet:
    """An EncodedSet over ``arrays`` with margins and scores taken from ``comps``.

    Raises ValueError when the arrays do not describe ``comps`` (count or responses per comparison).
    """
    if len(arrays["truncated"]) != len(comps):
        raise ValueError("encoded arrays do not match the comparisons")
    k = np.fromiter((len(c.responses) for c in comps), np.int64, len(comps))
    if not np.array_equal(np.diff(arrays["resp_off"]), k):
        raise ValueError("encoded arrays do not match the comparisons")
    return EncodedSet(arrays, layout_of(encoder), [c.margin for c in comps], [c.scores for c in comps])


def default_workers(n: int) -> int:
    """Processes for ``n`` comparisons: ``REWARDKIT_DATA_WORKERS`` if set, else the usable cores,
    divided among the processes of a distributed launch (each encodes the data itself)."""
    env = os.environ.get("REWARDKIT_DATA_WORKERS", "").strip()
    if env:
        return max(1, int(env))
    if n < POOL_MIN:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, min(cores // max(1, local_world), n // CHUNK))


def encode_set(encoder: Encoder, comps: Sequence[Comparison], progress: Callable[[Any], Any] | None = None,
               workers: int | None = None) -> EncodedSet:
    """Encode ``comps`` into an EncodedSet: batched tokenizer calls, chunks over a process pool.

    ``progress`` wraps ``comps`` like ``tqdm`` (e.g. ``lambda c: tqdm(c, desc=...)``); a bar
    object with ``update`` is advanced per chunk. Without one, `progress.phase_bar` shows one
    for large inputs (stderr, main process only, after a couple of seconds).
    """
    n = len(comps)
    workers = default_workers(n) if workers is None else max(1, workers)
    bar = _bar(progress, comps)
    spans = [(s, min(s + CHUNK, n)) for s in range(0, n, CHUNK)]
    chunks: list[dict[str, np.ndarray]] = []
    try:
        if workers > 1 and len(spans) > 1:
            for arrays in map_chunks(encoder, len(spans), lambda i: _texts(comps, *spans[i]), workers):
                chunks.append(arrays)
                _advance(bar, len(arrays["truncated"]))
        else:
            for s, e in spans:
                chunks.append(encode_chunk(encoder, _texts(comps, s, e)))
                _advance(bar, e - s)
    finally:
        if bar is not None and hasattr(bar, "close"):
            bar.close()
    return assemble(chunks, encoder, comps)


def _texts(comps: Sequence[Comparison], start: int, end: int) -> Texts:
    return [(c.prompt, c.responses) for c in comps[start:end]]


def _bar(progress: Callable[[Any], Any] | None, comps: Sequence[Comparison]) -> Any:
    if progress is not None:
        bar = progress(comps)
        return bar if hasattr(bar, "update") else None
    if len(comps) < PROGRESS_MIN:
        return None
    return phase_bar(desc="tokenize", total=len(comps), unit=" comparisons")


def _advance(bar: Any, k: int) -> None:
    if bar is not None:
        bar.update(k)
