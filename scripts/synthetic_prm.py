"""A task with checkable steps for process reward models: a chain under a hidden rule, one step sometimes wrong.

A problem is a start digit and a number of steps (``start 3 steps 4``); a solution walks the chain of a
hidden, seeded successor rule over the digits, one step per move: ``3 > 7``, ``7 > 1``, ``1 > 0``, ... In a
flawed solution one step at a random point goes to a wrong digit, and every later step follows the rule
from the wrong value, so it is locally right but built on an error: like PRM800K and Math-Shepherd,
every step from the first error on is labelled wrong. A PRM has to learn the rule from the labels,
check each step against it, and remember whether an earlier step failed.

Everything is local: a word-level tokenizer (digits, ``+ = start add``, the separator ``;``) and a
seeded random 2-layer Llama (hidden 64). Training solutions have 3-5 steps; the test has every start digit
with 6, 7 and 8 steps, 4 solutions each, so no test solution was seen and the later steps' positions never
were: a PRM must read each step, not remember solutions or where errors tend to fall. Per seed the script
writes stepwise training and test files
(with ``correct`` and ``answer`` for best-of-N), trains
``--objective prm`` and reports, against the majority-class baseline, the error class's F1, ProcessBench's
first-error F1 and best-of-N accuracy by the ``min`` aggregate against random choice and majority vote::

    python scripts/synthetic_prm.py --out /tmp/prm --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TRAIN_STEPS, TEST_STEPS = (3, 5), (6, 8)  # steps per solution: test solutions are longer than any trained on
FLAW_RATE = 0.6
SEPARATOR = ";"
WORDS = [">", "start", "steps", SEPARATOR] + [str(d) for d in range(10)]
RULE = [7, 0, 5, 9, 2, 8, 4, 1, 3, 6]  # the hidden successor of each digit (a permutation, no fixed point)


def solve(start: int, n: int, bad: int, offset: int) -> tuple[list[str], list[bool], int]:
    """(steps, labels, final answer); step ``bad`` (-1: none) lands ``offset`` away from the rule's digit and
    later steps follow the rule from there."""
    value, steps, labels = start, [], []
    for i in range(n):
        result = (RULE[value] + (offset if i == bad else 0)) % 10
        steps.append(f"{value} > {result}")
        labels.append(bad < 0 or i < bad)
        value = result
    return steps, labels, value


def write_split(path: Path, problems: list[tuple[int, int]], per_problem: int, rng: random.Random) -> None:
    """``per_problem`` solutions of each (start, steps) problem, each flawed with probability FLAW_RATE."""
    rows = []
    for start, n in problems:
        prompt = f"start {start} steps {n}"
        _, _, right = solve(start, n, -1, 0)
        for _ in range(per_problem):
            flawed = rng.random() < FLAW_RATE
            steps, labels, answer = solve(start, n, rng.randrange(n) if flawed else -1, rng.randrange(1, 10))
            rows.append({"prompt": prompt, "completions": steps, "labels": labels, "correct": answer == right,
                         "answer": str(answer)})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_base(out: Path, seed: int) -> Path:
    from tiny_llama import word_level_llama

    return word_level_llama(out / f"base-{seed}", WORDS, seed)


def run_seed(out: Path, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from rewardkit import TrainConfig, train

    data = out / f"data-{seed}"
    data.mkdir(parents=True, exist_ok=True)
    rng = random.Random(1000 + seed)
    train_problems = [(rng.randrange(10), rng.randint(*TRAIN_STEPS)) for _ in range(args.train)]
    write_split(data / "train.jsonl", train_problems, 1, rng)
    write_split(data / "test.jsonl", [(d, n) for d in range(10) for n in range(TEST_STEPS[0], TEST_STEPS[1] + 1)],
                args.per_problem, random.Random(2000 + seed))
    started = time.time()
    result = train(TrainConfig(model=str(write_base(out, seed)), train_data=str(data / "train.jsonl"),
                               eval_data=str(data / "test.jsonl"), output_dir=str(out / f"prm-{seed}"), overwrite=True,
                               objective="prm", step_separator=SEPARATOR, epochs=args.epochs, batch_size=32,
                               lr=args.lr, max_length=96, precision="fp32", seed=seed, warmup_ratio=0.05,
                               logging_steps=50), log=lambda m: None)
    m = result.eval_metrics
    return {"seed": seed, "seconds": round(time.time() - started, 1), **{k: m[k] for k in (
        "step_accuracy", "majority_step_accuracy", "error_f1", "majority_error_f1", "first_error_f1",
        "first_error_accuracy_erroneous", "first_error_accuracy_correct")}, **m.get("best_of_n", {})}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--train", type=int, default=3000, help="training problems (one solution each)")
    ap.add_argument("--per-problem", type=int, default=4, help="test solutions per problem (30 problems of 6-8 steps)")
    ap.add_argument("--epochs", type=float, default=15.0)
    ap.add_argument("--lr", type=float, default=2e-3)
    args = ap.parse_args()
    out = Path(args.out)
    rows = [run_seed(out, s, args) for s in args.seeds]
    keys = [k for k in rows[0] if k not in ("seed", "seconds")]
    print(f"{'metric':<32}" + "".join(f"seed {r['seed']:<6}" for r in rows) + "mean")
    for k in keys:
        vals = [r[k] for r in rows if r.get(k) is not None]
        cells = "".join(f"{r[k]:<11.3f}" if r.get(k) is not None else f"{'n/a':<11}" for r in rows)
        print(f"{k:<32}{cells}{statistics.fmean(vals):.3f}" if vals else f"{k:<32}{cells}n/a")
    print(f"seconds per seed: {[r['seconds'] for r in rows]}")
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
