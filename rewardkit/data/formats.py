"""Record shapes: one raw record (a dict from a reader) -> `Comparison` records, and back.

Auto-detected per record (or forced with ``--format``): explicit ``{prompt, chosen, rejected}``;
implicit-prompt hh-rlhf transcripts (the prompt is the shared prefix up to the last
``\n\nAssistant:``); conversational message lists; LMFlow ``{"type", "instances"}`` wrappers;
rankings ``{prompt, responses, scores}`` / ``{prompt, ranking}``; and annotator votes. Aliases:
``positive``/``negative``, ``response_j``/``response_k`` for chosen/rejected, ``question`` and
``instruction`` for the prompt. Rating tables need the whole file and live in `rewardkit.data.ratings`.

Multi-annotator records (``votes``)::

    {"prompt": "...", "response_a": "...", "response_b": "...", "votes": ["a", "b", "a"]}

Each vote is "a", "b" or "tie" (case-insensitive). The majority of the a/b votes decides which
response is chosen; equal a/b counts (tie votes only abstain) give no preference (`NoPreference`).

Reward-model benchmarks' own rows, each one `Comparison` whose ``bench`` (`BenchmarkRow`) says how to
score it, since their responses are not best first: RewardBench 2 best-of-N ``{prompt, chosen: [...],
rejected: [...], subset, id, num_correct}``; RM-Bench ``{prompt, chosen: [3], rejected: [3], domain}``
(styles concise, detailed, markdown); JudgeBench ``{question, response_A, response_B, label: "A>B" |
"B>A", source, pair_id}``. Auto-detection takes lists of strings for chosen/rejected as a benchmark
row (lists of ``{role, content}`` messages stay a conversation): RM-Bench when the row has ``domain``
or 3 + 3 responses and no ``num_correct``, else best-of-N. Their errors name the shape assumed.

Every unusable record raises `RecordError` with a human-readable reason; the loader adds file:line.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from rewardkit.data.records import BENCHMARK_KINDS, BenchmarkRow, Comparison, Text, preference_pairs
from rewardkit.errors import DataError, NoPreference, RecordError

ASSISTANT_MARKER = "\n\nAssistant:"
FORMATS = ("auto", "explicit", "implicit", "conversational", "rankings", "votes", "ratings", *BENCHMARK_KINDS)
ALIASES = {"positive": "chosen", "negative": "rejected", "response_j": "chosen",
           "response_k": "rejected", "question": "prompt", "instruction": "prompt"}


def _check_messages(value: Any, name: str) -> list[dict[str, str]]:
    if not value:
        raise RecordError(f"field '{name}' is an empty list of messages")
    for i, m in enumerate(value):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise RecordError(f"field '{name}' message {i} must be an object with 'role' and 'content'")
        if not isinstance(m["content"], str):
            raise RecordError(f"field '{name}' message {i} 'content' must be a string")
    return [{"role": str(m["role"]), "content": m["content"]} for m in value]


def check_text(value: Any, name: str, allow_messages: bool = True) -> Text:
    if value is None:
        raise RecordError(f"missing field '{name}'")
    if isinstance(value, str):
        if not value or value.isspace():
            raise RecordError(f"field '{name}' is empty")
        return value
    if allow_messages and isinstance(value, list):
        return _check_messages(value, name)
    raise RecordError(f"field '{name}' must be a string{' or a list of messages' if allow_messages else ''}"
                      f", got {type(value).__name__}")


def _common_prefix_len(a: str, b: str) -> int:
    """Length of the longest common prefix, by bisection over C-level slice compares (a character
    loop in Python was most of the loading time of hh-rlhf-shaped files)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:  # a[:lo] == b[:lo], and the common prefix is at most hi long
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _shared_prompt(chosen: Text, rejected: Text) -> tuple[Text, Text, Text]:
    """Split two full transcripts into (prompt, chosen response, rejected response).

    Text (hh-rlhf): the prompt is the shared prefix up to and including the last
    "\\n\\nAssistant:" marker. Messages: the shared leading messages before the last assistant turn.
    """
    if isinstance(chosen, str) and isinstance(rejected, str):
        cut = chosen.rfind(ASSISTANT_MARKER)
        end = cut + len(ASSISTANT_MARKER)
        if cut < 0 or chosen[:end] != rejected[:end]:  # else: chosen's last marker is shared, so it is the one
            n = _common_prefix_len(chosen, rejected)
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


