"""`rewardkit data convert` as a library function: any preference input -> explicit JSONL.

    from rewardkit import DataConvertConfig, convert_data
    convert_data(DataConvertConfig(input="feedback.csv", output="pairs.jsonl", hi=4, lo=4))

Rating tables, rankings, votes and every pair shape become ``{prompt, chosen, rejected[, margin]}``
pairs and ``{prompt, responses, scores}`` rankings (`rewardkit.data.formats.comparison_records`). A
benchmark's row becomes the pairs it states (best-of-N: each chosen with each rejected answer;
RM-Bench: the three same-style pairs; JudgeBench: better, worse by its label), never a ranking.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardkit.data.formats import comparison_records
from rewardkit.data.loading import load_comparisons
from rewardkit.data.steps import is_step_file, load_step_solutions, step_records
from rewardkit.errors import UsageError, describe_os_error


@dataclass
class Converted:
    """What `convert_data` wrote and left out."""

    records: int  # written
    pairs: int  # of which pair records (the rest are rankings)
    inputs: int  # input records read
    dropped: int  # valid records without a preference
    invalid: int  # invalid records (skipped under --skip-invalid)
    messages: list[str]  # what the loader had to say (dropped prompts, notes)
    what: str = ""  # what the records are when not pairs and rankings

    def summary(self, output: str) -> str:
        kinds = self.what or f"{self.pairs} pairs, {self.records - self.pairs} rankings"
        return (f"wrote {self.records} records ({kinds}) from "
                f"{self.inputs} input records to {output}; {self.dropped} without a preference, "
                f"{self.invalid} invalid")


def convert_data(cfg: Any) -> Converted:
    """Read ``cfg.input`` in ``cfg.format`` and write ``cfg.output`` (a `rewardkit.config.DataConvertConfig`;
    ``.gz`` compresses; missing folders are created). Nothing is written when the input is unusable."""
    if Path(cfg.output).resolve() == Path(cfg.input).resolve():
        raise UsageError("-o/--output must differ from INPUT")
    if is_step_file(cfg.input):  # step-labelled solutions: TRL's stepwise rows
        steps = load_step_solutions(cfg.input, "auto", cfg.skip_invalid, cfg.neutral)
        write_text(cfg.output, "".join(json.dumps(step_records(s), ensure_ascii=False) + "\n"
                                       for s in steps.solutions), "-o/--output")
        return Converted(len(steps.solutions), 0, steps.records, 0, len(steps.problems), [], "stepwise solutions")
    loaded = load_comparisons(cfg.input, cfg.format, cfg.skip_invalid, ratings=cfg)
    records = [r for c in loaded.comparisons for r in comparison_records(c, cfg.to, cfg.margin_scale)]
    write_text(cfg.output, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "-o/--output")
    return Converted(len(records), sum("chosen" in r for r in records), loaded.records, len(loaded.dropped),
                     len(loaded.problems), list(loaded.messages(cfg.input)))


def write_text(path: str | Path, text: str, what: str) -> None:
    """Write ``text`` to ``path`` (gzip for ``.gz``), creating missing folders; UsageError naming ``what``."""
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".gz":
            with gzip.open(out, "wt", encoding="utf-8") as f:
                f.write(text)
        else:
            out.write_text(text, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"{what}: {describe_os_error(e, 'the output', out)}") from None
