"""Training throughput, memory and held-out accuracy: rewardkit vs TRL's RewardTrainer.

Both systems train the same backbone on the same prompt-disjoint training split with the same
max length, batch size and epochs, in alternating fresh subprocesses (so peak RSS is
per system), and are scored on the same held-out pairs afterwards (not timed).

    python benchmarks/bench_train.py                       # full shared hh-rlhf file, MiniLM-L6
    python benchmarks/bench_train.py --limit 64            # smoke test
    python benchmarks/bench_train.py --eval-data test.jsonl # train on all of --data, test on a file

What each side does with long pairs: TRL drops every pair whose chosen or rejected text exceeds
``--max-length`` tokens (it reports none of this), rewardkit keeps them and truncates the oldest
prompt tokens. TRL's held-out accuracy is reported on all held-out pairs (long ones cut at the
right, as ``tokenizer(..., truncation=True)`` would) and on the pairs it did not need to cut.

Precision: rewardkit ``--precision auto`` (bf16 autocast where the CPU/GPU has native bf16, else
fp32) against TRL in fp32, the setting of the reference numbers this benchmark answers;
``--trl-precision auto`` gives TRL the same autocast for a matched run. On a CPU without bf16
both are fp32.

Settings left at each library's default: learning rate (both 1e-4; ``--lr`` sets
both), warmup, and TRL's ``gradient_checkpointing=True`` (``--trl-gradient-checkpointing off``
for a run where both do the same forward/backward work). TRL's non-conversational path needs an
EOS token, which BERT tokenizers lack; ``[SEP]`` is passed as ``eos_token`` then.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

# ----------------------------------------------------------------------------------------- children


def _read_pairs(path: str) -> list[dict[str, str]]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def child_rewardkit(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from rewardkit.config import TrainConfig
    from rewardkit.model.reward_model import RewardModel
    from rewardkit.training.trainer import train

    started = time.time()
    cfg = TrainConfig(model=spec["model"], train_data=spec["train"], eval_data=spec["test"],
                      output_dir=spec["out"], overwrite=True, max_length=spec["max_length"],
                      batch_size=spec["batch_size"], epochs=spec["epochs"], seed=spec["seed"],
                      precision=spec["precision"], logging_steps=1000, **({"lr": spec["lr"]} if spec["lr"] else {}),
                      **spec["rk_options"])
    result = train(cfg, log=lambda m: print(m, file=sys.stderr))
    rss, gpu = common.peak_rss_gb(), common.peak_gpu_gb()
    report_file = Path(spec["out"]) / "eval.json"
    report = json.loads(report_file.read_text()) if report_file.is_file() else {}
    rm = RewardModel.from_pretrained(spec["out"], device="cpu" if not torch.cuda.is_available() else None)
    from rewardkit.data.loading import load_comparisons

    rewards = rm.score_comparisons(load_comparisons(spec["test"]).comparisons)
    return {"system": "rewardkit", "pairs_per_s": result.pairs_seen / result.train_seconds,
            "train_seconds": result.train_seconds, "pairs_used": result.train_comparisons,
            "pairs_given": len(_read_pairs(spec["train"])), "truncated": result.truncated,
            "correct": [a > b for a, b in rewards], "eval_accuracy_reported": result.eval_metrics["accuracy"],
            "peak_rss_gb": rss, "peak_gpu_gb": gpu, "wall_seconds": time.time() - started,
            "threads": torch.get_num_threads(), "tokens": _rewardkit_tokens(spec),
            "steady_steps_per_second": report.get("steady_steps_per_second"),
            "warmup_seconds": report.get("warmup_seconds"), "steps": result.steps}


def _rewardkit_tokens(spec: dict[str, Any]) -> int:
    """Real tokens of one epoch's sequences, unshared (prompt + response + EOS per response, as trained)."""
    from rewardkit.data.loading import load_comparisons
    from rewardkit.model.backbone import load_backbone, make_encoder

    model, tok = load_backbone(spec["model"])
    enc = make_encoder(model, tok, spec["max_length"])
    return sum(len(s) for c in load_comparisons(spec["train"]).comparisons for s in enc.encode(c).input_ids)


