"""Reward-model recipes on a real chat model: SFT warm start vs direct, generative verdict zero-shot vs trained,
a pairwise judge zero-shot vs trained.

    python benchmarks/bench_recipes.py --model SmolLM2-135M-Instruct.Q4_1.gguf --experiment sft
    python benchmarks/bench_recipes.py --model SmolLM2-135M-Instruct.Q4_1.gguf --experiment generative
    python benchmarks/bench_recipes.py --model SmolLM2-135M-Instruct.Q4_1.gguf --experiment judge --limit 300

The data is the first ``--limit`` pairs of the shared hh-rlhf file (the bundled sample without it),
turned into chat messages (`rewardkit.data.formats.transcript_messages`) so the model sees its own
chat template, and split once, prompt-disjoint (``--test-fraction``, seed 0), for every run. Seeds
change the fresh head's initialisation and the batch order, not the split.

* ``sft``: per seed, a reward model trained directly from the backbone, and one trained after an SFT
  stage on the chosen answers (``--sft-epochs 1``, the same command otherwise).
* ``generative``: the zero-shot verdict (`RewardModel.generative`: log P(" Yes") - log P(" No") after
  the question, no training), then ``--objective generative`` trained per seed.
* ``judge``: the pairwise judge's layout read zero-shot (the same question and A/B tokens on the base
  model), then ``--objective judge`` trained per seed; the hh-rlhf transcripts stay plain text (the
  judge's template holds both answers). Accuracy over both orders and position consistency, and the
  verdicts of seed 0 on the first held-out pairs.

Every number is held-out pairwise accuracy (chosen scored above rejected) on the same pairs, and the
table gives each seed, the mean and the spread (max - min).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402


def chat_pairs(limit: int, test_fraction: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """(train records, held-out records, transcripts left out) as conversational pairs."""
    from rewardkit.data.formats import transcript_messages
    from rewardkit.data.loading import split_by_prompt
    from rewardkit.data.records import Comparison

    comps = common.load_pairs(common.default_data(), limit)
    records = []
    for c in comps:
        prompt = transcript_messages(c.prompt)  # ends with the empty assistant turn the answers fill
        chosen, rejected = c.responses[0].strip(), c.responses[1].strip()
        if prompt[-1] == {"role": "assistant", "content": ""} and len(prompt) > 1 and chosen and rejected \
                and chosen != rejected:
            records.append(Comparison(prompt=prompt[:-1], responses=[chosen, rejected]))
    train_c, test_c = split_by_prompt(records, test_fraction, 0)

    def as_record(c: Comparison) -> dict[str, Any]:
        return {"prompt": c.prompt, "chosen": [{"role": "assistant", "content": c.responses[0]}],
                "rejected": [{"role": "assistant", "content": c.responses[1]}]}

    return [as_record(c) for c in train_c], [as_record(c) for c in test_c], len(comps) - len(records)


def write(records: list[dict[str, Any]], path: Path) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def accuracy(rm: Any, test: list[dict[str, Any]]) -> float:
    from rewardkit.data.records import Comparison

    rewards = rm.score_comparisons([Comparison(prompt=r["prompt"], responses=[r["chosen"], r["rejected"]])
                                    for r in test])
    return sum(a > b for a, b in rewards) / len(rewards)


def train_and_score(args: argparse.Namespace, train_file: str, test: list[dict[str, Any]], out: Path,
                    seed: int, **extra: Any) -> dict[str, Any]:
    from rewardkit import RewardModel, TrainConfig, train

    started = time.time()
    cfg = TrainConfig(model=args.model, train_data=train_file, output_dir=str(out), overwrite=True,
                      max_length=args.max_length, batch_size=args.batch_size, seed=seed, precision=args.precision,
                      eval_split=0.0, logging_steps=1000, **extra)
    train(cfg, log=lambda m: print(m, file=sys.stderr))
    acc = accuracy(RewardModel.from_pretrained(out, device="cpu"), test) if test else float("nan")
    return {"seed": seed, "accuracy": acc, "seconds": time.time() - started}


def judge_eval(judge_pair: Any, test: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy of a judge's both-orders decision on (prompt, chosen, rejected) records, its position
    consistency, and its verdicts on the first three."""
    judged = [judge_pair(r["prompt"], r["chosen"], r["rejected"]) for r in test]
    return {"accuracy": sum(p > 0.5 for p, _ in judged) / len(judged),
            "consistency": sum(agree for _, agree in judged) / len(judged),
            "examples": [{"prompt": r["prompt"][-160:], "chosen": r["chosen"][:160], "rejected": r["rejected"][:160],
                          "p_chosen_better": p, "orders_agree": agree} for r, (p, agree) in zip(test[:3], judged)]}


