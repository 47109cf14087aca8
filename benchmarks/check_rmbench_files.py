"""Check `rewardkit eval`'s RM-Bench scores on the benchmark's real files against a second implementation
written the way RM-Bench's own code computes them (THU-KEG/RM-Bench, scripts/utils.py::compute_accuracy).

RM-Bench ships its domains as separate files (``data/chat_filtered.json``, ``code_filtered.json``,
``safety-refuse_filtered.json``, ``safety-response_filtered.json``, ...), and its ``total_dataset.json``
is their rows with a ``domain`` field named after the file. This script builds that pooled file from the
files given, scores it once with a reward model (rewardkit's `RewardModel.score_comparisons`, as
`rewardkit eval` does), and compares rewardkit's benchmark metrics with the upstream way on the same
rewards: per domain (by prefix: chat, math, code, safety, so both safety files pool) a 3x3 matrix of
strict wins divided by the rows, hard = mean of the 3 cells above the diagonal, normal = of the
diagonal, easy = of the 3 below; each domain's average of the three; totals the unweighted means
over domains. Then it runs the `rewardkit eval --json` command on the pooled file and checks it prints
the same numbers. No data ships with rewardkit; pass the files (the benchmark's licence is its own)::

    python benchmarks/check_rmbench_files.py MODEL_DIR rm-bench/data/*_filtered.json
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

DOMAINS = ("chat", "math", "code", "safety")


def upstream_way(domains: list[str], rewards: list[list[float]]) -> dict[str, float]:
    """compute_accuracy per domain, then the unweighted means over domains (upstream's lines 48-75)."""
    out: dict[str, float] = {}
    per_domain = {}
    for domain in DOMAINS:
        rows = [r for d, r in zip(domains, rewards) if d.startswith(domain)]
        if not rows:
            continue
        matrix = np.zeros((3, 3))
        for r in rows:
            chosen, rejected = r[:3], r[3:]
            for i in range(3):
                for j in range(3):
                    if chosen[i] > rejected[j]:
                        matrix[i][j] += 1
        matrix /= len(rows)
        hard = np.sum(np.triu(matrix, 1)) / 3
        normal = np.mean(np.diag(matrix))
        easy = np.sum(np.tril(matrix, -1)) / 3
        per_domain[domain] = {"hard": hard, "normal": normal, "easy": easy}
        out[domain] = float(np.mean([hard, normal, easy]))
    for level in ("hard", "normal", "easy"):
        out[level] = float(np.mean([v[level] for v in per_domain.values()]))
    out["total"] = float(np.mean([out[d] for d in per_domain]))
    return out


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    from rewardkit import RewardModel
    from rewardkit.data.loading import load_comparisons
    from rewardkit.evaluation.side_by_side import file_metrics

    model, files = sys.argv[1], [Path(f) for f in sys.argv[2:]]
    pooled = []
    for f in files:
        domain = f.name.removesuffix(".json").removesuffix("_filtered")
        pooled += [{**row, "domain": domain} for row in json.loads(f.read_text())]
    work = Path(tempfile.mkdtemp(prefix="rmbench-"))
    total = work / "total_dataset.json"
    total.write_text(json.dumps(pooled))
    comps = load_comparisons(str(total)).comparisons
    rm = RewardModel.from_pretrained(model, device="cpu")
    rewards = rm.score_comparisons(comps, 32)
    ours = file_metrics(comps, rewards)
    theirs = upstream_way([c.subset for c in comps], rewards)
    print(f"{len(comps)} rows from {', '.join(f.name for f in files)}; model {model}")
    print(f"{'metric':<10}{'rewardkit':>12}{'upstream way':>14}")
    worst = 0.0
    for key, value in theirs.items():
        mine = ours["sections"][key] if key in DOMAINS else ours["score"] if key == "total" else ours[key]
        worst = max(worst, abs(mine - value))
        print(f"{key:<10}{mine:>12.6f}{value:>14.6f}")
    print(f"largest difference, rewardkit vs the upstream way: {worst:.2e}", flush=True)
    cli = subprocess.run([sys.executable, "-m", "rewardkit", "eval", model, str(total), "--json"],
                         capture_output=True, text=True, check=True)
    printed = json.loads(cli.stdout)
    same_cli = abs(printed["score"] - ours["score"]) < 1e-12
    print(f"`rewardkit eval --json` prints the same total: {same_cli}")
    return 0 if worst < 1e-12 and same_cli else 1


if __name__ == "__main__":
    sys.exit(main())
