"""Prefix sharing on a decoder: training and scoring throughput with and without it.

A randomly initialised Llama (or Qwen2) decoder is built locally, MiniLM-sized by default (hidden
384, 6 layers), with the bundled MiniLM WordPiece tokenizer: nothing is downloaded, and the FLOPs
per token resemble the encoder benchmarks. rewardkit then trains it for one epoch on hh-rlhf
with ``--prefix-sharing off`` and ``on`` (alternating, same seed and data), scores every pair
both ways, and checks the two give the same rewards.

    python benchmarks/bench_prefix.py                 # full shared hh-rlhf file
    python benchmarks/bench_prefix.py --limit 64      # smoke test

Tokens per pair: unshared rows cost K * (prompt + response); packed rows prompt + sum(responses).
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

SIZES = {  # hidden, layers, heads, kv heads, intermediate
    "tiny": (64, 2, 4, 2, 128),
    "small": (384, 6, 6, 2, 1536),
    "base": (768, 12, 12, 4, 3072),
}


def build_decoder(arch: str, size: str, out: Path) -> Path:
    """A random-init decoder with the bundled MiniLM tokenizer, saved as a model directory."""
    import torch
    from transformers import (
        AutoTokenizer,
        LlamaConfig,
        LlamaForSequenceClassification,
        Qwen2Config,
        Qwen2ForSequenceClassification,
    )

    from rewardkit.model.backbone import default_model_path

    tok = AutoTokenizer.from_pretrained(default_model_path())
    hidden, layers, heads, kv, inter = SIZES[size]
    common_cfg = dict(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                      num_key_value_heads=kv, intermediate_size=inter, max_position_embeddings=1024, num_labels=1,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id)
    torch.manual_seed(0)
    if arch == "llama":
        model = LlamaForSequenceClassification(LlamaConfig(**common_cfg))
    else:
        model = Qwen2ForSequenceClassification(Qwen2Config(**common_cfg))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    # transformers 5 may override the saved tokenizer class by model type (it does for some
    # families, e.g. Qwen2 -> Qwen2Tokenizer); make sure the directory really reloads WordPiece
    probe = "Human: What is the capital of France?"
    if AutoTokenizer.from_pretrained(out).tokenize(probe) != tok.tokenize(probe):
        raise SystemExit(f"--arch {arch}: transformers does not reload the WordPiece tokenizer for this "
                         "model type; use --arch llama")
    return out


def token_counts(model_dir: Path, comps: list[Any], max_length: int) -> dict[str, int]:
    from rewardkit.model.backbone import load_backbone, make_encoder
    from rewardkit.model.batching import packed_length

    model, tok = load_backbone(str(model_dir))
    enc = make_encoder(model, tok, max_length)
    items = [enc.encode(c) for c in comps]
    return {"unshared": sum(len(s) for e in items for s in e.input_ids),
            "shared": sum(packed_length(e) for e in items)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="preference file (default: the shared hh-rlhf file)")
    ap.add_argument("--arch", default="llama", choices=["llama", "qwen2"])
    ap.add_argument("--size", default="small", choices=sorted(SIZES))
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--eval-batch-size", type=int, default=32)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N pairs (smoke tests)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch

    from rewardkit.config import TrainConfig
    from rewardkit.model.reward_model import RewardModel
    from rewardkit.training.trainer import train

    data = args.data or common.default_data()
    comps = common.load_pairs(data, args.limit)
    work = Path(tempfile.mkdtemp(prefix="bench-prefix-"))
    model_dir = build_decoder(args.arch, args.size, work / "decoder")
    train_file = common.write_pairs(comps, work / "pairs.jsonl")
    counts = token_counts(model_dir, comps, args.max_length)
    print(f"data: {data}, {len(comps)} pairs; {args.arch}-{args.size} random init; tokens: "
          f"{counts['unshared']} unshared, {counts['shared']} shared "
          f"({counts['unshared'] / counts['shared']:.2f}x fewer)", file=sys.stderr)

    runs: list[dict[str, Any]] = []
    for r in range(args.repeats):
        for mode in (("off", "on") if r % 2 == 0 else ("on", "off")):
            cfg = TrainConfig(model=str(model_dir), train_data=str(train_file), eval_split=0.0,
                              output_dir=str(work / f"out-{mode}-{r}"), overwrite=True, max_length=args.max_length,
                              batch_size=args.batch_size, eval_batch_size=args.eval_batch_size, seed=args.seed,
                              prefix_sharing=mode, logging_steps=1000)
            res = train(cfg, log=lambda m: print(m, file=sys.stderr))
            rm = RewardModel.from_pretrained(cfg.output_dir, device="cpu" if not torch.cuda.is_available() else None,
                                             prefix_sharing=mode)
            t = time.perf_counter()
            rewards = rm.score_comparisons(comps, args.eval_batch_size)
            score_s = time.perf_counter() - t
            runs.append({"mode": mode, "repeat": r, "train_pairs_per_s": res.pairs_seen / res.train_seconds,
                         "train_seconds": res.train_seconds, "score_pairs_per_s": len(comps) / score_s,
                         "model": cfg.output_dir, "rewards": rewards})
            print(f"    prefix sharing {mode}: {runs[-1]['train_pairs_per_s']:.2f} train pairs/s, "
                  f"{runs[-1]['score_pairs_per_s']:.1f} scored pairs/s", file=sys.stderr)

    # identical rewards: the model trained without sharing, scored both ways
    plain_model = next(x["model"] for x in runs if x["mode"] == "off")
    device = "cpu" if not torch.cuda.is_available() else None
    a = RewardModel.from_pretrained(plain_model, device=device, prefix_sharing="on").score_comparisons(comps)
    b = RewardModel.from_pretrained(plain_model, device=device, prefix_sharing="off").score_comparisons(comps)
    max_diff = max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))

    rows, summary = [], {}
    for mode in ("off", "on"):
        mine = [x for x in runs if x["mode"] == mode]
        summary[mode] = {"train_pairs_per_s": common.median([x["train_pairs_per_s"] for x in mine]),
                         "score_pairs_per_s": common.median([x["score_pairs_per_s"] for x in mine]),
                         "tokens": counts["shared" if mode == "on" else "unshared"]}
        s = summary[mode]
        rows.append([mode, s["train_pairs_per_s"], s["score_pairs_per_s"], s["tokens"]])
    print()
    print(f"machine: {common.machine()}")
    print(common.table(rows, ["prefix sharing", "train pairs/s", "scored pairs/s", "real tokens"]))
    speed = summary["on"]["train_pairs_per_s"] / summary["off"]["train_pairs_per_s"]
    score_speed = summary["on"]["score_pairs_per_s"] / summary["off"]["score_pairs_per_s"]
    print(f"\ntraining speed-up {speed:.2f}x, scoring speed-up {score_speed:.2f}x; "
          f"max |reward difference| shared vs unshared (fp32): {max_diff:.2e}")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "speedup": speed, "score_speedup": score_speed,
                                               "max_reward_diff": max_diff, "tokens": counts,
                                               "machine": common.machine(), "args": vars(args),
                                               "runs": [{k: v for k, v in x.items() if k != "rewards"}
                                                        for x in runs]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
