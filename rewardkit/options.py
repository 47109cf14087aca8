"""Typed option fields: each setting documented once, where it is declared.

A config is a dataclass whose fields carry their documentation in ``metadata``: the CLI builds a
flag per field (``train_data`` -> ``--train-data``) with that help text, the YAML loader accepts the
same names, and the resume check reads which fields must match. The metadata keys:

``help``        the one description of the setting (``--help`` shows it with the default)
``group``       the ``--help`` section: model, data, training, evaluation, checkpoints, speed
``must_match``  ``--resume`` refuses a checkpoint whose run had another value (it would silently
                train a different run: which batches a step sees, or what the weights mean)
``choices``, ``metavar``, ``const`` (a flag that may be given bare), ``positional`` (an argument,
not a flag), ``short`` (e.g. ``-o``), ``cli_name`` (a flag spelled unlike the field),
``required`` (a flag that must be given), ``aliases`` (older spellings, accepted but not shown)
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, field
from typing import Any


def option(help: str, default: Any = MISSING, **meta: Any) -> Any:
    """A dataclass field with its documentation and CLI hints in ``metadata`` (see the module doc)."""
    return field(default=default, metadata={"help": help, **meta})


def same_option(cls: type, name: str, **changes: Any) -> Any:
    """A field identical to ``cls.<name>`` (same default and documentation), optionally amended,
    so a setting shared by several configs is documented once."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    return field(default=f.default, metadata={**f.metadata, **changes})


def must_match(cfg: Any) -> list[str]:
    """The names of ``cfg``'s fields that a resumed run must share with its checkpoint."""
    return [f.name for f in dataclasses.fields(cfg) if f.metadata.get("must_match")]
