"""Public reward-model benchmarks scored exactly as their own code scores them, and a paired bootstrap
over prompts for telling whether model B really beats model A on one of them.

Pure functions of rewards (raw logits: all three benchmarks read the model's logits with no activation).
Rows are `ScoredRow`s, not rewardkit's records, so a benchmark file read by any reader can be scored.
Every score here is a fraction in [0, 1], never a percent (the leaderboards print percents); the one
exception is upstream's: the Ties score is an unclipped weighted sum whose 0.01 x tanh term could take
it to -0.01 or 1.01, and it is kept unclipped so that it matches the leaderboard.

RewardBench 2 (allenai/reward-bench: scripts/run_v2.py, rewardbench/utils.py), kind "best-of-n":
  a row scores 1/k when its first chosen reward equals the row's maximum and k rewards do (exact float
  equality), else 0; any NaN makes it 0 (numpy's max is NaN then). A subset's score is the mean of its
  rows. The Ties subset (name matched case-insensitively, as upstream) has its own weighted score
  (`process_single_model`, see `_tally_ties`). The headline is the unweighted mean of the subsets'
  scores, Ties' weighted score among them, as the leaderboard averages its six subsets.
RM-Bench (THU-KEG/RM-Bench: scripts/utils.py::compute_accuracy), kind "rm-bench": per domain a 3x3
  matrix, M[i][j] = share of rows whose chosen reward in style i beats the rejected one in style j
  strictly (styles: concise, detailed, markdown); hard = the cells above the diagonal (plainer chosen
  against fancier rejected), normal = the diagonal, easy = below it. Domains by prefix (chat, math, code,
  safety), so safety-refuse and safety-response are POOLED into one safety matrix, as upstream.
JudgeBench (ScalerLab/JudgeBench: utils/judges.py, utils/metrics.py), kind "judgebench": the decision is
  "A>B" iff reward_A > reward_B strictly, so a tie or a NaN decides "B>A" (upstream's reward judges);
  single game. The headline is the accuracy over all pairs (micro, upstream's Overall), not the mean
  of the categories (reported too, as ``category_mean``).

How a score is computed, and why: every benchmark turns its rows into tallies, one line of sums and
counts per row (a subset's results and rows, a matrix cell's wins, a Ties prompt's verdicts), and its
score is a function of the tallies' column totals. The paired bootstrap needs nothing else: a
resample is a count per unit, its totals are counts @ the units' tallies, so 1,000 resamples of
RewardBench 2 cost one matrix product, and a resample's score is by construction the benchmark's
score of the rows it drew, each drawn copy of a unit counted as a prompt of its own. Column totals
are exactly rounded sums (math.fsum), so a score does not depend on the rows' order (upstream's plain
sums can differ from it in the last bit); means over subsets, domains and categories add them one
after another in a fixed order: the benchmark's own, then other names alphabetically.

Where upstream is silent or fails, this module decides (each function's doc says where): no Ties
rows, the score is the mean of the subsets present; a Ties prompt with only a ref or a tied group
counts in that accuracy only; no prompt with both groups, the three terms over such prompts are 0
(upstream: NaN); a tied group with one correct answer has spread 0 (upstream: None, then an error);
a NaN in a Ties group fails that group (upstream: depends on its position); a Ties group without a
correct or an incorrect response, or a malformed Ties id, is an error (upstream: an error); a row
whose subset is None belongs to the subset "(none)". A row whose rewards are malformed for its
benchmark (RM-Bench: not 3 + 3; JudgeBench: not 2, or a label other than "A>B"/"B>A") is an error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

BEST_OF_N, RM_BENCH, JUDGEBENCH = "best-of-n", "rm-bench", "judgebench"
KINDS = (BEST_OF_N, RM_BENCH, JUDGEBENCH)
NO_SUBSET = "(none)"  # the subset, domain or category of a row whose subset is None
RB2_SUBSETS = ("Factuality", "Precise IF", "Math", "Safety", "Focus", "Ties")
TIES = "Ties"
RM_DOMAINS = ("chat", "math", "code", "safety")
STYLES = ("concise", "detailed", "markdown")
JUDGE_CATEGORIES = {"mmlu-pro": "knowledge", "livebench-reasoning": "reasoning", "livebench-math": "math",
                    "livecodebench": "coding"}
JUDGE_LABELS = ("A>B", "B>A")
_BLOCK_CELLS = 4_000_000  # resample counts held at once (rows x units): 32 MB of float64

Totals = Callable[..., np.ndarray]  # column key -> that column's totals (one per resample, or 0-d)


@dataclass
class ScoredRow:
    """One benchmark row and one model's rewards for its responses.

    ``rewards``: best-of-n, the chosen responses' rewards then the rejected ones'; rm-bench, 3 chosen
    then 3 rejected, each in the style order concise, detailed, markdown; judgebench, [reward_A,
    reward_B]. ``chosen``: how many of ``rewards`` are chosen (3 for rm-bench; judgebench ignores it).
    ``subset``: the RewardBench 2 subset, RM-Bench domain or JudgeBench source. ``id``: RewardBench 2's
    row id ("ref:12" / "tied:12" in Ties). ``label``: JudgeBench's "A>B" or "B>A".
    """

    kind: str
    subset: str | None
    rewards: list[float]
    chosen: int
    id: str | None = None
    label: str | None = None


class _Tally:
    """Numbers per benchmark row under named columns; a benchmark's score is a function of the column
    totals, which makes a bootstrap resample one matrix product (see the module doc).

    ``together``: groups of rows whose tallies depend on each other (a Ties prompt's ref and tied rows),
    which a bootstrap must draw as one unit.
    """

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.columns: dict[Hashable, int] = {}
        self.together: list[list[int]] = []
        self._entries: list[tuple[int, int, float]] = []

    def add(self, row: int, column: Hashable, value: float) -> None:
        """Add to a row's column; adding 0 still creates the column, so which columns exist depends only
        on the rows' structure and two models scored on the same rows get the same columns."""
        self._entries.append((row, self.columns.setdefault(column, len(self.columns)), float(value)))

    def values(self) -> np.ndarray:
        out = np.zeros((self.rows, len(self.columns)))
        for row, column, value in self._entries:
            out[row, column] += value
        return out

    def exact_totals(self) -> np.ndarray:
        """Column sums, exactly rounded: the same floats whatever the rows' order."""
        return np.array([math.fsum(column) for column in self.values().T])

    def reader(self, totals: np.ndarray) -> Totals:
        """Column lookup on totals of shape (..., columns); a column no row created reads as zeros."""
        def get(*key: Hashable) -> np.ndarray:
            index = self.columns.get(key)
            return totals[..., index] if index is not None else np.zeros(totals.shape[:-1])
        return get


@dataclass
class _Prepared:
    """A benchmark's tallies and its headline score as a function of their totals (any leading shape)."""

    tally: _Tally
    headline: Callable[[Totals], np.ndarray]


# ---------------------------------------------------------------------------------------------- helpers

def _ratio(num: np.ndarray, den: np.ndarray, empty: float = math.nan) -> np.ndarray:
    """num / den, ``empty`` where den is 0 (NaN marks a part absent from the data or from a resample)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), empty)


def _mean_present(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Mean of the parts that are not NaN (absent), added in the given order; NaN when none is present.

    A subset missing from a resample is left out of that resample's mean, as one missing from the data
    is left out of the score."""
    total: Any = 0.0
    count: Any = 0.0
    for part in parts:
        present = ~np.isnan(part)
        total = total + np.where(present, part, 0.0)
        count = count + present
    return _ratio(total, np.asarray(count, dtype=float))


def _ordered(names: set[str], known: Sequence[str]) -> list[str]:
    """The benchmark's own names in its order, then the others alphabetically."""
    return [n for n in known if n in names] + sorted(names - set(known))


def _subset(row: ScoredRow) -> str:
    return NO_SUBSET if row.subset is None else row.subset


def _check_rows(kind: str, rows: Sequence[ScoredRow]) -> None:
    if not rows:
        raise ValueError(f"{kind}: no rows to score")
    for i, row in enumerate(rows):
        if row.kind != kind:
            raise ValueError(f"row {i}: kind {row.kind!r} in a {kind!r} benchmark")


def _f(x: Any) -> float:
    return float(x)


# -------------------------------------------------------------------------------------- RewardBench 2

def best_of_n_result(rewards: Sequence[float]) -> float:
    """RewardBench 2's result for one non-Ties row, ``rewards[0]`` being the first chosen response:
    1/k when it shares the maximum with k-1 others, 0 below the maximum or when any reward is NaN.

    Only ``rewards[0]`` counts as correct: further chosen responses are competitors, as upstream. Exact
    float equality decides a tie (bf16 logits and saturated sigmoids tie often)."""
    if any(math.isnan(r) for r in rewards):
        return 0.0
    top = max(rewards)
    return 1.0 / sum(r == top for r in rewards) if rewards[0] == top else 0.0


def _ties_key(i: int, row: ScoredRow) -> tuple[str, int]:
    """(sample type, prompt id) from a Ties row's id "ref:12" / "tied:12"; upstream reads any other type
    as tied, here it is an error."""
    kind, _, number = (row.id or "").partition(":")
    try:
        prompt = int(number)
    except ValueError:
        kind = ""
    if kind not in ("ref", "tied"):
        raise ValueError(f"row {i}: a Ties row's id must be 'ref:<int>' or 'tied:<int>', got {row.id!r}")
    return kind, prompt


def _group_margins(key: tuple[str, int], samples: list[tuple[bool, float]]) -> tuple[float, float]:
    """(correct-minus-incorrect margin, spread among the correct) of one Ties group.

    The spread of a single correct answer is 0 (upstream has None there and then fails on a tied
    group). A NaN reward makes both margins NaN: the group is not accurate and its prompt fails every
    comparison (upstream's Python max/min would make that depend on where the NaN sits)."""
    correct = [s for is_correct, s in samples if is_correct]
    incorrect = [s for is_correct, s in samples if not is_correct]
    if not correct or not incorrect:
        raise ValueError(f"Ties group {key[0]}:{key[1]} needs a correct and an incorrect response "
                         f"(has {len(correct)} and {len(incorrect)}); upstream fails here too")
    if any(math.isnan(s) for _, s in samples):
        return math.nan, math.nan
    return min(correct) - max(incorrect), max(correct) - min(correct)


def _tally_ties(rows: Sequence[ScoredRow], indices: list[int], tally: _Tally) -> None:
    """Tallies of the Ties subset (upstream `process_single_model`), on each prompt's first row.

    Rows sharing (ref|tied, prompt id) form one group. Per group: margin = worst correct - best incorrect,
    accurate = margin > 0. Per prompt with both a ref and a tied group (only those): preferred = tied
    margin > tied spread; hard = min(ref, tied margin) > tied spread; margin score = tanh(min / spread -
    1), x/0 = +-inf, 0/0 (NaN) -> 0."""
    groups: dict[tuple[str, int], list[tuple[bool, float]]] = {}
    members: dict[int, list[int]] = {}
    for i in indices:
        key = _ties_key(i, rows[i])
        members.setdefault(key[1], []).append(i)
        groups.setdefault(key, []).extend((n < rows[i].chosen, float(r)) for n, r in enumerate(rows[i].rewards))
    tally.together.extend(members.values())
    margins = {key: _group_margins(key, samples) for key, samples in groups.items()}
    for (kind, prompt), (margin, _) in margins.items():
        tally.add(members[prompt][0], ("ties", kind, "accurate"), margin > 0)
        tally.add(members[prompt][0], ("ties", kind, "groups"), 1.0)
    paired = sorted(p for kind, p in margins if kind == "tied" and ("ref", p) in margins)
    tied = np.array([margins["tied", p][0] for p in paired])
    spread = np.array([margins["tied", p][1] for p in paired])
    hardest = np.minimum(np.array([margins["ref", p][0] for p in paired]), tied)
    with np.errstate(divide="ignore", invalid="ignore"):
        margin_score = np.nan_to_num(np.tanh(hardest / spread - 1), nan=0.0)
    for n, prompt in enumerate(paired):
        row = members[prompt][0]
        tally.add(row, ("ties", "paired"), 1.0)
        tally.add(row, ("ties", "preferred"), tied[n] > spread[n])
        tally.add(row, ("ties", "preferred_hard"), hardest[n] > spread[n])
        tally.add(row, ("ties", "margin"), margin_score[n])


def _ties_parts(get: Totals) -> dict[str, np.ndarray]:
    """The Ties terms and weighted score from tally totals; NaN score when no Ties row is present.

    An empty mean is 0: upstream's own rule for ref and tied accuracy, extended to the three terms over
    prompts with both groups (upstream: NaN, which would make the whole benchmark NaN)."""
    parts = {"tied_accuracy": _ratio(get("ties", "tied", "accurate"), get("ties", "tied", "groups"), 0.0),
             "ref_accuracy": _ratio(get("ties", "ref", "accurate"), get("ties", "ref", "groups"), 0.0),
             "correctness_preferred": _ratio(get("ties", "preferred"), get("ties", "paired"), 0.0),
             "correctness_preferred_hard": _ratio(get("ties", "preferred_hard"), get("ties", "paired"), 0.0),
             "margin_score": _ratio(get("ties", "margin"), get("ties", "paired"), 0.0)}
    score = (0.30 * parts["tied_accuracy"] + 0.30 * parts["ref_accuracy"] + 0.20 * parts["correctness_preferred"]
             + 0.20 * parts["correctness_preferred_hard"] + 0.01 * parts["margin_score"])
    parts["score"] = np.where(get("ties", "rows") > 0, score, np.nan)
    return parts


def _rb2_sections(get: Totals, names: list[str]) -> dict[str, np.ndarray]:
    """Each subset's score (Ties: its weighted score), NaN where the subset has no rows."""
    return {name: _ties_parts(get)["score"] if name == TIES else _ratio(get(name, "sum"), get(name, "rows"))
            for name in names}


def _prepare_rewardbench2(rows: Sequence[ScoredRow]) -> tuple[_Prepared, list[str]]:
    _check_rows(BEST_OF_N, rows)
    tally, names, ties = _Tally(len(rows)), set(), []
    for i, row in enumerate(rows):
        if not 1 <= row.chosen <= len(row.rewards):
            raise ValueError(f"row {i}: chosen={row.chosen} with {len(row.rewards)} rewards")
        name = _subset(row)
        if name.lower() == "ties":
            names.add(TIES)
            ties.append(i)
            tally.add(i, ("ties", "rows"), 1.0)
        else:
            names.add(name)
            tally.add(i, (name, "sum"), best_of_n_result([float(r) for r in row.rewards]))
            tally.add(i, (name, "rows"), 1.0)
    _tally_ties(rows, ties, tally)
    order = _ordered(names, RB2_SUBSETS)
    return _Prepared(tally, lambda get: _mean_present(list(_rb2_sections(get, order).values()))), order


def rewardbench2(rows: Sequence[ScoredRow]) -> dict[str, Any]:
    """RewardBench 2's scores (fractions) from best-of-n rows; see the module doc for the rules.

    Keys: ``score`` (mean of the subsets' scores), ``rows``, ``sections`` {subset: score, the
    leaderboard's columns}, ``subsets`` {subset: {accuracy (Ties: its weighted score), rows}}, and with
    Ties rows ``ties`` {score, tied_accuracy, ref_accuracy, correctness_preferred,
    correctness_preferred_hard, margin_score, ref_groups, tied_groups, paired_prompts, rows}.
    Without Ties rows the score is the mean of the subsets present. A Ties prompt with only a ref or
    only a tied group counts in that accuracy and not in the three terms over prompts with both.
    """
    prepared, order = _prepare_rewardbench2(rows)
    totals = prepared.tally.exact_totals()
    get = prepared.tally.reader(totals)
    sections = {name: _f(v) for name, v in _rb2_sections(get, order).items()}
    counts = {name: int(get("ties", "rows")) if name == TIES else int(get(name, "rows")) for name in order}
    out: dict[str, Any] = {
        "kind": BEST_OF_N, "score": _f(prepared.headline(get)), "rows": len(rows), "sections": sections,
        "subsets": {name: {"accuracy": sections[name], "rows": counts[name]} for name in order}}
    if TIES in sections:
        ties = {key: _f(v) for key, v in _ties_parts(get).items()}
        ties.update(ref_groups=int(get("ties", "ref", "groups")), tied_groups=int(get("ties", "tied", "groups")),
                    paired_prompts=int(get("ties", "paired")), rows=counts[TIES])
        out["ties"] = ties
    return out


# -------------------------------------------------------------------------------------------- RM-Bench

def rmbench_domain(subset: str | None) -> str:
    """The RM-Bench domain of a subset: the first of chat, math, code, safety it starts with (so
    safety-refuse and safety-response pool into safety), else the subset itself."""
    name = NO_SUBSET if subset is None else subset
    return next((d for d in RM_DOMAINS if name.startswith(d)), name)


def _tally_rmbench(rows: Sequence[ScoredRow], group: Callable[[ScoredRow], str]) -> tuple[_Tally, list[str]]:
    """Per row, its group's row count and the 9 strict wins chosen[i] > rejected[j] (a tie or NaN: no win)."""
    _check_rows(RM_BENCH, rows)
    tally, names = _Tally(len(rows)), set()
    for n, row in enumerate(rows):
        if len(row.rewards) != 6 or row.chosen != 3:
            raise ValueError(f"row {n}: an RM-Bench row has 3 chosen then 3 rejected rewards, got "
                             f"{len(row.rewards)} rewards with chosen={row.chosen}")
        name, rewards = group(row), [float(r) for r in row.rewards]
        names.add(name)
        tally.add(n, (name, "rows"), 1.0)
        for i in range(3):
            for j in range(3):
                tally.add(n, (name, i, j), rewards[i] > rewards[3 + j])
    return tally, _ordered(names, RM_DOMAINS)


def _rmbench_parts(get: Totals, name: str) -> dict[str, Any]:
    """One domain's matrix and accuracies, NaN when it has no rows.

    Added in upstream's order so the floats match: np.sum of np.tril(M, -1) adds its 9 cells pairwise,
    M10 + (M20 + M21); the upper triangle comes out as (M01 + M02) + M12; np.mean adds in order."""
    m = [[_ratio(get(name, i, j), get(name, "rows")) for j in range(3)] for i in range(3)]
    hard = ((m[0][1] + m[0][2]) + m[1][2]) / 3
    normal = ((m[0][0] + m[1][1]) + m[2][2]) / 3
    easy = (m[1][0] + (m[2][0] + m[2][1])) / 3
    return {"matrix": m, "hard": hard, "normal": normal, "easy": easy, "average": ((hard + normal) + easy) / 3}


def _prepare_rmbench(rows: Sequence[ScoredRow]) -> tuple[_Prepared, list[str]]:
    tally, domains = _tally_rmbench(rows, lambda row: rmbench_domain(row.subset))
    return _Prepared(tally, lambda get: _mean_present([_rmbench_parts(get, d)["average"] for d in domains])), domains


def _rmbench_groups(tally: _Tally, names: list[str]) -> dict[str, dict[str, Any]]:
    get = tally.reader(tally.exact_totals())
    out = {}
    for name in names:
        parts = _rmbench_parts(get, name)
        out[name] = {"hard": _f(parts["hard"]), "normal": _f(parts["normal"]), "easy": _f(parts["easy"]),
                     "average": _f(parts["average"]), "rows": int(get(name, "rows")),
                     "matrix": [[_f(cell) for cell in line] for line in parts["matrix"]]}
    return out


def rmbench(rows: Sequence[ScoredRow]) -> dict[str, Any]:
    """RM-Bench's scores (fractions) from rm-bench rows; see the module doc for the rules.

    Keys: ``score`` (mean of the domains' averages), ``hard``/``normal``/``easy`` (each the mean over
    the domains), ``rows``, ``sections`` {domain: average}, ``domains`` {domain: {hard, normal, easy,
    average, rows, matrix}} (matrix[i][j]: chosen style i against rejected style j, `STYLES` order),
    and ``subsets`` {subset as given: {accuracy (its own 9-cell average), rows, hard, normal, easy}},
    which shows safety-refuse and safety-response apart although the safety domain pools them.
    """
    prepared, domains = _prepare_rmbench(rows)
    groups = _rmbench_groups(prepared.tally, domains)
    totals = prepared.tally.reader(prepared.tally.exact_totals())
    out: dict[str, Any] = {"kind": RM_BENCH, "score": _f(prepared.headline(totals))}
    for level in ("hard", "normal", "easy"):
        out[level] = _f(_mean_present([np.float64(groups[d][level]) for d in domains]))
    tally, subsets = _tally_rmbench(rows, _subset)
    out.update(rows=len(rows), sections={d: groups[d]["average"] for d in domains}, domains=groups,
               subsets={name: {"accuracy": g["average"], "rows": g["rows"], "hard": g["hard"], "normal": g["normal"],
                               "easy": g["easy"]} for name, g in _rmbench_groups(tally, subsets).items()})
    return out


# ------------------------------------------------------------------------------------------ JudgeBench

def judgebench_category(source: str | None) -> str:
    """JudgeBench's category of a source: knowledge (mmlu-pro*), reasoning, math, coding; else the source."""
    name = NO_SUBSET if source is None else source
    return next((c for prefix, c in JUDGE_CATEGORIES.items() if name.startswith(prefix)), name)


def judge_decision(reward_a: float, reward_b: float) -> str:
    """Upstream's reward-model judge: "A>B" iff reward_A > reward_B, so a tie or a NaN says "B>A"."""
    return "A>B" if reward_a > reward_b else "B>A"


def _tally_judgebench(rows: Sequence[ScoredRow], group: Callable[[ScoredRow], str]) -> tuple[_Tally, list[str]]:
    _check_rows(JUDGEBENCH, rows)
    tally, names = _Tally(len(rows)), set()
    for i, row in enumerate(rows):
        if len(row.rewards) != 2 or row.label not in JUDGE_LABELS:
            raise ValueError(f"row {i}: a JudgeBench row has [reward_A, reward_B] and label 'A>B' or 'B>A', got "
                             f"{len(row.rewards)} rewards and label {row.label!r}")
        name = group(row)
        names.add(name)
        tally.add(i, (name, "correct"), judge_decision(float(row.rewards[0]), float(row.rewards[1])) == row.label)
        tally.add(i, (name, "rows"), 1.0)
    return tally, _ordered(names, list(JUDGE_CATEGORIES.values()))


def _judgebench_micro(get: Totals, names: list[str]) -> np.ndarray:
    correct: Any = 0.0
    total: Any = 0.0
    for name in names:
        correct, total = correct + get(name, "correct"), total + get(name, "rows")
    return _ratio(correct, total)


def _prepare_judgebench(rows: Sequence[ScoredRow]) -> tuple[_Prepared, list[str]]:
    tally, categories = _tally_judgebench(rows, lambda row: judgebench_category(row.subset))
    return _Prepared(tally, lambda get: _judgebench_micro(get, categories)), categories


def _accuracies(tally: _Tally, names: list[str]) -> dict[str, dict[str, Any]]:
    get = tally.reader(tally.exact_totals())
    return {n: {"accuracy": _f(_ratio(get(n, "correct"), get(n, "rows"))), "rows": int(get(n, "rows"))} for n in names}


def judgebench(rows: Sequence[ScoredRow]) -> dict[str, Any]:
    """JudgeBench's scores (fractions) from judgebench rows, single game; see the module doc.

    Keys: ``score`` (accuracy over all pairs, upstream's Overall), ``category_mean`` (mean of the
    categories' accuracies, which the leaderboard does not use), ``rows``, ``sections`` {category:
    accuracy}, ``categories`` {category: {accuracy, rows}}, ``subsets`` {source: {accuracy, rows}}.
    """
    prepared, categories = _prepare_judgebench(rows)
    by_category = _accuracies(prepared.tally, categories)
    tally, sources = _tally_judgebench(rows, _subset)
    get = prepared.tally.reader(prepared.tally.exact_totals())
    return {"kind": JUDGEBENCH, "score": _f(prepared.headline(get)),
            "category_mean": _f(_mean_present([np.float64(by_category[c]["accuracy"]) for c in categories])),
            "rows": len(rows), "sections": {c: by_category[c]["accuracy"] for c in categories},
            "categories": by_category, "subsets": _accuracies(tally, sources)}


# ------------------------------------------------------------------------------------------- dispatch

_PREPARE: dict[str, Callable[[Sequence[ScoredRow]], tuple[_Prepared, list[str]]]] = {
    BEST_OF_N: _prepare_rewardbench2, RM_BENCH: _prepare_rmbench, JUDGEBENCH: _prepare_judgebench}
_SCORE: dict[str, Callable[[Sequence[ScoredRow]], dict[str, Any]]] = {
    BEST_OF_N: rewardbench2, RM_BENCH: rmbench, JUDGEBENCH: judgebench}


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown benchmark kind {kind!r}; expected one of {', '.join(KINDS)}")
    return kind


def score_benchmark(kind: str, rows: Sequence[ScoredRow]) -> dict[str, Any]:
    """The benchmark's scores for rows of one kind ("best-of-n" = RewardBench 2, "rm-bench",
    "judgebench"). Every result has ``kind``, ``rows``, ``sections``, ``subsets`` and a headline
    ``score``: a fraction in [0, 1] (leaderboards print it x100)."""
    return _SCORE[_kind(kind)](rows)


def prompt_units(rows: Sequence[ScoredRow]) -> list[Hashable]:
    """The natural bootstrap unit of each row: its prompt. A Ties row's is ("Ties", prompt id), so a
    prompt's ref and tied rows move together; another row with an id, (subset, id) (ids repeat across
    subsets); a row without one is its own unit."""
    units: list[Hashable] = []
    for i, row in enumerate(rows):
        if row.kind == BEST_OF_N and _subset(row).lower() == "ties":
            units.append((TIES, _ties_key(i, row)[1]))
        else:
            units.append(("row", i) if row.id is None else (_subset(row), row.id))
    return units


# ------------------------------------------------------------------------------------------ bootstrap

def _resample_counts(units: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Blocks of resamples, each an array (block, units): how often each unit is drawn, units drawn
    with replacement. The block size depends only on ``units``, so a seed gives the same resamples."""
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_CELLS // units)
    for start in range(0, resamples, block):
        n = min(block, resamples - start)
        draws = rng.integers(0, units, size=(n, units)) + units * np.arange(n)[:, None]
        yield np.bincount(draws.ravel(), minlength=n * units).reshape(n, units).astype(float)


def _unit_index(units: Sequence[Hashable], tally: _Tally) -> np.ndarray:
    """Each row's unit number; rows whose tallies depend on each other must share a unit."""
    if len(units) != tally.rows:
        raise ValueError(f"{len(units)} units for {tally.rows} rows")
    numbers: dict[Hashable, int] = {}
    index = np.array([numbers.setdefault(u, len(numbers)) for u in units], dtype=int)
    for group in tally.together:
        if len(set(index[group].tolist())) > 1:
            raise ValueError(f"rows {group} (one Ties prompt's ref and tied rows) must be in one unit")
    return index


def _resampled_scores(prepared: _Prepared, index: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """The headline score on each resample: unit tallies summed once, then counts @ them per block."""
    n_units = int(index.max()) + 1
    per_unit = np.zeros((n_units, len(prepared.tally.columns)))
    np.add.at(per_unit, index, prepared.tally.values())
    return np.concatenate([prepared.headline(prepared.tally.reader(counts @ per_unit))
                           for counts in _resample_counts(n_units, resamples, seed)])


def _bootstrap(a: _Prepared, b: _Prepared, units: Sequence[Hashable], resamples: int, seed: int,
               level: float) -> dict[str, Any]:
    """Percentile interval of score_b - score_a over resamples of units, both models on each resample
    (the same seed draws the same resamples for both)."""
    if resamples < 1 or not 0 < level < 1:
        raise ValueError(f"need resamples >= 1 and 0 < level < 1, got {resamples} and {level}")
    if a.tally.columns != b.tally.columns:
        raise ValueError("the two models' rows differ in structure")
    index = _unit_index(units, a.tally)
    diffs = _resampled_scores(b, index, resamples, seed) - _resampled_scores(a, index, resamples, seed)
    low, high = np.percentile(diffs, [50 * (1 - level), 50 * (1 + level)])
    score_a = _f(a.headline(a.tally.reader(a.tally.exact_totals())))
    score_b = _f(b.headline(b.tally.reader(b.tally.exact_totals())))
    return {"a": score_a, "b": score_b, "difference": score_b - score_a, "low": _f(low), "high": _f(high),
            "level": level, "resamples": resamples, "seed": seed, "units": int(index.max()) + 1}


def _same_rows(rows_a: Sequence[ScoredRow], rows_b: Sequence[ScoredRow]) -> None:
    if len(rows_a) != len(rows_b):
        raise ValueError(f"model A has {len(rows_a)} rows, model B {len(rows_b)}: "
                         "a paired bootstrap needs the same rows")
    for i, (x, y) in enumerate(zip(rows_a, rows_b)):
        if (x.kind, x.subset, x.id, x.chosen, x.label, len(x.rewards)) != (y.kind, y.subset, y.id, y.chosen, y.label,
                                                                         len(y.rewards)):
            raise ValueError(f"row {i} differs between the models beyond its rewards")


def paired_bootstrap(kind: str, rows_a: Sequence[ScoredRow], rows_b: Sequence[ScoredRow],
                     units: Sequence[Hashable] | None = None, resamples: int = 1000, seed: int = 0,
                     level: float = 0.95) -> dict[str, Any]:
    """Paired bootstrap of a benchmark's headline score: is model B better than model A on these rows?

    ``rows_a``/``rows_b``: the same rows scored by the two models. ``units``: each row's resampling unit,
    its prompt (default `prompt_units`); rows sharing a unit move together, and a Ties prompt's rows
    must share one. Each resample draws the units with replacement and scores both models on it (each
    drawn copy a prompt of its own); the interval is the percentile interval of score_b - score_a.
    Returns {kind, a, b, difference (b - a on all rows), low, high, level, resamples, seed, units (count)}.
    """
    _same_rows(rows_a, rows_b)
    prepare = _PREPARE[_kind(kind)]
    a, b = prepare(rows_a)[0], prepare(rows_b)[0]
    return {"kind": kind, **_bootstrap(a, b, prompt_units(rows_a) if units is None else units, resamples, seed, level)}


def _prepare_pairs(rankings: Sequence[Sequence[float]]) -> _Prepared:
    """Tallies of pairwise accuracy: a ranking of K rewards (best first; a pair is K = 2) adds its K(K-1)/2
    ordered pairs, as `rewardkit.evaluation.metrics.pairs_of` counts them."""
    if not rankings:
        raise ValueError("no pairs to score")
    tally = _Tally(len(rankings))
    for n, ranking in enumerate(rankings):
        rewards = [float(r) for r in ranking]
        if len(rewards) < 2:
            raise ValueError(f"item {n}: a pair or ranking needs at least 2 rewards, got {len(rewards)}")
        pairs = [(rewards[i], rewards[j]) for i in range(len(rewards)) for j in range(i + 1, len(rewards))]
        tally.add(n, ("correct",), sum(better > worse for better, worse in pairs))
        tally.add(n, ("rows",), len(pairs))
    return _Prepared(tally, lambda get: _ratio(get("correct"), get("rows")))


def paired_bootstrap_pairs(pairs_a: Sequence[Sequence[float]], pairs_b: Sequence[Sequence[float]],
                           units: Sequence[Hashable] | None = None, resamples: int = 1000, seed: int = 0,
                           level: float = 0.95) -> dict[str, Any]:
    """`paired_bootstrap` of pairwise accuracy on plain preference data.

    Each item of ``pairs_a``/``pairs_b`` is (chosen reward, rejected reward), or a K-way ranking's rewards
    best first, which counts as its K(K-1)/2 pairs. Accuracy is rewardkit's rule (`metrics.pair_metrics`):
    better > worse strictly, a tie (or NaN) is wrong. ``units``: each item's unit, e.g. its prompt, so a
    prompt's pairs move together; default: every item its own unit. Returns the same keys, kind "pairs".
    """
    if len(pairs_a) != len(pairs_b) or any(len(x) != len(y) for x, y in zip(pairs_a, pairs_b)):
        raise ValueError("the two models' pairs differ in number or size: a paired bootstrap needs the same items")
    units = list(range(len(pairs_a))) if units is None else units
    return {"kind": "pairs", **_bootstrap(_prepare_pairs(pairs_a), _prepare_pairs(pairs_b), units, resamples, seed,
                                          level)}