def transcript_messages(text: str) -> list[dict[str, str]]:
    """An hh-rlhf transcript ("\n\nHuman: ...\n\nAssistant: ...") as chat messages, each turn's text
    stripped of the space after its marker; text before the first marker is refused."""
    parts = re.split(r"\n\n(Human|Assistant):", text)
    if parts[0].strip():
        raise RecordError("text before the first '\\n\\nHuman:' or '\\n\\nAssistant:' turn")
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[parts[i]], "content": parts[i + 1].strip()} for i in range(1, len(parts), 2)]


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
    for alias, canon in ALIASES.items():
        if alias in rec and canon not in rec:
            rec[canon] = rec.pop(alias)
    forced = fmt != "auto"
    if not forced:
        fmt = detect_format(rec)
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
    elif fmt in BENCHMARK_KINDS:
        comp = _parse_benchmark(rec, raw, fmt, forced)
    else:
        comp = _parse_pair(rec, raw, fmt)
    if comp.bench is None:
        comp.subset = subset
    comp.source = where
    return [comp]


def detect_format(rec: dict[str, Any]) -> str:
    """The shape of one record (aliases applied) for ``--format auto``: the first of votes, JudgeBench,
    rankings, a benchmark's string lists (RM-Bench or best-of-N), conversational, explicit, implicit."""
    if "votes" in rec:
        return "votes"
    if "response_A" in rec and "response_B" in rec and "prompt" in rec:
        return "judgebench"
    if "responses" in rec or "ranking" in rec:
        return "rankings"
    chosen, rejected = rec.get("chosen"), rec.get("rejected")
    if _answer_list(chosen) and _answer_list(rejected) and any(isinstance(x, str) for x in chosen + rejected):
        if "domain" in rec or (len(chosen) == len(rejected) == 3 and rec.get("num_correct") is None):
            return "rm-bench"
        return "best-of-n"
    if isinstance(chosen, list) or isinstance(rec.get("prompt"), list):
        return "conversational"
    return "explicit" if "prompt" in rec else "implicit"


def _answer_list(value: Any) -> bool:
    """A list that is no message list (holds no objects): a benchmark's list of answers, even with a
    bad item, so that its error names the benchmark rather than chat messages."""
    return isinstance(value, list) and not any(isinstance(x, dict) for x in value)


def _parse_pair(rec: dict[str, Any], raw: dict[str, Any], fmt: str) -> Comparison:
    """A chosen/rejected pair: explicit, implicit (prompt = shared transcript prefix) or conversational."""
    for name in ("chosen", "rejected"):
        if name not in rec:
            present = ", ".join(sorted(raw)) or "none"
            raise RecordError(f"missing field '{name}' (fields present: {present})")
    messages = fmt == "conversational"
    chosen = check_text(rec["chosen"], "chosen", allow_messages=messages or fmt == "auto")
    rejected = check_text(rec["rejected"], "rejected", allow_messages=messages or fmt == "auto")
    implicit = fmt == "implicit" or "prompt" not in rec
    if implicit:
        # An empty final assistant turn is a real answer (saying nothing), not a broken record:
        # hh-rlhf has chosen transcripts that end in an empty "Assistant:" turn.
        prompt, chosen, rejected = _shared_prompt(chosen, rejected)
    else:
        prompt = check_text(rec["prompt"], "prompt", allow_messages=True)
    if isinstance(prompt, list) or isinstance(chosen, list) or isinstance(rejected, list):
        prompt, chosen, rejected = _as_messages(prompt, "user"), _as_messages(chosen), _as_messages(rejected)
    for name, r in (("chosen", chosen), ("rejected", rejected)):
        if not implicit and _empty_response(r):
            raise RecordError(f"field '{name}' has an empty response")
    if chosen == rejected:
        raise RecordError("chosen and rejected are identical")
    margin = _number(rec["margin"], "margin") if rec.get("margin") is not None else None
    return Comparison(prompt=prompt, responses=[chosen, rejected], margin=margin)


