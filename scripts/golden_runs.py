"""Golden runs: hashes of the weights and metrics of short training runs, to show a refactor changes nothing.

    python scripts/golden_runs.py --out before.json     # on the old code
    python scripts/golden_runs.py --out after.json      # on the new code, same CPU
    python scripts/golden_runs.py --compare before.json after.json

Each run trains a tiny model (built here from a seed: a 2-layer BERT with MiniLM's tokenizer, a 2-layer
Llama with a byte-level BPE tokenizer, the same Llama with its LM head) for a few steps in fp32 and
records the SHA-256 of every saved tensor (by name) and of metrics.jsonl. One configuration per path of
the loop: pairwise on an encoder and a decoder, Plackett-Luce, per-prompt balancing, regression,
bt+regression, SFT, generative on pairs and on ratings, LoRA with --merge, passes split by
--pass-tokens, packed rows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["REWARDKIT_NATIVE_BF16"] = "0"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def _models(root: Path) -> dict[str, Path]:
    import torch
    from conftest import _bpe_tokenizer, _decoder_dir
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, LlamaConfig, LlamaForCausalLM

    from rewardkit.model.backbone import default_model_path

    bert = root / "bert"
    tok = AutoTokenizer.from_pretrained(default_model_path())
    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                                             num_labels=1)).save_pretrained(bert)
    tok.save_pretrained(bert)
    llama = _decoder_dir(root / "llama", "llama")
    causal = root / "causal"
    btok = _bpe_tokenizer()
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(btok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=2, intermediate_size=64, max_position_embeddings=256,
                                 bos_token_id=btok.bos_token_id, eos_token_id=btok.eos_token_id,
                                 initializer_range=0.2)).save_pretrained(causal)
    btok.save_pretrained(causal)
    return {"bert": bert, "llama": llama, "causal": causal}


def _data(root: Path) -> dict[str, Path]:
    from conftest import pairs_records, rated_rows, write_csv, write_jsonl

    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    pairs = pairs_records(32)
    for i, r in enumerate(pairs):
        r["margin"] = 0.5 * (i % 3)
        if i % 4 == 0:
            r["prompt"] += " " + " ".join(f"detail{j}" for j in range(10))
    ranks = []
    for i in range(20):
        responses = [f"answer {k} to question {i} " + "good " * (3 - k) + "words " * rng.randint(0, 3) for k in range(4)]
        ranks.append({"prompt": f"question {i}: what now?", "responses": responses, "scores": [4, 3, 2, 1]})
    shared = [dict(r, prompt=f"shared prompt {i % 6}") for i, r in enumerate(pairs_records(30))]
    ratings = [{"prompt": r["prompt"], "response": r["response"], "score": r["helpfulness"]} for r in rated_rows(16, 3)]
    return {"pairs": write_jsonl(root / "pairs.jsonl", pairs), "ranks": write_jsonl(root / "ranks.jsonl", ranks),
            "shared": write_jsonl(root / "shared.jsonl", shared), "rated": write_csv(root / "rated.csv", rated_rows(16, 3)),
            "ratings": write_csv(root / "ratings.csv", ratings)}


def configurations(models: dict[str, Path], data: dict[str, Path]) -> dict[str, dict[str, Any]]:
    llama, bert, causal = str(models["llama"]), str(models["bert"]), str(models["causal"])
    pairs = str(data["pairs"])
    return {
        "pairwise-encoder": dict(model=bert, train_data=pairs),
        "pairwise-decoder": dict(model=llama, train_data=pairs, prefix_sharing="on"),
        "pairwise-decoder-unshared": dict(model=llama, train_data=pairs, prefix_sharing="off", center_coef=0.01),
        "plackett-luce": dict(model=llama, train_data=str(data["ranks"]), loss="pl"),
        "balance-per-prompt": dict(model=llama, train_data=str(data["shared"]), balance_per_prompt=True),
        "regression": dict(model=bert, train_data=str(data["rated"]), objective="regression",
                           score_column="helpfulness,verbosity"),
        "bt+regression": dict(model=bert, train_data=str(data["rated"]), objective="bt+regression",
                              score_column="helpfulness,verbosity"),
        "sft": dict(model=causal, train_data=pairs, objective="sft"),
        "generative": dict(model=causal, train_data=pairs, objective="generative", verdict_tokens=" good, bad"),
        "generative-ratings": dict(model=causal, train_data=str(data["ratings"]), objective="generative", hi=3.0,
                                   verdict_tokens=" good, bad"),
        "lora-merge": dict(model=llama, train_data=pairs, lora_r=4, merge=True),
        "pass-splits": dict(model=llama, train_data=pairs, pass_tokens=96, grad_accum=2),
        "packed-rows": dict(model=llama, train_data=pairs, packing="on", pass_tokens=256),
    }


def _tensor_hashes(out: Path) -> dict[str, str]:
    from safetensors.torch import load_file

    hashes = {}
    for f in sorted(out.rglob("*.safetensors")):
        if "checkpoint-" in str(f):
            continue
        for name, t in sorted(load_file(str(f)).items()):
            key = f"{f.relative_to(out)}:{name}"
            hashes[key] = hashlib.sha256(t.contiguous().view(-1).view(dtype=__import__("torch").uint8).numpy()
                                         .tobytes()).hexdigest()[:16]
    return hashes


def run_all(only: list[str] | None) -> dict[str, Any]:
    from rewardkit import TrainConfig, train

    work = Path(tempfile.mkdtemp(prefix="golden-"))
    os.environ["REWARDKIT_CACHE"] = str(work / "cache")
    models, data = _models(work / "models"), _data(work / "data")
    results = {}
    for name, settings in configurations(models, data).items():
        if only and name not in only:
            continue
        out = work / "runs" / name
        cfg = TrainConfig(output_dir=str(out), max_length=64, batch_size=4, lr=1e-3, epochs=1, eval_split=0.25,
                          precision="fp32", logging_steps=1, seed=3, save_total_limit=0, **settings)
        train(cfg, log=lambda _m: None)
        metrics = (out / "metrics.jsonl").read_bytes()
        results[name] = {"metrics": hashlib.sha256(metrics).hexdigest()[:16], "tensors": _tensor_hashes(out),
                         "last_line": metrics.decode().strip().splitlines()[-1][:200]}
        print(f"{name}: metrics {results[name]['metrics']}, {len(results[name]['tensors'])} tensors", file=sys.stderr)
    return results


def compare(a: dict[str, Any], b: dict[str, Any]) -> int:
    bad = 0
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            print(f"{name}: only in {'the first' if name in a else 'the second'}")
            bad += 1
            continue
        same_metrics = a[name]["metrics"] == b[name]["metrics"]
        diff = sorted(k for k in set(a[name]["tensors"]) | set(b[name]["tensors"])
                      if a[name]["tensors"].get(k) != b[name]["tensors"].get(k))
        ok = same_metrics and not diff
        bad += not ok
        print(f"{name}: {'identical' if ok else 'DIFFERENT'} (metrics.jsonl {'same' if same_metrics else 'differs'}, "
              f"{len(a[name]['tensors'])} tensors, {len(diff)} differ{': ' + ', '.join(diff[:3]) if diff else ''})")
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="write the hashes here (JSON)")
    ap.add_argument("--only", nargs="*", help="run only these configurations")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two result files")
    args = ap.parse_args()
    if args.compare:
        return compare(*(json.loads(Path(p).read_text()) for p in args.compare))
    results = run_all(args.only)
    text = json.dumps(results, indent=1, sort_keys=True)
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
