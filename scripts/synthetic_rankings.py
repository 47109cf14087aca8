"""Synthetic K-way rankings with a known true order: Plackett-Luce vs pairwise Bradley-Terry.

Every response carries a hidden quality q (0..SLOTS): q of its SLOTS words come from a "good" half
of a word list and the rest from the "bad" half (the split is a seeded shuffle, so the model must
learn each word's valence from the rankings), so quality is learnable from the text. Training rankings are drawn from a Plackett-Luce model over the true
utilities (``beta * q`` plus Gumbel noise), so they are noisy the way human rankings are, and are
written as ordered ``{"prompt", "ranking"}`` records (no scores: both objectives see exactly the
same information). Held-out rankings are in the true order.

Two models are trained on the same file with the same settings and seed, one with ``--loss pl``
(one Plackett-Luce term per ranking) and one with ``--loss bt --balance-per-prompt`` (all C(K,2)
pairs of a ranking, each weighted 1/C(K,2): InstructGPT). Each is scored on the held-out rankings:
mean Kendall tau between rewards and the true order (chance 0, perfect 1), pairwise accuracy
(chance 0.5) and top-1 accuracy (chance 1/K).

    python scripts/synthetic_rankings.py                 # tiny random BERT built on the spot
    python scripts/synthetic_rankings.py --model minilm  # the bundled pretrained MiniLM-L6
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Valence words: a seeded shuffle splits them into "good" and "bad" halves, so the model has to
# learn each word's valence from the rankings (nothing about the words themselves gives it away).
WORDS = ["amber", "basil", "cedar", "delta", "ember", "fable", "garnet", "harbor", "ivory", "juniper",
         "kettle", "lantern", "meadow", "nectar", "orchid", "pepper", "quartz", "raven", "saffron", "timber",
         "umber", "velvet", "willow", "yarrow", "zephyr", "anchor", "bramble", "copper", "dune", "falcon",
         "glacier", "hazel", "indigo", "jasper", "kelp", "lilac", "marble", "nutmeg", "onyx", "pebble"]
_split = random.Random(1234).sample(WORDS, len(WORDS))
GOOD, BAD = sorted(_split[:len(WORDS) // 2]), sorted(_split[len(WORDS) // 2:])
TOPICS = ["bread", "taxes", "rivers", "python", "gardens", "engines", "music", "chess", "clouds", "coffee"]
SLOTS = 6


def response_text(q: int, topic: str, rng: random.Random) -> str:
    words = rng.sample(GOOD, q) + rng.sample(BAD, SLOTS - q)
    rng.shuffle(words)
    return f"about {topic}: " + " ".join(words) + f" notes on {topic}."


def make_rankings(n: int, k: int, seed: int, beta: float | None) -> list[dict[str, Any]]:
    """``n`` rankings of ``k`` responses with distinct hidden qualities, best first.

    ``beta=None`` orders by true quality; otherwise the order is a Plackett-Luce sample with
    utilities ``beta * q`` (Gumbel-max trick), i.e. noisy like real annotations.
    """
    rng = random.Random(seed)
    out = []
    for i in range(n):
        topic = rng.choice(TOPICS)
        qualities = rng.sample(range(SLOTS + 1), k)
        texts = [response_text(q, topic, rng) for q in qualities]
        if beta is None:
            keys = [float(q) for q in qualities]
        else:
            keys = [beta * q - math.log(-math.log(rng.random() or 1e-12)) for q in qualities]
        order = sorted(range(k), key=lambda j: -keys[j])
        out.append({"prompt": f"Question {seed}-{i}: tell me something about {topic}.",
                    "ranking": [texts[j] for j in order], "quality": [qualities[j] for j in order]})
    return out


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "quality"}) + "\n" for r in records))
    return path


def tiny_bert(out_dir: Path, hidden: int = 64, seed: int = 0) -> Path:
    """A randomly initialised 2-layer BERT with the bundled MiniLM tokenizer (the test fixture's shape)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from rewardkit.model.backbone import default_model_path

    tok = AutoTokenizer.from_pretrained(default_model_path())
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=2 * hidden, max_position_embeddings=128, num_labels=1)
    torch.manual_seed(seed)
    BertForSequenceClassification(cfg).save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


def ranking_scores(rewards: list[float]) -> tuple[float, float, float]:
    """(Kendall tau, pairwise accuracy, top-1 hit) of rewards for responses listed best first.

    A tied pair of rewards counts as neither concordant nor discordant for tau and as wrong for
    accuracy (so a constant model scores tau 0 and accuracy 0).
    """
    k = len(rewards)
    pairs = k * (k - 1) // 2
    concordant = sum(rewards[i] > rewards[j] for i in range(k) for j in range(i + 1, k))
    discordant = sum(rewards[i] < rewards[j] for i in range(k) for j in range(i + 1, k))
    top1 = float(max(range(k), key=lambda i: rewards[i]) == 0 and rewards.count(max(rewards)) == 1)
    return (concordant - discordant) / pairs, concordant / pairs, top1


