"""Preference data: read every common file shape into `Comparison` records, validate, split.

A `Comparison` is one prompt with K >= 2 responses ordered best first; a preference pair is the
K = 2 case (responses = [chosen, rejected]). Keeping one record type for pairs and rankings means
the batching, losses and training loop never branch on the data shape.

Nothing is dropped silently: every record that cannot be used becomes a `Problem` naming its file,
line and reason. By default any problem aborts with `DataError` (exit code 2 in the CLI); with
``skip_invalid`` the problems are skipped, counted and reported. Valid records that express no
preference (annotator votes split evenly, a rated prompt whose answers all tie) are not errors:
they are left out, counted and reported as `Loaded.dropped`.

Multi-annotator records (``votes``)::

    {"prompt": "...", "response_a": "...", "response_b": "...", "votes": ["a", "b", "a"]}

Each vote is "a", "b" or "tie" (case-insensitive). The majority of the a/b votes decides which
response is chosen; equal a/b counts (tie votes only abstain) give no preference. Rating tables
(prompt, response, score rows) are grouped by prompt in `rewardkit.ratings`.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import math
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .errors import DataError, NoPreference, RecordError

if TYPE_CHECKING:
    from .ratings import RatingOptions

Text = str | list[dict[str, str]]  # plain text, or chat messages [{"role", "content"}]

ASSISTANT_MARKER = "\n\nAssistant:"
SHOW_PROBLEMS = 5
FORMATS = ("auto", "explicit", "implicit", "conversational", "rankings", "votes", "ratings")
_ALIASES = {"positive": "chosen", "negative": "rejected", "response_j": "chosen",
            "response_k": "rejected", "question": "prompt", "instruction": "prompt"}


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
    dropped: list[Problem] = field(default_factory=list)  # valid, but no preference: reported, not fatal
    notes: list[str] = field(default_factory=list)  # one-line summaries of conversions (rating tables)


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
    number = None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
    if number is None:
        raise RecordError(f"field '{name}' must be a number, got {value!r}")
    if not math.isfinite(number):
        raise RecordError(f"field '{name}' must be a finite number, got {value!r}")
    return number


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
        if "votes" in rec:
            fmt = "votes"
        elif "responses" in rec or "ranking" in rec:
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

    if fmt == "ratings":
        raise RecordError("rating-table rows are paired per prompt: load the whole file "
                          "(load_comparisons, or `rewardkit data convert --from ratings`)")
    if fmt == "rankings":
        comp = _parse_ranking(rec)
    elif fmt == "votes":
        comp = _parse_votes(rec)
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
    """``{"prompt", "responses", "scores"}`` (any order, higher score better) or
    ``{"prompt", "ranking"}`` (best first, optionally with ``scores`` in the same order).

    A ranking must be a strict order of K >= 2 distinct responses: ties, duplicates and a score
    list of another length are errors, not guesses.
    """
    prompt = _check_text(rec.get("prompt"), "prompt")
    name = "ranking" if "ranking" in rec else "responses"
    responses = rec.get(name)
    scores = rec.get("scores")
    if not isinstance(responses, list):
        raise RecordError(f"field '{name}' must be a list of responses")
    if len(responses) < 2:
        raise RecordError(f"field '{name}' needs at least 2 responses, got {len(responses)}")
    responses = [_check_text(r, f"{name}[{i}]") for i, r in enumerate(responses)]
    keys = [r if isinstance(r, str) else json.dumps(r, sort_keys=True) for r in responses]
    dup = next((i for i, k in enumerate(keys) if k in keys[:i]), None)
    if dup is not None:
        raise RecordError(f"field '{name}' has duplicate responses ({name}[{keys.index(keys[dup])}] "
                          f"and {name}[{dup}] are identical)")
    if name == "responses" and scores is None:
        raise RecordError("field 'scores' is missing: 'responses' needs one score per response "
                          "(or give an ordered 'ranking', best first)")
    if scores is None:
        return Comparison(prompt=prompt, responses=responses)
    if not isinstance(scores, list):
        raise RecordError("field 'scores' must be a list of numbers, one per response")
    if len(scores) != len(responses):
        raise RecordError(f"field 'scores' has {len(scores)} values for {len(responses)} responses")
    scores = [_number(s, f"scores[{i}]") for i, s in enumerate(scores)]
    if name == "ranking":
        if any(scores[i] < scores[i + 1] for i in range(len(scores) - 1)):
            raise RecordError("field 'scores' must not increase along 'ranking' (best first)")
    else:
        order = sorted(range(len(responses)), key=lambda i: -scores[i])
        responses = [responses[i] for i in order]
        scores = [scores[i] for i in order]
    if any(scores[i] == scores[i + 1] for i in range(len(scores) - 1)):
        raise RecordError("field 'scores' has ties; a ranking needs a strict order")
    return Comparison(prompt=prompt, responses=responses, scores=scores)


def _parse_votes(rec: dict[str, Any]) -> Comparison:
    """A pair judged by several annotators: the majority of a/b votes decides (see module doc)."""
    for name in ("response_a", "response_b"):
        if name not in rec:
            present = ", ".join(sorted(rec)) or "none"
            raise RecordError(f"missing field '{name}' (a 'votes' record needs response_a, response_b "
                              f"and votes; fields present: {present})")
    a = _check_text(rec["response_a"], "response_a")
    b = _check_text(rec["response_b"], "response_b")
    if "prompt" in rec:
        prompt = _check_text(rec["prompt"], "prompt")
    else:
        prompt, a, b = _shared_prompt(a, b)
    if a == b:
        raise RecordError("response_a and response_b are identical")
    votes = rec["votes"]
    if not isinstance(votes, list) or not votes:
        raise RecordError('field \'votes\' must be a non-empty list of "a", "b" or "tie"')
    counts = {"a": 0, "b": 0, "tie": 0}
    for i, v in enumerate(votes):
        vote = v.strip().lower() if isinstance(v, str) else None
        if vote not in counts:
            raise RecordError(f'field \'votes[{i}]\' must be "a", "b" or "tie", got {v!r}')
        counts[vote] += 1
    if counts["a"] == counts["b"]:
        ties = f", {counts['tie']} tie" if counts["tie"] else ""
        raise NoPreference(f"votes split {counts['a']} a / {counts['b']} b{ties}: no majority, no pair")
    if isinstance(prompt, list) or isinstance(a, list) or isinstance(b, list):
        prompt, a, b = _as_messages(prompt, "user"), _as_messages(a), _as_messages(b)
    responses = [a, b] if counts["a"] > counts["b"] else [b, a]
    return Comparison(prompt=prompt, responses=responses)


def comparison_records(comp: Comparison, to: str = "auto", margin_scale: float = 1.0) -> list[dict[str, Any]]:
    """Explicit JSON records for one comparison, in shapes every loader here reads back.

    ``to="auto"``: K = 2 -> one pair, K > 2 -> one ranking; ``"pairs"``: all C(K,2) pairs, best
    first, margin = score gap x ``margin_scale`` when the ranking has scores; ``"rankings"``: one
    ranking record (``responses`` + ``scores`` when scored, else an ordered ``ranking``).
    """
    extra = {"subset": comp.subset} if comp.subset is not None else {}
    k = len(comp.responses)
    if to == "rankings" or (to == "auto" and k > 2):
        if comp.scores is not None:
            return [{"prompt": comp.prompt, "responses": comp.responses, "scores": comp.scores, **extra}]
        return [{"prompt": comp.prompt, "ranking": comp.responses, **extra}]
    out = []
    for i in range(k):
        for j in range(i + 1, k):
            rec: dict[str, Any] = {"prompt": comp.prompt, "chosen": comp.responses[i],
                                   "rejected": comp.responses[j]}
            if comp.scores is not None:
                if margin_scale:
                    rec["margin"] = (comp.scores[i] - comp.scores[j]) * margin_scale
            elif comp.margin is not None and k == 2:
                rec["margin"] = comp.margin
            out.append({**rec, **extra})
    return out


# --------------------------------------------------------------------------------------- loading

_KNOWN_COLUMNS = {"prompt", "chosen", "rejected", "positive", "negative", "question", "instruction",
                  "response_j", "response_k", "margin", "subset", "responses", "scores", "ranking",
                  "response_a", "response_b", "votes"}


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
                     ratings: "RatingOptions | None" = None) -> Loaded:
    """Load a preference file or HF dataset id into comparisons.

    ``fmt="ratings"``, or ``"auto"`` on a table whose first row has prompt, response and score
    columns (and no comparison columns), reads a rating table and pairs it per prompt with
    ``ratings`` options (`rewardkit.ratings`). Raises DataError listing the first few problems
    unless ``skip_invalid``.
    """
    from .ratings import RatingOptions, load_ratings, looks_like_ratings

    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    opts = ratings or RatingOptions()
    path = Path(source)
    if path.exists():
        if path.is_dir():
            raise DataError(f"{path}: is a directory, expected a data file")
        header = csv_header(path)
        is_pairs = header is not None and {"chosen", "rejected"} <= {_ALIASES.get(h, h) for h in header}
        if header is not None and not is_pairs and fmt != "ratings" and not looks_like_ratings(header, opts):
            raise DataError(f"{path}:1: CSV columns {header} describe neither preference pairs "
                            "('chosen' and 'rejected', optionally 'prompt', 'margin', 'subset') nor a rating "
                            "table (prompt/question, response/answer and score/rating/feedback columns; "
                            "name others with --prompt-column, --response-column, --score-column)")
        rows = iter_rows(path)
    elif re.fullmatch(r"[\w.-]+/[\w.-]+(:[\w.\[\]%:-]+)?", source):
        rows = _iter_hub(source)
    else:
        raise DataError(f"{source}: no such file")

    if fmt == "auto":
        columns, rows = _peek_columns(rows)
        if columns is not None and looks_like_ratings(columns, opts):
            fmt = "ratings"
    if fmt == "ratings":
        out = load_ratings(rows, source, opts)
    else:
        out = Loaded(comparisons=[])
        for where, raw in rows:
            out.records += 1
            try:
                if isinstance(raw, RecordError):
                    raise raw
                out.comparisons.extend(parse_record(raw, fmt, where))
            except NoPreference as e:
                out.dropped.append(Problem(where, str(e)))
            except RecordError as e:
                out.problems.append(Problem(where, str(e)))
    if out.problems and not skip_invalid:
        raise DataError(describe_problems(out.problems, source) +
                        "\n(use --skip-invalid to skip these records and train on the rest)")
    if not out.comparisons:
        raise DataError(f"{source}: no usable preference records"
                        + (f"\n{describe_problems(out.problems, source)}" if out.problems else "")
                        + (f"\n{describe_dropped(out.dropped, source)}" if out.dropped else ""))
    return out


def describe_dropped(dropped: list[Problem], source: str) -> str:
    """Valid records or prompts that gave no preference (not errors), first few with reasons."""
    return _listing(f"{len(dropped)} record(s)/prompt(s) in {source} express no preference and were left out:",
                    dropped)


def describe_problems(problems: list[Problem], source: str) -> str:
    return _listing(f"{len(problems)} invalid record(s) in {source}:", problems)


def _listing(header: str, items: list[Problem]) -> str:
    lines = [header] + [f"  {p}" for p in items[:SHOW_PROBLEMS]]
    if len(items) > SHOW_PROBLEMS:
        lines.append(f"  ... and {len(items) - SHOW_PROBLEMS} more")
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


def group_by_prompt(comparisons: list[Comparison]) -> list[list[int]]:
    """Indices of the comparisons of each prompt, prompts in first-seen order."""
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(comparisons):
        groups.setdefault(c.prompt_key(), []).append(i)
    return list(groups.values())


def bundled_sample() -> str:
    """Path of the hh-rlhf sample shipped for the quickstart (MIT, licence beside it)."""
    return str(Path(__file__).parent / "assets" / "hh_rlhf_harmless_sample.jsonl.gz")
