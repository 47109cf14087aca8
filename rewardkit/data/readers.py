"""Read data files row by row, each row with the ``file:line`` it came from.

One reader per file type: JSONL (one record per line), JSON (an array of records, or an LMFlow
``{"type", "instances": [...]}`` document, each element reported at the line it starts on), CSV
(a header row, then one record per row), parquet (``row N``), each optionally gzipped; and a Hugging
Face dataset id ``org/name[:split]`` through `datasets` (needs the hub). A row that cannot be parsed
is yielded as a `RecordError` in place of the row, so the caller decides whether it is fatal.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from pathlib import Path
from typing import Any, Iterator

from rewardkit.errors import DataError, RecordError


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, "r", encoding="utf-8", newline="")


def _base_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def iter_rows(path: str | Path) -> Iterator[tuple[str, Any]]:
    """Yield (``file:line``, parsed row) for every row of a data file.

    A row that cannot be parsed is yielded as a `RecordError` instead of a dict, so the caller
    decides whether it is fatal.
    """
    p = Path(path)
    kind = _base_suffix(p)
    try:
        if kind == ".jsonl":
            yield from _iter_jsonl(p)
        elif kind == ".json":
            yield from _iter_json(p)
        elif kind == ".csv":
            yield from _iter_csv(p)
        elif kind == ".parquet":
            yield from _iter_parquet(p)
        else:
            raise DataError(f"{p}: unsupported file type {''.join(p.suffixes)!r} "
                            "(use .jsonl, .json, .csv or .parquet, optionally .gz)")
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as e:
        raise DataError(f"{p}: cannot read file: {e}") from None


def _iter_jsonl(p: Path) -> Iterator[tuple[str, Any]]:
    name = str(p)
    with _open_text(p) as f:
        for lineno, line in enumerate(f, 1):
            if line.isspace():  # not strip(): that copies every line
                continue
            try:
                yield f"{name}:{lineno}", json.loads(line)
            except json.JSONDecodeError as e:
                yield f"{name}:{lineno}", RecordError(f"not valid JSON ({e.msg} at column {e.colno})")


def _iter_json(p: Path) -> Iterator[tuple[str, Any]]:
    """A JSON array of records, or an LMFlow ``{"type", "instances": [...]}`` document.

    Each element is reported with the line it starts on, found by decoding the array element by
    element.
    """
    with _open_text(p) as f:
        text = f.read()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{p}:{e.lineno}: not valid JSON ({e.msg})") from None
    if isinstance(doc, dict) and isinstance(doc.get("instances"), list):
        start = re.search(r'"instances"\s*:\s*\[', text)
    elif isinstance(doc, list):
        start = re.match(r"\s*\[", text)
    else:
        raise DataError(f"{p}:1: expected a JSON array of records or an LMFlow "
                        '{"type": ..., "instances": [...]} document')
    decoder = json.JSONDecoder()
    pos = start.end() if start else 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return
        item, end = decoder.raw_decode(text, pos)
        yield f"{p}:{text.count(chr(10), 0, pos) + 1}", item
        pos = end


def _iter_csv(p: Path) -> Iterator[tuple[str, Any]]:
    with _open_text(p) as f:
        reader = csv.DictReader(f)
        start = reader.line_num + 2  # the header is line 1
        for row in reader:
            if None in row:
                yield f"{p}:{start}", RecordError(
                    f"row has {len(row) - 1 + len(row[None])} cells but the header has {len(row) - 1}")
            else:
                yield f"{p}:{start}", {k: v for k, v in row.items()}
            start = reader.line_num + 1


def _iter_parquet(p: Path) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(p)
    except Exception as e:  # pyarrow raises several types for unreadable files
        raise DataError(f"{p}: cannot read parquet file: {e}") from None
    for i, row in enumerate(table.to_pylist(), 1):
        yield f"{p}:row {i}", row


def csv_header(path: str | Path) -> list[str] | None:
    p = Path(path)
    if _base_suffix(p) != ".csv":
        return None
    with _open_text(p) as f:
        return next(csv.reader(f), [])


DATA_SUFFIXES = {".jsonl", ".json", ".csv", ".tsv", ".parquet", ".gz", ".txt", ".arrow"}


def looks_like_path(source: str) -> bool:
    """A local path rather than a Hub id ``org/name[:split]``: a data file's extension, more than one
    ``/`` (or a ``\\``, or a leading ``.``, ``/`` or ``~``), or an existing folder. Such a source is never
    sent to the Hub: missing means "no such file" at once."""
    base = source.partition(":")[0] if not Path(source).exists() else source
    return (Path(source).exists() or any(base.lower().endswith(sfx) for sfx in DATA_SUFFIXES)
            or base.count("/") > 1 or "\\" in base or base.startswith((".", "/", "~")))


def iter_hub(source: str) -> Iterator[tuple[str, Any]]:
    """A Hugging Face dataset id, `org/name[:split]`, loaded through `datasets` (needs the hub).

    The Hub is asked once, with a short timeout and no retries, before `datasets` starts: unreachable,
    it fails in a second with one line instead of retrying for half a minute with a page of warnings.
    ``HF_HUB_OFFLINE=1`` skips the check and loads a copy already in the Hugging Face cache."""
    import os

    name, _, split = source.partition(":")
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in {"1", "true", "yes", "on"}:
        _check_hub(source, name)
    try:
        import datasets

        verbosity = datasets.logging.get_verbosity()
        datasets.logging.set_verbosity_error()
        try:
            ds = datasets.load_dataset(name, split=split or "train")
        finally:
            datasets.logging.set_verbosity(verbosity)
    except Exception as e:  # noqa: BLE001 - offline, unknown dataset, bad split: all the user's to fix
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{source}: cannot load Hugging Face dataset: {reason}") from None
    for i, row in enumerate(ds, 1):
        yield f"{source}:row {i}", row


def _check_hub(source: str, name: str) -> None:
    try:
        import huggingface_hub
        from huggingface_hub.errors import RepositoryNotFoundError
    except ImportError:  # pragma: no cover - datasets depends on it
        return
    try:
        huggingface_hub.dataset_info(name, timeout=10)
    except RepositoryNotFoundError:
        raise DataError(f"{source}: no such local file, and no dataset {name!r} on the Hugging Face Hub") from None
    except Exception as e:  # noqa: BLE001 - DNS, refused connection, timeout, proxy: the network's answer
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{source}: no such local file, and the Hugging Face Hub is unreachable ({reason}); give "
                        "a local file, or set HF_HUB_OFFLINE=1 to load a copy in the Hugging Face cache") from None
