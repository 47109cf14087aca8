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

from .errors import UsageError, flag
from .ratings import RatingOptions, options_from, rating_field


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
    eval_split: float | None = field(default=None, metadata=_help(
        "Fraction of prompts held out for evaluation (prompt-disjoint, seeded); 0 trains on everything. "
        "Default: 0.1 of the bundled quickstart sample; 0 with --train-data, so every pair you give is "
        "trained on (hold some out with this flag or --eval-data)."))
    format: str = field(default="auto", metadata=_help(
        "Record shape: auto, explicit, implicit, conversational, rankings, votes or ratings (auto detects "
        "per record, and a rating table from its columns).",
        choices=["auto", "explicit", "implicit", "conversational", "rankings", "votes", "ratings"]))
    skip_invalid: bool = field(default=False, metadata=_help(
        "Skip invalid records (reported with file:line and counted) instead of failing."))
    output_dir: str = field(default="rewardkit-out", metadata=_help(
        "Directory for the trained model, tokenizer, metrics.jsonl and eval results."))
    overwrite: bool = field(default=False, metadata=_help(
        "Start over in an output directory that already holds a trained model or an unfinished run "
        "(its checkpoints are deleted)."))
    max_length: int = field(default=512, metadata=_help(
        "Maximum tokens per prompt+response. Longer pairs lose their oldest prompt tokens, never "
        "the response's end, and are never dropped."))
    epochs: float = field(default=1.0, metadata=_help(
        "Passes over the training data (fractions allowed). Reward models overfit on a second."))
    batch_size: int = field(default=16, metadata=_help(
        "Comparisons (pairs or rankings) per optimizer micro-batch."))
    eval_batch_size: int = field(default=32, metadata=_help("Comparisons per evaluation batch."))
    grad_accum: int = field(default=1, metadata=_help("Micro-batches accumulated per optimizer step."))
    lr: float = field(default=1e-4, metadata=_help("Peak AdamW learning rate."))
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
        "Keep all comparisons of a prompt in one batch and weight its pairs to sum to 1: 1/C(K,2) each "
        "for a K-way ranking, 1/n for n pairs sharing a prompt (InstructGPT), so prompts with many "
        "responses do not dominate. --batch-size then counts prompts. Affects --loss bt; pl already "
        "has one term per ranking."))
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
        "Write a checkpoint (model, optimizer, scheduler, RNG, data position) to "
        "OUTPUT_DIR/checkpoint-STEP every N optimizer steps (0: only when stopped by SIGINT/SIGTERM)."))
    save_total_limit: int = field(default=2, metadata=_help(
        "Keep only the newest N checkpoints (0: keep all)."))
    resume: str | None = field(default=None, metadata=_help(
        "Continue a stopped run: from the newest complete checkpoint in --output-dir, or from the "
        "checkpoint directory PATH. Pairs already seen are skipped; settings must match.",
        const="latest", metavar="PATH"))
    lora_r: int = field(default=0, metadata=_help(
        "LoRA rank (0: train all weights). The score head trains in full and is saved with the adapter."))
    lora_alpha: float = field(default=0.0, metadata=_help("LoRA scaling alpha (0: 2 * --lora-r)."))
    lora_dropout: float = field(default=0.0, metadata=_help("Dropout on the LoRA path."))
    lora_target_modules: str | None = field(default=None, metadata=_help(
        "Comma-separated module names to adapt (default all-linear: every linear layer but the head)."))
    merge: bool = field(default=False, metadata=_help(
        "LoRA runs: also write merged weights that plain transformers loads to OUTPUT_DIR/merged."))
    gradient_checkpointing: bool = field(default=False, metadata=_help(
        "Recompute activations in the backward pass: less memory for about a third more compute."))
    pass_tokens: int | None = field(default=None, metadata=_help(
        "Cap on padded tokens (rows x longest row) per forward/backward pass: a longer micro-batch runs "
        "as several passes of whole comparisons whose gradients add up to the batch's own (same loss, "
        "less peak memory). Default 8192 on CPU, off on GPU; 0: off."))
    logging_steps: int = field(default=10, metadata=_help(
        "Write training loss to metrics.jsonl every N optimizer steps."))
    # Rating tables (--format ratings, or auto-detected): the fields of rewardkit.ratings.RatingOptions.
    prompt_column: str | None = rating_field("prompt_column")
    response_column: str | None = rating_field("response_column")
    score_column: str | None = rating_field("score_column")
    ratings_mode: str = rating_field("ratings_mode")
    hi: float | None = rating_field("hi")
    lo: float | None = rating_field("lo")
    min_gap: float = rating_field("min_gap")
    margin_scale: float = rating_field("margin_scale")

    def held_out_fraction(self) -> float:
        """--eval-split as given, else 0.1 for the quickstart's bundled data and 0 for the user's own."""
        if self.eval_split is not None:
            return self.eval_split
        return 0.1 if self.train_data is None else 0.0

    def rating_options(self) -> RatingOptions:
        return options_from(self)

    def __post_init__(self) -> None:
        # `resume: true` in YAML and bare `--resume` both mean "the newest checkpoint".
        if isinstance(self.resume, str) and self.resume.lower() in {"true", "yes", "on", "latest"}:
            self.resume = "latest"
        elif isinstance(self.resume, str) and self.resume.lower() in {"false", "no", "off", ""}:
            self.resume = None

    def validate(self) -> None:
        """Raise UsageError naming the flag of the first bad value."""
        checks = [
            (self.eval_split is None or 0.0 <= self.eval_split < 1.0, "eval_split", "must be in [0, 1)"),
            (self.max_length >= 8, "max_length", "must be at least 8"),
            (self.epochs > 0, "epochs", "must be > 0"),
            (self.batch_size >= 1, "batch_size", "must be >= 1"),
            (self.eval_batch_size >= 1, "eval_batch_size", "must be >= 1"),
            (self.grad_accum >= 1, "grad_accum", "must be >= 1"),
            (self.lr > 0, "lr", "must be > 0"),
            (self.weight_decay >= 0, "weight_decay", "must be >= 0"),
            (0.0 <= self.warmup_ratio < 1.0, "warmup_ratio", "must be in [0, 1)"),
            (self.pass_tokens is None or self.pass_tokens >= 0, "pass_tokens", "must be >= 0"),
            (self.max_grad_norm >= 0, "max_grad_norm", "must be >= 0"),
            (self.center_coef >= 0, "center_coef", "must be >= 0"),
            (self.eval_steps >= 0, "eval_steps", "must be >= 0"),
            (self.save_steps >= 0, "save_steps", "must be >= 0"),
            (self.logging_steps >= 1, "logging_steps", "must be >= 1"),
            (self.save_total_limit >= 0, "save_total_limit", "must be >= 0"),
            (self.lora_r >= 0, "lora_r", "must be >= 0"),
            (self.lora_alpha >= 0, "lora_alpha", "must be >= 0"),
            (0.0 <= self.lora_dropout < 1.0, "lora_dropout", "must be in [0, 1)"),
            (not self.merge or self.lora_r > 0, "merge", "only applies to LoRA runs (set --lora-r)"),
            (not (self.resume and self.overwrite), "resume", "cannot be combined with --overwrite"),
        ]
        for ok, name, why in checks:
            if not ok:
                raise UsageError(f"{flag(name)} {why} (got {getattr(self, name)!r})")
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise UsageError(f"{flag(f.name)} must be one of {', '.join(choices)} "
                                 f"(got {getattr(self, f.name)!r})")
        self.rating_options().validate()


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