def run(model: str, workdir: Path, n_train: int = 400, n_test: int = 100, k: int = 4, beta: float = 1.0,
        epochs: float = 2.0, batch_size: int = 8, lr: float = 1e-3, seed: int = 0,
        losses: tuple[str, ...] = ("pl", "bt"), log: Any = None) -> dict[str, dict[str, float]]:
    """Train one model per loss on the same synthetic rankings; held-out ranking metrics per loss."""
    from rewardkit.config import TrainConfig
    from rewardkit.data.loading import load_comparisons
    from rewardkit.model.reward_model import RewardModel
    from rewardkit import train

    train_file = write_jsonl(workdir / "train.jsonl", make_rankings(n_train, k, seed, beta))
    test_file = write_jsonl(workdir / "test.jsonl", make_rankings(n_test, k, seed + 1, None))
    held = load_comparisons(str(test_file)).comparisons
    results = {}
    for loss in losses:
        cfg = TrainConfig(model=model, train_data=str(train_file), eval_data=str(test_file), loss=loss,
                          balance_per_prompt=loss == "bt", epochs=epochs, batch_size=batch_size, lr=lr,
                          max_length=64, warmup_ratio=0.1, output_dir=str(workdir / f"out-{loss}"),
                          overwrite=True, seed=seed, precision="fp32", logging_steps=1000)
        result = train(cfg, log=log or (lambda _m: None))
        rm = RewardModel.from_pretrained(result.output_dir, device="cpu")
        per = [ranking_scores(r) for r in rm.score_comparisons(held, batch_size=64)]
        results[loss] = {"kendall_tau": sum(p[0] for p in per) / len(per),
                         "pairwise_accuracy": sum(p[1] for p in per) / len(per),
                         "top1_accuracy": sum(p[2] for p in per) / len(per),
                         "steps": result.steps, "seconds": round(result.seconds, 1)}
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny", help="'tiny' (random 2-layer BERT), 'minilm' or a model directory")
    ap.add_argument("--hidden", type=int, default=32, help="hidden size of the tiny BERT")
    ap.add_argument("--train", type=int, default=1000, help="training rankings")
    ap.add_argument("--test", type=int, default=300, help="held-out rankings")
    ap.add_argument("-k", type=int, default=4, help=f"responses per ranking (2..{SLOTS + 1})")
    ap.add_argument("--beta", type=float, default=0.5, help="utility scale of the noisy training rankings")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=None, help="default: 2e-3 for tiny, 5e-5 for pretrained models")
    ap.add_argument("--seeds", type=int, default=3, help="repeat with seeds 0..N-1 (data, init, order)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 avoids oversubscription)")
    args = ap.parse_args()
    if not 2 <= args.k <= SLOTS + 1:
        ap.error(f"-k must be in 2..{SLOTS + 1}")

    import os

    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    lr = args.lr or (2e-3 if args.model == "tiny" else 5e-5)
    runs = []
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            if args.model == "tiny":
                model = str(tiny_bert(work / "tiny-bert", hidden=args.hidden, seed=seed))
            elif args.model == "minilm":
                from rewardkit.model.backbone import default_model_path

                model = default_model_path()
            else:
                model = args.model
            runs.append(run(model, work, args.train, args.test, args.k, args.beta, args.epochs, args.batch_size,
                             lr, seed))
    print(f"synthetic rankings: K={args.k}, {args.train} noisy training rankings (Plackett-Luce, beta={args.beta}), "
          f"{args.test} held-out rankings in true order; model={args.model}, lr={lr}, epochs={args.epochs}, "
          f"batch {args.batch_size}, mean of {args.seeds} seed(s)")
    print(f"{'objective':<36}{'kendall_tau':>12}{'pair_acc':>10}{'top1':>8}   tau per seed")
    names = {"pl": "plackett-luce (--loss pl)", "bt": "pairwise bt (all C(K,2), balanced)"}
    summary: dict[str, dict[str, float]] = {}
    for loss in names:
        mean = {m: sum(r[loss][m] for r in runs) / len(runs) for m in ("kendall_tau", "pairwise_accuracy", "top1_accuracy")}
        summary[loss] = mean
        taus = " ".join(f"{r[loss]['kendall_tau']:.3f}" for r in runs)
        print(f"{names[loss]:<36}{mean['kendall_tau']:>12.3f}{mean['pairwise_accuracy']:>10.3f}"
              f"{mean['top1_accuracy']:>8.3f}   {taus}")
    print(f"{'chance':<36}{0.0:>12.3f}{0.5:>10.3f}{1 / args.k:>8.3f}")
    print(json.dumps({"mean": summary, "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
