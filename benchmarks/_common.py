"""Helpers shared by the benchmark scripts: data slices, held-out splits, memory, tables.

Every benchmark reads the same preference file (hh-rlhf by default), takes an optional
``--limit`` slice for smoke tests, and splits it prompt-disjointly with rewardkit's own seeded
splitter so both systems see exactly the same training and held-out pairs.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
SHARED_HH = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-base.jsonl.gz"


def default_data() -> str:
    """The shared hh-rlhf file when present, else rewardkit's bundled sample of it."""
    if SHARED_HH.is_file():
        return str(SHARED_HH)
    from rewardkit.data.loading import bundled_sample

    return bundled_sample()


def load_pairs(path: str, limit: int | None) -> list[Any]:
    """Comparisons of ``path`` (first ``limit`` only), parsed by rewardkit: pairs only."""
    from rewardkit.data.loading import load_comparisons

    comps = load_comparisons(path).comparisons
    comps = [c for c in comps if len(c.responses) == 2 and isinstance(c.prompt, str)]
    return comps[:limit] if limit else comps


def long_prompt_pairs(comps: list[Any], n: int, chars: int) -> list[Any]:
    """``n`` pairs with long prompts: each pair's own prompt after earlier dialogues of the file (prompt and
    chosen reply) until the history holds at least ``chars`` characters. The responses stay short, so
    sharing the prompt nearly halves the tokens: the case prefix sharing is for (RAG, long chats)."""
    from dataclasses import replace

    out = []
    for i in range(n):
        c, history, j = comps[i % len(comps)], "", i + 1
        while len(history) < chars:
            d = comps[j % len(comps)]
            history += d.prompt + d.responses[0]
            j += 1
        out.append(replace(c, prompt=history + c.prompt))
    return out


def split(comps: list[Any], test_fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    from rewardkit.data.loading import split_by_prompt

    return split_by_prompt(comps, test_fraction, seed)


def write_pairs(comps: Sequence[Any], path: Path) -> Path:
    """hh-rlhf-shaped JSONL, {"chosen": prompt + chosen, "rejected": prompt + rejected}.

    This is the shape TRL users feed hh-rlhf in, and rewardkit re-derives the identical prompt
    from it (the shared prefix up to the last assistant turn). It also keeps the three hh-rlhf
    records whose chosen turn is blank, which an explicit {"prompt", "chosen": " "} record would
    reject as empty: both systems train on every pair of the file.
    """
    with open(path, "w") as f:
        for c in comps:
            f.write(json.dumps({"chosen": c.prompt + c.responses[0], "rejected": c.prompt + c.responses[1]}) + "\n")
    return path


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / (1024 ** 3 if sys.platform == "darwin" else 1024 ** 2)


def peak_gpu_gb() -> float | None:
    """Peak GPU memory torch allocated in this process (None without a GPU)."""
    import torch

    return torch.cuda.max_memory_allocated() / 1024 ** 3 if torch.cuda.is_available() else None


# dense bf16 matrix peak of the GPUs MFU is quoted against (NVIDIA's datasheet figures, no sparsity)
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def peak_tflops() -> float | None:
    """The running GPU's dense bf16 peak, if it is one of PEAK_TFLOPS (MFU is not quoted otherwise)."""
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def non_embedding_params(model_dir: str) -> int:
    """Parameters of the backbone and head, input embeddings left out (they do no matrix work), counted
    on the meta device: nothing is allocated."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(model_dir))
    emb = model.get_input_embeddings().weight.numel()
    return sum(p.numel() for p in model.parameters()) - emb


def mfu(params: int, tokens: float, seconds: float, tflops: float | None) -> float | None:
    """Model FLOPs utilisation: 6 x params x tokens (forward and backward) over seconds x peak."""
    return 6 * params * tokens / seconds / (tflops * 1e12) if tflops and seconds > 0 else None


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 ** 2:.0f} GB RAM"
    except (OSError, ValueError, IndexError):
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"{cpu}, {os.cpu_count()} CPUs (torch threads {torch.get_num_threads()}){mem}{gpu}; "
            f"torch {torch.__version__}, Python {platform.python_version()}")


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child process: this checkout first on PYTHONPATH, and whatever was there
    after it (packages installed with ``pip --target`` must not vanish in the child)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def run_child(argv: list[str], timeout: float | None = None) -> dict[str, Any]:
    """Run ``python argv...`` in a fresh process; its last stdout line is a JSON result.

    A separate process per run keeps peak RSS separable and stops one system's allocator state
    or thread pools from affecting the other.
    """
    proc = subprocess.run([sys.executable, *argv], stdout=subprocess.PIPE, stderr=None, text=True,
                          timeout=timeout, cwd=ROOT, env=child_env())
    if proc.returncode != 0:
        raise SystemExit(f"child {' '.join(argv[:3])} ... failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [[str(h) for h in header]] + [[f"{c:.3g}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
