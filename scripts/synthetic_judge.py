"""A pairwise judge on a task where one answer of each pair breaks a hidden rule.

The chain task of `synthetic_prm.py` as preference pairs: the prompt is ``start D steps N``; the chosen
answer walks the hidden successor rule (``3 > 9 ; 9 > 6 ; ...``), the rejected one goes wrong at one random
step. A judge (``--objective judge``) reads the prompt and both answers and says which is better (A or B);
every training pair is seen in both orders. Local and seeded: a word-level tokenizer and a random
2-layer Llama (hidden 64) per seed. Reports held-out accuracy (both orders averaged, and each order alone)
and position consistency over ``--seeds``::

    python scripts/synthetic_judge.py --out /tmp/judge --seeds 0 1 2
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
import synthetic_prm as chain  # noqa: E402

TEMPLATE, TOKENS = " which better ?", " A, B"
WORDS = chain.WORDS + ["Response", "A:", "B:", "which", "better", "?", "A", "B"]


def pairs(n: int, rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for _ in range(n):
        start, steps = rng.randrange(10), rng.randint(3, 6)
        good, _, _ = chain.solve(start, steps, -1, 0)
        bad, _, _ = chain.solve(start, steps, rng.randrange(steps), rng.randrange(1, 10))
        rows.append({"prompt": f"start {start} steps {steps}", "chosen": " ; ".join(good) + " ;",
                     "rejected": " ; ".join(bad) + " ;"})
    return rows


def base(out: Path, seed: int) -> Path:
    from tiny_llama import word_level_llama

    return word_level_llama(out / f"base-{seed}", WORDS, seed)


def run_seed(out: Path, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from rewardkit import TrainConfig, train

    data = out / f"data-{seed}"
    data.mkdir(parents=True, exist_ok=True)
    rng = random.Random(100 + seed)
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pairs(args.train, rng)))
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pairs(args.test, rng)))
    started = time.time()
    result = train(TrainConfig(model=str(base(out, seed)), train_data=str(data / "train.jsonl"),
                               eval_data=str(data / "test.jsonl"), output_dir=str(out / f"judge-{seed}"),
                               overwrite=True, objective="judge", judge_template=TEMPLATE, judge_tokens=TOKENS,
                               epochs=args.epochs, batch_size=16, lr=args.lr, max_length=96, precision="fp32",
                               seed=seed, warmup_ratio=0.05, logging_steps=50), log=lambda m: None)
    return {"seed": seed, "seconds": round(time.time() - started, 1), **result.eval_metrics}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--test", type=int, default=300)
    ap.add_argument("--epochs", type=float, default=6.0)
    ap.add_argument("--lr", type=float, default=2e-3)
    args = ap.parse_args()
    rows = [run_seed(Path(args.out), s, args) for s in args.seeds]
    keys = ["accuracy", "accuracy_better_as_a", "accuracy_better_as_b", "position_consistency"]
    print(f"{'metric':<24}" + "".join(f"seed {r['seed']:<6}" for r in rows) + "mean   spread")
    for k in keys:
        vals = [r[k] for r in rows]
        print(f"{k:<24}" + "".join(f"{v:<11.3f}" for v in vals) + f"{statistics.fmean(vals):.3f}  {max(vals) - min(vals):.3f}")
    print(f"held-out pairs {rows[0]['pairs']} (chance 0.5); seconds per seed {[r['seconds'] for r in rows]}")
    (Path(args.out) / "results.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
