"""One table from `benchmarks/gpu_suite.sh`'s result files, each figure beside issue 20's target.

    python benchmarks/gpu_table.py RESULTS_DIR

A target is judged only where its figure was measured (MFU needs a known GPU peak); a missing file
shows as "not run". On a CPU (SMOKE=1) the verdicts say nothing about the GPU targets: the table
shows that every step ran and produced its figures.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any


def _load(d: Path, name: str) -> dict[str, Any] | None:
    f = d / name
    return json.loads(f.read_text()) if f.is_file() and f.stat().st_size else None


def _fmt(x: Any, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}" if isinstance(x, float) else str(x)


def _verdict(value: float | None, target: float, at_most: bool = False) -> str:
    if value is None:
        return "not measured"
    return "met" if (value <= target if at_most else value >= target) else "missed"


def rows(d: Path) -> list[list[str]]:
    out: list[list[str]] = []
    b16 = _load(d, "train_b16.json")
    if b16:
        rk, trl = b16["summary"]["rewardkit"], b16["summary"].get("trl", {})
        ratio = b16["summary"].get("ratio")
        out.append(["hh batch 16: train pairs/s", f"{_fmt(rk['pairs_per_s'])} vs TRL {_fmt(trl.get('pairs_per_s'))}",
                    f"{_fmt(ratio, 2)}x", ">= 3x", _verdict(ratio, 3.0)])
        mem = (rk["peak_gpu_gb"] / trl["peak_gpu_gb"]) if rk.get("peak_gpu_gb") and trl.get("peak_gpu_gb") else None
        out.append(["hh batch 16: peak GPU GB", f"{_fmt(rk.get('peak_gpu_gb'))} vs TRL {_fmt(trl.get('peak_gpu_gb'))}",
                    f"{_fmt(mem, 2)}x", "<= TRL", _verdict(mem, 1.0, at_most=True)])
        out.append(["hh batch 16: MFU", f"{_fmt(100 * rk['mfu'] if rk.get('mfu') else None)}% vs TRL "
                    f"{_fmt(100 * trl['mfu'] if trl.get('mfu') else None)}%", "", "", ""])
        out.append(["hh batch 16: held-out accuracy", f"{_fmt(rk['heldout_accuracy'], 3)} vs TRL "
                    f"{_fmt(trl.get('heldout_accuracy'), 3)}", "", "", ""])
    else:
        out.append(["hh batch 16", "not run", "", ">= 3x TRL", ""])
    b64 = _load(d, "train_b64.json")
    if b64:
        rk = b64["summary"]["rewardkit"]
        mfu = 100 * rk["mfu"] if rk.get("mfu") else None
        out.append(["hh batch 64, token budget: MFU", f"{_fmt(rk['pairs_per_s'])} pairs/s, "
                    f"{_fmt(rk['tokens_per_s'], 0)} tokens/s, {_fmt(rk.get('peak_gpu_gb'))} GB",
                    f"{_fmt(mfu)}%", ">= 35%", _verdict(mfu, 35.0)])
    else:
        out.append(["hh batch 64, token budget", "not run", "", ">= 35% MFU", ""])
    on, off = _load(d, "train_long.json"), _load(d, "train_long_off.json")
    if on:
        rk, trl = on["summary"]["rewardkit"], on["summary"].get("trl", {})
        ratio = on["summary"].get("ratio")
        out.append(["long prompts: sharing vs TRL", f"{_fmt(rk['pairs_per_s'])} vs TRL {_fmt(trl.get('pairs_per_s'))}",
                    f"{_fmt(ratio, 2)}x", ">= 3x", _verdict(ratio, 3.0)])
        if off:
            share = rk["pairs_per_s"] / off["summary"]["rewardkit"]["pairs_per_s"]
            out.append(["long prompts: sharing on vs off", f"{_fmt(rk['pairs_per_s'])} vs "
                        f"{_fmt(off['summary']['rewardkit']['pairs_per_s'])}", f"{share:.2f}x", ">= 1.8x",
                        _verdict(share, 1.8)])
    else:
        out.append(["long prompts", "not run", "", ">= 3x TRL, >= 1.8x unshared", ""])
    score = _load(d, "score.json")
    if score:
        per_s = score["items_per_s"]
        rate = per_s["rewardkit score_batch"]
        out.append(["score_batch items/s", f"{_fmt(rate)} (comparisons {_fmt(per_s['rewardkit score_comparisons'])}, "
                    f"per-item loop {_fmt(per_s['per-item loop'])})", "", ">= 2,000", _verdict(rate, 2000.0)])
    else:
        out.append(["score_batch", "not run", "", ">= 2,000 items/s", ""])
    serve = _load(d, "serve.json")
    if serve:
        for r in serve["runs"]:
            x = r["batched"]
            target = r["items_per_request"] == 1
            out.append([f"serve, {r['clients']} clients x {r['items_per_request']} item(s)",
                        f"{_fmt(x['items_per_s'])} vs offline {_fmt(r['offline_items_per_s'])} items/s",
                        f"{x['vs_offline']:.2f}x", ">= 0.85x" if target else "",
                        _verdict(x["vs_offline"], 0.85) if target else ""])
    else:
        out.append(["serve", "not run", "", ">= 0.85x offline", ""])
    log = d / "tests.log"
    if log.is_file():
        text = log.read_text()
        m = re.findall(r"(\d+) (passed|failed|skipped|error)", text)
        counts = ", ".join(f"{n} {w}" for n, w in m) or "no summary line"
        ok = "failed" not in text and "error" not in dict((w, n) for n, w in m)
        out.append(["device tests", counts, "", "all pass", "met" if ok and "passed" in text else "missed"])
    return out


def main() -> int:
    d = Path(sys.argv[1])
    machine = next((f["machine"] for f in (_load(d, n) for n in ("train_b16.json", "score.json")) if f), "?")
    print(f"machine: {machine}\n")
    header = ["case", "figures", "ratio", "target", "verdict"]
    table = [header] + rows(d)
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for i, r in enumerate(table):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return 0


if __name__ == "__main__":
    sys.exit(main())
