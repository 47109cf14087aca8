"""`rewardkit score` as a library function: every record of a file with its rewards added.

    from rewardkit import ScoreConfig, score_file
    score_file(ScoreConfig(model_dir="rm-out", input="requests.jsonl", output="scored.jsonl"))

A ``{prompt, response}`` record gets ``reward``; a pair (any pair shape) ``chosen_reward`` and
``rejected_reward``; a ranking ``rewards`` in the record's own order; a regression model adds its
attributes (`rewardkit.evaluation.rated.add_attributes`). Every invalid record is listed before any
model is loaded, and nothing is written until every record is scored.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterator

from rewardkit.config import ScoreConfig
from rewardkit.data.convert import write_text
from rewardkit.data.formats import parse_record
from rewardkit.data.readers import iter_rows
from rewardkit.errors import RecordError, UsageError

Job = tuple[str, dict[str, Any], Any]  # (kind "single" or "group", the record, (prompt, response) or Comparison)


def score_jobs(path: str) -> list[Job]:
    """(kind, record, payload) per record of a file to score, in order; every bad record is listed."""
    if not Path(path).is_file():
        raise UsageError(f"INPUT: no such file: {path}")
    jobs: list[Job] = []
    problems = []
    for where, raw in iter_rows(path):
        try:
            jobs.append(_job(where, raw))
        except RecordError as e:
            problems.append(f"{where}: {e}")
    if problems:
        more = f"\n  ... and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise UsageError(f"{len(problems)} invalid record(s) in {path}:\n  " + "\n  ".join(problems[:5]) + more)
    return jobs


def _job(where: str, raw: Any) -> Job:
    if isinstance(raw, RecordError):
        raise raw
    if isinstance(raw, dict) and "response" in raw and "chosen" not in raw:
        prompt, response = raw.get("prompt"), raw.get("response")
        for name, v in (("prompt", prompt), ("response", response)):
            if not isinstance(v, (str, list)) or not v:
                raise RecordError(f"field '{name}' must be a non-empty string or message list")
        return "single", raw, (prompt, response)
    comps = parse_record(raw, "auto", where)
    if len(comps) != 1:
        raise RecordError("score takes one comparison per record (unwrap LMFlow 'instances' first)")
    return "group", raw, comps[0]


def scored_records(jobs: list[Job], rewards: list[list[float]], attributes: list[Any] | None) -> Iterator[dict]:
    """Each job's record with its rewards (and attributes) added."""
    from rewardkit.evaluation.rated import add_attributes

    for n, ((kind, raw, payload), r) in enumerate(zip(jobs, rewards)):
        rec = dict(raw)
        if attributes is not None:
            add_attributes(rec, kind, raw, payload, attributes[n])
        if kind == "single":
            rec["reward"] = r[0]
            if len(r) > 1:  # a process reward model: the aggregate, then every step's reward
                rec["step_rewards"] = r[1:]
        elif len(r) == 2 and ("chosen" in raw or "positive" in raw or "response_j" in raw):
            rec["chosen_reward"], rec["rejected_reward"] = r
        else:  # rankings: one reward per response, in the record's own order
            rec["rewards"] = payload.in_record_order(r)
        yield rec


def score_file(cfg: ScoreConfig, progress: bool | None = None) -> int:
    """Score ``cfg.input`` with ``cfg.model_dir`` into ``cfg.output`` (stdout when None); returns the
    number of records. ``progress``: a bar on stderr (default: when written to a file or a terminal)."""
    from tqdm.auto import tqdm

    from rewardkit.evaluation.scorer import load_scorer

    cfg.validate()
    jobs = score_jobs(cfg.input)
    rm = load_scorer(cfg)
    encoded = [rm.encoder.encode_texts(p[0], [p[1]]) if k == "single" else rm.encoder.encode(p) for k, _, p in jobs]
    watched = (cfg.output is not None or sys.stderr.isatty()) if progress is None else progress
    with tqdm(total=len(encoded), desc="score", unit="rec", disable=not watched) as bar:
        if rm.regression is None:
            rewards, attributes = rm.rewards_for(encoded, cfg.batch_size, bar), None
        else:  # regression model: the combined reward and each attribute, from one forward pass
            rewards, attributes = rm.attributes_for(encoded, cfg.batch_size, bar)
    if cfg.normalize:
        rewards = [rm.normalize(r) for r in rewards]
    text = "".join(json.dumps(rec, ensure_ascii=False) + "\n" for rec in scored_records(jobs, rewards, attributes))
    if cfg.output is None:
        sys.stdout.write(text)
    else:
        write_text(cfg.output, text, "-o/--output")
    return len(jobs)
