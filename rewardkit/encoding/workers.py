"""Chunk encoding and the worker processes that spread it over the cores, for `encoded_set.encode_set`.

`encode_chunk` turns a chunk of ``(prompt, responses)`` into flat arrays with two batched calls
into the fast tokenizer. `map_chunks` runs it in fresh worker interpreters fed over pipes.

Why fresh interpreters and not a forked pool: a forked worker inherits the parent's heap, every
loaded comparison with it, and tokenizing there got slower per comparison as the data grew (hh-rlhf
pairs on one 2-core Zen 5 machine: 0.55 ms per pair at 200k, 0.92 ms at 1M, even with
``gc.freeze()`` before the fork; the parent's allocator state comes along), while the same work in
a fresh process stayed flat (0.48 and 0.49 ms). Why not ``multiprocessing``'s "spawn": it
re-imports the caller's main script in every worker, so a user's script that calls
``rewardkit.training.trainer(...)`` without an ``if __name__ == "__main__"`` guard would start training again
in each of them. These workers import rewardkit and nothing else.

Protocol over a worker's stdin and stdout: the parent writes the pickled `Encoder`, then one pickled
list of ``(prompt, responses)`` per chunk, then closes stdin; the worker answers each chunk, in
order, with a pickled ``("ok", arrays)``, or ``("error", traceback)`` and exits 1.
"""

from __future__ import annotations

import itertools
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from rewardkit.encoding.encoder import Encoder

Texts = list[tuple[Any, list[Any]]]  # one chunk: (prompt, responses) per comparison


def id_dtype(encoder: Encoder) -> np.dtype:
    """uint16 when every token id fits (most BERT/GPT-2-sized vocabularies), else int32."""
    try:
        size = len(encoder.tokenizer)
    except TypeError:
        size = 1 << 31
    return np.dtype(np.uint16) if size <= 1 << 16 else np.dtype(np.int32)


def encode_chunk(encoder: Encoder, texts: Texts) -> dict[str, np.ndarray]:
    """Arrays (offsets relative to the chunk) for ``(prompt, responses)`` pairs: two batched tokenizer
    calls, then `Encoder.fit` per comparison, so ids and truncation are exactly `Encoder.encode`'s."""
    rendered = [encoder.render_comparison(prompt, responses) for prompt, responses in texts]
    prompts = encoder.tokenize_batch([pt for pt, _ in rendered])
    responses = encoder.tokenize_batch([rt for _, rts in rendered for rt in rts])
    mid, tail = encoder.mid, encoder.tail
    pre_parts: list[list[int]] = []
    suf_parts: list[list[int]] = []
    counts, heads, trunc = [], [], []
    at = 0
    for (_, rs), p in zip(texts, prompts):
        k = len(rs)
        head, p, fitted, t = encoder.fit(p, responses[at:at + k])
        at += k
        pre_parts.append(head + p + mid)
        suf_parts.extend(r + tail for r in fitted)
        counts.append(k)
        heads.append(len(head))
        trunc.append(t)
    dtype = id_dtype(encoder)
    return {
        "prefix": _flat(pre_parts, dtype), "prefix_len": np.fromiter(map(len, pre_parts), np.int64, len(pre_parts)),
        "suffix": _flat(suf_parts, dtype), "suffix_len": np.fromiter(map(len, suf_parts), np.int64, len(suf_parts)),
        "responses": np.asarray(counts, dtype=np.int64), "head_len": np.asarray(heads, dtype=np.uint8),
        "truncated": np.asarray(trunc, dtype=bool),
    }


def _flat(parts: list[list[int]], dtype: np.dtype) -> np.ndarray:
    total = sum(map(len, parts))
    return np.fromiter(itertools.chain.from_iterable(parts), dtype=dtype, count=total)


# ---------------------------------------------------------------------- the parent's side
def map_chunks(encoder: Encoder, count: int, texts: Callable[[int], Texts], workers: int
               ) -> Iterator[dict[str, np.ndarray]]:
    """``encode_chunk(encoder, texts(i))`` for ``i in range(count)``, in order, over ``workers`` processes.

    Chunk i goes to worker ``i % workers``; ``texts(i)`` is called (in a feeder thread) only when
    that worker's pipe has room, so at most a chunk or two per worker is in flight.
    Raises RuntimeError when a worker fails or dies.
    """
    pool = [_Worker(encoder, (texts(i) for i in range(w, count, workers))) for w in range(min(workers, count))]
    try:
        for i in range(count):
            yield pool[i % len(pool)].result()
    finally:
        for worker in pool:
            worker.close()


class _Worker:
    """One worker interpreter, a thread writing its chunks and a thread reading its answers."""

    def __init__(self, encoder: Encoder, chunks: Iterable[Texts]):
        root = str(Path(__file__).resolve().parents[2])  # rewardkit importable from a source checkout too
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false",  # one process per core already
               "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from rewardkit.encoding.workers import main; sys.exit(main())"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.answers: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.feed_error: BaseException | None = None
        threading.Thread(target=self._feed, args=(encoder, chunks), daemon=True).start()
        threading.Thread(target=self._read, daemon=True).start()

    def _feed(self, encoder: Encoder, chunks: Iterable[Texts]) -> None:
        assert self.proc.stdin is not None
        try:
            with self.proc.stdin as pipe:
                pickle.dump(encoder, pipe, protocol=pickle.HIGHEST_PROTOCOL)
                for chunk in chunks:
                    pickle.dump(chunk, pipe, protocol=pickle.HIGHEST_PROTOCOL)
        except OSError:  # the worker is gone; _read reports why
            pass
        except Exception as e:  # noqa: BLE001 - building a chunk failed: stdin is closed, result() raises it
            self.feed_error = e

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            while True:
                self.answers.put(pickle.load(self.proc.stdout))
        except (EOFError, OSError, pickle.UnpicklingError):
            self.answers.put(("error", f"the tokenizer worker exited with status {self.proc.wait()}"))

    def result(self) -> dict[str, np.ndarray]:
        kind, value = self.answers.get()
        if kind != "ok" and self.feed_error is not None:
            raise self.feed_error
        if kind != "ok":
            raise RuntimeError(f"encoding in a worker process failed: {value}")
        return value

    def close(self) -> None:
        if self.proc.poll() is None:  # done, or the caller stopped early: nothing more is wanted
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# ---------------------------------------------------------------------- the worker's side
def main() -> int:
    """Worker loop (see the module docstring). Ctrl-C is the parent's to handle: it kills us."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the answers
    encoder = pickle.load(inp)
    while True:
        try:
            chunk = pickle.load(inp)
        except EOFError:
            return 0
        try:
            answer: tuple[str, Any] = ("ok", encode_chunk(encoder, chunk))
        except Exception:  # noqa: BLE001 - sent to the parent, which raises it
            answer = ("error", traceback.format_exc())
        pickle.dump(answer, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()
        if answer[0] != "ok":
            return 1
