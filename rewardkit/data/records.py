"""The record types every other module speaks: comparisons, and what a loader could not use.

A `Comparison` is one prompt with K >= 2 responses ordered best first; a preference pair is the
K = 2 case (responses = [chosen, rejected]). Keeping one record type for pairs and rankings means
the batching, losses and training loop never branch on the data shape.

A `Problem` is one unusable record (file:line and reason); `Loaded` is what a loader produced,
the problems it met, the valid records that expressed no preference (`dropped`), and one-line
notes on conversions. Nothing is dropped silently: `Loaded.messages` says all of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterable

from rewardkit.errors import DataError

Text = str | list[dict[str, str]]  # plain text, or chat messages [{"role", "content"}]

SHOW_PROBLEMS = 5


def text_key(t: Text) -> str:
    """A hashable identity of a text or message list: equal texts, equal keys (grouping, splits, lookups)."""
    return t if isinstance(t, str) else json.dumps(t, sort_keys=True)


def text_length(t: Text) -> int:
    """Characters of a text, or of a message list's contents (length statistics, length bias)."""
    return len(t) if isinstance(t, str) else sum(len(m["content"]) for m in t)


BENCHMARK_KINDS = ("best-of-n", "rm-bench", "judgebench")


@dataclass
class BenchmarkRow:
    """What a benchmark's row says beyond its responses, for scoring it the benchmark's own way.

    best-of-n (RewardBench 2): ``responses`` are the chosen answers then the rejected ones; ``chosen`` of
    them are chosen (``num_correct``), ``id`` is the row's id (the Ties subset groups rows by it).
    rm-bench: ``responses`` are the 3 chosen then the 3 rejected answers, each in the styles concise,
    detailed, markdown. judgebench: ``responses`` are response_A and response_B in that order and
    ``label`` is "A>B" or "B>A"; ``chosen`` is 1 and the comparison's ``subset`` is the row's source.
    """

    kind: str  # one of BENCHMARK_KINDS
    chosen: int  # the first `chosen` responses are chosen, the rest rejected
    id: str | None = None
    label: str | None = None  # judgebench only


def input_kind(comps: "list[Comparison]") -> str:
    """What texts a model was trained on, for ``config.rewardkit.inputs``: ``messages`` (every comparison
    is chat messages, so scoring turns plain strings into messages), ``text`` (none is) or ``mixed``."""
    chat = [isinstance(c.prompt, list) or any(isinstance(r, list) for r in c.responses) for c in comps]
    return "messages" if chat and all(chat) else "text" if not any(chat) else "mixed"


@dataclass
class Comparison:
    """One prompt and K >= 2 responses, best first. Pairs are K = 2: [chosen, rejected]."""

    prompt: Text
    responses: list[Text]
    margin: float | None = None
    scores: list[float] | None = None
    subset: str | None = None
    source: str = ""
    # A ranking given as {responses, scores} is stored best first; order[i] is the record's index of
    # responses[i], so results can be written back in the record's own order.
    order: list[int] | None = None
    # A benchmark's row (RewardBench 2, RM-Bench, JudgeBench): not a ranking; scored by its own rules
    # (`rewardkit.evaluation.benchmarks`), never trained on as it is.
    bench: BenchmarkRow | None = None

    @property
    def chosen(self) -> Text:
        return self.responses[0]

    @property
    def rejected(self) -> Text:
        return self.responses[-1]

    def in_record_order(self, values: list[float]) -> list[float]:
        """Per-response ``values`` (best first, as ``responses``) in the order the record listed them."""
        if self.order is None:
            return list(values)
        out = [0.0] * len(values)
        for rank, i in enumerate(self.order):
            out[i] = values[rank]
        return out

    def prompt_key(self) -> str:
        """A hashable identity of the prompt, used for prompt-disjoint splits and grouping."""
        return text_key(self.prompt)


def preference_pairs(c: Comparison) -> list[tuple[int, int]]:
    """The (better, worse) response indices a comparison states, so that counting, converting and pair
    statistics never read a benchmark row as a ranking: every i < j of a ranking (best first); of a
    benchmark row, each chosen with each rejected (best-of-n), the three same-style pairs (rm-bench),
    or response_A and response_B in the labelled order (judgebench)."""
    k, b = len(c.responses), c.bench
    if b is None:
        return [(i, j) for i in range(k) for j in range(i + 1, k)]
    if b.kind == "judgebench":
        return [(0, 1)] if b.label == "A>B" else [(1, 0)]
    if b.kind == "rm-bench":
        return [(s, s + b.chosen) for s in range(b.chosen)]
    return [(i, j) for i in range(b.chosen) for j in range(b.chosen, k)]


def is_benchmark(comparisons: Iterable[Comparison]) -> str | None:
    """The kind of the first benchmark row among ``comparisons``, or None: for callers that read
    ``responses`` as best first and must refuse such rows or route them to benchmark scoring."""
    return next((c.bench.kind for c in comparisons if c.bench is not None), None)


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

    def messages(self, source: str) -> list[str]:
        """What a run should tell the user about this load: skipped problems, notes, records left out."""
        out = [describe_problems(self.problems, source) + "\n(skipped: --skip-invalid)"] if self.problems else []
        out += self.notes
        if self.dropped:
            out.append(describe_dropped(self.dropped, source))
        return out


def check_usable(problems: list[Problem], dropped: list[Problem], usable: int, source: str, skip_invalid: bool,
                 nothing: str) -> None:
    """Raise DataError when a load met invalid records (unless ``skip_invalid``) or produced nothing
    usable (``nothing`` says what, e.g. "no usable preference records"), listing the first few."""
    if problems and not skip_invalid:
        raise DataError(describe_problems(problems, source) +
                        "\n(use --skip-invalid to skip these records and train on the rest)")
    if not usable:
        raise DataError(f"{source}: {nothing}"
                        + (f"\n{describe_problems(problems, source)}" if problems else "")
                        + (f"\n{describe_dropped(dropped, source)}" if dropped else ""))


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
