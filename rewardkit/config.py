"""Typed configs, one per workflow: train, eval, score, export, data check, data convert.

Each field is documented once, in its metadata (`rewardkit.options`); the CLI builds its flags
(``--train-data`` for ``train_data``), their ``--help`` sections and text from these dataclasses,
``--config FILE.yaml`` fills the same fields, and ``--resume`` reads which fields must match.
Settings several commands share are declared once and reused (`ScorerOptions` for everything that
scores with a trained model; `same_option` for single fields). Precedence: dataclass default <
YAML file < command-line flag.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rewardkit.data.attributes.options import AttributeOptions, attribute_options_from
from rewardkit.data.formats import FORMATS
from rewardkit.data.ratings import RatingOptions, options_from
from rewardkit.errors import UsageError, flag
from rewardkit.data.critiques import DEFAULT_MAX_TOKENS as CRITIQUE_TOKENS
from rewardkit.data.critiques import DEFAULT_TEMPLATE as CRITIQUE_TEMPLATE
from rewardkit.model.judge import DEFAULT_TEMPLATE as JUDGE_TEMPLATE
from rewardkit.model.judge import DEFAULT_TOKENS as JUDGE_TOKENS
from rewardkit.model.verdict import DEFAULT_ANSWERS, DEFAULT_TEMPLATE
from rewardkit.options import option, same_option

# The registry of training methods: --objective -> "module:function", the function that builds the objective
# from a TrainConfig, in a module of rewardkit.training.objectives (or any other importable module).
# Named, not imported: configs sit below training.
OBJECTIVES = {
    "bt": "pairwise:PairwiseObjective",
    "regression": "regression:RegressionObjective",
    "bt+regression": "regression:RegressionObjective",
    "sft": "sft:SFTObjective",
    "generative": "generative:generative",
    "prm": "prm:prm",
    "judge": "judge:JudgeObjective",
    "gating": "gating:GatingObjective",
    "critique": "critique:critique",
    "critique-lm": "critique:critique",
}
SCALAR_OBJECTIVES = ("bt", "generative")  # one reward per response, trained on comparisons


@dataclass
class TrainConfig:
    """Everything `rewardkit train` needs. Defaults reproduce the quickstart."""

    # ---- model: the backbone, and LoRA
    model: str | None = option(
        "Hugging Face model id or local directory of the backbone. Default: the bundled MiniLM-L6.",
        None, group="model", must_match=True)
    dropout: bool = option(
        "Keep the backbone's dropout. Off by default: dropout adds noise to reward differences.",
        False, group="model")
    lora_r: int = option(
        "LoRA rank (0: train all weights). The score head trains in full and is saved with the "
        "adapter.", 0, group="model", must_match=True)
    lora_alpha: float = option("LoRA scaling alpha (0: 2 * --lora-r).", 0.0, group="model", must_match=True)
    lora_dropout: float = option("Dropout on the LoRA path.", 0.0, group="model", must_match=True)
    lora_target_modules: str | None = option(
        "Comma-separated module names to adapt (default all-linear: every linear layer but the head).",
        None, group="model", must_match=True)
    merge: bool = option(
        "LoRA runs: also write merged weights that plain transformers loads to OUTPUT_DIR/merged.",
        False, group="model")

    # ---- data: what to train and evaluate on
    train_data: str | None = option(
        "Preference file (.jsonl/.json/.csv/.parquet, optionally .gz) or HF dataset id "
        "org/name[:split]. Default: the bundled hh-rlhf sample.", None, group="data")
    eval_data: str | None = option(
        "Separate held-out preference file. When given, --eval-split is ignored.", None, group="data")
    eval_split: float | None = option(
        "Fraction of prompts held out for evaluation (prompt-disjoint, seeded); 0 trains on "
        "everything. Default: 0.1 of the bundled quickstart sample; 0 with --train-data, so every "
        "pair you give is trained on (hold some out with this flag or --eval-data).",
        None, group="data", must_match=True)
    format: str = option(
        "Record shape: auto, explicit, implicit, conversational, rankings, votes, ratings, or a reward-model "
        "benchmark's rows: best-of-n (RewardBench 2), rm-bench or judgebench (auto detects per record, and a "
        "rating table from its columns).",
        "auto", group="data", must_match=True, choices=list(FORMATS))
    skip_invalid: bool = option(
        "Skip invalid records (reported with file:line and counted) instead of failing.", False, group="data")
    max_length: int = option(
        "Maximum tokens per prompt+response. Longer pairs lose their oldest prompt tokens, never the "
        "response's end, and are never dropped.", 512, group="data", must_match=True)
    # rating tables (--format ratings, or auto-detected): the fields of rewardkit.data.ratings.RatingOptions
    prompt_column: str | None = same_option(RatingOptions, "prompt_column")
    response_column: str | None = same_option(RatingOptions, "response_column")
    score_column: str | None = same_option(AttributeOptions, "score_column")
    ratings_mode: str = same_option(RatingOptions, "ratings_mode")
    hi: float | None = same_option(RatingOptions, "hi")
    lo: float | None = same_option(RatingOptions, "lo")
    min_gap: float = same_option(RatingOptions, "min_gap")
    margin_scale: float = same_option(RatingOptions, "margin_scale")
    # ratings as regression targets (--objective regression / bt+regression): rewardkit.data.attributes.table
    attributes: str | None = same_option(AttributeOptions, "attributes")
    score_range: str | None = same_option(AttributeOptions, "score_range")

    # ---- training: the objective and the optimizer
    epochs: float = option(
        "Passes over the training data (fractions allowed). Reward models overfit on a second.",
        1.0, group="training", must_match=True)
    batch_size: int = option(
        "Comparisons (pairs or rankings) per optimizer micro-batch.", 16, group="training", must_match=True)
    grad_accum: int = option("Micro-batches accumulated per optimizer step.", 1, group="training", must_match=True)
    lr: float = option("Peak AdamW learning rate.", 1e-4, group="training", must_match=True)
    weight_decay: float = option("AdamW weight decay.", 0.0, group="training", must_match=True)
    warmup_ratio: float = option(
        "Fraction of optimizer steps spent warming the learning rate up from 0.",
        0.05, group="training", must_match=True)
    scheduler: str = option(
        "Learning-rate decay after warmup.",
        "linear", group="training", must_match=True, choices=["linear", "cosine", "constant"])
    max_grad_norm: float = option("Gradient clipping norm; 0 disables.", 1.0, group="training")
    loss: str = option(
        "bt: Bradley-Terry on every pair of a comparison; pl: Plackett-Luce over whole rankings.",
        "bt", group="training", must_match=True, choices=["bt", "pl"])
    objective: str = option(
        "bt: pairwise (Bradley-Terry / Plackett-Luce, --loss); regression: one output per rated "
        "attribute of a rating table, masked MSE/Huber; bt+regression: both, the pairs derived from "
        "the same ratings; sft: a decoder trained as a causal LM on prompt + chosen response (a warm "
        "start for a reward model); generative: the reward is the LM head's log P(yes) - log P(no) after "
        "--verdict-template (Bradley-Terry on pairs; on a rating table, binary cross-entropy on score >= --hi); "
        "prm: a reward per step; judge: a pairwise A/B verdict; gating: prompt-gated attribute weights; critique: "
        "the model writes a critique and a head scores it (after a critique-lm stage that learns to write them).",
        "bt", group="training", must_match=True, choices=OBJECTIVES)
    sft_epochs: float = option(
        "Run an SFT stage first (--objective sft for this many epochs, in OUTPUT_DIR/sft) and train the "
        "reward model from its weights; 0: none. The SFT stage shares every other setting.",
        0.0, group="training", must_match=True)
    verdict_template: str = option(
        "--objective generative: the question appended after every response; the reward is read at its "
        "last token.", DEFAULT_TEMPLATE, group="training",
        must_match=True)
    verdict_tokens: str = option(
        "--objective generative: the yes and no answers, YES,NO; each must be one token of the tokenizer "
        "(a leading space is part of the token).", DEFAULT_ANSWERS, group="training", must_match=True)
    judge_template: str = option(
        "--objective judge: the question after the prompt and the two responses; the verdict is read at its "
        "last token.", JUDGE_TEMPLATE, group="training", must_match=True)
    judge_tokens: str = option(
        "--objective judge: the answers naming response A and response B, A,B; each must be one token.",
        JUDGE_TOKENS, group="training", must_match=True)
    critique_template: str = option(
        "--objective critique: the cue after the prompt and response where the critique starts; the model "
        "writes its critique after it, then the reward head reads the closing EOS.", CRITIQUE_TEMPLATE,
        group="training", must_match=True)
    max_critique_tokens: int = option(
        "--objective critique: the most tokens of a critique, written (greedy) or read from the data (longer "
        "reference critiques are cut); --max-length bounds the prompt and response alone.", CRITIQUE_TOKENS,
        group="training", must_match=True)
    critique_lm_weight: float = option(
        "--objective critique: the weight of the language-model loss on the reference critiques beside the "
        "Bradley-Terry loss of the reward head.", 1.0, group="training", must_match=True)
    critique_sft_epochs: float = option(
        "--objective critique: epochs of the first stage, learning to write the reference critiques "
        "(--objective critique-lm, in OUTPUT_DIR/critique-lm), before the model critiques every response and "
        "the head trains; 0: --model already writes critiques.", 1.0, group="training", must_match=True)
    gate_width: int = option(
        "--objective gating: hidden units of the gate that weights the attributes per prompt.", 64,
        group="training", must_match=True)
    step_separator: str = option(
        "--objective prm: the token after every step, where the step's reward is read (one token of the "
        "tokenizer; it is appended by id, so it never merges with the step's text).", "\n", group="training",
        must_match=True)
    prm_readout: str = option(
        "--objective prm: head: a fresh score head read at each separator (exported as token "
        "classification); tokens: the LM head's log-odds of --prm-tokens at each separator (a causal LM, as "
        "Math-Shepherd's PRMs).", "head", group="training", must_match=True, choices=["head", "tokens"])
    prm_tokens: str = option(
        "--objective prm --prm-readout tokens: the tokens for a right and a wrong step, RIGHT,WRONG, each one "
        "token of the tokenizer.", "+,-", group="training", must_match=True)
    prm_last_step_only: bool = option(
        "--objective prm: train on each solution's last step alone (TRL's train_on_last_step_only).", False,
        group="training", must_match=True)
    prm_aggregate: str = option(
        "--objective prm: how a solution's step rewards become one reward (RewardModel.score, /get_reward, "
        "/classify, the RL adapters): min, prod, last or mean of the steps' probabilities of being right.",
        "min", group="training", choices=["min", "prod", "last", "mean"])
    neutral: str | None = option(
        "Per-step ratings (-1/0/1, PRM800K-style): neutral (0) steps count as right (positive), as wrong "
        "(negative), or the solution is cut before its first neutral step (drop-after).", None, group="data",
        choices=["positive", "negative", "drop-after"])
    target_scaling: str = same_option(AttributeOptions, "target_scaling")
    attribute_weights: str | None = same_option(AttributeOptions, "attribute_weights")
    pair_attribute: str = same_option(AttributeOptions, "pair_attribute")
    regression_loss: str = same_option(AttributeOptions, "regression_loss")
    huber_delta: float = same_option(AttributeOptions, "huber_delta")
    pairwise_weight: float = same_option(AttributeOptions, "pairwise_weight")
    use_margin: bool = option(
        "Use a record's `margin` (or score gaps of rankings) in -logsigmoid(r_c - r_r - m).",
        True, group="training", must_match=True)
    center_coef: float = option(
        "Reward-centering coefficient: adds coef * mean((r_c + r_r)^2) to keep rewards near 0.",
        0.0, group="training", must_match=True)
    balance_per_prompt: bool = option(
        "Keep all comparisons of a prompt in one batch and weight its pairs to sum to 1: 1/C(K,2) "
        "each for a K-way ranking, 1/n for n pairs sharing a prompt (InstructGPT), so prompts with "
        "many responses do not dominate. --batch-size then counts prompts. Affects --loss bt; pl "
        "already has one term per ranking.", False, group="training", must_match=True)
    precision: str = option(
        "auto: bf16 autocast where the hardware supports it, else fp32.",
        "auto", group="training", choices=["auto", "bf16", "fp32"])
    seed: int = option("Seed for the split, shuffling and initialisation.", 0, group="training", must_match=True)

    # ---- evaluation: held-out metrics and logging
    eval_batch_size: int = option("Comparisons per evaluation batch.", 32, group="evaluation")
    eval_steps: int = option("Evaluate every N optimizer steps (0: only at the end).", 0, group="evaluation")
    logging_steps: int = option(
        "Write training loss to metrics.jsonl every N optimizer steps.", 10, group="evaluation")

    report_to: str = option(
        "Also log metrics.jsonl's train/eval scalars and the run config to these trackers, through "
        "accelerate: none, tensorboard, wandb, trackio, mlflow; several comma-separated or by repeating "
        "the flag. Each needs its own package installed.", "none", group="evaluation", repeatable=True,
        metavar="TRACKERS")

    # ---- checkpoints: the output directory, checkpoints and resume
    output_dir: str = option(
        "Directory for the trained model, tokenizer, metrics.jsonl and eval results.",
        "rewardkit-out", group="checkpoints")
    overwrite: bool = option(
        "Start over in an output directory that already holds a trained model or an unfinished run "
        "(its checkpoints are deleted).", False, group="checkpoints")
    save_steps: int = option(
        "Write a checkpoint (model, optimizer, scheduler, RNG, data position) to "
        "OUTPUT_DIR/checkpoint- STEP every N optimizer steps (0: only when stopped by "
        "SIGINT/SIGTERM).", 0, group="checkpoints")
    save_total_limit: int | None = option(
        "Keep only the newest N checkpoints, during the run and after it (0: keep all). Default: the newest 2 "
        "while training, none once the finished model is written (they hold the optimizer state, about three "
        "times the model).", None, group="checkpoints")
    resume: str | None = option(
        "Continue a stopped run: from the newest complete checkpoint in --output-dir (exit 2 when there is "
        "none), from the checkpoint directory PATH, or with 'auto' from the newest checkpoint if there is one "
        "and from step 0 if not. Pairs already seen are skipped; settings and the resolved precision must match.",
        None, group="checkpoints", const="latest", metavar="PATH")

    # ---- speed: exact speed paths and memory
    prefix_sharing: str = option(
        "Encode each comparison's prompt once and let every response attend to it (decoders only; "
        "same rewards, fewer tokens). auto: on for decoders that pass a startup check; on: fail if "
        "unsupported; off: one full row per response.", "auto", group="speed", choices=["auto", "on", "off"])
    packing: str = option(
        "Pack several comparisons into each row, each sequence seeing only itself (decoders only; the same "
        "rewards, almost no padding; --pass-tokens then counts real tokens, default 32768 on a GPU). auto: on "
        "for decoders on a GPU (on a CPU, row chunks already skip padding); on: fail if unsupported; off.",
        "auto", group="speed", choices=["auto", "on", "off"])
    compile: str = option(
        "torch.compile the model's forward and backward (rows rounded to a few widths, so it compiles a "
        "handful of shapes). auto: on a GPU; on; off. The first steps then include compilation: eval.json "
        "reports warm-up apart from the steady state.", "auto", group="speed", choices=["auto", "on", "off"])
    gradient_checkpointing: bool = option(
        "Recompute activations in the backward pass: less memory for about a third more compute.",
        False, group="speed")
    pass_tokens: int | None = option(
        "Cap on padded tokens (rows x longest row) per forward/backward pass: a longer micro-batch "
        "runs as several passes of whole comparisons whose gradients add up to the batch's own (same "
        "loss, less peak memory). Default 8192 on CPU, off on GPU; 0: off.", None, group="speed")

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
            (self.sft_epochs >= 0, "sft_epochs", "must be >= 0"),
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
            (self.save_total_limit is None or self.save_total_limit >= 0, "save_total_limit", "must be >= 0"),
            (self.lora_r >= 0, "lora_r", "must be >= 0"),
            (self.lora_alpha >= 0, "lora_alpha", "must be >= 0"),
            (0.0 <= self.lora_dropout < 1.0, "lora_dropout", "must be in [0, 1)"),
            (not self.merge or self.lora_r > 0, "merge", "only applies to LoRA runs (set --lora-r)"),
            (not (self.resume and self.overwrite), "resume", "cannot be combined with --overwrite"),
        ]
        check(self, checks)
        self.rating_options().validate()
        check_objective(self)


def check_objective(cfg: TrainConfig) -> None:
    """TrainConfig checks for ``--objective`` (UsageError naming the flag).

    Comparison objectives must not be given an attribute list; regression runs need a rating file and
    leave out what only applies to pairwise batches (v1: rankings, per-prompt balancing); an SFT
    stage trains a language model, so pairwise settings do not apply to it.
    """
    if cfg.sft_epochs and cfg.objective == "sft":
        raise UsageError(f"{flag('sft_epochs')} starts a reward model from an SFT stage; with "
                         f"{flag('objective')} sft, set --epochs instead")
    if cfg.sft_epochs and cfg.objective not in SCALAR_OBJECTIVES:
        raise UsageError(f"{flag('sft_epochs')} applies to {flag('objective')} bt and generative (an SFT stage "
                         f"learns from comparisons' chosen responses), not to {cfg.objective}")
    if cfg.objective == "gating":
        _refuse(cfg, ((cfg.loss == "bt", "loss", "pl"), (cfg.gate_width >= 1, "gate_width", str(cfg.gate_width))))
        return
    if cfg.objective in ("critique", "critique-lm"):
        _refuse(cfg, ((cfg.loss == "bt", "loss", "pl"), (not cfg.balance_per_prompt, "balance_per_prompt", "on"),
                      (cfg.max_critique_tokens >= 1, "max_critique_tokens", str(cfg.max_critique_tokens)),
                      (cfg.critique_sft_epochs >= 0, "critique_sft_epochs", str(cfg.critique_sft_epochs)),
                      (cfg.critique_lm_weight >= 0, "critique_lm_weight", str(cfg.critique_lm_weight))))
        return
    if cfg.objective == "judge":
        _refuse(cfg, ((cfg.loss == "bt", "loss", "pl"), (not cfg.balance_per_prompt, "balance_per_prompt", "on"),
                      (not cfg.center_coef, "center_coef", str(cfg.center_coef))))
        return
    if cfg.objective == "prm":
        if not cfg.train_data:
            raise UsageError(f"{flag('objective')} prm needs {flag('train_data')}: solutions labelled step by step")
        _refuse(cfg, ((cfg.loss == "bt", "loss", "pl"), (not cfg.balance_per_prompt, "balance_per_prompt", "on")))
        return
    if cfg.objective in SCALAR_OBJECTIVES + ("sft",):
        if cfg.score_column and "," in cfg.score_column or cfg.attributes:
            raise UsageError(f"give one {flag('score_column')} for {flag('objective')} {cfg.objective} "
                             f"(or {flag('objective')} regression for several attributes)")
        if cfg.objective == "sft":
            _refuse(cfg, ((cfg.loss == "bt", "loss", "pl"), (not cfg.balance_per_prompt, "balance_per_prompt", "on"),
                          (not cfg.center_coef, "center_coef", str(cfg.center_coef))))
        return
    if not cfg.train_data:
        raise UsageError(f"{flag('objective')} {cfg.objective} needs {flag('train_data')}: a rating table "
                         "with one column per attribute")
    _refuse(cfg, ((cfg.loss == "bt", "loss", "pl"), (cfg.ratings_mode != "ranking", "ratings_mode", "ranking"),
                  (not cfg.balance_per_prompt, "balance_per_prompt", "on")))
    attribute_options_from(cfg).validate()


def _refuse(cfg: TrainConfig, checks: tuple[tuple[bool, str, str], ...]) -> None:
    for ok, name, why in checks:
        if not ok:
            raise UsageError(f"{flag(name)} {why} does not apply to {flag('objective')} {cfg.objective}")


def check(cfg: Any, checks: list[tuple[bool, str, str]]) -> None:
    """Raise UsageError for the first failed (ok, field, why) check, then for a value not in a
    field's ``choices``; the message names the flag and the value."""
    for ok, name, why in checks:
        if not ok:
            raise UsageError(f"{flag(name)} {why} (got {getattr(cfg, name)!r})")
    for f in dataclasses.fields(cfg):
        choices = f.metadata.get("choices")
        value = getattr(cfg, f.name)
        if choices and value is not None and value not in choices:
            raise UsageError(f"{flag(f.name)} must be one of {', '.join(choices)} (got {value!r})")


