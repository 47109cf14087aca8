"""Tokenize once, parse once: an on-disk cache of encoded comparisons and of loaded data files.

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
* the rewardkit version and the source of ``encode.py``, ``encoded_set.py`` and
  ``encode_workers.py``, so a change to the encoding rules invalidates old entries even between
  releases.

Margins and scores are not cached: they are copied from the comparisons on every load. Entries
are safetensors files holding an `EncodedSet`'s flat arrays (token ids as uint16/int32 plus
offsets), never pickles, written atomically; a hit loads them straight into the set, with no
Python object per token.
Any problem reading or writing the cache falls back to encoding, so the cache can only cost time.

Large data files (32 MB and up) also keep what `data.load_comparisons` parsed from them
(`load_cached`, under ``loaded/``): with tokenization cached, reading and validating the text was
most of a warm start. Those entries are keyed by the file's bytes, the load options and the
parsing code, and only the newest 8 are kept (each is about as large as the text it holds).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import marshal
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

from .version import __version__
from .encode import Encoder
from .encoded_set import EncodedSet, encode_set, from_arrays
from .data import load_comparisons, paused_gc, settle
from .ratings import RatingOptions
from .records import Comparison, Loaded, Problem

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


def _source_digest(module_file: str) -> str:
    """SHA-256 of one of rewardkit's own source files: keys change when the code that made an entry does."""
    return hashlib.sha256(Path(__file__).with_name(module_file).read_bytes()).hexdigest()


def encoder_fingerprint(encoder: Encoder) -> str:
    """A hash of the encoder's layout, settings and code, plus the tokenizer's fingerprint."""
    layout = {
        "version": __version__,
        "max_length": encoder.max_length,
        "pair_template": encoder.pair_template,
        "head": encoder.head, "mid": encoder.mid, "tail": encoder.tail,
        "types": [encoder.head_types, encoder.mid_types, encoder.tail_types,
                  encoder.prompt_type, encoder.response_type, encoder.uses_token_types],
        **{name.replace(".", "_"): _source_digest(name) for name in ("encode.py", "encoded_set.py",
                                                                     "encode_workers.py")},
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


def _prune(folder: Path, keep: int, suffix: str = ".safetensors") -> None:
    entries = sorted(folder.glob(f"*{suffix}"), key=lambda f: f.stat().st_mtime, reverse=True)
    for old in entries[keep:]:
        old.unlink(missing_ok=True)


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
    _write_atomically(path, lambda tmp: save_file(encoded.arrays(), tmp, metadata=meta), MAX_ENTRIES)


def _write_atomically(path: Path, write: Callable[[str], Any], keep: int) -> None:
    """Write an entry through a temporary file and a rename, then prune the folder to ``keep``
    entries of its kind; a read-only or full disk just skips caching."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        write(tmp)
        os.replace(tmp, path)
        tmp = None
        _prune(path.parent, keep, path.suffix)
    except OSError:
        pass
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


# ---------------------------------------------------------------------- loaded comparisons
LOAD_MIN_BYTES = 32 << 20  # smaller files parse in about a second: not worth an entry
LOAD_MAX_ENTRIES = 8  # entries are as large as the text they hold


def load_key(path: Path, fmt: str, skip_invalid: bool, ratings: RatingOptions | None) -> str:
    """A hash of the file's bytes, the load options, and the code and Python that parse and store it."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 23):
            h.update(block)
    for name in ("readers.py", "formats.py", "records.py", "data.py", "ratings.py"):
        h.update(bytes.fromhex(_source_digest(name)))
    settings = [fmt, skip_invalid, dataclasses.asdict(ratings) if ratings else None, __version__,
                list(sys.version_info[:2])]
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()


def load_cached(source: str, fmt: str = "auto", skip_invalid: bool = False,
                ratings: RatingOptions | None = None) -> Loaded:
    """`data.load_comparisons`, read back from the cache when this exact file was loaded before.

    Reading and validating the text is what is left of a warm start once tokenization is cached (at
    200k hh-rlhf pairs ~3.5 of its ~5.5 s). Files of 32 MB and more keep their parsed comparisons,
    problems and notes in ``marshal`` form under ``REWARDKIT_CACHE/loaded`` (Python's own fast
    serialisation of plain values; the key includes the Python version, whose format it is), keyed
    by the file's bytes (a changed file is parsed afresh), the options and the parsing code.
    """
    folder = cache_dir()
    path = Path(source)
    if folder is None or not path.is_file() or path.stat().st_size < LOAD_MIN_BYTES:
        return load_comparisons(source, fmt, skip_invalid, ratings)
    entry = folder / "loaded" / f"{load_key(path, fmt, skip_invalid, ratings)}.marshal"
    if entry.is_file():
        try:
            with paused_gc(path):
                loaded = _unpack(marshal.loads(entry.read_bytes()))
            os.utime(entry)
            return settle(loaded)
        except Exception:  # noqa: BLE001 - unreadable or stale entry: parse afresh
            entry.unlink(missing_ok=True)
    loaded = load_comparisons(source, fmt, skip_invalid, ratings)
    _write_atomically(entry, lambda tmp: Path(tmp).write_bytes(marshal.dumps(_pack(loaded))),
                      LOAD_MAX_ENTRIES)
    return loaded


_FIELDS = ("prompt", "responses", "margin", "scores", "subset", "source", "order")


def _pack(loaded: Loaded) -> dict[str, Any]:
    return {"format": "loaded-1", "records": loaded.records, "notes": list(loaded.notes),
            "comparisons": [tuple(getattr(c, f) for f in _FIELDS) for c in loaded.comparisons],
            "problems": [(p.where, p.reason) for p in loaded.problems],
            "dropped": [(p.where, p.reason) for p in loaded.dropped]}


def _unpack(data: dict[str, Any]) -> Loaded:
    if data.get("format") != "loaded-1":
        raise ValueError("unknown entry format")
    return Loaded(comparisons=[Comparison(*row) for row in data["comparisons"]],
                  problems=[Problem(*p) for p in data["problems"]], records=data["records"],
                  dropped=[Problem(*p) for p in data["dropped"]], notes=list(data["notes"]))