def child_trl(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from rewardkit.model.precision import resolve_precision

    started = time.time()
    tok = AutoTokenizer.from_pretrained(spec["model"])
    train_rows = _read_pairs(spec["train"])
    extra: dict[str, Any] = {}
    if tok.eos_token is None:
        extra["eos_token"] = tok.sep_token
    if spec["lr"]:
        extra["learning_rate"] = spec["lr"]
    if not torch.cuda.is_available():
        extra["use_cpu"] = True  # transformers refuses bf16 on a CPU unless told the run is on one
    if spec["trl_gradient_checkpointing"] != "default":
        extra["gradient_checkpointing"] = spec["trl_gradient_checkpointing"] == "on"
    args = RewardConfig(output_dir=spec["out"], per_device_train_batch_size=spec["batch_size"],
                        num_train_epochs=spec["epochs"], max_length=spec["max_length"], seed=spec["seed"],
                        bf16=resolve_precision(spec["trl_precision"]).name == "bf16", report_to="none",
                        save_strategy="no", eval_strategy="no", logging_steps=1000, **extra)
    trainer = RewardTrainer(model=spec["model"], args=args, train_dataset=Dataset.from_list(train_rows),
                            processing_class=tok)
    used = len(trainer.train_dataset)
    tokens = sum(len(row["chosen_ids"]) + len(row["rejected_ids"]) for row in trainer.train_dataset)
    out = trainer.train()
    rss, gpu = common.peak_rss_gb(), common.peak_gpu_gb()
    runtime = out.metrics["train_runtime"]

    # held-out pairs, tokenized the way TRL tokenized its training data (prompt + response + EOS)
    model = trainer.model.eval()
    eos = tok.eos_token or tok.sep_token
    test = _read_pairs(spec["test"])
    texts = [r[k] + eos for r in test for k in ("chosen", "rejected")]
    full = tok(texts)["input_ids"]
    long_pair = [max(len(full[2 * i]), len(full[2 * i + 1])) > spec["max_length"] for i in range(len(test))]
    ids = tok(texts, truncation=True, max_length=spec["max_length"])["input_ids"]
    rewards = [0.0] * len(ids)
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    device = next(model.parameters()).device
    with torch.inference_mode():
        for s in range(0, len(order), 32):
            idx = order[s:s + 32]
            width = max(len(ids[i]) for i in idx)
            x = torch.full((len(idx), width), tok.pad_token_id)
            m = torch.zeros((len(idx), width), dtype=torch.long)
            for j, i in enumerate(idx):
                x[j, :len(ids[i])] = torch.tensor(ids[i])
                m[j, :len(ids[i])] = 1
            r = model(input_ids=x.to(device), attention_mask=m.to(device)).logits[:, 0].float().tolist()
            for j, i in enumerate(idx):
                rewards[i] = r[j]
    correct = [rewards[2 * i] > rewards[2 * i + 1] for i in range(len(test))]
    return {"system": "trl", "pairs_per_s": used * spec["epochs"] / runtime, "train_seconds": runtime,
            "pairs_used": used, "pairs_given": len(train_rows), "truncated": 0, "correct": correct,
            "long_pair": long_pair, "peak_rss_gb": rss, "peak_gpu_gb": gpu, "wall_seconds": time.time() - started,
            "tokens": tokens,
            "threads": torch.get_num_threads(),
            "gradient_checkpointing": bool(trainer.args.gradient_checkpointing)}


# ----------------------------------------------------------------------------------------- parent


def rk_options(pairs: list[str]) -> dict[str, Any]:
    """--rk FIELD=VALUE settings, typed as TrainConfig declares them (bad names fail before any run)."""
    import dataclasses

    from rewardkit.config import TrainConfig

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    out: dict[str, Any] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in fields:
            raise SystemExit(f"--rk {pair}: TrainConfig has no field {name!r}")
        kind = str(fields[name].type)
        if kind.startswith("bool"):
            if value.lower() not in ("true", "false"):
                raise SystemExit(f"--rk {pair}: {name} takes true or false")
            out[name] = value.lower() == "true"
        else:
            out[name] = int(value) if kind.startswith("int") else float(value) if kind.startswith("float") else value
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="preference file (default: the shared hh-rlhf file)")
    ap.add_argument("--eval-data", default=None, help="held-out file; then all of --data is trained on")
    ap.add_argument("--test-fraction", type=float, default=0.2,
                    help="prompt-disjoint held-out share of --data when no --eval-data (default 0.2)")
    ap.add_argument("--model", default=None, help="backbone directory or GGUF file (default: bundled MiniLM-L6)")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=None, help="learning rate for both (default: each one's own)")
    ap.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                    help="rewardkit's --precision (default auto: bf16 where the hardware has it)")
    ap.add_argument("--trl-precision", default="fp32", choices=["auto", "bf16", "fp32"],
                    help="TRL's precision (default fp32, the reference setting; auto/bf16 for a matched run)")
    ap.add_argument("--trl-gradient-checkpointing", default="default", choices=["default", "on", "off"],
                    help="TRL's gradient checkpointing (its default is on)")
    ap.add_argument("--rk", action="append", default=[], metavar="FIELD=VALUE",
                    help="a rewardkit training setting for this run, e.g. --rk packing=on --rk pass_tokens=32768 "
                         "(TrainConfig field names; repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N pairs (smoke tests)")
    ap.add_argument("--long-prompts", type=int, default=None, metavar="N",
                    help="train on N pairs whose prompts are made long from earlier dialogues of --data")
    ap.add_argument("--long-prompt-chars", type=int, default=6000,
                    help="characters of history before each long prompt's own (default 6000: ~1,500 BPE tokens)")
    ap.add_argument("--repeats", type=int, default=1, help="alternating runs per system")
    ap.add_argument("--only", choices=["rewardkit", "trl"], default=None)
    ap.add_argument("--json", default=None, help="also write all results to this file")
    ap.add_argument("--child", choices=["rewardkit", "trl"], help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        spec = json.loads(Path(args.spec).read_text())
        result = (child_rewardkit if args.child == "rewardkit" else child_trl)(spec)
        print(json.dumps(result))
        return 0

    from rewardkit.model.backbone import default_model_path
    from rewardkit.model.precision import resolve_precision

    if args.model and args.model.lower().endswith(".gguf"):  # both systems train its dequantized copy
        from rewardkit.model.gguf import gguf_directory

        args.model = gguf_directory(args.model)
    data = args.data or common.default_data()
    comps = common.load_pairs(data, args.limit)
    if args.long_prompts:
        comps = common.long_prompt_pairs(comps, args.long_prompts, args.long_prompt_chars)
    if args.eval_data:
        train_c, test_c = comps, common.load_pairs(args.eval_data, None)
    else:
        train_c, test_c = common.split(comps, args.test_fraction, args.seed)
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    spec = {"train": str(common.write_pairs(train_c, work / "train.jsonl")),
            "test": str(common.write_pairs(test_c, work / "test.jsonl")),
            "model": args.model or default_model_path(), "max_length": args.max_length,
            "batch_size": args.batch_size, "epochs": args.epochs, "seed": args.seed, "lr": args.lr,
            "precision": args.precision, "trl_precision": args.trl_precision,
            "trl_gradient_checkpointing": args.trl_gradient_checkpointing, "rk_options": rk_options(args.rk)}
    print(f"data: {data} -> {len(train_c)} training pairs, {len(test_c)} held-out pairs (prompt-disjoint, "
          f"seed {args.seed}); model {spec['model']}; max length {args.max_length}, batch {args.batch_size}, "
          f"epochs {args.epochs}; rewardkit {resolve_precision(args.precision).describe()}; "
          f"TRL {resolve_precision(args.trl_precision).describe()}", file=sys.stderr)
    systems = [args.only] if args.only else ["rewardkit", "trl"]
    runs: list[dict[str, Any]] = []
    for r in range(args.repeats):
        order = systems if r % 2 == 0 else systems[::-1]
        for system in order:
            s = dict(spec, out=str(work / f"{system}-{r}"))
            spec_file = work / f"spec-{system}-{r}.json"
            spec_file.write_text(json.dumps(s))
            print(f"--- run {r + 1}/{args.repeats}: {system}", file=sys.stderr)
            env_cache = {"REWARDKIT_CACHE": str(work / f"cache-{system}-{r}")}  # cold tokenization each run
            os.environ.update(env_cache)
            res = common.run_child([str(Path(__file__).resolve()), "--child", system, "--spec", str(spec_file)])
            res["repeat"] = r
            runs.append(res)
            print(f"    {system}: {res['pairs_per_s']:.2f} train pairs/s, {res['pairs_used']} pairs used, "
                  f"peak RSS {res['peak_rss_gb']:.2f} GB", file=sys.stderr)

    long_pair = next((r["long_pair"] for r in runs if r["system"] == "trl"), None)
    params, tflops = common.non_embedding_params(spec["model"]), common.peak_tflops()
    rows, summary = [], {}
    for system in systems:
        mine = [r for r in runs if r["system"] == system]
        acc = [sum(r["correct"]) / len(r["correct"]) for r in mine]
        if long_pair is not None:
            keep = [i for i, lp in enumerate(long_pair) if not lp]
            acc_short = [sum(r["correct"][i] for i in keep) / max(1, len(keep)) for r in mine]
        else:
            acc_short = [float("nan")]
        summary[system] = {
            "pairs_per_s": common.median([r["pairs_per_s"] for r in mine]),
            "train_seconds": common.median([r["train_seconds"] for r in mine]),
            "pairs_used": mine[0]["pairs_used"], "pairs_given": mine[0]["pairs_given"],
            "heldout_accuracy": common.median(acc), "heldout_accuracy_untruncated": common.median(acc_short),
            "peak_rss_gb": max(r["peak_rss_gb"] for r in mine),
            "tokens_per_s": common.median([r["tokens"] * args.epochs / r["train_seconds"] for r in mine]),
            "peak_gpu_gb": max((r["peak_gpu_gb"] or 0.0) for r in mine) or None,
            "steady_steps_per_second": common.median([r.get("steady_steps_per_second") or float("nan") for r in mine]),
        }
        m = summary[system]
        m["mfu"] = common.mfu(params, m["tokens_per_s"], 1.0, tflops)
        rows.append([system, m["pairs_per_s"], m["tokens_per_s"], m["train_seconds"],
                     f"{m['pairs_used']}/{m['pairs_given']}", m["heldout_accuracy"], m["heldout_accuracy_untruncated"],
                     m["peak_rss_gb"], m["peak_gpu_gb"] or "-", f"{100 * m['mfu']:.1f}%" if m["mfu"] else "-"])
    print()
    print(f"machine: {common.machine()}")
    n_test = len(test_c)
    n_short = n_test - sum(long_pair) if long_pair is not None else n_test
    print(common.table(rows, ["system", "train pairs/s", "tokens/s", "train s", "pairs used",
                              f"held-out acc ({n_test})", f"acc, pairs TRL did not cut ({n_short})",
                              "peak RSS GB", "peak GPU GB", "MFU"]))
    print(f"MFU: 6 x {params / 1e6:.1f}M non-embedding parameters x real tokens (prompt + response + EOS per "
          f"response, unshared) / train seconds / {tflops or '?'} TFLOP/s"
          + ("" if tflops else " (no GPU peak known here: not quoted)"))
    if len(summary) == 2:
        rk, trl = summary["rewardkit"], summary["trl"]
        ratio = rk["pairs_per_s"] / trl["pairs_per_s"]
        print(f"\nspeed ratio rewardkit/TRL: {ratio:.2f}x   "
              f"accuracy difference (rewardkit - TRL): {100 * (rk['heldout_accuracy'] - trl['heldout_accuracy']):+.1f} "
              f"points   RSS ratio: {rk['peak_rss_gb'] / trl['peak_rss_gb']:.2f}")
        gc = next(r.get("gradient_checkpointing") for r in runs if r["system"] == "trl")
        print(f"TRL gradient checkpointing: {gc}; TRL dropped {trl['pairs_given'] - trl['pairs_used']} "
              f"of {trl['pairs_given']} training pairs for length")
        summary["ratio"] = ratio
        if rk["peak_gpu_gb"] and trl["peak_gpu_gb"]:
            print(f"peak GPU memory ratio rewardkit/TRL: {rk['peak_gpu_gb'] / trl['peak_gpu_gb']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "runs": runs, "machine": common.machine(),
                                               "args": vars(args)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
