"""A synthetic task where language modelling of the good answers teaches what the reward model must judge.

A fixed, seeded "successor" permutation of SYMBOLS (96) symbols is the hidden rule. A prompt is a few
random symbols; a good answer continues from the prompt's last symbol by the rule, step after step
(``s3 -> succ(s3) -> succ(succ(s3)) ...``, 8 steps); a bad answer is the same chain with CORRUPT (1)
of its steps replaced by a wrong symbol. A reward model has to notice a broken step anywhere in the
answer, and learning the 96-entry rule from one bit per pair is slow. A model fine-tuned to write
the good answers (``--objective sft``) has learned the rule as next-token prediction: with tied
input and output embeddings its state after a symbol points at the embedding of the symbol that
should follow, which a reward model can compare with the one that does. So a reward model started
from it should judge better after the same number of reward-model steps than one started from the
untrained base.

Everything is local: a word-level tokenizer whose every symbol is one token (with ``yes``/``no`` and
the words of a verdict question, for ``--objective generative``) and a seeded random 4-layer Llama
(hidden 64, tied embeddings), written to ``OUT/base-SEED``, plus ``train.jsonl`` (2,000 pairs) and
``test.jsonl`` (500)::

    python scripts/synthetic_sft.py --out /tmp/succ                           # data, tokenizer, base model
    python scripts/synthetic_sft.py --out /tmp/succ --experiment sft          # RM from base vs from SFT
    python scripts/synthetic_sft.py --out /tmp/succ --experiment generative   # a generative RM on it

``--experiment sft`` trains, per seed (default 0 1 2), a reward model from the base and one from an
SFT model of the same seed (``--sft-epochs`` 2 on the chosen answers), both for ``--rm-steps`` (100)
optimizer steps on the same pairs at ``--rm-lr`` 1e-3, and prints held-out accuracy per seed, the
means, the seeds' spread (the larger max - min of the two) and whether the two sets overlap.
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

SYMBOLS = 96
PROMPT_LEN = 3
ANSWER_LEN = 8
CORRUPT = 1
LAYERS = 4
HIDDEN = 64
TIED = True
TEMPLATE = " question : is the answer correct ? answer :"
VERDICT = " yes, no"
WORDS = ["question", ":", "is", "the", "answer", "correct", "?", "yes", "no"]


def successor(seed: int = 7) -> list[int]:
    """The hidden rule: a seeded permutation of the symbols with no fixed point."""
    rng = random.Random(seed)
    while True:
        perm = list(range(SYMBOLS))
        rng.shuffle(perm)
        if all(perm[i] != i for i in range(SYMBOLS)):
            return perm


def sym(i: int) -> str:
    return f"s{i}"


def make_pairs(n: int, seed: int, rule: list[int]) -> list[dict[str, str]]:
    """``n`` (prompt, good chain, chain with CORRUPT broken steps) records."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt = [rng.randrange(SYMBOLS) for _ in range(PROMPT_LEN)]
        good, x = [], prompt[-1]
        for _ in range(ANSWER_LEN):
            x = rule[x]
            good.append(x)
        bad = list(good)
        for pos in rng.sample(range(ANSWER_LEN), CORRUPT):
            prev = prompt[-1] if pos == 0 else bad[pos - 1]
            bad[pos] = rng.choice([s for s in range(SYMBOLS) if s != rule[prev]])
        out.append({"prompt": " ".join(map(sym, prompt)), "chosen": " ".join(map(sym, good)),
                    "rejected": " ".join(map(sym, bad))})
    return out


