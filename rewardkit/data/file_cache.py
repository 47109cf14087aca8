"""Parse once: an on-disk cache of what large data files parsed to, and the cache folder itself.

Entries live under ``$REWARDKIT_CACHE`` (default ``~/.cache/rewardkit``; ``REWARDKIT_CACHE=off``
disables the cache); `rewardkit.encoding.cache` keeps tokenized data in the same folder. Large data
files (32 MB and up) keep what `rewardkit.data.loading.load_comparisons` parsed from them
(`load_cached`, under ``loaded/``): with tokenization cached, reading and validating the text was
most of a warm start. Those entries are keyed by the file's bytes, the load options and the
parsing code, and only the newest 8 are kept (each is about as large as the text it holds).
Any problem reading or writing the cache falls back to parsing, so the cache can only cost time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import marshal
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from rewardkit.data.loading import load_comparisons, paused_gc, settle
from rewardkit.data.ratings import RatingOptions
from rewardkit.data.records import BenchmarkRow, Comparison, Loaded, Problem
from rewardkit.version import __version__


def cache_dir() -> Path | None:
    """The cache directory, or None when ``REWARDKIT_CACHE`` is ``off``/``0``/``false``."""
    env = os.environ.get("REWARDKIT_CACHE")
    if env is not None and env.strip().lower() in {"off", "0", "false", "no", ""}:
        return None
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rewardkit"


def source_digest(module: str) -> str:
    """SHA-256 of the source of one of rewardkit's modules (a dotted name): keys change when the code
    that made an entry does."""
    spec = importlib.util.find_spec(module)
    return hashlib.sha256(Path(spec.origin if spec and spec.origin else "").read_bytes()).hexdigest()


def prune(folder: Path, keep: int, suffix: str = ".safetensors") -> None:
    """Delete all but the ``keep`` most recently used entries of a kind."""
    entries = sorted(folder.glob(f"*{suffix}"), key=lambda f: f.stat().st_mtime, reverse=True)
    for old in entries[keep:]:
        old.unlink(missing_ok=True)


def write_atomically(path: Path, write: Callable[[str], Any], keep: int) -> None:
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
        prune(path.parent, keep, path.suffix)
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
    for module in ("readers", "formats", "records", "loading", "ratings"):
        h.update(bytes.fromhex(source_digest(f"rewardkit.data.{module}")))
    settings = [fmt, skip_invalid, dataclasses.asdict(ratings) if ratings else None, __version__,
                list(sys.version_info[:2])]
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()


def load_cached(source: str, fmt: str = "auto", skip_invalid: bool = False,
                ratings: RatingOptions | None = None) -> Loaded:
    """`rewardkit.data.loading.load_comparisons`, read back from the cache when this exact file was loaded before.

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
    write_atomically(entry, lambda tmp: Path(tmp).write_bytes(marshal.dumps(_pack(loaded))),
                      LOAD_MAX_ENTRIES)
    return loaded


_FIELDS = ("prompt", "responses", "margin", "scores", "subset", "source", "order")


def _pack(loaded: Loaded) -> dict[str, Any]:
    return {"format": "loaded-2", "records": loaded.records, "notes": list(loaded.notes),
            "comparisons": [(*(getattr(c, f) for f in _FIELDS),
                             None if c.bench is None else (c.bench.kind, c.bench.chosen, c.bench.id, c.bench.label))
                            for c in loaded.comparisons],
            "problems": [(p.where, p.reason) for p in loaded.problems],
            "dropped": [(p.where, p.reason) for p in loaded.dropped]}


def _unpack(data: dict[str, Any]) -> Loaded:
    if data.get("format") != "loaded-2":
        raise ValueError("unknown entry format")
    return Loaded(comparisons=[Comparison(*row[:-1], bench=None if row[-1] is None else BenchmarkRow(*row[-1]))
                               for row in data["comparisons"]],
                  problems=[Problem(*p) for p in data["problems"]], records=data["records"],
                  dropped=[Problem(*p) for p in data["dropped"]], notes=list(data["notes"]))
