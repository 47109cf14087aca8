"""Scoring throughput: rewardkit's batched scorer vs a per-item transformers loop.

The baseline is the loop most people write first::

    for prompt, response in items:
        inputs = tokenizer(prompt, response, truncation=True, max_length=512, return_tensors="pt")
        with torch.no_grad():
            reward = model(**inputs).logits[0, 0].item()

rewardkit scores the same (prompt, response) items with ``RewardModel.score_batch`` (length-sorted
batches, inference mode, [CLS]-only last layer on BERT backbones), and, for preference pairs,
``score_comparisons`` (with prefix sharing on decoders), in bf16 where the hardware has native bf16
(``--dtype auto``, like training's ``--precision auto``; fp32 here). Runs alternate; the rewards of both are
compared so the speed is not bought with different numbers.

    python benchmarks/bench_score.py                     # all pairs of the shared hh-rlhf file
    python benchmarks/bench_score.py --limit 64          # smoke test
    python benchmarks/bench_score.py --model rewardkit-out
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402


def per_item_loop(model: Any, tok: Any, items: list[tuple[str, str]], max_length: int, pair: bool) -> list[float]:
    """One forward per item, as a scoring loop is usually written: encoders get the sentence pair,
    decoders ``prompt + response`` followed by the EOS the model was trained to be read at (a loop
    without it reads another token, and its "agreement" with rewardkit would mean nothing)."""
    import torch

    device = next(model.parameters()).device
    out = []
    for prompt, response in items:
        if pair:
            inputs = tok(prompt, response, truncation=True, max_length=max_length, return_tensors="pt")
        else:
            ids = tok(prompt + response, truncation=True, max_length=max_length - 1)["input_ids"] + [tok.eos_token_id]
            inputs = {"input_ids": torch.tensor([ids])}
        with torch.no_grad():
            out.append(model(**{k: v.to(device) for k, v in inputs.items()}).logits[0, 0].item())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="preference file (default: the shared hh-rlhf file)")
    ap.add_argument("--model", default=None,
                    help="model directory (default: bundled MiniLM-L6 with a fresh head; speed only)")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N pairs (2N items)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"],
                    help="rewardkit's weights: auto = bf16 where the hardware has native bf16 (as training's "
                         "--precision auto), else fp32. The per-item loop always runs the fp32 model.")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch

    from rewardkit.model.backbone import load_backbone, uses_last_token
    from rewardkit.model.reward_model import RewardModel

    data = args.data or common.default_data()
    comps = common.load_pairs(data, args.limit)
    items = [(c.prompt, r) for c in comps for r in c.responses]
    from rewardkit.model.precision import resolve_dtype

    dtype = "bf16" if resolve_dtype(args.dtype) == torch.bfloat16 else "fp32"
    model, tok = load_backbone(args.model)
    model.eval()
    device = "cpu" if not torch.cuda.is_available() else None
    rm = RewardModel(copy.deepcopy(model) if dtype != "fp32" else model, tok, max_length=args.max_length,
                     device=device, dtype=dtype)
    baseline = model.to(rm.device)  # fp32, as the loop is usually written
    pair = not uses_last_token(model)
    print(f"data: {data}, {len(comps)} pairs = {len(items)} items; model {args.model or 'bundled MiniLM-L6'}; "
          f"prefix sharing {'on' if rm.share_prefix else 'off'}; rewardkit weights {dtype}, per-item loop fp32",
          file=sys.stderr)

    timings: dict[str, list[float]] = {"per-item loop": [], "rewardkit score_batch": [],
                                       "rewardkit score_comparisons": []}
    results: dict[str, list[float]] = {}
    for r in range(args.repeats):
        names = list(timings) if r % 2 == 0 else list(timings)[::-1]
        for name in names:
            t = time.perf_counter()
            if name == "per-item loop":
                results[name] = per_item_loop(baseline, tok, items, args.max_length, pair)
            elif name == "rewardkit score_batch":
                results[name] = rm.score_batch([p for p, _ in items], [x for _, x in items], args.batch_size)
            else:
                results[name] = [x for rs in rm.score_comparisons(comps, args.batch_size) for x in rs]
            timings[name].append(len(items) / (time.perf_counter() - t))
            print(f"    {name}: {timings[name][-1]:.1f} items/s", file=sys.stderr)

    # same numbers? compare on items the baseline did not have to truncate differently
    base, ours = results["per-item loop"], results["rewardkit score_batch"]
    lengths = [len(tok(p, x)["input_ids"]) if pair else len(tok(p + x)["input_ids"]) + 1 for p, x in items]
    short = [i for i, n in enumerate(lengths) if n <= args.max_length]
    max_diff = max((abs(base[i] - ours[i]) for i in short), default=float("nan"))
    n = len(base)
    mb, mo = sum(base) / n, sum(ours) / n
    cov = sum((a - mb) * (b - mo) for a, b in zip(base, ours))
    corr = cov / math.sqrt(sum((a - mb) ** 2 for a in base) * sum((b - mo) ** 2 for b in ours) or 1.0)

    loop = common.median(timings["per-item loop"])
    rows = [[name, common.median(v), common.median(v) / loop] for name, v in timings.items()]
    print()
    print(f"machine: {common.machine()}")
    print(common.table(rows, ["scorer", "items/s", "vs per-item loop"]))
    print(f"\nagreement with the loop: max |diff| {max_diff:.2e} on {len(short)} items that fit in "
          f"{args.max_length} tokens; Pearson r {corr:.4f} over all {n}")
    if args.json:
        Path(args.json).write_text(json.dumps({"items_per_s": {k: common.median(v) for k, v in timings.items()},
                                               "runs": timings, "max_diff": max_diff, "pearson": corr,
                                               "items": n, "dtype": dtype, "machine": common.machine(),
                                               "args": vars(args)},
                                              indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