def write_tokenizer_and_base(out: Path, seed: int) -> Path:
    """A word-level tokenizer (each symbol one token) and a seeded random 2-layer Llama, in OUT/base-SEED."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    d = out / f"base-{seed}"
    if (d / "config.json").is_file():
        return d
    vocab = {t: i for i, t in enumerate(["<s>", "</s>", "<unk>"] + [sym(i) for i in range(SYMBOLS)] + WORDS)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(vocab), hidden_size=HIDDEN, intermediate_size=2 * HIDDEN,
                                         num_hidden_layers=LAYERS, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=64, bos_token_id=0, eos_token_id=1,
                                         tie_word_embeddings=TIED))
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def write_data(out: Path, train: int, test: int) -> None:
    rule = successor()
    out.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train", train, 1), ("test", test, 2)):
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in make_pairs(n, seed, rule)))
    print(f"wrote {out}/train.jsonl ({train} pairs), test.jsonl ({test} pairs); rule: {SYMBOLS} symbols, "
          f"answers of {ANSWER_LEN} steps, {CORRUPT} broken in each rejected one", file=sys.stderr)


def rm_run(out: Path, model: Path, name: str, args: argparse.Namespace, seed: int, **extra: Any) -> dict[str, Any]:
    """Train a reward model for exactly ``--rm-steps`` steps; its held-out metrics and seconds."""
    from rewardkit import TrainConfig, train

    epochs = args.rm_steps * args.batch_size / args.train
    started = time.time()
    result = train(TrainConfig(model=str(model), train_data=str(out / "train.jsonl"), eval_data=str(out / "test.jsonl"),
                               output_dir=str(out / "runs" / name), overwrite=True, epochs=epochs,
                               batch_size=args.batch_size, lr=args.rm_lr, max_length=64, precision="fp32", seed=seed,
                               warmup_ratio=0.1, logging_steps=10, **extra), log=lambda m: None)
    return {"accuracy": result.eval_metrics["accuracy"], "steps": result.steps,
            "seconds": round(time.time() - started, 1)}


def sft_experiment(out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Per seed: RM from the base vs RM from an SFT model, the same RM step budget."""
    from rewardkit import TrainConfig, train

    rows = []
    for seed in args.seeds:
        base = write_tokenizer_and_base(out, seed)
        plain = rm_run(out, base, f"rm-base-{seed}", args, seed)
        sft_dir = out / "runs" / f"sft-{seed}"
        sft = train(TrainConfig(model=str(base), objective="sft", train_data=str(out / "train.jsonl"),
                                eval_data=str(out / "test.jsonl"), output_dir=str(sft_dir), overwrite=True,
                                epochs=args.sft_epochs, batch_size=args.batch_size, lr=args.lr, max_length=64,
                                precision="fp32", seed=seed, warmup_ratio=0.1), log=lambda m: None)
        warm = rm_run(out, sft_dir, f"rm-sft-{seed}", args, seed)
        rows.append({"seed": seed, "base": plain["accuracy"], "from_sft": warm["accuracy"], "rm_steps": plain["steps"],
                     "sft_steps": sft.steps, "sft_perplexity": sft.eval_metrics["perplexity"]})
        print(f"seed {seed}: RM from base {plain['accuracy']:.3f}, from SFT {warm['accuracy']:.3f} "
              f"({plain['steps']} RM steps each; SFT {sft.steps} steps, held-out perplexity "
              f"{sft.eval_metrics['perplexity']:.2f})", file=sys.stderr)
    summary: dict[str, Any] = {"rows": rows}
    for key in ("base", "from_sft"):
        values = [r[key] for r in rows]
        summary[key] = {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
                        "stdev": statistics.stdev(values) if len(values) > 1 else 0.0}
    gaps = [r["from_sft"] - r["base"] for r in rows]
    summary["gap"] = {"mean": statistics.fmean(gaps), "min": min(gaps)}
    # the seeds' spread: the larger range (max - min) of the two conditions
    summary["spread"] = max(summary[k]["max"] - summary[k]["min"] for k in ("base", "from_sft"))
    summary["gap_exceeds_spread"] = summary["gap"]["mean"] > summary["spread"]
    summary["no_overlap"] = summary["from_sft"]["min"] > summary["base"]["max"]
    return summary


def generative_experiment(out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """A generative reward model (verdict log-odds) on the same pairs, per seed."""
    rows = []
    for seed in args.seeds:
        base = write_tokenizer_and_base(out, seed)
        got = rm_run(out, base, f"generative-{seed}", args, seed, objective="generative",
                     verdict_template=TEMPLATE, verdict_tokens=VERDICT)
        rows.append({"seed": seed, **got})
        print(f"seed {seed}: generative RM held-out accuracy {got['accuracy']:.3f} ({got['steps']} steps)",
              file=sys.stderr)
    return {"rows": rows, "mean": statistics.fmean(r["accuracy"] for r in rows)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--train", type=int, default=2000, help="training pairs")
    ap.add_argument("--test", type=int, default=500, help="held-out pairs")
    ap.add_argument("--experiment", choices=["sft", "generative"], default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rm-steps", type=int, default=100, help="reward-model optimizer steps, the same for every run")
    ap.add_argument("--sft-epochs", type=float, default=2.0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3, help="SFT learning rate")
    ap.add_argument("--rm-lr", type=float, default=1e-3, help="reward-model learning rate")
    ap.add_argument("--symbols", type=int, default=SYMBOLS, help="size of the rule's alphabet")
    ap.add_argument("--corrupt", type=int, default=CORRUPT, help="broken steps in each rejected answer")
    ap.add_argument("--layers", type=int, default=LAYERS, help="layers of the tiny Llama")
    ap.add_argument("--hidden", type=int, default=HIDDEN, help="hidden size of the tiny Llama")
    ap.add_argument("--untied", dest="tied", action="store_false", help="separate input and output embeddings")
    args = ap.parse_args()
    globals().update(SYMBOLS=args.symbols, CORRUPT=args.corrupt, LAYERS=args.layers, HIDDEN=args.hidden, TIED=args.tied)
    write_data(args.out, args.train, args.test)
    if args.experiment is None:
        write_tokenizer_and_base(args.out, args.seeds[0])
        return 0
    result = (sft_experiment if args.experiment == "sft" else generative_experiment)(args.out, args)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