def _parse_ranking(rec: dict[str, Any]) -> Comparison:
    """``{"prompt", "responses", "scores"}`` (any order, higher score better) or
    ``{"prompt", "ranking"}`` (best first, optionally with ``scores`` in the same order).

    A ranking must be a strict order of K >= 2 distinct responses: ties, duplicates and a score
    list of another length are errors, not guesses.
    """
    prompt = check_text(rec.get("prompt"), "prompt")
    name = "ranking" if "ranking" in rec else "responses"
    responses = rec.get(name)
    scores = rec.get("scores")
    if not isinstance(responses, list):
        raise RecordError(f"field '{name}' must be a list of responses")
    if len(responses) < 2:
        raise RecordError(f"field '{name}' needs at least 2 responses, got {len(responses)}")
    responses = [check_text(r, f"{name}[{i}]") for i, r in enumerate(responses)]
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
    if name == "ranking" and any(scores[i] < scores[i + 1] for i in range(len(scores) - 1)):
        raise RecordError("field 'scores' must not increase along 'ranking' (best first)")
    order = None
    if name == "responses":
        order = sorted(range(len(responses)), key=lambda i: -scores[i])
        responses = [responses[i] for i in order]
        scores = [scores[i] for i in order]
    if any(scores[i] == scores[i + 1] for i in range(len(scores) - 1)):
        raise RecordError("field 'scores' has ties; a ranking needs a strict order")
    return Comparison(prompt=prompt, responses=responses, scores=scores, order=order)


def _parse_votes(rec: dict[str, Any]) -> Comparison:
    """A pair judged by several annotators: the majority of a/b votes decides (see module doc)."""
    for name in ("response_a", "response_b"):
        if name not in rec:
            present = ", ".join(sorted(rec)) or "none"
            raise RecordError(f"missing field '{name}' (a 'votes' record needs response_a, response_b "
                              f"and votes; fields present: {present})")
    a = check_text(rec["response_a"], "response_a")
    b = check_text(rec["response_b"], "response_b")
    if "prompt" in rec:
        prompt = check_text(rec["prompt"], "prompt")
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


BENCHMARK_SHAPES = {"best-of-n": "RewardBench-2 best-of-N", "rm-bench": "RM-Bench", "judgebench": "JudgeBench"}
RM_BENCH_STYLES = ("concise", "detailed", "markdown")
JUDGEBENCH_LABELS = ("A>B", "B>A")
BEST_OF_N_COUNTS = (("num_correct", "'chosen' has"), ("num_incorrect", "'rejected' has"),
                    ("total_completions", "'chosen' and 'rejected' have"))


def _bench_error(note: str, name: str, reason: str) -> RecordError:
    return RecordError(f"field '{name}' ({note}): {reason}")


def _parse_benchmark(rec: dict[str, Any], raw: dict[str, Any], kind: str, forced: bool) -> Comparison:
    """A benchmark's row (see the module doc) as one comparison: its responses as the row lists them
    (chosen then rejected; JudgeBench's A then B) and a `BenchmarkRow` saying which are chosen."""
    note = f"{BENCHMARK_SHAPES[kind]} row" + (f", --format {kind}" if forced else " assumed")
    if kind == "judgebench":
        return _parse_judgebench(rec, raw, note)
    prompt = _bench_prompt(rec, raw, "prompt", note)
    want = len(RM_BENCH_STYLES) if kind == "rm-bench" else None
    chosen, rejected = (_bench_answers(rec, raw, name, want, note) for name in ("chosen", "rejected"))
    subset, row_id = rec.get("subset"), _row_id(rec, "id", note)
    if kind == "rm-bench":
        domain = rec.get("domain")
        if domain is not None and not isinstance(domain, str):
            raise _bench_error(note, "domain", f"must be a string, got {type(domain).__name__}")
        subset = domain if domain is not None else subset
    else:
        counts = (len(chosen), len(rejected), len(chosen) + len(rejected))
        for (name, what), have in zip(BEST_OF_N_COUNTS, counts):
            value = rec.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise _bench_error(note, name, f"must be an integer, got {_shown(value)}")
            if value is not None and value != have:
                raise _bench_error(note, name, f"is {value!r}, but {what} {have} response(s)")
        if subset == "Ties" and not re.fullmatch(r"(ref|tied):\d+", row_id or ""):
            raise _bench_error(note, "id", "a Ties row needs an id 'ref:<n>' or 'tied:<n>' (its scoring groups "
                               f"rows by it), got {_shown(rec.get('id'))}")
    responses: list[Text] = [*chosen, *rejected]
    if isinstance(prompt, list):
        responses = [_as_messages(r) for r in responses]
    return Comparison(prompt=prompt, responses=responses, subset=subset,
                      bench=BenchmarkRow(kind, chosen=len(chosen), id=row_id))


