"""How far TRL's built-in reward-model path is from rewardkit's own rewards, on held-out pairs.

``GRPOTrainer(reward_funcs="MODEL_DIR")`` scores a rollout with its own code (trl 1.16,
``GRPOTrainer._calculate_rewards``): text = prompt + completion (or the reward tokenizer's chat
template over the messages), tokenized with ``add_special_tokens=False``, right padding, no
truncation, reward = ``logits[:, 0]``. rewardkit scores through its ``Encoder``: the layout the
model was trained on ([CLS] prompt [SEP] response [SEP] for encoders, <bos> prompt response <eos>
for decoders) and response-preserving truncation. This script reproduces TRL's path step by step
(not by importing TRL's private method) and compares the two on the same pairs.

    python scripts/trl_scoring_gap.py MODEL_DIR DATA [--eval-split 0.2 --seed 42] [--exclude TRAIN_DATA]

``--eval-split``/``--seed`` rebuild the training run's prompt-disjoint held-out set from DATA;
``--exclude`` drops pairs whose prompt occurs in another file (e.g. the training data).
Pairs that TRL's path cannot score at all (longer than the model's position limit: TRL does not
truncate, so the forward pass would fail) are counted and left out of the comparison.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rewardkit import RewardModel  # noqa: E402
from rewardkit.data.loading import load_comparisons, split_by_prompt  # noqa: E402
from rewardkit.data.records import Comparison


def held_out_pairs(data: str, eval_split: float, seed: int, exclude: str | None, limit: int | None
                   ) -> list[Comparison]:
    comps = [c for c in load_comparisons(data).comparisons if len(c.responses) == 2]
    if eval_split > 0:
        comps = split_by_prompt(comps, eval_split, seed)[1]
    if exclude:
        seen = {c.prompt_key() for c in load_comparisons(exclude).comparisons}
        comps = [c for c in comps if c.prompt_key() not in seen]
    return comps[:limit] if limit else comps


def trl_texts(tokenizer: Any, prompts: list[Any], completions: list[Any]) -> list[str]:
    """TRL's texts: plain concatenation, or the chat template over prompt + completion messages."""
    if isinstance(prompts[0], list):
        return [tokenizer.apply_chat_template(p + (c if isinstance(c, list) else [{"role": "assistant", "content": c}]),
                                              tokenize=False) for p, c in zip(prompts, completions)]
    return [p + c for p, c in zip(prompts, completions)]


@torch.inference_mode()
def trl_rewards(model_dir: str, prompts: list[Any], completions: list[Any], batch_size: int
                ) -> tuple[list[float | None], int]:
    """Rewards as GRPOTrainer computes them for a model given as ``reward_funcs``; None where TRL
    would fail (sequence longer than the position embeddings). Returns (rewards, longest length)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    if tok.pad_token_id is None:  # as GRPOTrainer.__init__ does
        tok.pad_token = tok.eos_token
    model.config.pad_token_id = tok.pad_token_id
    limit = getattr(model.config, "max_position_embeddings", None) or 10 ** 9
    texts = trl_texts(tok, prompts, completions)
    lengths = [len(tok(t, add_special_tokens=False, verbose=False)["input_ids"]) for t in texts]
    ok = [i for i, n in enumerate(lengths) if n <= limit]
    out: list[float | None] = [None] * len(texts)
    for start in range(0, len(ok), batch_size):
        idx = ok[start:start + batch_size]
        inputs = tok(text=[texts[i] for i in idx], return_tensors="pt", padding=True, padding_side="right",
                     add_special_tokens=False)
        logits = model(**inputs).logits[:, 0]
        for i, r in zip(idx, logits.tolist()):
            out[i] = r
    return out, max(lengths)


def _std(xs: list[float]) -> float:
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs))


def _corr(a: list[float], b: list[float]) -> float:
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    return cov / math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))


def compare(model_dir: str, pairs: list[Comparison], batch_size: int = 16) -> dict[str, Any]:
    prompts = [c.prompt for c in pairs for _ in range(2)]
    responses = [r for c in pairs for r in (c.chosen, c.rejected)]
    rm = RewardModel.from_pretrained(model_dir, device="cpu", dtype="fp32")
    ours = rm.score_batch(prompts, responses, batch_size=batch_size)  # what the rewardkit adapters return
    theirs, longest = trl_rewards(model_dir, prompts, responses, batch_size)
    keep = [k for k in range(len(pairs)) if theirs[2 * k] is not None and theirs[2 * k + 1] is not None]
    a = [ours[2 * k + j] for k in keep for j in (0, 1)]
    b = [float(theirs[2 * k + j]) for k in keep for j in (0, 1)]  # type: ignore[arg-type]
    diffs = [abs(x - y) for x, y in zip(a, b)]
    return {
        "pairs": len(pairs), "pairs_compared": len(keep), "pairs_trl_cannot_score": len(pairs) - len(keep),
        "longest_trl_tokens": longest, "max_abs_diff": max(diffs), "mean_abs_diff": sum(diffs) / len(diffs),
        "reward_std_rewardkit": _std(a), "reward_std_trl": _std(b), "pearson": _corr(a, b),
        "accuracy_rewardkit": sum(a[2 * i] > a[2 * i + 1] for i in range(len(keep))) / len(keep),
        "accuracy_trl": sum(b[2 * i] > b[2 * i + 1] for i in range(len(keep))) / len(keep),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("data", help="preference pairs (any format rewardkit reads)")
    ap.add_argument("--eval-split", type=float, default=0.0, help="rebuild this held-out fraction of DATA")
    ap.add_argument("--seed", type=int, default=0, help="the training run's --seed (for --eval-split)")
    ap.add_argument("--exclude", help="drop pairs whose prompt occurs in this file")
    ap.add_argument("--limit", type=int, help="at most this many pairs")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args(argv)
    pairs = held_out_pairs(args.data, args.eval_split, args.seed, args.exclude, args.limit)
    if not pairs:
        print("no pairs left to compare", file=sys.stderr)
        return 2
    print(json.dumps(compare(args.model_dir, pairs, args.batch_size), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