# ------------------------------------------------------------------ commands that use a trained model


@dataclass
class ScorerOptions:
    """How a trained model is loaded and run: shared by `eval`, `score` and `serve`."""

    model_dir: str = option("Directory written by `rewardkit train` or `rewardkit export` (full or LoRA).",
                            "", positional=True, metavar="MODEL_DIR")
    max_length: int | None = option("Override the trained max length.", None)
    dtype: str | None = option(
        "Weights' dtype for inference (bf16 halves GPU memory; auto: bf16 where the hardware has native "
        "bf16, else fp32; default: as saved).", None, choices=["auto", "fp32", "bf16", "fp16"])
    prefix_sharing: str = same_option(TrainConfig, "prefix_sharing", group=None)
    packing: str = same_option(TrainConfig, "packing", group=None)

    def validate(self) -> None:
        check(self, [(self.max_length is None or self.max_length >= 8, "max_length", "must be at least 8")])


@dataclass
class EvalConfig(ScorerOptions):
    """`rewardkit eval MODEL_DIR DATA`, or several models side by side: `rewardkit eval A B -- DATA...`."""

    data: str = option("Preference file, benchmark file (RewardBench 2, RM-Bench, JudgeBench) or HF dataset id; "
                       "several comma-separated (or after --).", "", positional=True, metavar="DATA")
    models: str | None = option(
        "Several models side by side, comma-separated (the same as `rewardkit eval A B -- DATA...`): every model "
        "on the same files, one table, and for two models the paired difference with a bootstrap interval over "
        "prompts.", None, metavar="DIRS")
    bootstrap: int = option("Resamples of the paired bootstrap (two models).", 1000)
    seed: int = option("Seed of the paired bootstrap.", 0)
    batch_size: int = option("Comparisons per scoring batch.", 32)

    def validate(self) -> None:
        super().validate()
        check(self, [(self.batch_size >= 1, "batch_size", "must be >= 1"),
                     (self.bootstrap >= 100, "bootstrap", "must be >= 100")])

    @property
    def model_dirs(self) -> list[str]:
        """The models to evaluate: MODEL_DIR (comma-separated), or --models when given."""
        return [m for m in (self.models or self.model_dir).split(",") if m]

    @property
    def data_files(self) -> list[str]:
        return [d for d in self.data.split(",") if d]
    json: bool = option("Print exactly one JSON object on stdout.", False)
    format: str = same_option(TrainConfig, "format", group=None, must_match=False)
    skip_invalid: bool = option("Skip invalid records instead of failing.", False)
    sections: str | None = option(
        "JSON {section: {subset: weight}} or {section: [subset, ...]} (weights = pair counts) for "
        "RewardBench-style section scores.", None, metavar="FILE")
    report: str | None = option(
        "Also write DIR/report.html with reward histograms, a reliability diagram and margin vs length "
        "plots (PNGs beside it; opens offline).", None, metavar="DIR")


