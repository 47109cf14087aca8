"""Typed configs, one per workflow.

Each field is documented once, in its ``help`` metadata; the CLI builds its flags (``--train-data``
for ``train_data``) and ``--help`` text from these dataclasses, and ``--config FILE.yaml`` fills the
same fields. Precedence: dataclass default < YAML file < command-line flag.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class UsageError(Exception):
    """A bad flag, config value or path: reported without a traceback, exit code 2."""


def _help(text: str, **extra: Any) -> dict[str, Any]:
    return {"help": text, **extra}


@dataclass
class TrainConfig:
    """Everything `rewardkit train` needs. Defaults reproduce the quickstart."""

    model: str | None = field(default=None, metadata=_help(
        "Hugging Face model id or local directory of the backbone. Default: the bundled MiniLM-L6."))
    train_data: str | None = field(default=None, metadata=_help(
        "Preference file (.jsonl/.json/.csv/.parquet, optionally .gz) or HF dataset id "
        "org/name[:split]. Default: the bundled hh-rlhf sample."))
    eval_data: str | None = field(default=None, metadata=_help(
        "Separate held-out preference file. When given, --eval-split is ignored."))
    eval_split: float = field(default=0.1, metadata=_help(
        "Fraction of prompts held out for evaluation (prompt-disjoint, seeded). 0 disables."))
    format: str = field(default="auto", metadata=_help(
        "Record shape: auto, explicit, implicit, conversational or rankings (auto detects per record).",
        choices=["auto", "explicit", "implicit", "conversational", "rankings"]))
    skip_invalid: bool = field(default=False, metadata=_help(
        "Skip invalid records (reported with file:line and counted) instead of failing."))
    output_dir: str = field(default="rewardkit-out", metadata=_help(
        "Directory for the trained model, tokenizer, metrics.jsonl and eval results."))
    overwrite: bool = field(default=False, metadata=_help(
        "Allow writing into an output directory that already holds a trained model."))
    max_length: int = field(default=512, metadata=_help(
        "Maximum tokens per prompt+response. Longer pairs lose their oldest prompt tokens, never "
        "the response's end, and are never dropped."))
    epochs: float = field(default=1.0, metadata=_help(
        "Passes over the training data (fractions allowed). Reward models overfit on a second."))
    batch_size: int = field(default=16, metadata=_help(
        "Comparisons (pairs or rankings) per optimizer micro-batch."))
    eval_batch_size: int = field(default=32, metadata=_help("Comparisons per evaluation batch."))
    grad_accum: int = field(default=1, metadata=_help("Micro-batches accumulated per optimizer step."))
    lr: float = field(default=5e-5, metadata=_help("Peak AdamW learning rate."))
    weight_decay: float = field(default=0.0, metadata=_help("AdamW weight decay."))
    warmup_ratio: float = field(default=0.05, metadata=_help(
        "Fraction of optimizer steps spent warming the learning rate up from 0."))
    scheduler: str = field(default="linear", metadata=_help(
        "Learning-rate decay after warmup.", choices=["linear", "cosine", "constant"]))
    max_grad_norm: float = field(default=1.0, metadata=_help("Gradient clipping norm; 0 disables."))
    loss: str = field(default="bt", metadata=_help(
        "bt: Bradley-Terry on every pair of a comparison; pl: Plackett-Luce over whole rankings.",
        choices=["bt", "pl"]))
    use_margin: bool = field(default=True, metadata=_help(
        "Use a record's `margin` (or score gaps of rankings) in -logsigmoid(r_c - r_r - m)."))
    center_coef: float = field(default=0.0, metadata=_help(
        "Reward-centering coefficient: adds coef * mean((r_c + r_r)^2) to keep rewards near 0."))
    balance_per_prompt: bool = field(default=False, metadata=_help(
        "Weight each of a prompt's C(K,2) pairs by 1/C(K,2) so prompts with many responses do not "
        "dominate (InstructGPT)."))
    dropout: bool = field(default=False, metadata=_help(
        "Keep the backbone's dropout. Off by default: dropout adds noise to reward differences."))
    precision: str = field(default="auto", metadata=_help(
        "auto: bf16 autocast where the hardware supports it, else fp32.",
        choices=["auto", "bf16", "fp32"]))
    prefix_sharing: str = field(default="auto", metadata=_help(
        "Encode each comparison's prompt once and let every response attend to it (decoders only; "
        "same rewards, fewer tokens). auto: on for decoders that pass a startup check; on: fail if "
        "unsupported; off: one full row per response.", choices=["auto", "on", "off"]))
    seed: int = field(default=0, metadata=_help("Seed for the split, shuffling and initialisation."))
    eval_steps: int = field(default=0, metadata=_help(
        "Evaluate every N optimizer steps (0: only at the end)."))
    save_steps: int = field(default=0, metadata=_help(
        "Write a checkpoint every N optimizer steps (0: none)."))
    logging_steps: int = field(default=10, metadata=_help(
        "Write training loss to metrics.jsonl every N optimizer steps."))

    def validate(self) -> None:
        """Raise UsageError naming the flag of the first bad value."""
        checks = [
            (0.0 <= self.eval_split < 1.0, "eval_split", "must be in [0, 1)"),
            (self.max_length >= 8, "max_length", "must be at least 8"),
            (self.epochs > 0, "epochs", "must be > 0"),
            (self.batch_size >= 1, "batch_size", "must be >= 1"),
            (self.eval_batch_size >= 1, "eval_batch_size", "must be >= 1"),
            (self.grad_accum >= 1, "grad_accum", "must be >= 1"),
            (self.lr > 0, "lr", "must be > 0"),
            (self.weight_decay >= 0, "weight_decay", "must be >= 0"),
            (0.0 <= self.warmup_ratio < 1.0, "warmup_ratio", "must be in [0, 1)"),
            (self.max_grad_norm >= 0, "max_grad_norm", "must be >= 0"),
            (self.center_coef >= 0, "center_coef", "must be >= 0"),
            (self.eval_steps >= 0, "eval_steps", "must be >= 0"),
            (self.save_steps >= 0, "save_steps", "must be >= 0"),
            (self.logging_steps >= 1, "logging_steps", "must be >= 1"),
        ]
        for ok, name, why in checks:
            if not ok:
                raise UsageError(f"{flag(name)} {why} (got {getattr(self, name)!r})")
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise UsageError(f"{flag(f.name)} must be one of {', '.join(choices)} "
                                 f"(got {getattr(self, f.name)!r})")


def flag(name: str) -> str:
    """The command-line spelling of a config field: train_data -> --train-data."""
    return "--" + name.replace("_", "-")


def field_type(cls: type, f: dataclasses.Field) -> type:
    """The concrete type of a field, with `X | None` reduced to X."""
    hint = typing.get_type_hints(cls)[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _coerce(cls: type, f: dataclasses.Field, value: Any, origin: str) -> Any:
    want = field_type(cls, f)
    if value is None:
        return None
    try:
        if want is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in {"true", "yes", "1", "on"}:
                return True
            if str(value).lower() in {"false", "no", "0", "off"}:
                return False
            raise ValueError(value)
        if want is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return want(value)
    except (TypeError, ValueError):
        raise UsageError(f"{origin}: {flag(f.name)} expects {want.__name__}, got {value!r}") from None


def load_yaml(path: str | Path, cls: type) -> dict[str, Any]:
    """Read a YAML config into {field_name: value}; unknown keys are an error naming the file."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--config: no such file: {p}")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise UsageError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{p}: expected a mapping of option: value at the top level")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in fields:
            raise UsageError(f"{p}: unknown option {key!r} (valid: {', '.join(sorted(fields))})")
        out[name] = _coerce(cls, fields[name], value, str(p))
    return out


def build_config(cls: type, yaml_path: str | None, overrides: dict[str, Any]) -> Any:
    """Merge defaults, YAML values and explicit overrides into a validated config."""
    values = load_yaml(yaml_path, cls) if yaml_path else {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name, value in overrides.items():
        values[name] = _coerce(cls, fields[name], value, "command line")
    cfg = cls(**values)
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
