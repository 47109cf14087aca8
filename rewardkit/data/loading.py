"""Load preference data into `Comparison` records, and split it prompt-disjointly.

`load_comparisons` takes a file (any type `rewardkit.data.readers` reads) or a Hugging Face dataset id,
detects a rating table from its columns (`rewardkit.data.ratings`) or parses each record by its shape
(`rewardkit.data.formats`), and collects every record it cannot use as a `Problem` naming its file,
line and reason. By default any problem aborts with `DataError` (exit code 2 in the CLI); with
``skip_invalid`` the problems are skipped, counted and reported. Valid records that express no
preference (annotator votes split evenly, a rated prompt whose answers all tie) are not errors:
they are left out, counted and reported as `Loaded.dropped`.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.resources
import itertools
import random
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

from rewardkit.data.formats import ALIASES, FORMATS, parse_record
from rewardkit.data.ratings import RatingOptions, load_ratings, looks_like_ratings
from rewardkit.data.readers import csv_header, iter_hub, iter_rows, looks_like_path
from rewardkit.data.records import Comparison, Loaded, Problem, check_usable
from rewardkit.errors import DataError, NoPreference, RecordError
from rewardkit.progress import phase_bar


def _peek_columns(rows: Iterator[tuple[str, Any]]) -> tuple[list[str] | None, Iterator[tuple[str, Any]]]:
    """The keys of the first readable row, and an iterator that still yields every row."""
    seen: list[tuple[str, Any]] = []
    columns = None
    for item in rows:
        seen.append(item)
        if isinstance(item[1], dict):
            columns = list(item[1])
            break
    return columns, itertools.chain(seen, rows)


def load_comparisons(source: str, fmt: str = "auto", skip_invalid: bool = False,
                     ratings: RatingOptions | None = None) -> Loaded:
    """Load a preference file or HF dataset id into comparisons.

    ``fmt="ratings"``, or ``"auto"`` on a table whose first row has prompt, response and score
    columns (and no comparison columns), reads a rating table and pairs it per prompt with
    ``ratings`` options (`rewardkit.data.ratings`). Raises DataError listing the first few problems
    unless ``skip_invalid``.
    """
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    opts = ratings or RatingOptions()
    path = Path(source)
    if path.exists():
        if path.is_dir():
            raise DataError(f"{path}: is a directory, expected a data file")
        header = csv_header(path)
        is_pairs = header is not None and {"chosen", "rejected"} <= {ALIASES.get(h, h) for h in header}
        if header is not None and not is_pairs and fmt != "ratings" and not looks_like_ratings(header, opts):
            raise DataError(f"{path}:1: CSV columns {header} describe neither preference pairs "
                            "('chosen' and 'rejected', optionally 'prompt', 'margin', 'subset') nor a rating "
                            "table (prompt/question, response/answer and score/rating/feedback columns; "
                            "name others with --prompt-column, --response-column, --score-column)")
        rows = iter_rows(path)
    elif not looks_like_path(source) and re.fullmatch(r"[\w.-]+/[\w.-]+(:[\w.\[\]%:-]+)?", source):
        rows = iter_hub(source)
    else:
        raise DataError(f"{source}: no such file")

    if fmt == "auto":
        columns, rows = _peek_columns(rows)
        if columns is not None and looks_like_ratings(columns, opts):
            fmt = "ratings"
    with paused_gc(path):
        if fmt == "ratings":
            out = load_ratings(rows, source, opts)
        else:
            out = Loaded(comparisons=[])
            _parse_rows(rows, fmt, out)
    check_usable(out.problems, out.dropped, len(out.comparisons), source, skip_invalid,
                 "no usable preference records")
    return settle(out)


def is_rating_table(source: str, fmt: str = "auto", ratings: RatingOptions | None = None) -> bool:
    """Whether ``source`` loads as a rating table: ``--format ratings``, or a local file whose first row
    has prompt, response and score columns and no comparison columns (as `load_comparisons` decides)."""
    if fmt == "ratings":
        return True
    path = Path(source)
    if fmt != "auto" or not path.is_file():
        return False
    columns, _ = _peek_columns(iter_rows(path))
    return columns is not None and looks_like_ratings(columns, ratings or RatingOptions())


FREEZE_MIN = 50_000  # comparisons: below this, later collections over them cost little
LARGE_FILE = 32 << 20  # bytes: files that big may hold FREEZE_MIN comparisons


@contextlib.contextmanager
def paused_gc(source: Path) -> Iterator[None]:
    """No cyclic garbage collection while many long-lived objects are created from ``source``.

    Every collection of the oldest generation walks all objects alive, and a load creates millions
    that all stay: with the collector on, loading 200k hh-rlhf pairs took ~30% longer and
    unmarshalling a cached load 4x longer. Reference counting still frees everything else. When
    ``source`` is a large file, one collection runs first, while the heap is still small, so that
    the freeze after the load (`settle`) holds no garbage that was only waiting to be collected.
    """
    was_enabled = gc.isenabled()
    if was_enabled and source.is_file() and source.stat().st_size >= LARGE_FILE:
        gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def settle(loaded: Loaded) -> Loaded:
    """After a large load, freeze what is alive (``gc.freeze``) out of later collections.

    Frozen objects sit in the permanent generation, so the collections of the split, the planning
    and the whole training loop no longer walk the loaded comparisons (at 1M hh-rlhf pairs the split
    alone took 4.0 s instead of 3.0). The load ran under `paused_gc`, which collected first, and
    creates no reference cycles itself, so nothing collectable is frozen; reference counting still
    frees frozen objects once unused. Small loads are left alone.
    """
    if len(loaded.comparisons) >= FREEZE_MIN and gc.isenabled():
        gc.freeze()
    return loaded


def _parse_rows(rows: Iterator[tuple[str, Any]], fmt: str, out: Loaded) -> None:
    """Parse (where, raw record) rows into ``out``: comparisons, invalid records, records without a preference."""
    for where, raw in phase_bar(rows, desc="load", unit=" records"):
        out.records += 1
        try:
            if isinstance(raw, RecordError):
                raise raw
            out.comparisons.extend(parse_record(raw, fmt, where))
        except NoPreference as e:
            out.dropped.append(Problem(where, str(e)))
        except RecordError as e:
            out.problems.append(Problem(where, str(e)))


def split_by_prompt(comparisons: list[Comparison], fraction: float, seed: int
                    ) -> tuple[list[Comparison], list[Comparison]]:
    """Seeded, prompt-disjoint split: every comparison of a prompt lands on the same side.

    Random per-record splits leak: the same prompt in train and eval inflates eval accuracy.
    """
    if fraction <= 0:
        return list(comparisons), []
    groups: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(comparisons):
        groups[c.prompt_key()].append(i)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    target = round(fraction * len(comparisons))
    eval_idx: set[int] = set()
    for k in keys:
        if len(eval_idx) >= target:
            break
        eval_idx.update(groups[k])
    train = [c for i, c in enumerate(comparisons) if i not in eval_idx]
    held = [c for i, c in enumerate(comparisons) if i in eval_idx]
    if not train or (target > 0 and not held):
        raise DataError(f"cannot split {len(comparisons)} comparisons over {len(keys)} prompts "
                        f"with --eval-split {fraction}: one side would be empty")
    return train, held


def group_by_prompt(comparisons: list[Comparison]) -> list[list[int]]:
    """Indices of the comparisons of each prompt, prompts in first-seen order."""
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(comparisons):
        groups.setdefault(c.prompt_key(), []).append(i)
    return list(groups.values())


def bundled_sample() -> str:
    """Path of the hh-rlhf sample shipped for the quickstart (MIT, licence beside it)."""
    return str(importlib.resources.files("rewardkit") / "assets" / "hh_rlhf_harmless_sample.jsonl.gz")
