"""The errors rewardkit reports to users, and how a setting is spelled on the command line.

A leaf module: every other module may raise these. The CLI turns `UsageError` and `DataError` into
one message on stderr and exit code 2 (no traceback); anything else is a bug (exit 1).
"""

from __future__ import annotations


class UsageError(Exception):
    """A bad flag, config value or path: reported without a traceback, exit code 2."""


class DataError(Exception):
    """Unusable input data; the message names file, line and reason. CLI exit code 2."""


class RecordError(ValueError):
    """A single record is invalid; the message is the reason (the loader adds file:line)."""


class NoPreference(RecordError):
    """A valid record that prefers neither response (e.g. tied votes): counted, never fatal."""


def flag(name: str) -> str:
    """The command-line spelling of a config field: train_data -> --train-data."""
    return "--" + name.replace("_", "-")