def judge_experiment(args: argparse.Namespace, work: Path) -> tuple[dict[str, list[dict[str, Any]]], int]:
    """Zero-shot and trained judges on plain-text pairs; (results, held-out pairs)."""
    from rewardkit import RewardModel
    from rewardkit.data.loading import split_by_prompt
    from rewardkit.model.judge import DEFAULT_TEMPLATE, DEFAULT_TOKENS, both_orders, pair_text

    comps = [c for c in common.load_pairs(common.default_data(), args.limit)  # both answers real and different
             if c.responses[0].strip() and c.responses[1].strip() and c.responses[0].strip() != c.responses[1].strip()]
    train_c, test_c = split_by_prompt(comps, args.test_fraction, 0)
    as_record = lambda c: {"prompt": c.prompt, "chosen": c.responses[0], "rejected": c.responses[1]}  # noqa: E731
    train_file, test = write([as_record(c) for c in train_c], work / "train.jsonl"), [as_record(c) for c in test_c]
    base = RewardModel.generative(args.model, DEFAULT_TEMPLATE, DEFAULT_TOKENS, max_length=args.max_length,
                                  device="cpu")

    def zero_shot(prompt: str, a: str, b: str) -> tuple[float, bool]:
        return both_orders(*base.score_batch([prompt, prompt], [pair_text(a, b), pair_text(b, a)]))

    results: dict[str, list[dict[str, Any]]] = {"zero-shot judge (no training)": [{"seed": "-", **judge_eval(zero_shot, test)}]}
    for seed in args.seeds:
        started = time.time()
        out = work / f"judge-{seed}"
        train_and_score(args, train_file, [], out, seed, objective="judge")
        judge = RewardModel.from_pretrained(out, device="cpu")
        results.setdefault("--objective judge, trained", []).append(
            {"seed": seed, **judge_eval(judge.judge_pair, test), "seconds": time.time() - started})
    return results, len(test)


def summarize(name: str, runs: list[dict[str, Any]], width: int) -> list[Any]:
    accs = [r["accuracy"] for r in runs]
    return [name, *[f"{a:.3f}" for a in accs], *[""] * (width - len(accs)), f"{sum(accs) / len(accs):.3f}",
            f"{max(accs) - min(accs):.3f}" if len(accs) > 1 else "-"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a decoder with a chat template: directory, Hub id or GGUF file")
    ap.add_argument("--experiment", choices=["sft", "generative", "judge"], required=True)
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--test-fraction", type=float, default=0.2)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--precision", default="bf16", choices=["auto", "bf16", "fp32"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-recipes-"))
    if args.experiment == "judge":
        return report_judge(args, *judge_experiment(args, work))
    train_recs, test_recs, left_out = chat_pairs(args.limit, args.test_fraction)
    train_file = write(train_recs, work / "train.jsonl")
    print(f"data: {len(train_recs)} training and {len(test_recs)} held-out conversations (prompt-disjoint, seed 0; "
          f"{left_out} pairs not turned into conversations); model {args.model}; max length {args.max_length}, "
          f"batch {args.batch_size}, precision {args.precision}", file=sys.stderr)
    results: dict[str, list[dict[str, Any]]] = {}
    if args.experiment == "sft":
        for seed in args.seeds:
            results.setdefault("reward model from the backbone", []).append(
                train_and_score(args, train_file, test_recs, work / f"direct-{seed}", seed))
            results.setdefault("SFT 1 epoch, then the reward model", []).append(
                train_and_score(args, train_file, test_recs, work / f"sft-{seed}", seed, sft_epochs=1.0))
    else:
        from rewardkit import RewardModel

        judge = RewardModel.generative(args.model, max_length=args.max_length, device="cpu", chat=True)
        results["zero-shot verdict (no training)"] = [{"seed": "-", "accuracy": accuracy(judge, test_recs)}]
        for seed in args.seeds:
            results.setdefault("--objective generative, trained", []).append(
                train_and_score(args, train_file, test_recs, work / f"gen-{seed}", seed, objective="generative"))
    width = max(len(r) for r in results.values())
    rows = [summarize(k, v, width) for k, v in results.items()]
    print()
    print(f"machine: {common.machine()}")
    print(common.table(rows, ["recipe", *[f"seed {s}" for s in args.seeds[:width]], "mean", "spread"]))
    print(f"held-out accuracy on {len(test_recs)} pairs")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "args": vars(args),
                                               "machine": common.machine()}, indent=1))
    return 0


def report_judge(args: argparse.Namespace, results: dict[str, list[dict[str, Any]]], held_out: int) -> int:
    width = max(len(r) for r in results.values())
    rows = []
    for name, runs in results.items():
        rows.append(summarize(name, runs, width))
        cons = [r["consistency"] for r in runs]
        rows.append(["  position consistency", *[f"{c:.3f}" for c in cons], *[""] * (width - len(cons)),
                     f"{sum(cons) / len(cons):.3f}", f"{max(cons) - min(cons):.3f}" if len(cons) > 1 else "-"])
    print(f"\nmachine: {common.machine()}")
    print(common.table(rows, ["judge", *[f"seed {s}" for s in args.seeds[:width]], "mean", "spread"]))
    print(f"held-out pairs: {held_out}, each judged in both orders (chance 0.5)")
    for name, runs in results.items():
        print(f"\n{name}, seed {runs[0]['seed']}: verdicts on the first held-out pairs")
        for e in runs[0]["examples"]:
            print(f"  P(chosen better) {e['p_chosen_better']:.3f}, orders agree: {e['orders_agree']}; prompt ...{e['prompt'][-80:]!r}")
            print(f"    chosen {e['chosen'][:80]!r}\n    rejected {e['rejected'][:80]!r}")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "args": vars(args), "machine": common.machine()},
                                              indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
