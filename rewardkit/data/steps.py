"""Solutions labelled step by step, for process reward models (``--objective prm``).

A `StepSolution` is a prompt, the solution's steps and one label per step (True: the step is right),
optionally whether its final answer is correct (``correct``) and the answer itself (``answer``), for
best-of-N evaluation. Shapes, auto-detected per record (or ``--format``):

* ``stepwise`` (TRL's): ``{"prompt", "completions": [step, ...], "labels": [true/false, ...]}``;
* ``math-shepherd``: ``{"input": "question Step 1: ... ки\\nStep 2: ... ки", "label": <the same text with
  each tag replaced by + or ->}``: the question is the text before ``Step 1:``;
* ``step-ratings`` (PRM800K-style): ``{"prompt", "steps" (or "completions"): [...], "ratings": [-1, 0, 1, ...]}``:
  a rating of 0 is neutral, so these rows need a rule for it (``--neutral positive|negative|drop-after``:
  neutral steps count as right, as wrong, or the solution is cut before its first neutral step) and are
  turned into stepwise rows by ``rewardkit data convert``.

Every unusable row raises `RecordError` naming the field; the loader adds ``file:line``.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator

from rewardkit.data.readers import iter_rows
from rewardkit.data.records import Problem, check_usable
from rewardkit.errors import DataError, RecordError

STEP_FORMATS = ("auto", "stepwise", "math-shepherd", "step-ratings")
NEUTRAL_RULES = ("positive", "negative", "drop-after")
MATH_SHEPHERD_TAG = "ки"


AGGREGATES = ("min", "prod", "last", "mean")  # a solution's reward from its steps' probabilities


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def aggregate(probs: Sequence[float], how: str) -> float:
    """One solution-level score from its steps' probabilities of being right."""
    if not probs:
        return float("nan")
    if how == "min":
        return min(probs)
    if how == "prod":
        return math.prod(probs)
    if how == "last":
        return probs[-1]
    if how == "mean":
        return statistics.fmean(probs)
    raise ValueError(f"unknown aggregate {how!r} (choose from {', '.join(AGGREGATES)})")


@dataclass
class StepSolution:
    """A prompt and a solution's steps, each labelled right (True) or wrong (False)."""

    prompt: str
    steps: list[str]
    labels: list[bool]
    correct: bool | None = None  # the final answer is right (best-of-N evaluation)
    answer: str | None = None  # the final answer (majority vote among a prompt's solutions)
    source: str = ""

    @property
    def first_error(self) -> int:
        """The index of the first wrong step, -1 when every step is right (ProcessBench's label)."""
        return next((i for i, ok in enumerate(self.labels) if not ok), -1)


@dataclass
class LoadedSteps:
    solutions: list[StepSolution]
    problems: list[Problem] = field(default_factory=list)
    records: int = 0


def is_step_record(raw: Any) -> bool:
    """A row of one of the step shapes (the loader routes a file by its first row)."""
    return isinstance(raw, dict) and ("completions" in raw and "labels" in raw or "ratings" in raw
                                      or ("input" in raw and "label" in raw and MATH_SHEPHERD_TAG in str(raw["input"])))


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise RecordError(f"field '{name}' must be a string, got {type(value).__name__}")
    if not value.strip():
        raise RecordError(f"field '{name}' is empty")
    return value


