"""Preference data: read every common file shape into `Comparison` records, validate, split.

A `Comparison` is one prompt with K >= 2 responses ordered best first; a preference pair is the
K = 2 case (responses = [chosen, rejected]). Keeping one record type for pairs and rankings means
the batching, losses and training loop never branch on the data shape.

Nothing is dropped silently: every record that cannot be used becomes a `Problem` naming its file,
line and reason. By default any problem aborts with `DataError` (exit code 2 in the CLI); with
``skip_invalid`` the problems are skipped, counted and reported.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

Text = str | list[dict[str, str]]  # plain text, or chat messages [{"role", "content"}]

ASSISTANT_MARKER = "\n\nAssistant:"
SHOW_PROBLEMS = 5
FORMATS = ("auto", "explicit", "implicit", "conversational", "rankings")
_ALIASES = {"positive": "chosen", "negative": "rejected", "response_j": "chosen",
            "response_k": "rejected", "question": "prompt", "instruction": "prompt"}


class DataError(Exception):
    """Unusable input data; the message names file, line and reason. CLI exit code 2."""


@dataclass
class Comparison:
    """One prompt and K >= 2 responses, best first. Pairs are K = 2: [chosen, rejected]."""

    prompt: Text
    responses: list[Text]
    margin: float | None = None
    scores: list[float] | None = None
    subset: str | None = None
    source: str = ""

    @property
    def chosen(self) -> Text:
        return self.responses[0]

    @property
    def rejected(self) -> Text:
        return self.responses[-1]

    def prompt_key(self) -> str:
        """A hashable identity of the prompt, used for prompt-disjoint splits and grouping."""
        return self.prompt if isinstance(self.prompt, str) else json.dumps(self.prompt, sort_keys=True)


@dataclass
class Problem:
    where: str  # "file:line"
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class Loaded:
    """What a loader produced, and what it could not use."""

    comparisons: list[Comparison]
    problems: list[Problem] = field(default_factory=list)
    records: int = 0


class RecordError(ValueError):
    """A single record is invalid; the message is the reason."""


# --------------------------------------------------------------------------------------- reading


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
    with _open_text(p) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield f"{p}:{lineno}", json.loads(line)
            except json.JSONDecodeError as e:
                yield f"{p}:{lineno}", RecordError(f"not valid JSON ({e.msg} at column {e.colno})")


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


# --------------------------------------------------------------------------------------- parsing


def _check_messages(value: Any, name: str) -> list[dict[str, str]]:
    if not value:
        raise RecordError(f"field '{name}' is an empty list of messages")
    for i, m in enumerate(value):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise RecordError(f"field '{name}' message {i} must be an object with 'role' and 'content'")
        if not isinstance(m["content"], str):
            raise RecordError(f"field '{name}' message {i} 'content' must be a string")
    return [{"role": str(m["role"]), "content": m["content"]} for m in value]


def _check_text(value: Any, name: str, allow_messages: bool = True) -> Text:
    if value is None:
        raise RecordError(f"missing field '{name}'")
    if isinstance(value, str):
        if not value.strip():
            raise RecordError(f"field '{name}' is empty")
        return value
    if allow_messages and isinstance(value, list):
        return _check_messages(value, name)
    raise RecordError(f"field '{name}' must be a string{' or a list of messages' if allow_messages else ''}"
                      f", got {type(value).__name__}")


def _shared_prompt(chosen: Text, rejected: Text) -> tuple[Text, Text, Text]:
    """Split two full transcripts into (prompt, chosen response, rejected response).

    Text (hh-rlhf): the prompt is the shared prefix up to and including the last
    "\\n\\nAssistant:" marker. Messages: the shared leading messages before the last assistant turn.
    """
    if isinstance(chosen, str) and isinstance(rejected, str):
        n = 0
        limit = min(len(chosen), len(rejected))
        while n < limit and chosen[n] == rejected[n]:
            n += 1
        cut = chosen.rfind(ASSISTANT_MARKER, 0, n)
        if cut < 0:
            raise RecordError("no 'prompt' field, and chosen/rejected share no prefix ending in an "
                              "'\\n\\nAssistant:' turn to take the prompt from")
        end = cut + len(ASSISTANT_MARKER)
        return chosen[:end], chosen[end:], rejected[end:]
    if isinstance(chosen, list) and isinstance(rejected, list):
        def last_assistant(msgs: list[dict[str, str]]) -> int:
            return max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=-1)

        cut = last_assistant(chosen)
        if cut <= 0 or last_assistant(rejected) != cut or chosen[:cut] != rejected[:cut]:
            raise RecordError("no 'prompt' field, and chosen/rejected messages do not share the "
                              "turns before their last assistant turn")
        return chosen[:cut], chosen[cut:], rejected[cut:]
    raise RecordError("chosen and rejected must both be strings or both be message lists")


def _as_messages(value: Text, role: str = "assistant") -> list[dict[str, str]]:
    """Mixed records (message-list prompt, text response) become all-messages."""
    return value if isinstance(value, list) else [{"role": role, "content": value}]


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise RecordError(f"field '{name}' must be a number, got bool")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise RecordError(f"field '{name}' must be a number, got {value!r}")


def _empty_response(r: Text) -> bool:
    if isinstance(r, str):
        return not r.strip()
    return all(not m["content"].strip() for m in r)


def parse_record(raw: Any, fmt: str = "auto", where: str = "") -> list[Comparison]:
    """Turn one raw record into comparisons (a list: an LMFlow wrapper may hold many).

    Raises RecordError with a human-readable reason for anything unusable.
    """
    if not isinstance(raw, dict):
        raise RecordError(f"expected a JSON object, got {type(raw).__name__}")
    if isinstance(raw.get("instances"), list):
        out: list[Comparison] = []
        for item in raw["instances"]:
            out.extend(parse_record(item, fmt, where))
        return out
    rec = dict(raw)
    for alias, canon in _ALIASES.items():
        if alias in rec and canon not in rec:
            rec[canon] = rec.pop(alias)
    if fmt == "auto":
        if "responses" in rec or "ranking" in rec:
            fmt = "rankings"
        elif isinstance(rec.get("chosen"), list) or isinstance(rec.get("prompt"), list):
            fmt = "conversational"
        elif "prompt" in rec:
            fmt = "explicit"
        else:
            fmt = "implicit"
    subset = rec.get("subset")
    if subset is not None and not isinstance(subset, str):
        raise RecordError(f"field 'subset' must be a string, got {type(subset).__name__}")

    if fmt == "rankings":
        comp = _parse_ranking(rec)
    else:
        for name in ("chosen", "rejected"):
            if name not in rec:
                present = ", ".join(sorted(raw)) or "none"
                raise RecordError(f"missing field '{name}' (fields present: {present})")
        messages = fmt == "conversational"
        chosen = _check_text(rec["chosen"], "chosen", allow_messages=messages or fmt == "auto")
        rejected = _check_text(rec["rejected"], "rejected", allow_messages=messages or fmt == "auto")
        implicit = fmt == "implicit" or "prompt" not in rec
        if implicit:
            # An empty final assistant turn is a real answer (saying nothing), not a broken record:
            # hh-rlhf has chosen transcripts that end in an empty "Assistant:" turn.
            prompt, chosen, rejected = _shared_prompt(chosen, rejected)
        else:
            prompt = _check_text(rec["prompt"], "prompt", allow_messages=True)
        if isinstance(prompt, list) or isinstance(chosen, list) or isinstance(rejected, list):
            prompt, chosen, rejected = _as_messages(prompt, "user"), _as_messages(chosen), _as_messages(rejected)
        for name, r in (("chosen", chosen), ("rejected", rejected)):
            if not implicit and _empty_response(r):
                raise RecordError(f"field '{name}' has an empty response")
        if chosen == rejected:
            raise RecordError("chosen and rejected are identical")
        margin = _number(rec["margin"], "margin") if rec.get("margin") is not None else None
        comp = Comparison(prompt=prompt, responses=[chosen, rejected], margin=margin)
    comp.subset = subset
    comp.source = where
    return [comp]


def _parse_ranking(rec: dict[str, Any]) -> Comparison:
    prompt = _check_text(rec.get("prompt"), "prompt")
    if "ranking" in rec:
        responses = rec["ranking"]
        name = "ranking"
        scores = None
    else:
        responses = rec.get("responses")
        name = "responses"
        scores = rec.get("scores")
    if not isinstance(responses, list):
        raise RecordError(f"field '{name}' must be a list of responses")
    if len(responses) < 2:
        raise RecordError(f"field '{name}' needs at least 2 responses, got {len(responses)}")
    responses = [_check_text(r, f"{name}[{i}]") for i, r in enumerate(responses)]
    keys = [r if isinstance(r, str) else json.dumps(r) for r in responses]
    if len(set(keys)) != len(keys):
        raise RecordError(f"field '{name}' has duplicate responses")
    if name == "responses":
        if not isinstance(scores, list):
            raise RecordError("field 'scores' must be a list of numbers, one per response")
        if len(scores) != len(responses):
            raise RecordError(f"field 'scores' has {len(scores)} values for {len(responses)} responses")
        scores = [_number(s, f"scores[{i}]") for i, s in enumerate(scores)]
        order = sorted(range(len(responses)), key=lambda i: -scores[i])
        responses = [responses[i] for i in order]
        scores = [scores[i] for i in order]
        if any(scores[i] == scores[i + 1] for i in range(len(scores) - 1)):
            raise RecordError("field 'scores' has ties; a ranking needs a strict order")
    return Comparison(prompt=prompt, responses=responses, scores=scores)


# --------------------------------------------------------------------------------------- loading

_KNOWN_COLUMNS = {"prompt", "chosen", "rejected", "positive", "negative", "question", "instruction",
                  "response_j", "response_k", "margin", "subset", "responses", "scores", "ranking"}


def load_comparisons(source: str, fmt: str = "auto", skip_invalid: bool = False) -> Loaded:
    """Load a preference file or HF dataset id into comparisons.

    Raises DataError listing the first few problems unless ``skip_invalid``.
    """
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    path = Path(source)
    if path.exists():
        if path.is_dir():
            raise DataError(f"{path}: is a directory, expected a data file")
        header = csv_header(path)
        if header is not None and not ({"chosen", "rejected"} <= {_ALIASES.get(h, h) for h in header}):
            raise DataError(f"{path}:1: CSV columns {header} do not describe preference pairs: "
                            "expected 'chosen' and 'rejected' (optionally 'prompt', 'margin', 'subset'); "
                            "rating tables go through `rewardkit data convert --from ratings`")
        rows = iter_rows(path)
    elif re.fullmatch(r"[\w.-]+/[\w.-]+(:[\w.\[\]%:-]+)?", source):
        rows = _iter_hub(source)
    else:
        raise DataError(f"{source}: no such file")

    out = Loaded(comparisons=[])
    for where, raw in rows:
        out.records += 1
        try:
            if isinstance(raw, RecordError):
                raise raw
            out.comparisons.extend(parse_record(raw, fmt, where))
        except RecordError as e:
            out.problems.append(Problem(where, str(e)))
    if out.problems and not skip_invalid:
        raise DataError(describe_problems(out.problems, source) +
                        "\n(use --skip-invalid to skip these records and train on the rest)")
    if not out.comparisons:
        raise DataError(f"{source}: no usable preference records"
                        + (f"\n{describe_problems(out.problems, source)}" if out.problems else ""))
    return out


def describe_problems(problems: list[Problem], source: str) -> str:
    lines = [f"{len(problems)} invalid record(s) in {source}:"]
    lines += [f"  {p}" for p in problems[:SHOW_PROBLEMS]]
    if len(problems) > SHOW_PROBLEMS:
        lines.append(f"  ... and {len(problems) - SHOW_PROBLEMS} more")
    return "\n".join(lines)


def _iter_hub(source: str) -> Iterator[tuple[str, Any]]:
    """A Hugging Face dataset id, `org/name[:split]`, loaded through `datasets` (needs the hub)."""
    name, _, split = source.partition(":")
    try:
        import datasets

        ds = datasets.load_dataset(name, split=split or "train")
    except Exception as e:  # offline, unknown dataset, bad split: all the user's to fix
        raise DataError(f"{source}: cannot load Hugging Face dataset: {e}") from None
    for i, row in enumerate(ds, 1):
        yield f"{source}:row {i}", row


# --------------------------------------------------------------------------------------- splitting


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


def bundled_sample() -> str:
    """Path of the hh-rlhf sample shipped for the quickstart (MIT, licence beside it)."""
    return str(Path(__file__).parent / "assets" / "hh_rlhf_harmless_sample.jsonl.gz")