def _parse_judgebench(rec: dict[str, Any], raw: dict[str, Any], note: str) -> Comparison:
    """``{question, response_A, response_B, label}``: the responses in the record's order, the label kept."""
    prompt = _bench_prompt(rec, raw, "question" if "question" in raw or "prompt" not in raw else "prompt", note)
    responses: list[Text] = [_bench_str(rec.get(name), name, raw, note) for name in ("response_A", "response_B")]
    if "label" not in rec:
        raise _missing(note, "label", raw)
    label = rec["label"]
    if not isinstance(label, str) or label not in JUDGEBENCH_LABELS:
        raise _bench_error(note, "label", f'must be "A>B" or "B>A", got {_shown(label)}')
    source = rec.get("source")
    if source is not None and not isinstance(source, str):
        raise _bench_error(note, "source", f"must be a string, got {type(source).__name__}")
    if isinstance(prompt, list):
        responses = [_as_messages(r) for r in responses]
    return Comparison(prompt=prompt, responses=responses, subset=source if source is not None else rec.get("subset"),
                      bench=BenchmarkRow("judgebench", chosen=1, id=_row_id(rec, "pair_id", note), label=label))


def _missing(note: str, name: str, raw: dict[str, Any]) -> RecordError:
    return _bench_error(note, name, f"missing (fields present: {', '.join(sorted(raw)) or 'none'})")


def _bench_prompt(rec: dict[str, Any], raw: dict[str, Any], name: str, note: str) -> Text:
    """A benchmark row's prompt: a string, or chat messages (the responses then become messages too)."""
    value = rec.get("prompt")
    if isinstance(value, list):
        return _check_messages(value, name)
    return _bench_str(value, name, raw, note)


def _bench_str(value: Any, name: str, raw: dict[str, Any], note: str) -> str:
    if value is None:
        raise _missing(note, name, raw)
    if not isinstance(value, str):
        raise _bench_error(note, name, f"must be a string, got {type(value).__name__}")
    if not value.strip():
        raise _bench_error(note, name, "is empty")
    return value


def _bench_answers(rec: dict[str, Any], raw: dict[str, Any], name: str, want: int | None, note: str) -> list[str]:
    """A benchmark row's chosen or rejected answers: a list of non-empty strings, ``want`` of them
    (RM-Bench's three styles) or at least one."""
    value = rec.get(name)
    if value is None:
        raise _missing(note, name, raw)
    if not isinstance(value, list):
        raise _bench_error(note, name, f"must be a list of strings, got {type(value).__name__}")
    if want is not None and len(value) != want:
        raise _bench_error(note, name, f"needs {want} responses ({', '.join(RM_BENCH_STYLES)}), got {len(value)}")
    if not value:
        raise _bench_error(note, name, "is an empty list (a row needs at least 1 response on each side)")
    for i, x in enumerate(value):
        if not isinstance(x, str):
            kind = "null" if x is None else type(x).__name__
            raise _bench_error(note, name, f"item {i} must be a string, got {kind}")
        if not x.strip():
            raise _bench_error(note, name, f"item {i} is empty")
    return list(value)


def _row_id(rec: dict[str, Any], name: str, note: str) -> str | None:
    value = rec.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _bench_error(note, name, f"must be a string or an integer, got {type(value).__name__}")
    return str(value)


def _shown(value: Any) -> str:
    """A value's type and its start, for messages about values of the wrong kind."""
    if value is None:
        return "null"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:40] + '...'}"


def comparison_records(comp: Comparison, to: str = "auto", margin_scale: float = 1.0) -> list[dict[str, Any]]:
    """Explicit JSON records for one comparison, in shapes every loader here reads back.

    ``to="auto"``: K = 2 -> one pair, K > 2 -> one ranking; ``"pairs"``: all C(K,2) pairs, best
    first, margin = score gap x ``margin_scale`` when the ranking has scores; ``"rankings"``: one
    ranking record (``responses`` + ``scores`` when scored, else an ordered ``ranking``). A benchmark
    row is always its stated pairs (`preference_pairs`): it names chosen responses, not an order of all.
    """
    extra = {"subset": comp.subset} if comp.subset is not None else {}
    if comp.bench is not None:
        if to == "rankings":
            raise DataError(f"{comp.source}: a {comp.bench.kind} benchmark row is not a ranking (it says which "
                            "responses are chosen, not an order of them all): convert it with --to pairs or auto")
        return [{"prompt": comp.prompt, "chosen": comp.responses[i], "rejected": comp.responses[j], **extra}
                for i, j in preference_pairs(comp)]
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
