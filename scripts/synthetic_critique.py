"""Critique-out-loud on a task where the critique carries the deciding fact.

The prompt is ``bits b1 ... bN`` (N fixed, ``--bits``); the chosen answer states the parity of the bits
(``parity 1``), the rejected one the other value. Whether an answer is right is the XOR of all N bits: hard
to read in one forward pass of a 2-layer model, easy one bit at a time. The reference critique writes the
running parity, bit by bit, then whether the claim matches (``1 1 0 1 ... so 0 wrong``), so a model that has
learned to write it has the deciding fact in front of its head.

Two models per seed, the same random 2-layer Llama (hidden 64, word-level tokenizer) and the same pairs:
``--objective critique`` (``--critique-sft-epochs`` epochs writing critiques, then ``--epochs`` of the reward
stage) against ``--objective bt`` for the same total number of epochs. Reports held-out accuracy per seed::

    python scripts/synthetic_critique.py --out /tmp/critique --seeds 0 1 2
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

TEMPLATE = " critique:"
WORDS = ["bits", "parity", "0", "1", "so", "right", "wrong", "critique:"]


def critique_of(bits: list[int], claim: int) -> str:
    running, out = 0, []
    for b in bits:
        running ^= b
        out.append(str(running))
    return " ".join(out) + f" so {running} {'right' if running == claim else 'wrong'}"


def pairs(n: int, bits: int, rng: random.Random, exclude: set[str] | None = None) -> list[dict[str, str]]:
    """``n`` critiqued pairs over distinct prompts (none of ``exclude``)."""
    rows, seen = [], set(exclude or ())
    if n > 2 ** bits - len(seen):
        raise SystemExit(f"only {2 ** bits - len(seen)} prompts of {bits} bits left for {n} pairs: raise --bits")
    while len(rows) < n:
        b = [rng.randrange(2) for _ in range(bits)]
        prompt = "bits " + " ".join(map(str, b))
        if prompt in seen:
            continue
        seen.add(prompt)
        parity = sum(b) % 2
        rows.append({"prompt": prompt, "chosen": f"parity {parity}", "rejected": f"parity {1 - parity}",
                     "chosen_critique": critique_of(b, parity), "rejected_critique": critique_of(b, 1 - parity)})
    return rows


def base(out: Path, seed: int) -> Path:
    from tiny_llama import word_level_llama

    return word_level_llama(out / f"base-{seed}", WORDS, seed)


def write_data(out: Path, seed: int, args: argparse.Namespace) -> tuple[Path, Path]:
    data = out / f"data-{seed}"
    data.mkdir(parents=True, exist_ok=True)
    rng = random.Random(100 + seed)
    train_rows = pairs(args.train, args.bits, rng)
    test_rows = pairs(args.test, args.bits, rng, exclude={r["prompt"] for r in train_rows})
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train_rows))
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test_rows))
    return data / "train.jsonl", data / "test.jsonl"


def run_seed(out: Path, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from rewardkit import RewardModel, TrainConfig, train

    train_file, test_file = write_data(out, seed, args)
    model = args.model or str(base(out, seed))
    common = dict(model=model, train_data=str(train_file), eval_data=str(test_file), overwrite=True,
                  batch_size=16, lr=args.lr, max_length=48, precision=args.precision, seed=seed, warmup_ratio=0.05,
                  logging_steps=50)
    row: dict[str, Any] = {"seed": seed}
    started = time.time()
    crit = train(TrainConfig(**common, output_dir=str(out / f"critique-{seed}"), objective="critique",
                             critique_template=TEMPLATE, max_critique_tokens=2 * args.bits + 8,
                             critique_sft_epochs=args.critique_sft_epochs, epochs=args.epochs), log=lambda m: None)
    row["critique"], row["critique_seconds"] = crit.eval_metrics["accuracy"], round(time.time() - started, 1)
    rm = RewardModel.from_pretrained(out / f"critique-{seed}")
    test = [json.loads(line) for line in test_file.read_text().splitlines()[:200]]
    scored = rm.score_batch([r["prompt"] for r in test], [r["chosen"] for r in test], return_critique=True)
    row["critique_exact"] = sum(c == r["chosen_critique"] for (_, c), r in zip(scored, test)) / len(test)
    wrong = rm.score_batch([r["prompt"] for r in test[:2]], [r["rejected"] for r in test[:2]], return_critique=True)
    row["examples"] = [{"prompt": r["prompt"], "response": r[side], "critique": c, "reward": round(v, 3)}
                       for r, side, (v, c) in [(test[0], "chosen", scored[0]), (test[0], "rejected", wrong[0]),
                                               (test[1], "chosen", scored[1]), (test[1], "rejected", wrong[1])]]
    started = time.time()
    plain = train(TrainConfig(**common, output_dir=str(out / f"bt-{seed}"), objective="bt",
                              epochs=args.epochs + args.critique_sft_epochs), log=lambda m: None)
    row["bt"], row["bt_seconds"] = plain.eval_metrics["accuracy"], round(time.time() - started, 1)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--bits", type=int, default=10)
    ap.add_argument("--train", type=int, default=600)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--epochs", type=float, default=3.0, help="epochs of the reward stage (bt: this plus stage 1's)")
    ap.add_argument("--critique-sft-epochs", type=float, default=3.0)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--model", default=None, help="a pretrained decoder (directory or GGUF) instead of the random "
                    "2-layer Llama")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"])
    args = ap.parse_args()
    rows = [run_seed(Path(args.out), s, args) for s in args.seeds]
    print(f"{'model':<26}" + "".join(f"seed {r['seed']:<6}" for r in rows) + "mean   spread")
    for key, label in (("critique", "critique-out-loud"), ("bt", "plain scalar (bt)"),
                       ("critique_exact", "critique text exact")):
        vals = [r[key] for r in rows]
        print(f"{label:<26}" + "".join(f"{v:<11.3f}" for v in vals) + f"{statistics.fmean(vals):.3f}  "
              f"{max(vals) - min(vals):.3f}")
    print(f"held-out pairs {args.test} (chance 0.5), {args.bits} bits; examples (seed {rows[0]['seed']}):")
    for example in rows[0]["examples"]:
        print(f"  {example}")
    (Path(args.out) / "results.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