@dataclass
class ScoreConfig(ScorerOptions):
    """`rewardkit score MODEL_DIR INPUT`."""

    input: str = option("JSONL/JSON/CSV/parquet records to score.", "", positional=True, metavar="INPUT")
    batch_size: int = same_option(EvalConfig, "batch_size")
    output: str | None = option("JSONL output file (default: stdout).", None, short="-o", metavar="OUTPUT")
    normalize: bool = option("(r - mean) / std with the stored statistics.", False)

    def validate(self) -> None:
        super().validate()
        check(self, [(self.batch_size >= 1, "batch_size", "must be >= 1")])


@dataclass
class ExportConfig:
    """`rewardkit export CKPT_OR_ADAPTER_DIR -o OUT`."""

    source: str = option("A checkpoint directory (OUTPUT_DIR/checkpoint-N) or a LoRA output directory.", "",
                         positional=True, metavar="CKPT_OR_ADAPTER_DIR")
    output: str = option("Directory to write.", "", short="-o", metavar="OUT", required=True)
    merge: bool = option("LoRA: fold the adapter into the base weights (loads without peft).", False)
    overwrite: bool = option("Replace OUT if it exists.", False)


# ------------------------------------------------------------------ data commands


@dataclass
class DataCheckConfig(RatingOptions):
    """`rewardkit data check FILE`."""

    file: str = option("Preference file or HF dataset id.", "", positional=True, metavar="FILE")
    format: str = same_option(TrainConfig, "format", group=None, must_match=False)
    json: bool = option("Print one JSON object.", False)
    strict: bool = option("Exit 2 when any record is invalid.", False)
    neutral: str | None = same_option(TrainConfig, "neutral", group=None)


@dataclass
class DataConvertConfig(RatingOptions):
    """`rewardkit data convert INPUT -o OUTPUT`."""

    input: str = option("Preference file, rankings, votes or rating table.", "", positional=True, metavar="INPUT")
    output: str = option("JSONL file to write (.gz compresses).", "", short="-o", metavar="OUTPUT", required=True)
    format: str = same_option(TrainConfig, "format", group=None, must_match=False, aliases=("--from",))
    ratings_mode: str = same_option(RatingOptions, "ratings_mode", aliases=("--mode",))
    neutral: str | None = same_option(TrainConfig, "neutral", group=None)
    to: str = option(
        "auto: 2-response comparisons as pairs, longer ones as rankings; pairs: rankings expanded into all "
        "C(K,2) pairs (margin = score gap x --margin-scale); rankings: every comparison as a ranking record.",
        "auto", choices=["auto", "pairs", "rankings"])
    skip_invalid: bool = option("Skip invalid records instead of failing.", False)


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
        if want is str and isinstance(value, (list, tuple)):  # a YAML list, e.g. report_to: [tensorboard, wandb]
            return ",".join(str(v) for v in value)
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
