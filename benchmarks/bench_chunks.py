"""Row chunking on CPU: fixed 8-row chunks vs chunks planned by `rewardkit.model.fast_paths.plan_chunks`.

Takes real training micro-batches (MiniLM-L6, hh-rlhf split as in bench_train, length-grouped,
cut into --pass-tokens passes as training does), and times forward + backward of the same batches
under both chunkings, alternating, several repeats. Both give the same rewards and gradients
(tests/test_fast_paths.py); only the padded work differs.

    python benchmarks/bench_chunks.py                 # 16 random micro-batches, 3 repeats
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="preference file (default: the shared hh-rlhf file)")
    ap.add_argument("--batches", type=int, default=16, help="micro-batches to time")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import transformers

    from rewardkit.encoding.cache import encode_cached
    from rewardkit.model.backbone import load_backbone, make_encoder
    from rewardkit.model.batching import batch_length, collate_for
    from rewardkit.model.net import RewardNet, compute_rewards
    from rewardkit.training.batch_plan import CPU_PASS_TOKENS, plan_micro_batches, split_into_passes

    transformers.logging.set_verbosity_error()
    train_c, _ = common.split(common.load_pairs(args.data or common.default_data(), None), 0.2, args.seed)
    model, tok = load_backbone(None)
    enc = encode_cached(make_encoder(model, tok, 512), train_c)
    rounds = plan_micro_batches([[i] for i in range(len(enc))], [batch_length(e, False) for e in enc], 16, 1.0,
                           args.seed, 1)
    picked = random.Random(1).sample(rounds, min(args.batches, len(rounds)))
    widths, rows = [e.longest for e in enc], [len(e.input_ids) for e in enc]
    batches = [[collate_for([enc[j] for j in part], tok.pad_token_id, False)
                for part in split_into_passes(r[0], widths, rows, list(range(len(enc))), CPU_PASS_TOKENS)]
               for r in picked]
    nets = {"fixed 8-row chunks": RewardNet(model, row_chunk=8), "planned chunks": RewardNet(model)}
    timings: dict[str, list[float]] = {name: [] for name in nets}
    for rep in range(args.repeats):
        for name in list(nets) if rep % 2 == 0 else list(nets)[::-1]:
            net = nets[name].train()
            started = time.perf_counter()
            for parts in batches:
                for b in parts:
                    r = compute_rewards(net, b)
                    (r[b.pair_better] - r[b.pair_worse]).sigmoid().sum().backward()
                model.zero_grad(set_to_none=True)
            timings[name].append(time.perf_counter() - started)
            print(f"    {name}: {timings[name][-1]:.2f} s", file=sys.stderr)
    print(f"machine: {common.machine()}")
    base = min(timings["fixed 8-row chunks"])
    print(common.table([[name, min(v), common.median(v), base / min(v)] for name, v in timings.items()],
                       ["chunking", "best s", "median s", "speed-up (best)"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
