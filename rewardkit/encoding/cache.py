"""Tokenize once: an on-disk cache of encoded comparisons.

Rendering and tokenizing a few thousand comparisons takes seconds to minutes (long chat
templates, slow tokenizers, large files); repeated runs on the same data (sweeps, benchmarks,
resumed jobs) should pay it once. Entries live under ``$REWARDKIT_CACHE`` (default
``~/.cache/rewardkit``; ``REWARDKIT_CACHE=off`` disables the cache).

The key is a SHA-256 over everything the token ids depend on:

* the comparisons' texts themselves (prompt and responses, in order), which stands for the data
  file's bytes and also covers ``--format``, ``--skip-invalid`` and the train/eval split, and works
  for Hugging Face datasets that have no file;
* the tokenizer's full serialisation (vocabulary, merges, normaliser, added tokens) and chat
  template;
* the encoder's layout (special tokens around prompt and response, sentence-pair or not) and
  ``max_length``;
* the rewardkit version and the source of ``encoding/encoder.py``, ``encoded_set.py``
  and ``workers.py``, so a change to the encoding rules invalidates old entries even between
  releases.

Margins and scores are not cached: they are copied from the comparisons on every load. Entries
are safetensors files holding an `EncodedSet`'s flat arrays (token ids as uint16/int32 plus
offsets), never pickles, written atomically; a hit loads them straight into the set, with no
Python object per token.
Any problem reading or writing the cache falls back to encoding, so the cache can only cost time.
The folder and the parsed-file cache beside it are `rewardkit.data.file_cache`'s.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from rewardkit.data.file_cache import cache_dir, source_digest, write_atomically
from rewardkit.data.records import Comparison
from rewardkit.encoding.encoded_set import EncodedSet, encode_set, from_arrays
from rewardkit.encoding.encoder import Encoder
from rewardkit.version import __version__

MAX_ENTRIES = 64  # oldest entries beyond this are deleted after each write


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of everything that decides how the tokenizer maps text to ids."""
    h = hashlib.sha256()
    h.update(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:  # slow tokenizers: vocabulary plus constructor settings
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
        h.update(json.dumps(getattr(tokenizer, "init_kwargs", {}), sort_keys=True, default=str).encode())
    h.update(json.dumps(getattr(tokenizer, "added_tokens_encoder", {}), sort_keys=True).encode())
    h.update(str(getattr(tokenizer, "chat_template", None)).encode())
    return h.hexdigest()


def encoder_fingerprint(encoder: Encoder) -> str:
    """A hash of the encoder's layout, settings and code, plus the tokenizer's fingerprint."""
    layout = {
        "version": __version__,
        "max_length": encoder.max_length,
        "pair_template": encoder.pair_template,
        "head": encoder.head, "mid": encoder.mid, "tail": encoder.tail,
        "types": [encoder.head_types, encoder.mid_types, encoder.tail_types,
                  encoder.prompt_type, encoder.response_type, encoder.uses_token_types],
        **{f"{m}_py": source_digest(f"rewardkit.encoding.{m}") for m in ("encoder", "encoded_set", "workers")},
        "tokenizer": tokenizer_fingerprint(encoder.tokenizer),
    }
    return hashlib.sha256(json.dumps(layout, sort_keys=True).encode()).hexdigest()


def cache_key(encoder: Encoder, comps: Sequence[Comparison]) -> str:
    """The encoder's fingerprint and every comparison's texts, hashed a few thousand comparisons at a time.

    Plain-text chunks hash their concatenated texts plus the list of text lengths and response counts
    (enough to split them back, so unambiguous); chunks with chat messages hash ``repr`` of their
    (prompt, responses). Both run mostly in C: ``json.dumps`` per comparison was most of a warm run.
    """
    h = hashlib.sha256(encoder_fingerprint(encoder).encode())
    for start in range(0, len(comps), 4096):
        chunk = comps[start:start + 4096]
        texts: list[Any] = []
        for c in chunk:
            texts.append(c.prompt)
            texts.extend(c.responses)
        if all(isinstance(t, str) for t in texts):
            framing = [len(t) for t in texts] + [-len(c.responses) for c in chunk]
            h.update(b"T" + repr(framing).encode() + "".join(texts).encode("utf-8", "surrogatepass"))
        else:
            h.update(b"R" + repr([(c.prompt, c.responses) for c in chunk]).encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def encode_cached(encoder: Encoder, comps: Sequence[Comparison],
                  progress: Callable[[Sequence[Comparison]], Any] | None = None) -> EncodedSet:
    """``[encoder.encode(c) for c in comps]`` as an `EncodedSet`, read from the cache when this
    exact work was done before.

    ``progress`` optionally wraps the comparisons while encoding (e.g. a tqdm bar, advanced per
    chunk); it is not used on a cache hit, which loads the flat arrays straight into the set.
    """
    from safetensors.numpy import load_file

    folder = cache_dir()
    key = cache_key(encoder, comps) if folder is not None and comps else None
    path = folder / "encoded" / f"{key}.safetensors" if key else None
    if path is not None and path.is_file():
        try:
            encoded = from_arrays(load_file(str(path)), encoder, comps)
            os.utime(path)  # most recently used
            return encoded
        except Exception:  # noqa: BLE001 - unreadable or stale entry: encode afresh
            path.unlink(missing_ok=True)
    encoded = encode_set(encoder, comps, progress)
    if path is not None:
        _store(path, encoded, len(comps))
    return encoded


def _store(path: Path, encoded: EncodedSet, count: int) -> None:
    from safetensors.numpy import save_file

    meta = {"rewardkit": __version__, "comparisons": str(count), "format": "encoded-set-1"}
    write_atomically(path, lambda tmp: save_file(encoded.arrays(), tmp, metadata=meta), MAX_ENTRIES)
