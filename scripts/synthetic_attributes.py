"""Synthetic multi-attribute ratings with a known structure: each attribute is carried by its own words.

Every response carries a hidden level q_k in 0..SLOTS for each of the K attributes (HelpSteer's
names and 0..4 scale): for attribute k it holds q_k words from that attribute's "good" list and
SLOTS - q_k from its "bad" list, all K*SLOTS words shuffled together. The 12 words of each
attribute and their split into good and bad come from a seeded shuffle of neutral nouns, so
nothing about a word gives its role away: a model must learn, from the ratings, which words move
which attribute. The attributes are independent, so one cannot stand in for another.

Training ratings are noisy the way annotations are: ``round(q_k + N(0, noise))`` clipped to the
range, and a share of them missing (empty cells, to be masked). Held-out prompts are new prompts
whose ratings are the true levels (a few missing too). Files written to ``--out``::

    train.csv         prompt,response,helpfulness,correctness,coherence,complexity,verbosity
    test.csv          held-out prompts, same columns, ratings = true levels
    test_pairs.jsonl  {"prompt", "chosen", "rejected"}: held-out answers of one prompt whose true
                      combined scores (WEIGHTS) differ by at least --pair-min-gap, better first
    meta.json         attributes, range, weights, counts, and the flags to train on it

Train and evaluate on it (docs/objectives.md, "A worked example with known structure")::

    rewardkit train --objective regression --train-data OUT/train.csv --eval-data OUT/test.csv \
        --score-column helpfulness,correctness,coherence,complexity,verbosity --score-range 0:4 \
        --attribute-weights helpfulness=1,correctness=1,coherence=0.5,complexity=0.5,verbosity=-0.5
    rewardkit eval OUT_MODEL OUT/test.csv --json        # Spearman per attribute >= 0.8
    rewardkit eval OUT_MODEL OUT/test_pairs.jsonl --json  # combined reward accuracy >= 0.9

``--baseline`` checks that the data is learnable on the same splits without ``rewardkit train``: ``bow`` ridge regression on word counts (the structure is linear in the
counts, so this is near the ceiling the noise allows), ``embed`` ridge on frozen MiniLM sentence
embeddings, ``finetune`` a minimal MiniLM fine-tune with ``num_labels=K`` and rewardkit's masked
regression loss (a stand-in for ``rewardkit train --objective regression``).

    python scripts/synthetic_attributes.py --out /tmp/synth --baseline bow,embed,finetune
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from itertools import combinations
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ATTRIBUTES = ["helpfulness", "correctness", "coherence", "complexity", "verbosity"]
WEIGHTS = {"helpfulness": 1.0, "correctness": 1.0, "coherence": 0.5, "complexity": 0.5, "verbosity": -0.5}
SLOTS = 4  # words per attribute in a response; ratings range 0..SLOTS
WORDS_PER_ATTRIBUTE = 12  # half good, half bad
# Neutral nouns, each a single token in MiniLM's WordPiece vocabulary (checked when written).
NOUNS = ("amber basil cedar delta fable harbor ivory juniper kettle lantern meadow nectar orchid pepper quartz "
         "raven timber velvet willow anchor copper dune falcon glacier hazel indigo jasper marble badge canyon "
         "daisy eagle forest grape hollow island jungle lemon maple nickel otter piano river salmon violet "
         "walnut barley cobalt ferry garden hammer jacket ladder mirror needle pillow rocket saddle ticket "
         "umbrella wagon").split()
TOPICS = ["bread", "taxes", "rivers", "python", "gardens", "engines", "music", "chess", "clouds", "coffee"]


def word_lists(seed: int = 1234) -> dict[str, tuple[list[str], list[str]]]:
    """{attribute: (good words, bad words)}, disjoint across attributes, from a seeded shuffle."""
    shuffled = random.Random(seed).sample(NOUNS, len(ATTRIBUTES) * WORDS_PER_ATTRIBUTE)
    half = WORDS_PER_ATTRIBUTE // 2
    out = {}
    for k, name in enumerate(ATTRIBUTES):
        chunk = shuffled[k * WORDS_PER_ATTRIBUTE:(k + 1) * WORDS_PER_ATTRIBUTE]
        out[name] = (sorted(chunk[:half]), sorted(chunk[half:]))
    return out


def response_text(levels: Sequence[int], topic: str, rng: random.Random,
                  words: dict[str, tuple[list[str], list[str]]]) -> str:
    picked = []
    for name, q in zip(ATTRIBUTES, levels):
        good, bad = words[name]
        picked += rng.sample(good, q) + rng.sample(bad, SLOTS - q)
    rng.shuffle(picked)
    return f"about {topic}: " + " ".join(picked) + f" notes on {topic}."


def make_rows(prompts: int, per_prompt: int, seed: int, noise: float, missing: float
              ) -> list[dict[str, Any]]:
    """``prompts`` prompts with ``per_prompt`` rated answers each; each row keeps its true levels."""
    rng = random.Random(seed)
    words = word_lists()
    rows = []
    for i in range(prompts):
        topic = rng.choice(TOPICS)
        prompt = f"Question {seed}-{i}: tell me something about {topic}."
        for _ in range(per_prompt):
            levels = [rng.randint(0, SLOTS) for _ in ATTRIBUTES]
            ratings: list[int | None] = [
                min(SLOTS, max(0, round(q + rng.gauss(0, noise)))) if noise else q for q in levels]
            for k in range(len(ATTRIBUTES)):
                if rng.random() < missing:
                    ratings[k] = None
            if all(r is None for r in ratings):  # keep every row usable: restore one rating
                k = rng.randrange(len(ATTRIBUTES))
                ratings[k] = levels[k]
            rows.append({"prompt": prompt, "response": response_text(levels, topic, rng, words),
                         "levels": levels, "ratings": ratings})
    return rows


def combined(values: Sequence[float]) -> float:
    return sum(WEIGHTS[a] * v for a, v in zip(ATTRIBUTES, values))


def held_out_pairs(rows: list[dict[str, Any]], min_gap: float) -> list[dict[str, str]]:
    """Answer pairs of each held-out prompt, better (true combined score) first, gap >= min_gap."""
    by_prompt: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_prompt.setdefault(r["prompt"], []).append(r)
    out = []
    for prompt, answers in by_prompt.items():
        for a, b in combinations(answers, 2):
            gap = combined(a["levels"]) - combined(b["levels"])
            if abs(gap) >= min_gap and gap != 0:
                better, worse = (a, b) if gap > 0 else (b, a)
                out.append({"prompt": prompt, "chosen": better["response"], "rejected": worse["response"]})
    return out


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["prompt", "response", *ATTRIBUTES])
        for r in rows:
            w.writerow([r["prompt"], r["response"], *("" if v is None else v for v in r["ratings"])])


def write_dataset(out: Path, args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    out.mkdir(parents=True, exist_ok=True)
    train = make_rows(args.train, args.per_prompt, args.seed, args.noise, args.missing)
    test = make_rows(args.test, args.per_prompt, args.seed + 1000, 0.0, args.test_missing)
    write_csv(out / "train.csv", train)
    write_csv(out / "test.csv", test)
    pairs = held_out_pairs(test, args.pair_min_gap)
    (out / "test_pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    weights = ",".join(f"{a}={w:g}" for a, w in WEIGHTS.items())
    meta = {"attributes": ATTRIBUTES, "range": [0, SLOTS], "weights": WEIGHTS, "train_rows": len(train),
            "test_rows": len(test), "test_pairs": len(pairs), "noise": args.noise, "missing": args.missing,
            "seed": args.seed,
            "train_flags": f"--objective regression --score-column {','.join(ATTRIBUTES)} --score-range 0:{SLOTS} "
                           f"--attribute-weights {weights}"}
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {out}/train.csv ({len(train)} rows, {args.train} prompts), test.csv ({len(test)} rows, "
          f"{args.test} new prompts), test_pairs.jsonl ({len(pairs)} pairs, true combined gap >= "
          f"{args.pair_min_gap:g})", file=sys.stderr)
    return train, test


# --------------------------------------------------------------------------------------- baselines
# Baselines read the written CSVs back through rewardkit.data.attributes.table, so the data path is exercised too.


def load_split(out: Path) -> tuple[Any, Any, list[dict[str, str]]]:
    from rewardkit.data.attributes.table import AttributeOptions, load_attribute_table

    opts = AttributeOptions(score_column=",".join(ATTRIBUTES), score_range=f"0:{SLOTS}")
    train = load_attribute_table(str(out / "train.csv"), opts)
    test = load_attribute_table(str(out / "test.csv"), opts)
    pairs = [json.loads(line) for line in (out / "test_pairs.jsonl").read_text().splitlines()]
    return train, test, pairs


def evaluate(pred: list[list[float]], test: Any, pairs: list[dict[str, str]]) -> dict[str, Any]:
    """Per-attribute metrics against the held-out ratings, and combined-reward pair accuracy."""
    from rewardkit.evaluation.rating_metrics import regression_metrics

    combined_of = {(r.prompt, r.response): combined(p) for r, p in zip(test.records, pred)}
    pair_rewards = [(combined_of[(p["prompt"], p["chosen"])], combined_of[(p["prompt"], p["rejected"])])
                    for p in pairs]
    return regression_metrics(pred, [r.values for r in test.records], ATTRIBUTES, pair_rewards)


def ridge(x_train: Any, records: list[Any], x_test: Any, lam: float) -> list[list[float]]:
    """Per attribute: ridge regression with intercept on the rows that have that rating (masking)."""
    import numpy as np

    preds = []
    for k in range(len(ATTRIBUTES)):
        keep = [i for i, r in enumerate(records) if r.values[k] is not None]
        x = x_train[keep]
        y = np.array([records[i].values[k] for i in keep], dtype=float)
        mx, my = x.mean(0), y.mean()
        xc = x - mx
        w = np.linalg.solve(xc.T @ xc + lam * np.eye(x.shape[1]), xc.T @ (y - my))
        preds.append((x_test - mx) @ w + my)
    return np.stack(preds, 1).tolist()


def _words(text: str) -> list[str]:
    return text.replace(":", " ").replace(".", " ").split()


def bow_features(train: list[Any], test: list[Any]) -> tuple[Any, Any]:
    """Word counts over the training vocabulary."""
    import numpy as np

    index = {w: i for i, w in enumerate(sorted({w for r in train for w in _words(r.response)}))}

    def counts(records: list[Any]) -> Any:
        x = np.zeros((len(records), len(index)))
        for i, r in enumerate(records):
            for w in _words(r.response):
                if w in index:
                    x[i, index[w]] += 1
        return x

    return counts(train), counts(test)


def embed_features(train: list[Any], test: list[Any], batch: int = 64) -> tuple[Any, Any]:
    """Frozen MiniLM sentence embeddings of the responses (mean pooling, normalised)."""
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    from rewardkit.model.backbone import default_model_path

    tok = AutoTokenizer.from_pretrained(default_model_path())
    model = AutoModel.from_pretrained(default_model_path()).eval()

    @torch.inference_mode()
    def encode(records: list[Any]) -> Any:
        out = []
        for i in range(0, len(records), batch):
            enc = tok([r.response for r in records[i:i + batch]], padding=True, truncation=True,
                      max_length=128, return_tensors="pt")
            h = model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            out.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1).numpy())
        return np.concatenate(out)

    return encode(train), encode(test)


def finetune(train: Any, test: Any, epochs: float, lr: float, batch_size: int, seed: int) -> list[list[float]]:
    """MiniLM with a K-output head, masked MSE on range-scaled targets; predictions in original units.

    A stand-in for ``rewardkit train --objective regression`` (same head, loss, scaling and
    sentence-pair input layout), kept minimal: AdamW, linear warmup/decay, fp32, no dropout.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

    from rewardkit.model.attribute_head import fit_scaling, target_matrix
    from rewardkit.model.backbone import default_model_path
    from rewardkit.training.losses import regression_loss

    torch.manual_seed(seed)
    path = default_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(ATTRIBUTES), problem_type="regression", hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0)
    scaling = fit_scaling("range", train.records, train.ranges, train.attributes)
    targets, mask = target_matrix(train.records, scaling)
    y, m = torch.tensor(targets), torch.tensor(mask)

    def encode(records: list[Any]) -> dict[str, torch.Tensor]:
        return tok([r.prompt for r in records], [r.response for r in records], padding=True, truncation=True,
                   max_length=128, return_tensors="pt")

    n = len(train.records)
    steps = max(1, int(epochs * n / batch_size))
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    sched = get_linear_schedule_with_warmup(opt, int(0.1 * steps), steps)
    order: list[int] = []
    rng = random.Random(seed)
    model.train()
    for step in range(steps):
        if len(order) < batch_size:
            order += rng.sample(range(n), n)
        idx, order = order[:batch_size], order[batch_size:]
        logits = model(**encode([train.records[i] for i in idx])).logits
        loss = regression_loss(logits, y[idx], m[idx])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        if (step + 1) % 25 == 0 or step + 1 == steps:
            print(f"finetune step {step + 1}/{steps}: loss {loss.item():.4f}", file=sys.stderr, flush=True)
    model.eval()
    pred = []
    with torch.inference_mode():
        for i in range(0, len(test.records), 64):
            out = model(**encode(test.records[i:i + 64])).logits.float().tolist()
            pred += [scaling.unscale(row) for row in out]
    return pred


