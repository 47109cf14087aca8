"""Rating tables -> preference pairs (or rankings), one prompt at a time.

Annotators often score answers instead of comparing them: one row per (prompt, response, score),
several rows per prompt, e.g. a ``question,answer,feedback`` CSV. Pairs come from comparing the
answers of one prompt:

* ``best-worst`` (default): the best-scored answer against the worst-scored one, one pair per
  prompt. With ``hi``/``lo`` the chosen answer must score >= hi and the rejected one < lo (the
  "keep the best answer with score >= 4 and the worst with score < 4" recipe is hi = lo = 4).
* ``all-pairs``: every two answers whose scores differ by at least ``min_gap`` (and satisfy
  ``hi``/``lo`` when given), the higher-scored one chosen. With ``--balance-per-prompt`` the pairs
  of one prompt share one unit of weight (InstructGPT).
* ``ranking``: all answers of a prompt as one K-way ranking with their scores (for ``--loss pl``);
  a prompt whose answers tie cannot be a strict ranking and is reported instead.

Rules: ties never become pairs (a gap must be > 0 *and* >= ``min_gap``); a prompt that yields no
pair (a single answer, all answers tied, nothing past the thresholds) is reported with the line of
its first row, never dropped silently; the same response rated on several rows of one prompt
(several annotators) is one answer with the mean of its scores. Each pair's ``margin`` is the score
gap times ``margin_scale`` (0: no margin) for the margin loss ``-logsigmoid(r_c - r_r - m)``.

Within one prompt, answers keep their file order: among equally scored best (or worst) answers the
first one is taken, so conversions are deterministic.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Iterable, Iterator

from rewardkit.data.formats import check_text
from rewardkit.data.records import Comparison, Loaded, Problem, Text, text_key
from rewardkit.errors import DataError, RecordError, UsageError, flag

PROMPT_COLUMNS = ("prompt", "question", "instruction", "query")
RESPONSE_COLUMNS = ("response", "answer", "completion", "output")
SCORE_COLUMNS = ("score", "rating", "feedback", "reward")
MODES = ("best-worst", "all-pairs", "ranking")
# Columns that say a table already holds comparisons, so it is not a rating table.
_PAIR_COLUMNS = {"chosen", "rejected", "positive", "negative", "response_j", "response_k",
                 "responses", "ranking", "response_a", "response_b"}
PREVIEW_CHARS = 40


@dataclass
class RatingOptions:
    """How a rating table becomes pairs. `TrainConfig` carries the same fields (same help text)."""

    prompt_column: str | None = field(default=None, metadata=dict(group="data", help=
        "Rating tables: column holding the prompt. Default: the first of "
        + "/".join(PROMPT_COLUMNS) + " present."))
    response_column: str | None = field(default=None, metadata=dict(group="data", help=
        "Rating tables: column holding the response. Default: the first of "
        + "/".join(RESPONSE_COLUMNS) + " present."))
    score_column: str | None = field(default=None, metadata=dict(group="data", help=
        "Rating tables: column holding the numeric score. Default: the first of "
        + "/".join(SCORE_COLUMNS) + " present."))
    ratings_mode: str = field(default="best-worst", metadata=dict(group="data", help=
        "Rating tables: best-worst (one pair per prompt, best vs worst answer), all-pairs (every two "
        "answers whose scores differ by at least --min-gap) or ranking (all answers of a prompt as one "
        "K-way ranking, for --loss pl).", choices=list(MODES)))
    hi: float | None = field(default=None, metadata=dict(group="data", help=
        "Rating tables: a chosen answer must score >= HI (unset: no threshold)."))
    lo: float | None = field(default=None, metadata=dict(group="data", help=
        "Rating tables: a rejected answer must score < LO (unset: no threshold)."))
    min_gap: float = field(default=0.0, metadata=dict(group="data", help=
        "Rating tables: minimum score difference of a pair. Ties never make a pair, whatever this is."))
    margin_scale: float = field(default=1.0, metadata=dict(group="data", help=
        "Rating tables: each pair's margin is (score difference) * MARGIN_SCALE; 0 writes no margin."))

    def validate(self) -> None:
        if self.ratings_mode not in MODES:
            raise UsageError(f"{flag('ratings_mode')} must be one of {', '.join(MODES)} (got {self.ratings_mode!r})")
        for name in ("min_gap", "margin_scale"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise UsageError(f"{flag(name)} must be a finite number >= 0 (got {value!r})")
        for name in ("hi", "lo"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise UsageError(f"{flag(name)} must be a finite number (got {value!r})")
        if self.ratings_mode == "ranking":
            pair_only = [flag(n) for n, default in (("hi", None), ("lo", None), ("min_gap", 0.0), ("margin_scale", 1.0))
                         if getattr(self, n) != default]
            if pair_only:
                raise UsageError(f"{', '.join(pair_only)} only apply to --ratings-mode best-worst or all-pairs "
                                 "(a ranking keeps every answer and its score; --no-use-margin drops score margins)")

    def describe(self) -> str:
        if self.ratings_mode == "ranking":
            return "ranking: all answers of a prompt, best first"
        rules = [self.ratings_mode]
        if self.hi is not None:
            rules.append(f"chosen >= {self.hi:g}")
        if self.lo is not None:
            rules.append(f"rejected < {self.lo:g}")
        if self.min_gap:
            rules.append(f"gap >= {self.min_gap:g}")
        rules.append(f"margin = {self.margin_scale:g} x gap" if self.margin_scale else "no margin")
        return ", ".join(rules)


def options_from(obj: Any) -> RatingOptions:
    """The `RatingOptions` part of any object with the same attribute names (e.g. a TrainConfig)."""
    return RatingOptions(**{f.name: getattr(obj, f.name) for f in dataclasses.fields(RatingOptions)})


# --------------------------------------------------------------------------------------- columns


def _pick(columns: list[str], wanted: str | None, candidates: tuple[str, ...]) -> str | None:
    if wanted is not None:
        return wanted if wanted in columns else None
    lower = {c.lower(): c for c in columns}
    return next((lower[c] for c in candidates if c in lower), None)


def looks_like_ratings(columns: Iterable[str], opts: RatingOptions) -> bool:
    """True for a table with prompt, response and score columns and no comparison columns."""
    cols = list(columns)
    if {c.lower() for c in cols} & _PAIR_COLUMNS:
        return False
    return None not in (_pick(cols, opts.prompt_column, PROMPT_COLUMNS),
                        _pick(cols, opts.response_column, RESPONSE_COLUMNS),
                        _pick(cols, opts.score_column, SCORE_COLUMNS))


def resolve_columns(columns: list[str], opts: RatingOptions, where: str) -> tuple[str, str, str]:
    """(prompt, response, score) column names, or DataError naming what is missing."""
    return (find_column(columns, "prompt", opts.prompt_column, PROMPT_COLUMNS, where),
            find_column(columns, "response", opts.response_column, RESPONSE_COLUMNS, where),
            find_column(columns, "score", opts.score_column, SCORE_COLUMNS, where))


def find_column(columns: list[str], role: str, wanted: str | None, candidates: tuple[str, ...], where: str) -> str:
    """The column playing ``role`` (``--ROLE-column`` if given, else the first candidate present),
    or DataError naming what is missing."""
    name = _pick(columns, wanted, candidates)
    if name is None:
        asked = f"--{role}-column {wanted!r} is not a column" if wanted else \
            f"no {role} column (looked for {', '.join(candidates)}; set --{role}-column)"
        raise DataError(f"{where}: rating table: {asked}; columns are {columns}")
    return name


# --------------------------------------------------------------------------------------- reading


@dataclass
class Answer:
    """One response to a prompt with every score it received (one per row that rated it)."""

    response: Text
    scores: list[float]
    where: str

    @property
    def score(self) -> float:
        return sum(self.scores) / len(self.scores)


@dataclass
class RatedPrompt:
    prompt: Text
    where: str  # first row of this prompt
    answers: list[Answer] = field(default_factory=list)

    def preview(self) -> str:
        text = self.prompt if isinstance(self.prompt, str) else self.prompt[-1]["content"]
        text = " ".join(text.split())
        return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS - 3] + "..."


def _score(value: Any, column: str) -> float:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RecordError(f"field '{column}' (score) is empty")
    if isinstance(value, bool):
        raise RecordError(f"field '{column}' (score) must be a number, got bool")
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise RecordError(f"field '{column}' (score) must be a number, got {value!r}") from None
    if not math.isfinite(score):
        raise RecordError(f"field '{column}' (score) must be finite, got {value!r}")
    return score


def read_ratings(rows: Iterator[tuple[str, Any]], opts: RatingOptions
                 ) -> tuple[list[RatedPrompt], list[Problem], int, int]:
    """Group rating rows by prompt: (prompts in first-seen order, problems, rows, merged rows).

    Columns are resolved from the first readable row; a later row missing one is a problem.
    """
    prompts: dict[str, RatedPrompt] = {}
    problems: list[Problem] = []
    records = merged = 0
    columns: tuple[str, str, str] | None = None
    for where, raw in rows:
        records += 1
        try:
            if isinstance(raw, RecordError):
                raise raw
            if not isinstance(raw, dict):
                raise RecordError(f"expected a row of named columns, got {type(raw).__name__}")
            if columns is None:
                columns = resolve_columns(list(raw), opts, where)
            pcol, rcol, scol = columns
            for col in columns:
                if col not in raw:
                    raise RecordError(f"missing field '{col}'")
            prompt = check_text(raw[pcol], pcol)
            response = check_text(raw[rcol], rcol)
            score = _score(raw[scol], scol)
        except RecordError as e:
            problems.append(Problem(where, str(e)))
            continue
        group = prompts.setdefault(text_key(prompt), RatedPrompt(prompt, where))
        same = next((a for a in group.answers if text_key(a.response) == text_key(response)), None)
        if same is None:
            group.answers.append(Answer(response, [score], where))
        else:
            same.scores.append(score)
            merged += 1
    return list(prompts.values()), problems, records, merged


# --------------------------------------------------------------------------------------- pairing


def _number(x: float) -> str:
    return f"{x:g}"


def pairs_for(group: RatedPrompt, opts: RatingOptions) -> tuple[list[Comparison], str | None]:
    """The pairs of one prompt, or ([], why there are none)."""
    answers = group.answers
    n = len(answers)
    label = f"prompt {group.preview()!r} ({n} answer{'s' if n != 1 else ''})"
    if n < 2:
        return [], f"{label}: only one answer, no pair"
    scores = [a.score for a in answers]
    if max(scores) == min(scores):
        return [], f"{label}: all answers scored {_number(scores[0])} (tied), no pair"
    if opts.ratings_mode == "best-worst":
        best = max(range(n), key=lambda i: (scores[i], -i))  # first of the best
        worst = min(range(n), key=lambda i: (scores[i], i))  # first of the worst
        candidates = [(best, worst)]
    else:
        order = sorted(range(n), key=lambda i: (-scores[i], i))
        candidates = [(i, j) for i, j in combinations(order, 2) if scores[i] > scores[j]]
    why = []
    pairs = []
    for i, j in candidates:
        gap = scores[i] - scores[j]
        if opts.hi is not None and scores[i] < opts.hi:
            why.append(f"best answer scored {_number(scores[i])} < --hi {_number(opts.hi)}")
        elif opts.lo is not None and scores[j] >= opts.lo:
            why.append(f"worst answer scored {_number(scores[j])} >= --lo {_number(opts.lo)}")
        elif gap < opts.min_gap:
            why.append(f"score gap {_number(gap)} < --min-gap {_number(opts.min_gap)}")
        else:
            pairs.append(Comparison(prompt=group.prompt, responses=[answers[i].response, answers[j].response],
                                    margin=gap * opts.margin_scale if opts.margin_scale else None,
                                    source=answers[i].where))
    if pairs:
        return pairs, None
    if opts.ratings_mode == "best-worst":
        return [], f"{label}: {why[0]}, no pair"
    return [], f"{label}: no two answers pass the thresholds ({opts.describe()}), no pair"


def ranking_for(group: RatedPrompt) -> tuple[Comparison | None, str | None]:
    """All answers of one prompt as one strict ranking (scores kept), or (None, why not)."""
    answers = group.answers
    label = f"prompt {group.preview()!r} ({len(answers)} answer{'s' if len(answers) != 1 else ''})"
    if len(answers) < 2:
        return None, f"{label}: only one answer, no ranking"
    order = sorted(range(len(answers)), key=lambda i: (-answers[i].score, i))
    scores = [answers[i].score for i in order]
    tied = sorted({s for s, t in zip(scores, scores[1:]) if s == t})
    if tied:
        return None, (f"{label}: answers tied at score {', '.join(map(_number, tied))}; a ranking needs a "
                      "strict order (convert to pairs instead)")
    return Comparison(prompt=group.prompt, responses=[answers[i].response for i in order], scores=scores,
                      source=group.where), None


def load_ratings(rows: Iterator[tuple[str, Any]], source: str, opts: RatingOptions) -> Loaded:
    """Read a rating table into pairs, or one ranking per prompt (``ratings_mode="ranking"``).

    Bad rows are `problems` (the caller decides whether they are fatal); prompts that yield
    nothing are `dropped`, each with its reason; a summary goes into `notes`.
    """
    groups, problems, records, merged = read_ratings(rows, opts)
    shape = "rankings" if opts.ratings_mode == "ranking" else "pairs"
    out = Loaded(comparisons=[], problems=problems, records=records)
    for g in groups:
        if shape == "pairs":
            comps, why = pairs_for(g, opts)
            out.comparisons.extend(comps)
        else:
            comp, why = ranking_for(g)
            if comp is not None:
                out.comparisons.append(comp)
        if why is not None:
            out.dropped.append(Problem(g.where, why))
    made = f"{len(out.comparisons)} {'pairs' if shape == 'pairs' else 'rankings'}"
    note = (f"rating table {source}: {records} rows, {len(groups)} prompts -> {made} ({opts.describe()}); "
            f"{len(out.dropped)} prompts gave none")
    if merged:
        note += f"; {merged} rows re-rated an answer already seen and were averaged into it"
    out.notes.append(note)
    return out


# --------------------------------------------------------------------------------------- verdicts


@dataclass
class LabelledAnswer:
    """A rated answer as a yes/no verdict (``--objective generative`` on a rating table): label 1 when
    its score (the mean of its rows) reaches ``hi``, 0 when it is below ``lo``."""

    prompt: Text
    response: Text
    label: float
    where: str

    def prompt_key(self) -> str:
        return text_key(self.prompt)


def label_answers(rows: Iterator[tuple[str, Any]], source: str, opts: RatingOptions, hi: float, lo: float
                  ) -> tuple[list[LabelledAnswer], Loaded]:
    """Every answer of a rating table labelled by the thresholds; what was read and left out (scores
    between ``lo`` and ``hi``: no verdict) reported in the returned `Loaded`'s problems and notes."""
    groups, problems, records, merged = read_ratings(rows, opts)
    answers, between = [], 0
    for g in groups:
        for a in g.answers:
            if a.score >= hi or a.score < lo:
                answers.append(LabelledAnswer(g.prompt, a.response, 1.0 if a.score >= hi else 0.0, a.where))
            else:
                between += 1
    out = Loaded(comparisons=[], problems=problems, records=records)
    yes = sum(a.label for a in answers)
    out.notes.append(f"rating table {source}: {records} rows -> {len(answers)} answers with a verdict "
                     f"({int(yes)} yes: score >= {_number(hi)}; {len(answers) - int(yes)} no: score < {_number(lo)}); "
                     f"{between} between the thresholds left out"
                     + (f"; {merged} re-rated rows averaged" if merged else ""))
    return answers, out
