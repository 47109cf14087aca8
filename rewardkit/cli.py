"""`rewardkit` command line: a table from subcommand to function.

Every subcommand's flags are generated from its typed config (`rewardkit.config`): one flag per
field, ``--help`` text from the field's documentation, sections from its group. Exit codes: 0
success, 2 usage or data error (one clear message on stderr, no traceback), 1 an internal error
(a bug: the traceback is printed).
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from rewardkit.config import (
    DataCheckConfig,
    DataConvertConfig,
    EvalConfig,
    ExportConfig,
    ScoreConfig,
    TrainConfig,
    build_config,
    field_type,
)
from rewardkit.errors import DataError, RecordError, TrainingInterrupted, UsageError, flag
from rewardkit.serving.config import ServeConfig

GROUPS = ("model", "data", "training", "evaluation", "checkpoints", "speed")


# --------------------------------------------------------------------------------------- helpers


def _quiet_libraries() -> None:
    """Keep library chatter (weight-init notices, hub hints) out of the user's terminal."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


class _CommaJoin(argparse.Action):
    """A repeatable flag: ``--report-to a --report-to b`` means ``a,b``."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: Any = None) -> None:
        old = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, f"{old},{values}" if old else values)


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
        help_text = meta.get("help", "") + ("" if meta.get("required") else f" (default: {default})")
        if field_type(cls, f) is bool:
            target.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
            continue
        optional = {"nargs": "?", "const": meta["const"]} if "const" in meta else {}
        optional.update({"action": _CommaJoin} if meta.get("repeatable") else {})
        target.add_argument(*names, dest=f.name, type=str, default=argparse.SUPPRESS, choices=meta.get("choices"),
                            metavar=meta.get("metavar", f.name.upper()), required=bool(meta.get("required")),
                            help=help_text, **optional)


def _config(cls: type, args: argparse.Namespace, yaml_path: str | None = None) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    return build_config(cls, yaml_path, {k: v for k, v in vars(args).items() if k in names})


def _print_metrics(m: dict[str, Any], title: str) -> None:
    def fmt(v: Any) -> str:
        return "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)

    print(title)
    keys = ["accuracy", "pairs", "mean_margin", "median_margin", "loss", "ece", "brier",
            "chosen_reward_mean", "rejected_reward_mean", "chosen_longer_rate", "prefers_longer_rate",
            "accuracy_chosen_longer", "accuracy_chosen_not_longer"]
    for k in keys:
        if k in m:
            print(f"  {k:<28} {fmt(m[k])}")
    for name, s in (m.get("subsets") or {}).items():
        print(f"  subset {name:<21} {s['accuracy']:.4f} ({s['pairs']} pairs)")
    for name, v in (m.get("sections") or {}).items():
        print(f"  section {name:<20} {v:.4f}")


def _load_scorer(cfg: Any) -> Any:
    _quiet_libraries()
    from rewardkit.model.reward_model import RewardModel

    return RewardModel.from_pretrained(cfg.model_dir, max_length=cfg.max_length, prefix_sharing=cfg.prefix_sharing,
                                       dtype=cfg.dtype, packing=cfg.packing)


# --------------------------------------------------------------------------------------- commands


def cmd_train(args: argparse.Namespace) -> int:
    cfg = _config(TrainConfig, args, args.config)
    _quiet_libraries()
    from rewardkit.training.trainer import train

    result = train(cfg, log=lambda msg: print(msg, file=sys.stderr))
    from accelerate import PartialState

    if not PartialState().is_main_process:  # under `accelerate launch`, one summary is enough
        return 0
    if result.eval_metrics and "attributes" in result.eval_metrics:  # --objective regression
        from rewardkit.evaluation.rated import print_attribute_metrics

        print_attribute_metrics(result.eval_metrics, f"held-out evaluation ({result.eval_metrics['responses']} "
                                "rated responses):")
    elif result.eval_metrics and "pairs" in result.eval_metrics:
        _print_metrics(result.eval_metrics, f"held-out evaluation ({result.eval_metrics['pairs']} pairs):")
    elif result.eval_metrics:  # an SFT model's perplexity, a generative model's verdict accuracy
        print("held-out evaluation:")
        for key, value in result.eval_metrics.items():
            print(f"  {key:<28} {value:.4f}" if isinstance(value, float) else f"  {key:<28} {value}")
    else:
        print("no held-out data (every pair was trained on): pass --eval-split 0.1 or --eval-data FILE for "
              "held-out metrics, or run `rewardkit eval OUT FILE` later")
    items = {"sft": "(prompt, chosen response) examples"}.get(cfg.objective, "comparisons")
    print(f"trained {result.steps} steps on {result.pairs_seen} {items} in {result.seconds:.0f}s; "
          f"{result.truncated} truncated, 0 dropped")
    print(f"model saved to {result.output_dir}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    cfg = _config(ExportConfig, args)
    _quiet_libraries()
    from rewardkit.training.export import export

    out = export(cfg.source, cfg.output, merge=cfg.merge, overwrite=cfg.overwrite)
    print(f"exported {cfg.source} -> {out}")
    return 0


def _sections(path: str | None, present: set[str | None], data: str) -> Any:
    """The --sections mapping, validated; a note for subsets the data does not have."""
    from rewardkit.evaluation.metrics import check_sections

    if not path:
        return None
    try:
        sections = check_sections(json.loads(Path(path).read_text()))
    except (OSError, json.JSONDecodeError, ValueError) as e:
        raise UsageError(f"--sections: cannot use {path}: {e}") from None
    absent = sorted({s for m in sections.values() for s in m} - present)
    if absent:
        print(f"rewardkit: note: --sections subsets not in {data}: {', '.join(absent)}", file=sys.stderr)
    return sections


def cmd_eval(args: argparse.Namespace) -> int:
    cfg = _config(EvalConfig, args)
    if not Path(cfg.model_dir).is_dir():
        raise UsageError(f"MODEL_DIR: {cfg.model_dir} is not a directory")
    from rewardkit.evaluation.rated import eval_rated

    rated = eval_rated(cfg, _load_scorer)  # a regression model on a rating table
    metrics, write_page, print_table = rated if rated is not None else _eval_pairs(cfg)
    if cfg.report:
        page = write_page(cfg.report, title="Reward model evaluation",
                          details={"model": cfg.model_dir, "data": cfg.data})
        print(f"report: {page}", file=sys.stderr)
    if cfg.json:
        print(json.dumps(metrics))
    else:
        print_table()
    return 0


def _eval_pairs(cfg: EvalConfig) -> tuple[dict[str, Any], Callable[..., Path], Callable[[], None]]:
    """Pairwise metrics of a preference file: (metrics, report writer, table printer)."""
    from functools import partial

    from tqdm.auto import tqdm

    from rewardkit.data.loading import load_comparisons
    from rewardkit.data.records import describe_problems
    from rewardkit.evaluation.metrics import pair_metrics, pairs_of
    from rewardkit.evaluation.report import write_report

    loaded = load_comparisons(cfg.data, cfg.format, cfg.skip_invalid)
    if loaded.problems:
        print(describe_problems(loaded.problems, cfg.data) + "\n(skipped: --skip-invalid)", file=sys.stderr)
    sections = _sections(cfg.sections, {c.subset for c in loaded.comparisons}, cfg.data)
    rm = _load_scorer(cfg)
    with tqdm(total=len(loaded.comparisons), desc="score", disable=cfg.json, unit="cmp") as bar:
        rewards = rm.score_comparisons(loaded.comparisons, cfg.batch_size, bar)
    metrics = pair_metrics(pairs_of(loaded.comparisons, rewards), sections)
    metrics["skipped"] = len(loaded.problems)
    page = partial(write_report, comps=loaded.comparisons, rewards=rewards, metrics=metrics)
    return metrics, page, lambda: _print_metrics(metrics, f"{cfg.data} ({metrics['pairs']} pairs):")


def _score_jobs(path: str) -> list[tuple[str, dict[str, Any], Any]]:
    """(kind, record, payload) per record of a file to score, in order; every bad record is listed."""
    from rewardkit.data.formats import parse_record
    from rewardkit.data.readers import iter_rows

    if not Path(path).is_file():
        raise UsageError(f"INPUT: no such file: {path}")
    jobs: list[tuple[str, dict[str, Any], Any]] = []
    problems = []
    for where, raw in iter_rows(path):
        try:
            if isinstance(raw, RecordError):
                raise raw
            if isinstance(raw, dict) and "response" in raw and "chosen" not in raw:
                prompt, response = raw.get("prompt"), raw.get("response")
                for name, v in (("prompt", prompt), ("response", response)):
                    if not isinstance(v, (str, list)) or not v:
                        raise RecordError(f"field '{name}' must be a non-empty string or message list")
                jobs.append(("single", raw, (prompt, response)))
            else:
                comps = parse_record(raw, "auto", where)
                if len(comps) != 1:
                    raise RecordError("score takes one comparison per record (unwrap LMFlow 'instances' first)")
                jobs.append(("group", raw, comps[0]))
        except RecordError as e:
            problems.append(f"{where}: {e}")
    if problems:
        more = f"\n  ... and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise UsageError(f"{len(problems)} invalid record(s) in {path}:\n  " + "\n  ".join(problems[:5]) + more)
    return jobs


def cmd_score(args: argparse.Namespace) -> int:
    cfg = _config(ScoreConfig, args)
    jobs = _score_jobs(cfg.input)
    rm = _load_scorer(cfg)
    encoded = [rm.encoder.encode_texts(p[0], [p[1]]) if k == "single" else rm.encoder.encode(p) for k, _, p in jobs]
    from tqdm.auto import tqdm

    # stdout carries the records, so the bar (on stderr) shows only where someone watches it
    watched = cfg.output is not None or sys.stderr.isatty()
    with tqdm(total=len(encoded), desc="score", unit="rec", disable=not watched) as bar:
        if rm.regression is None:
            rewards, attributes = rm.rewards_for(encoded, cfg.batch_size, bar), None
        else:  # regression model: the combined reward and each attribute, from one forward pass
            rewards, attributes = rm.attributes_for(encoded, cfg.batch_size, bar)
    if cfg.normalize:
        rewards = [rm.normalize(r) for r in rewards]
    out = open(cfg.output, "w") if cfg.output else sys.stdout
    try:
        for n, ((kind, raw, payload), r) in enumerate(zip(jobs, rewards)):
            rec = dict(raw)
            if attributes is not None:
                from rewardkit.evaluation.rated import add_attributes

                add_attributes(rec, kind, raw, payload, attributes[n])
            if kind == "single":
                rec["reward"] = r[0]
            elif len(r) == 2 and ("chosen" in raw or "positive" in raw or "response_j" in raw):
                rec["chosen_reward"], rec["rejected_reward"] = r
            else:  # rankings: one reward per response, in the record's own order
                rec["rewards"] = payload.in_record_order(r)
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
    finally:
        if cfg.output:
            out.close()
    if cfg.output:
        print(f"scored {len(jobs)} records -> {cfg.output}", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    cfg = _config(ServeConfig, args)
    _quiet_libraries()
    from rewardkit.serving.app import serve

    return serve(cfg)


def cmd_data_check(args: argparse.Namespace) -> int:
    from rewardkit.data.check import data_report, print_report
    from rewardkit.data.loading import load_comparisons

    cfg = _config(DataCheckConfig, args)
    loaded = load_comparisons(cfg.file, cfg.format, skip_invalid=True, ratings=cfg)
    report = data_report(loaded, cfg.file)
    if cfg.json:
        print(json.dumps(report))
    else:
        print_report(report)
    return 2 if report["invalid"] and cfg.strict else 0


def cmd_data_convert(args: argparse.Namespace) -> int:
    """Any supported input -> explicit JSONL: pair records and/or ranking records."""
    from rewardkit.data.formats import comparison_records
    from rewardkit.data.loading import load_comparisons

    cfg = _config(DataConvertConfig, args)
    if Path(cfg.output).resolve() == Path(cfg.input).resolve():
        raise UsageError("-o/--output must differ from INPUT")
    loaded = load_comparisons(cfg.input, cfg.from_format, cfg.skip_invalid, ratings=cfg)
    for message in loaded.messages(cfg.input):
        print(message, file=sys.stderr)
    records = [r for c in loaded.comparisons for r in comparison_records(c, cfg.to, cfg.margin_scale)]
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    try:
        if cfg.output.endswith(".gz"):
            with gzip.open(cfg.output, "wt", encoding="utf-8") as f:
                f.write(text)
        else:
            Path(cfg.output).write_text(text, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"-o/--output: cannot write {cfg.output}: {e.strerror}") from None
    pairs = sum("chosen" in r for r in records)
    print(f"wrote {len(records)} records ({pairs} pairs, {len(records) - pairs} rankings) from "
          f"{loaded.records} input records to {cfg.output}; {len(loaded.dropped)} without a preference, "
          f"{len(loaded.problems)} invalid", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------------------- parser

# subcommand -> (config, function, one-line help, description)
COMMANDS: dict[str, tuple[type, Callable[[argparse.Namespace], int], str, str]] = {
    "train": (TrainConfig, cmd_train, "train a reward model (no arguments: the quickstart)",
              "Train a reward model. With no arguments: MiniLM-L6 on the bundled hh-rlhf sample. Every option "
              "can also be set in --config FILE.yaml."),
    "eval": (EvalConfig, cmd_eval, "accuracy, margins, calibration and length bias on preference data",
             "Evaluate a trained reward model on preference data."),
    "score": (ScoreConfig, cmd_score, "add rewards to every record of a file",
              "Score records: {prompt, response} gets 'reward'; pairs get 'chosen_reward' and 'rejected_reward'; "
              "rankings get 'rewards'."),
    "serve": (ServeConfig, cmd_serve, "HTTP reward server for RL loops (OpenRLHF, verl, TRL)",
              "Serve a reward model over HTTP: /score, /get_reward (OpenRLHF), /classify (vLLM/verl), /health, "
              "/v1/models, /metrics. Binds 127.0.0.1 unless --host; a bearer token from REWARDKIT_API_KEY or "
              "--api-key-file guards every route but /health."),
    "export": (ExportConfig, cmd_export, "turn a checkpoint or LoRA adapter into a loadable model",
               "Write a training checkpoint (OUTPUT_DIR/checkpoint-N) as a model directory, or merge a LoRA "
               "adapter into plain transformers weights."),
}
DATA_COMMANDS: dict[str, tuple[type, Callable[[argparse.Namespace], int], str, str]] = {
    "check": (DataCheckConfig, cmd_data_check, "counts, lengths, duplicates, invalid records",
              "Report counts, length statistics, duplicates, how often the chosen response is longer, pairs per "
              "prompt and invalid records."),
    "convert": (DataConvertConfig, cmd_data_convert, "write any preference input as explicit pairs/rankings JSONL",
                "Convert a rating table, rankings, votes or any pair shape into explicit JSONL: {prompt, chosen, "
                "rejected[, margin]} pairs and {prompt, responses, scores} or {prompt, ranking} rankings. Prompts "
                "and records that give no preference are reported on stderr."),
}


def build_parser() -> argparse.ArgumentParser:
    from rewardkit.version import __version__

    parser = argparse.ArgumentParser(prog="rewardkit", description="Train, evaluate and serve reward models for RLHF.")
    parser.add_argument("--version", action="version", version=f"rewardkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (cls, func, short, description) in COMMANDS.items():
        p = sub.add_parser(name, help=short, description=description)
        if cls is TrainConfig:
            p.add_argument("--config", metavar="FILE", help="YAML file of options (flags override it)")
        add_config_flags(p, cls)
        p.set_defaults(func=func)
    data = sub.add_parser("data", help="inspect preference data", description="Inspect preference data.")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    for name, (cls, func, short, description) in DATA_COMMANDS.items():
        p = data_sub.add_parser(name, help=short, description=description)
        add_config_flags(p, cls)
        p.set_defaults(func=func)
        if cls is DataConvertConfig:
            p.add_argument("--mode", dest="ratings_mode", default=argparse.SUPPRESS,
                           choices=[f.metadata["choices"] for f in dataclasses.fields(cls)
                                    if f.name == "ratings_mode"][0], help="alias of --ratings-mode")
    data.set_defaults(func=lambda a: (data.print_help(), 2)[1])
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except TrainingInterrupted as e:
        print(f"rewardkit: {e}", file=sys.stderr)
        return e.exit_code
    except (UsageError, DataError) as e:
        print(f"rewardkit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rewardkit: interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print("rewardkit: internal error (the traceback above is a bug report)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
