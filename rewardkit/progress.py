"""Progress bars for data phases that can take long (loading, tokenizing, planning) at scale.

One place decides how they look and when they show: on stderr, only on the main process of a
distributed launch (every process loads and encodes the data; one bar is enough), and only once a
phase has run for ``DELAY`` seconds, so small datasets print nothing.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Iterable

DELAY = 2.0  # seconds before a bar appears


def is_main_process() -> bool:
    """Rank 0 of a torchrun/accelerate launch, or no launch at all."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0) == 0


def phase_bar(iterable: Iterable[Any] | None = None, desc: str = "", total: int | None = None,
              unit: str = "it", disable: bool | None = None) -> Any:
    """A tqdm bar on stderr, silent off the main process and for phases shorter than ``DELAY``."""
    from tqdm.auto import tqdm

    if disable is None:
        disable = not is_main_process()
    return tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr, leave=False, delay=DELAY,
                disable=disable, dynamic_ncols=True)
