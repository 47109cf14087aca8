"""What `rewardkit train` prints when a run ends: the held-out table and one line on what was trained."""

from __future__ import annotations

from typing import Any

from rewardkit.config import TrainConfig


def result_text(result: Any, cfg: TrainConfig) -> str:
    """The held-out evaluation as the objective reports it (`TrainResult.eval_table`), what was trained and
    where the model is."""
    lines = [result.eval_table or ("no held-out data (every pair was trained on): pass --eval-split 0.1 or "
                                   "--eval-data FILE for held-out metrics, or run `rewardkit eval OUT FILE` later")]
    items = {"sft": "(prompt, chosen response) examples"}.get(cfg.objective, "comparisons")
    lines.append(f"trained {result.steps} steps on {result.pairs_seen} {items} in {result.seconds:.0f}s; "
                 f"{result.truncated} truncated, 0 dropped")
    lines.append(f"model saved to {result.output_dir}")
    return "\n".join(lines)
