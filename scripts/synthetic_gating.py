"""Prompt-gated attribute weights where the right attribute depends on the prompt.

Two attributes, each carried by a word: ``quality`` is the number of ``great`` in a response, ``brevity``
the number of ``short``. A regression model (``--objective regression``, a 2-layer Llama over a
word-level tokenizer) learns both from a rating table. Then preference pairs: two responses where one
has more ``great`` and the other more ``short``; a prompt of kind ``task quality ...`` prefers the first,
one of kind ``task brevity ...`` the second. No fixed weighting of the two attributes can be right on both
kinds; a gate that reads the prompt can (``--objective gating``: backbone and attribute head frozen).

Per seed: the regression model, the gate, and the best fixed weights (every w in 0, 0.05, ..., 1 for
``w * quality + (1 - w) * brevity``, the best chosen on the test pairs themselves, in the baseline's
favour); held-out accuracy of each over ``--seeds``::

    python scripts/synthetic_gating.py --out /tmp/gating --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = ["task", "quality", "brevity", "great", "short", "the", "answer", "is", "here", "number"] + \
        [str(i) for i in range(50)]


def response(rng: random.Random, great: int, short: int) -> str:
    words = ["great"] * great + ["short"] * short + ["the", "answer", "is", "here"]
    rng.shuffle(words)
    return " ".join(words)


def rating_rows(n: int, rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        g, s = rng.randint(0, 4), rng.randint(0, 4)
        kind = rng.choice(["quality", "brevity"])
        rows.append({"prompt": f"task {kind} number {i % 50}", "response": response(rng, g, s), "quality": g,
                     "brevity": s})
    return rows


def pairs(n: int, rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for i in range(n):
        kind = rng.choice(["quality", "brevity"])
        g1, s1 = rng.randint(2, 4), rng.randint(0, 2)  # more great, fewer short
        g2, s2 = rng.randint(0, g1 - 1), rng.randint(s1 + 1, 4)
        a, b = response(rng, g1, s1), response(rng, g2, s2)
        chosen, rejected = (a, b) if kind == "quality" else (b, a)
        rows.append({"prompt": f"task {kind} number {i % 50}", "chosen": chosen, "rejected": rejected,
                     "subset": kind})
    return rows


def base(out: Path, seed: int) -> Path:
    from tiny_llama import word_level_llama

    return word_level_llama(out / f"base-{seed}", WORDS, seed, max_positions=64)


def fixed_weights_accuracy(model_dir: Path, test: list[dict[str, str]]) -> tuple[float, float]:
    """(best accuracy of w * quality + (1 - w) * brevity over w on the grid, that w)."""
    from rewardkit import RewardModel

    rm = RewardModel.from_pretrained(model_dir, device="cpu")
    good = rm.score_attributes([r["prompt"] for r in test], [r["chosen"] for r in test])
    bad = rm.score_attributes([r["prompt"] for r in test], [r["rejected"] for r in test])
    best = (0.0, 0.0)
    for k in range(21):
        w = k / 20
        value = lambda a: w * a["quality"] + (1 - w) * a["brevity"]  # noqa: E731
        acc = sum(value(g) > value(b) for g, b in zip(good, bad)) / len(test)
        best = max(best, (acc, w))
    return best


def run_seed(out: Path, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from rewardkit import TrainConfig, train

    d = out / f"data-{seed}"
    d.mkdir(parents=True, exist_ok=True)
    rng = random.Random(10 + seed)
    with open(d / "ratings.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["prompt", "response", "quality", "brevity"])
        writer.writeheader()
        writer.writerows(rating_rows(args.ratings, rng))
    train_pairs, test_pairs = pairs(args.pairs, rng), pairs(args.test, rng)
    for name, rows in (("train", train_pairs), ("test", test_pairs)):
        (d / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    started = time.time()
    regression = out / f"regression-{seed}"
    common = dict(max_length=48, precision="fp32", seed=seed, logging_steps=50, overwrite=True, batch_size=32)
    train(TrainConfig(model=str(base(out, seed)), train_data=str(d / "ratings.csv"), output_dir=str(regression),
                      objective="regression", score_column="quality,brevity", epochs=args.regression_epochs,
                      lr=2e-3, eval_split=0.1, **common), log=lambda m: None)
    fixed, w = fixed_weights_accuracy(regression, test_pairs)
    gated = train(TrainConfig(model=str(regression), train_data=str(d / "train.jsonl"), eval_data=str(d / "test.jsonl"),
                              output_dir=str(out / f"gating-{seed}"), objective="gating", epochs=args.gate_epochs,
                              lr=args.gate_lr, **common), log=lambda m: None)
    m = gated.eval_metrics
    return {"seed": seed, "gated_accuracy": m["accuracy"], "best_fixed_accuracy": fixed, "best_fixed_w": w,
            "gate_weights": m["gate_weights"], "seconds": round(time.time() - started, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--ratings", type=int, default=3000)
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--test", type=int, default=300)
    ap.add_argument("--regression-epochs", type=float, default=8.0)
    ap.add_argument("--gate-epochs", type=float, default=3.0)
    ap.add_argument("--gate-lr", type=float, default=5e-3)
    args = ap.parse_args()
    rows = [run_seed(Path(args.out), s, args) for s in args.seeds]
    for key in ("gated_accuracy", "best_fixed_accuracy"):
        vals = [r[key] for r in rows]
        print(f"{key:<22}" + "".join(f"{v:<8.3f}" for v in vals) + f"mean {statistics.fmean(vals):.3f}, "
              f"spread {max(vals) - min(vals):.3f}")
    for r in rows:
        print(f"seed {r['seed']}: best fixed w {r['best_fixed_w']:.2f}; gate weights "
              + "; ".join(f"{s}: " + ", ".join(f"{a} {v:.2f}" for a, v in w.items())
                          for s, w in r["gate_weights"].items()) + f" ({r['seconds']} s)")
    (Path(args.out) / "results.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
