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
* the rewardkit version and the source of ``encode.py``, so a change to the encoding rules
  invalidates old entries even between releases.

Margins and scores are not cached: they are copied from the comparisons on every load. Entries
are safetensors files (flat int32 token ids plus offsets), never pickles, written atomically.
Any problem reading or writing the cache falls back to encoding, so the cache can only cost time.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .version import __version__
from .records import Comparison
from .encode import Encoded, Encoder

MAX_ENTRIES = 64  # oldest entries beyond this are deleted after each write


def cache_dir() -> Path | None:
    """The cache directory, or None when ``REWARDKIT_CACHE`` is ``off``/``0``/``false``."""
    env = os.environ.get("REWARDKIT_CACHE")
    if env is not None and env.strip().lower() in {"off", "0", "false", "no", ""}:
        return None
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rewardkit"


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
        "encode_py": hashlib.sha256(Path(__file__).with_name("encode.py").read_bytes()).hexdigest(),
        "tokenizer": tokenizer_fingerprint(encoder.tokenizer),
    }
    return hashlib.sha256(json.dumps(layout, sort_keys=True).encode()).hexdigest()


def cache_key(encoder: Encoder, comps: Sequence[Comparison]) -> str:
    h = hashlib.sha256(encoder_fingerprint(encoder).encode())
    for c in comps:
        h.update(json.dumps([c.prompt, c.responses], ensure_ascii=False).encode())
        h.update(b"\0")
    return h.hexdigest()


def _pack(encoded: Sequence[Encoded]) -> dict[str, torch.Tensor]:
    seqs = [s for e in encoded for s in e.input_ids]
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.int64)
    out = {
        "ids": torch.tensor([t for s in seqs for t in s], dtype=torch.int32),
        "seq_lengths": lengths,
        "responses": torch.tensor([len(e.input_ids) for e in encoded], dtype=torch.int64),
        "prompt_len": torch.tensor([e.prompt_len for e in encoded], dtype=torch.int64),
        "truncated": torch.tensor([e.truncated for e in encoded], dtype=torch.bool),
    }
    if encoded and encoded[0].token_type_ids is not None:
        out["types"] = torch.tensor([t for e in encoded for s in e.token_type_ids for t in s], dtype=torch.int8)
    return out


def _unpack(tensors: dict[str, torch.Tensor], comps: Sequence[Comparison]) -> list[Encoded]:
    lengths = tensors["seq_lengths"].tolist()
    flat_ids = tensors["ids"].tolist()
    flat_types = tensors["types"].tolist() if "types" in tensors else None
    responses = tensors["responses"].tolist()
    if len(responses) != len(comps) or sum(lengths) != len(flat_ids):
        raise ValueError("cache entry does not match the data")
    out, at, seq = [], 0, 0
    for c, k, p, t in zip(comps, responses, tensors["prompt_len"].tolist(), tensors["truncated"].tolist()):
        if k != len(c.responses):
            raise ValueError("cache entry does not match the data")
        ids, types = [], [] if flat_types is not None else None
        for n in lengths[seq:seq + k]:
            ids.append(flat_ids[at:at + n])
            if types is not None:
                types.append(flat_types[at:at + n])
            at += n
        seq += k
        out.append(Encoded(input_ids=ids, token_type_ids=types, prompt_len=p, truncated=bool(t),
                           margin=c.margin, scores=c.scores))
    return out


def _prune(folder: Path, keep: int) -> None:
    entries = sorted(folder.glob("*.safetensors"), key=lambda f: f.stat().st_mtime, reverse=True)
    for old in entries[keep:]:
        old.unlink(missing_ok=True)


def encode_cached(encoder: Encoder, comps: Sequence[Comparison],
                  progress: Callable[[Sequence[Comparison]], Any] | None = None) -> list[Encoded]:
    """``[encoder.encode(c) for c in comps]``, read from the cache when this exact work was done before.

    ``progress`` optionally wraps the iterable while encoding (e.g. a tqdm bar); it is not used on
    a cache hit.
    """
    from safetensors.torch import load_file

    folder = cache_dir()
    key = cache_key(encoder, comps) if folder is not None and comps else None
    path = folder / "encoded" / f"{key}.safetensors" if key else None
    if path is not None and path.is_file():
        try:
            encoded = _unpack(load_file(str(path)), comps)
            os.utime(path)  # most recently used
            return encoded
        except Exception:  # noqa: BLE001 - unreadable or stale entry: encode afresh
            path.unlink(missing_ok=True)
    items = progress(comps) if progress is not None else comps
    encoded = [encoder.encode(c) for c in items]
    if path is not None:
        _store(path, encoded, len(comps))
    return encoded


def _store(path: Path, encoded: Sequence[Encoded], count: int) -> None:
    """Write an entry atomically (temporary file + rename); a read-only home just skips caching."""
    from safetensors.torch import save_file

    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        save_file(_pack(encoded), tmp, metadata={"rewardkit": __version__, "comparisons": str(count)})
        os.replace(tmp, path)
        tmp = None
        _prune(path.parent, MAX_ENTRIES)
    except OSError:
        pass
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
