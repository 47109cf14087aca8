"""The errors rewardkit reports to users, and how a setting is spelled on the command line.

A leaf module: every other module may raise these. The CLI turns `UsageError` and `DataError` into
one message on stderr and exit code 2 (no traceback); anything else is a bug (exit 1).
"""

from __future__ import annotations

import errno


class UsageError(Exception):
    """A bad flag, config value or path: reported without a traceback, exit code 2."""


class DataError(Exception):
    """Unusable input data; the message names file, line and reason. CLI exit code 2."""


class RecordError(ValueError):
    """A single record is invalid; the message is the reason (the loader adds file:line)."""


class NoPreference(RecordError):
    """A valid record that prefers neither response (e.g. tied votes): counted, never fatal."""


class TrainingInterrupted(Exception):
    """SIGINT/SIGTERM stopped the run after a checkpoint was written; ``exit_code`` is 128+signal."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class TrainingDiverged(UsageError):
    """A non-finite loss or gradient: the run stops before the bad update is applied (exit 2)."""


def flag(name: str) -> str:
    """The command-line spelling of a config field: train_data -> --train-data."""
    return "--" + name.replace("_", "-")


def describe_os_error(e: OSError, what: str, path: object) -> str:
    """One line for a failed write: what, where, and why (a full disk named as such)."""
    reason = "no space left on device" if e.errno == errno.ENOSPC else (e.strerror or str(e))
    return f"cannot write {what} to {path}: {reason}"