def _steps(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise RecordError(f"field '{name}' must be a non-empty list of steps, got "
                          f"{'an empty list' if isinstance(value, list) else type(value).__name__}")
    return [_text(s, f"{name}[{i}]") for i, s in enumerate(value)]


def _extras(rec: dict[str, Any]) -> tuple[bool | None, str | None]:
    correct = rec.get("correct")
    if correct is not None and not isinstance(correct, bool):
        raise RecordError(f"field 'correct' must be true or false, got {correct!r:.40}")
    answer = rec.get("answer")
    return correct, None if answer is None else str(answer)


def parse_stepwise(rec: dict[str, Any]) -> StepSolution:
    steps = _steps(rec.get("completions"), "completions")
    labels = rec.get("labels")
    if not isinstance(labels, list) or len(labels) != len(steps):
        got = f"{len(labels)} labels" if isinstance(labels, list) else type(labels).__name__
        raise RecordError(f"field 'labels' must hold one label per step: {len(steps)} steps, {got}")
    for i, x in enumerate(labels):
        if not isinstance(x, bool) and x not in (0, 1):
            raise RecordError(f"field 'labels[{i}]' must be true or false, got {x!r:.40}")
    return StepSolution(_text(rec.get("prompt"), "prompt"), steps, [bool(x) for x in labels], *_extras(rec))


def parse_math_shepherd(rec: dict[str, Any], tag: str = MATH_SHEPHERD_TAG) -> StepSolution:
    """The question before ``Step 1:``, the steps between tags, each label where its tag was."""
    text, label = _text(rec.get("input"), "input"), _text(rec.get("label"), "label")
    segments = text.split(tag)
    if len(segments) < 2:
        raise RecordError(f"field 'input' has no step tag {tag!r}")
    if segments[-1].strip():
        raise RecordError(f"field 'input' has text after its last step tag {tag!r}")
    start = segments[0].find("Step 1:")
    if start < 0:
        raise RecordError("field 'input' has no 'Step 1:' to tell the question from the first step")
    labels, at = [], 0
    for i, seg in enumerate(segments[:-1]):
        if not label.startswith(seg, at) or at + len(seg) >= len(label) or label[at + len(seg)] not in "+-":
            raise RecordError(f"field 'label' does not match 'input' at step {i + 1} (expected its text then + or -)")
        at += len(seg)
        labels.append(label[at] == "+")
        at += 1
    steps = [segments[0][start:].strip()] + [s.strip() for s in segments[1:-1]]
    if any(not s for s in steps):
        raise RecordError("field 'input' has an empty step")
    return StepSolution(segments[0][:start].strip(), steps, labels, *_extras(rec))


def ratings_to_labels(ratings: list[int], neutral: str) -> list[bool]:
    """PRM800K-style ratings (-1, 0, 1) as labels by the ``--neutral`` rule: ``drop-after`` returns the
    labels before the first neutral step (the caller cuts the steps to match)."""
    if neutral == "drop-after":
        cut = next((i for i, r in enumerate(ratings) if r == 0), len(ratings))
        return [r > 0 for r in ratings[:cut]]
    return [r > 0 or (r == 0 and neutral == "positive") for r in ratings]


def parse_step_ratings(rec: dict[str, Any], neutral: str | None) -> StepSolution:
    name = "steps" if "steps" in rec else "completions"
    steps = _steps(rec.get(name), name)
    ratings = rec.get("ratings")
    if not isinstance(ratings, list) or len(ratings) != len(steps):
        got = f"{len(ratings)} ratings" if isinstance(ratings, list) else type(ratings).__name__
        raise RecordError(f"field 'ratings' must hold one rating per step: {len(steps)} steps, {got}")
    for i, r in enumerate(ratings):
        if isinstance(r, bool) or r not in (-1, 0, 1):
            raise RecordError(f"field 'ratings[{i}]' must be -1, 0 or 1, got {r!r:.40}")
    if neutral is None:
        raise RecordError("per-step ratings need a rule for neutral (0) steps: --neutral positive|negative|drop-after")
    labels = ratings_to_labels(ratings, neutral)
    if not labels:
        raise RecordError("--neutral drop-after leaves no step (the first step is neutral)")
    return StepSolution(_text(rec.get("prompt"), "prompt"), steps[:len(labels)], labels, *_extras(rec))


def parse_step_record(raw: Any, fmt: str = "auto", neutral: str | None = None) -> StepSolution:
    """One row of a step shape (see the module doc) as a `StepSolution`."""
    if not isinstance(raw, dict):
        raise RecordError(f"expected a JSON object, got {type(raw).__name__}")
    if fmt == "auto":
        fmt = ("step-ratings" if "ratings" in raw else "math-shepherd" if "input" in raw and "label" in raw
               else "stepwise")
    if fmt == "step-ratings":
        return parse_step_ratings(raw, neutral)
    if fmt == "math-shepherd":
        return parse_math_shepherd(raw)
    return parse_stepwise(raw)


def load_step_solutions(source: str, fmt: str = "auto", skip_invalid: bool = False,
                        neutral: str | None = None) -> LoadedSteps:
    """Every row of a step-labelled file; DataError listing the first few bad rows unless ``skip_invalid``."""
    if fmt not in STEP_FORMATS:
        raise DataError(f"unknown step format {fmt!r} (choose from {', '.join(STEP_FORMATS)})")
    out = LoadedSteps([])
    for where, raw in _rows(source):
        out.records += 1
        try:
            if isinstance(raw, RecordError):
                raise raw
            solution = parse_step_record(raw, fmt, neutral)
            solution.source = where
            out.solutions.append(solution)
        except RecordError as e:
            out.problems.append(Problem(where, str(e)))
    check_usable(out.problems, [], len(out.solutions), source, skip_invalid, "no usable step-labelled solutions")
    return out


def _rows(source: str) -> Iterator[tuple[str, Any]]:
    from pathlib import Path

    if not Path(source).is_file():
        raise DataError(f"{source}: no such file")
    return iter_rows(source)


def is_step_file(source: str) -> bool:
    """Whether a local file's first row is one of the step shapes (not preference data)."""
    from pathlib import Path

    if not Path(source).is_file():
        return False
    for _, raw in iter_rows(source):
        return is_step_record(raw)
    return False


def step_records(solution: StepSolution) -> dict[str, Any]:
    """A solution as TRL's stepwise row (what ``rewardkit data convert`` writes)."""
    rec: dict[str, Any] = {"prompt": solution.prompt, "completions": solution.steps, "labels": solution.labels}
    if solution.correct is not None:
        rec["correct"] = solution.correct
    if solution.answer is not None:
        rec["answer"] = solution.answer
    return rec


def step_report(loaded: LoadedSteps, source: str) -> dict[str, Any]:
    """`rewardkit data check` of a step file: steps per solution, label balance, where the first error falls."""
    sols = loaded.solutions
    steps = [len(s.steps) for s in sols]
    labels = [x for s in sols for x in s.labels]
    firsts = [s.first_error for s in sols]
    relative = [f / len(s.steps) for f, s in zip(firsts, sols) if f >= 0]
    return {
        "file": source, "records": loaded.records, "solutions": len(sols), "steps": len(labels),
        "prompts": len({s.prompt for s in sols}),
        "steps_per_solution": {"min": min(steps), "mean": round(statistics.fmean(steps), 2), "max": max(steps)}
        if steps else {},
        "right_step_rate": sum(labels) / len(labels) if labels else None,
        "solutions_all_right": sum(f < 0 for f in firsts),
        "first_error_step": dict(sorted(Counter(f + 1 for f in firsts if f >= 0).items())),
        "first_error_relative_mean": round(statistics.fmean(relative), 3) if relative else None,
        "with_correct": sum(s.correct is not None for s in sols),
        "correct_rate": (sum(bool(s.correct) for s in sols if s.correct is not None)
                         / max(1, sum(s.correct is not None for s in sols))),
        "invalid": len(loaded.problems), "invalid_records": [str(p) for p in loaded.problems[:20]],
    }


def print_step_report(r: dict[str, Any]) -> None:
    print(f"{r['file']}: {r['records']} records -> {r['solutions']} step-labelled solutions ({r['steps']} steps), "
          f"{r['prompts']} distinct prompts")
    print(f"  steps per solution         {r['steps_per_solution']}")
    rate = r["right_step_rate"]
    print(f"  steps labelled right       {'n/a' if rate is None else f'{rate:.1%}'}")
    print(f"  solutions with no error    {r['solutions_all_right']}")
    print(f"  first error at step        {r['first_error_step']} (mean position {r['first_error_relative_mean']} "
          "of the way through)")
    if r["with_correct"]:
        print(f"  final answer correct       {r['correct_rate']:.1%} of {r['with_correct']} solutions")
    print(f"  invalid records            {r['invalid']}")
    for line in r["invalid_records"]:
        print(f"    {line}")
