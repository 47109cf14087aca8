"""Command-line flags generated from the typed configs (`rewardkit.config`), and the parser they live in.

One flag per config field (``train_data`` -> ``--train-data``), its ``--help`` text from the field's
documentation (`rewardkit.options`), its section from the field's group, its default shown as a user
would type it. A usage error is one line naming the flag, with the closest valid flag for a
misspelling, under the subcommand's one-line usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
from typing import Any

from rewardkit.config import build_config, field_type
from rewardkit.errors import flag

GROUPS = ("model", "data", "training", "evaluation", "checkpoints", "speed")


class Parser(argparse.ArgumentParser):
    """A usage error is one line naming the flag (with the closest valid one for a misspelling) and the
    subcommand's short usage line, not the whole help."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        self.exit(2, f"{self.format_usage()}{self.prog}: error: {message}\n")

    def suggest(self, unknown: list[str]) -> str:
        known = [s for a in self._actions for s in a.option_strings]
        hints = []
        for arg in unknown:
            close = difflib.get_close_matches(arg.split("=", 1)[0], known, n=1, cutoff=0.6)
            hints.append(f"{arg} (did you mean {close[0]}?)" if close else arg)
        return "unrecognized arguments: " + " ".join(hints)


class _CommaJoin(argparse.Action):
    """A repeatable flag: ``--report-to a --report-to b`` means ``a,b``."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: Any = None) -> None:
        old = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, f"{old},{values}" if old else values)


def shown_default(value: Any) -> str:
    """A default as a user types it: quoted when spaces or newlines matter; nothing for None."""
    if value is None or value == "":
        return ""
    text = str(value)
    return f" (default: {text!r})" if text != text.strip() or "\n" in text or "," in text else f" (default: {text})"


def add_config_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """One argument per config field, help text from the field's documentation, grouped by section."""
    sections = {g: parser.add_argument_group(g) for g in GROUPS
                if any(f.metadata.get("group") == g for f in dataclasses.fields(cls))}
    for f in dataclasses.fields(cls):
        meta = f.metadata
        target = sections.get(meta.get("group"), parser)
        if meta.get("positional"):
            target.add_argument(f.name, metavar=meta.get("metavar"), help=meta.get("help"))
            continue
        names = [n for n in (meta.get("short"), meta.get("cli_name") or flag(f.name)) if n]
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = meta.get("help", "") + ("" if meta.get("required") or isinstance(default, bool)
                                            else shown_default(default))
        if field_type(cls, f) is bool:
            target.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
            continue
        optional = {"nargs": "?", "const": meta["const"]} if "const" in meta else {}
        optional.update({"action": _CommaJoin} if meta.get("repeatable") else {})
        target.add_argument(*names, dest=f.name, type=str, default=argparse.SUPPRESS, choices=meta.get("choices"),
                            metavar=meta.get("metavar", f.name.upper()), required=bool(meta.get("required")),
                            help=help_text, **optional)
        for alias in meta.get("aliases", ()):  # an older spelling, accepted but not shown
            target.add_argument(alias, dest=f.name, type=str, default=argparse.SUPPRESS,
                                choices=meta.get("choices"), help=argparse.SUPPRESS)


def config_of(cls: type, args: argparse.Namespace, yaml_path: str | None = None) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    return build_config(cls, yaml_path, {k: v for k, v in vars(args).items() if k in names})


def side_by_side_argv(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``eval A B -- F G`` and ``eval --models A,B F G`` as ``eval A,B F,G``: the MODEL_DIR and DATA
    positionals take comma-separated lists. argparse drops the ``--`` that separates models from data,
    so the split is made here, knowing which flags take a value."""
    if not argv or argv[0] != "eval" or ("--" not in argv and not any(a.split("=")[0] == "--models" for a in argv)):
        return argv
    takes_value = {s: a.nargs != 0 for a in parser._actions for s in a.option_strings}
    before, after = (argv[1:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv[1:], [])
    flags, positionals, models, i = [], [], [], 0
    while i < len(before):
        arg = before[i]
        name = arg.split("=", 1)[0]
        if name == "--models":
            models += (arg.split("=", 1)[1] if "=" in arg else before[i + 1]).split(",")
            i += 1 if "=" in arg else 2
            continue
        if arg.startswith("-") and arg != "-":
            flags.append(arg)
            if "=" not in arg and takes_value.get(name) and i + 1 < len(before):
                flags.append(before[i + 1])
                i += 1
        else:
            positionals.append(arg)
        i += 1
    if "--" in argv:
        models, data = models + positionals, after
    else:
        data = positionals
    return ["eval", *flags, ",".join(models), ",".join(data)]
