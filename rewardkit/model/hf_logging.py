"""transformers' loading chatter, kept out of the user's terminal where rewardkit knows better.

Loading a backbone for a reward model always leaves the score head out of the checkpoint, and a LoRA
adapter's base always lacks the head the adapter holds: transformers reports both as "MISSING ...
newly initialized ... Consider training", which reads as if the model were untrained. A vocabulary
grown by a pad token gets a note on how the new row was drawn, and every load a progress bar.
rewardkit says what matters in its own words (a fresh head, the pad token added), so these loads run
with transformers' logging at errors only and its progress bars off.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


@contextmanager
def quiet_loading() -> Iterator[None]:
    """transformers' warnings and progress bars off for the block, restored after it."""

    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()