def run_baseline(name: str, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    train, test, pairs = load_split(out)
    start = time.perf_counter()
    if name == "bow":
        pred = ridge(*_with_records(bow_features(train.records, test.records), train.records), lam=1.0)
    elif name == "embed":
        pred = ridge(*_with_records(embed_features(train.records, test.records), train.records), lam=1e-2)
    elif name == "finetune":
        pred = finetune(train, test, args.epochs, args.lr, args.batch_size, args.seed)
    else:
        raise SystemExit(f"--baseline: unknown baseline {name!r} (bow, embed, finetune)")
    result = evaluate(pred, test, pairs)
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def _with_records(features: tuple[Any, Any], records: list[Any]) -> tuple[Any, list[Any], Any]:
    return features[0], records, features[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="directory for train.csv, test.csv, test_pairs.jsonl, meta.json")
    ap.add_argument("--train", type=int, default=500, help="training prompts")
    ap.add_argument("--test", type=int, default=100, help="held-out prompts")
    ap.add_argument("--per-prompt", type=int, default=4, help="rated answers per prompt")
    ap.add_argument("--noise", type=float, default=0.5, help="std of the Gaussian noise on training ratings")
    ap.add_argument("--missing", type=float, default=0.15, help="share of training ratings left empty")
    ap.add_argument("--test-missing", type=float, default=0.05, help="share of held-out ratings left empty")
    ap.add_argument("--pair-min-gap", type=float, default=1.0, help="held-out pairs: minimum true combined gap")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--baseline", default="", help="comma-separated: bow, embed, finetune (none by default)")
    ap.add_argument("--epochs", type=float, default=2.0, help="finetune baseline")
    ap.add_argument("--lr", type=float, default=1e-4, help="finetune baseline")
    ap.add_argument("--batch-size", type=int, default=16, help="finetune baseline")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args()
    out = Path(args.out)
    write_dataset(out, args)
    if not args.baseline:
        return 0
    import torch

    torch.set_num_threads(args.threads)
    results = {}
    for name in [b.strip() for b in args.baseline.split(",") if b.strip()]:
        r = results[name] = run_baseline(name, out, args)
        per = "  ".join(f"{a} {m['spearman']:.3f}" for a, m in r["attributes"].items())
        print(f"{name:<9} spearman: {per}   mean rmse {r['mean_rmse']:.3f}   combined pair accuracy "
              f"{r['accuracy']:.3f} ({r['pairs']} pairs)   {r['seconds']}s")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
