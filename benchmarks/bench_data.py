"""Data preparation at scale: rewardkit's load + validate + tokenize + plan vs TRL's dataset preparation.

Builds N unique preference pairs from the shared hh-rlhf file (record ``i`` is pair ``i % 1849``
with the index written into its first human turn and the end of both responses, so every pair
tokenizes afresh and no cache can dedupe them), writes them as hh-rlhf-shaped JSONL to a temporary
folder, and times in separate processes (so peak RSS is per run):

* ``rewardkit cold``: what ``rewardkit.training.trainer`` does before its first step: ``load_cached``
  (read + validate, and keep the parsed comparisons in the cache), the prompt-disjoint split (5% held out), encoding of both sides through the
  tokenization cache (empty cache, REWARDKIT_CACHE in the temporary folder), the truncation
  counts, the data fingerprint, the batch widths and the length-grouped plan of one epoch;
* ``rewardkit warm``: the same again with the cache (parsed file and tokens) filled by the cold run;
* ``trl``: ``datasets.load_dataset("json")`` + ``trl.RewardTrainer.__init__`` (its
  ``_prepare_dataset``: add EOS, tokenize chosen/rejected through ``datasets.map``, filter rows over
  ``max_length``) with the same tokenizer and max length 512, timed around the constructor after
  the model is loaded. ``--trl-num-proc`` sets ``dataset_num_proc`` (TRL's default is 1 process).

    python benchmarks/bench_data.py --n 20000 200000          # both systems
    python benchmarks/bench_data.py --n 1000000 --no-trl      # rewardkit only

Tokenizer: MiniLM-L6 (``rewardkit.model.backbone.default_model_path()``), sentence-pair layout, max 512.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

MAX_LENGTH = 512
EVAL_SPLIT = 0.05


def build_pairs(n: int, path: Path, source: str) -> None:
    """Write ``n`` unique hh-rlhf-shaped records built from ``source`` (the shared hh-rlhf file)."""
    with gzip.open(source, "rt", encoding="utf-8") as f:
        base = [json.loads(line) for line in f if line.strip()]
    with open(path, "w", encoding="utf-8") as out:
        for i in range(n):
            rec = base[i % len(base)]
            tag = f"\n\nHuman: [{i}] "
            chosen = rec["chosen"].replace("\n\nHuman: ", tag, 1) + f" ({i})"
            rejected = rec["rejected"].replace("\n\nHuman: ", tag, 1) + f" ({i})"
            out.write(json.dumps({"chosen": chosen, "rejected": rejected}) + "\n")


class WorkerPeak:
    """Largest VmHWM (peak resident set) seen among this process's child processes, sampled every 0.2 s.

    Not ``getrusage(RUSAGE_CHILDREN).ru_maxrss``: Linux carries a child's peak from before its
    ``exec`` into that figure, so a worker started by fork-exec from a 3 GB parent reports 3 GB even
    though the worker interpreter itself never holds more than one chunk. VmHWM belongs to the
    address space the worker runs in, so it starts afresh at ``exec``. Linux only (nan elsewhere).
    """

    def __init__(self) -> None:
        import threading

        self.peak_kb = 0
        self.seen = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "WorkerPeak":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for pid in self._children():
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_kb, self.seen = max(self.peak_kb, int(line.split()[1])), True

    @staticmethod
    def _children() -> list[str]:
        pids: list[str] = []
        for task in Path("/proc/self/task").glob("*"):
            try:
                pids += (task / "children").read_text().split()
            except OSError:
                pass
        return pids

    @property
    def gb(self) -> float:
        return self.peak_kb / 1024 ** 2 if self.seen else float("nan")


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (pool workers, map workers)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def child_rewardkit(path: str) -> dict[str, Any]:
    """One preparation run, as rewardkit.training.trainer does it; returns seconds per phase and peak RSS."""
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer

    from rewardkit.data.loading import split_by_prompt
    from rewardkit.encoding.cache import encode_cached
    try:  # through the loaded-file cache, as rewardkit.training.trainer loads, where this version has it
        from rewardkit.data.file_cache import load_cached
    except ImportError:
        from rewardkit.data.loading import load_comparisons as load_cached
    from rewardkit.encoding.encoder import Encoder
    from rewardkit.model.backbone import default_model_path
    from rewardkit.model.batching import batch_length
    from rewardkit.training.batch_plan import plan_micro_batches
    from rewardkit.training.resume import data_fingerprint

    times: dict[str, float] = {}
    cpu: dict[str, float] = {}
    start, c0 = time.perf_counter(), cpu_seconds()
    loaded = load_cached(path)
    train_c, eval_c = split_by_prompt(loaded.comparisons, EVAL_SPLIT, 0)
    times["load"], cpu["load"] = time.perf_counter() - start, cpu_seconds() - c0
    tok = AutoTokenizer.from_pretrained(default_model_path())
    encoder = Encoder(tok, MAX_LENGTH, pair_template=True)
    t, c0 = time.perf_counter(), cpu_seconds()
    with WorkerPeak() as workers:
        train_enc = encode_cached(encoder, train_c, lambda c: tqdm(c, desc="tokenize", leave=False))
        eval_enc = encode_cached(encoder, eval_c)
    times["tokenize"], cpu["tokenize"] = time.perf_counter() - t, cpu_seconds() - c0
    t, c0 = time.perf_counter(), cpu_seconds()
    try:  # the compact container's vectorised accessors, where this version has them
        from rewardkit.encoding.encoded_set import rows_of, truncated_count, widths_of
        truncated = truncated_count(train_enc) + truncated_count(eval_enc)
        widths = widths_of(train_enc, False)
        rows_of(train_enc, False)
    except ImportError:
        truncated = sum(e.truncated for e in train_enc) + sum(e.truncated for e in eval_enc)
        widths = [batch_length(e, False) for e in train_enc]
        [len(e.input_ids) for e in train_enc]
    fingerprint = data_fingerprint(train_enc, eval_enc)
    rounds = plan_micro_batches([[i] for i in range(len(train_enc))], list(widths), 16, 1.0, 0, 1)
    times["plan"], cpu["plan"] = time.perf_counter() - t, cpu_seconds() - c0
    times["total"] = time.perf_counter() - start
    return {"times": times, "cpu": cpu, "cpu_s": cpu_seconds(), "rss_gb": common.peak_rss_gb(),
            "worker_rss_gb": workers.gb, "train": len(train_enc), "eval": len(eval_enc),
            "truncated": int(truncated), "steps": len(rounds), "fingerprint": fingerprint}


def child_trl(path: str, num_proc: int | None, hf_cache: str) -> dict[str, Any]:
    """``load_dataset`` + ``RewardTrainer(...)`` construction (its dataset preparation)."""
    import datasets
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from rewardkit.model.backbone import default_model_path

    model = AutoModelForSequenceClassification.from_pretrained(default_model_path(), num_labels=1)
    tok = AutoTokenizer.from_pretrained(default_model_path())
    times: dict[str, float] = {}
    cpu: dict[str, float] = {}
    start, c0 = time.perf_counter(), cpu_seconds()
    ds = datasets.load_dataset("json", data_files=path, split="train", cache_dir=hf_cache)
    times["load"], cpu["load"] = time.perf_counter() - start, cpu_seconds() - c0
    args = RewardConfig(output_dir=os.path.join(hf_cache, "out"), max_length=MAX_LENGTH, eos_token=tok.sep_token,
                        report_to="none", max_steps=1, use_cpu=True, bf16=False, per_device_train_batch_size=16,
                        dataset_num_proc=num_proc)
    t, c0 = time.perf_counter(), cpu_seconds()
    trainer = RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    times["tokenize"], cpu["tokenize"] = time.perf_counter() - t, cpu_seconds() - c0
    times["total"] = time.perf_counter() - start
    return {"times": times, "cpu": cpu, "cpu_s": cpu_seconds(), "rss_gb": common.peak_rss_gb(),
            "train": len(trainer.train_dataset)}


def run(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, *argv], stdout=subprocess.PIPE, text=True,
                          env=common.child_env(**env), cwd=common.ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"child {argv} failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench(n: int, tmp: Path, args: argparse.Namespace) -> list[list[Any]]:
    path = tmp / f"pairs-{n}.jsonl"
    t = time.perf_counter()
    if args.pairs:  # a file an earlier invocation built (same N, same source)
        os.link(args.pairs, path) if os.stat(args.pairs).st_dev == os.stat(tmp).st_dev else shutil.copy(args.pairs, path)
    else:
        build_pairs(n, path, args.source)
    print(f"[{n}] wrote {path} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.0f} s",
          file=sys.stderr)
    cache = tmp / f"cache-{n}"
    env = {"REWARDKIT_CACHE": str(cache), "TOKENIZERS_PARALLELISM": "true"}
    rows = []
    runs = [] if args.no_rewardkit else [("rewardkit cold", ["--child", "rewardkit", str(path)]),
                                         ("rewardkit warm", ["--child", "rewardkit", str(path)])]
    if not args.no_trl and n <= args.trl_max:
        for np_ in args.trl_num_proc:
            runs.append((f"trl (num_proc={np_})", ["--child", "trl", str(path), "--trl-num-proc", str(np_),
                                                   "--hf-cache", str(tmp / f"hf-{n}-{np_}")]))
    for name, argv in runs:
        load = os.getloadavg()[0]
        print(f"[{n}] {name}: load average before the run {load:.2f} (1 min)", file=sys.stderr)
        r = run(argv, env)
        r["load_avg"] = load
        tm = r["times"]
        rows.append([n, name, tm["load"], tm["tokenize"], tm.get("plan", float("nan")), tm["total"],
                     n / tm["total"], r["cpu_s"], r["rss_gb"], load])
        print(f"[{n}] {name}: {json.dumps(r)}", file=sys.stderr)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps({"n": n, "run": name, **r}) + "\n")
    shutil.rmtree(cache, ignore_errors=True)
    path.unlink()
    return rows


def report(paths: list[str]) -> str:
    """A markdown table of the JSON lines written by ``--json`` (one row per run)."""
    rows = []
    for path in paths:
        for line in Path(path).read_text().splitlines():
            r = json.loads(line)
            tm, cpu = r["times"], r.get("cpu", {})
            rows.append([r["n"], r["run"], tm["load"], tm["tokenize"], tm.get("plan", float("nan")), tm["total"],
                         cpu.get("load", float("nan")), cpu.get("tokenize", float("nan")),
                         cpu.get("plan", float("nan")), r.get("cpu_s", float("nan")), r["rss_gb"], r.get("worker_rss_gb", float("nan")),
                         r.get("load_avg", float("nan"))])
    return common.table(rows, ["pairs", "run", "load s", "tokenize s", "plan s", "total s", "load CPU s",
                               "tokenize CPU s", "plan CPU s", "process CPU s", "peak RSS GB", "worker peak RSS GB",
                               "load avg before"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[20000], help="pair counts to run (e.g. 20000 200000 1000000)")
    ap.add_argument("--no-trl", action="store_true", help="skip the TRL runs")
    ap.add_argument("--trl-num-proc", type=int, nargs="+", default=[1],
                    help="TRL dataset_num_proc values to time (default: 1, TRL's default)")
    ap.add_argument("--no-rewardkit", action="store_true", help="skip the rewardkit runs")
    ap.add_argument("--trl-max", type=int, default=10 ** 9, help="run TRL only for N up to this")
    ap.add_argument("--source", default=str(common.SHARED_HH), help="hh-rlhf-shaped .jsonl.gz to build the pairs from")
    ap.add_argument("--json", default=None, help="append one JSON line per run to this file")
    ap.add_argument("--pairs", help="reuse this pairs file (built by build_pairs for the same N) instead of building one")
    ap.add_argument("--report", nargs="+", help="print a table of these --json files and exit")
    ap.add_argument("--child", choices=["rewardkit", "trl"], help=argparse.SUPPRESS)
    ap.add_argument("path", nargs="?", help=argparse.SUPPRESS)
    ap.add_argument("--hf-cache", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.report:
        print(report(args.report))
        return 0
    if args.child:
        import transformers
        transformers.logging.set_verbosity_error()
        if args.child == "rewardkit":
            result = child_rewardkit(args.path)
        else:
            result = child_trl(args.path, args.trl_num_proc[0] if args.trl_num_proc[0] > 1 else None, args.hf_cache)
        print(json.dumps(result))
        return 0
    if not args.child and not Path(args.source).is_file():
        raise SystemExit(f"{args.source}: not found (the shared hh-rlhf file; pass --source)")
    print(f"source: {args.source}", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        for n in args.n:
            rows += bench(n, Path(tmp), args)
    print(f"machine: {common.machine()}")
    print(common.table(rows, ["pairs", "run", "load s", "tokenize s", "plan s", "total s", "pairs/s", "CPU s (process)",
                              "peak RSS GB", "load avg before"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
