"""SIGINT/SIGTERM as a request to checkpoint and stop at the end of the current optimizer step."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any


class StopSignals:
    """Turn the first SIGINT/SIGTERM into a request to checkpoint and stop at the end of the step.

    A second signal of either kind restores the default behaviour, so an impatient Ctrl-C still
    ends the process at once (the atomic writes keep the last checkpoint intact even then).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received = signum
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def __enter__(self) -> "StopSignals":
        try:
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous.clear()
        return self

    def __exit__(self, *_exc: Any) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else ""
