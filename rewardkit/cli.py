"""`rewardkit` command line: a table from subcommand to function.

Exit codes: 0 success, 2 usage or data error (one clear message on stderr, no traceback), 1 an
internal error (a bug: the traceback is printed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from .config import TrainConfig, UsageError, build_config, field_type, flag
from .data import FORMATS
from .ratings import MODES, RatingOptions


# --------------------------------------------------------------------------------------- helpers


def _quiet_libraries() -> None:
    """Keep library chatter (weight-init notices, hub hints) out of the user's terminal."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def _add_config_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """One flag per config field, help text from the field's documentation."""
    for f in dataclasses.fields(cls):
        kind = field_type(cls, f)
        help_text = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else None
        if kind is bool:
            parser.add_argument(flag(f.name), action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=f"{help_text} (default: {default})")
        else:
            optional = {"nargs": "?", "const": f.metadata["const"]} if "const" in f.metadata else {}
            parser.add_argument(flag(f.name), type=str, default=argparse.SUPPRESS,
                                choices=f.metadata.get("choices"), metavar=f.metadata.get("metavar", f.name.upper()),
                                help=f"{help_text} (default: {default})", **optional)


def _overrides(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names}


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


# --------------------------------------------------------------------------------------- commands


def cmd_train(args: argparse.Namespace) -> int:
    cfg = build_config(TrainConfig, args.config, _overrides(args, TrainConfig))
    _quiet_libraries()
    from .train import train

    result = train(cfg, log=lambda msg: print(msg, file=sys.stderr))
    from accelerate import PartialState

    if not PartialState().is_main_process:  # under `accelerate launch`, one summary is enough
        return 0
    if result.eval_metrics:
        _print_metrics(result.eval_metrics, f"held-out evaluation ({result.eval_metrics['pairs']} pairs):")
    else:
        print("no held-out data (every pair was trained on): pass --eval-split 0.1 or --eval-data FILE for "
              "held-out metrics, or run `rewardkit eval OUT FILE` later")
    print(f"trained {result.steps} steps on {result.pairs_seen} comparisons in {result.seconds:.0f}s; "
          f"{result.truncated} truncated, 0 dropped")
    print(f"model saved to {result.output_dir}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    _quiet_libraries()
    from .export import export

    out = export(args.source, args.output, merge=args.merge, overwrite=args.overwrite)
    print(f"exported {args.source} -> {out}")
    return 0


def _load_scorer(model_dir: str, max_length: int | None = None, prefix_sharing: str = "auto",
                 dtype: str | None = None) -> Any:
    _quiet_libraries()
    from .model import RewardModel

    return RewardModel.from_pretrained(model_dir, max_length=max_length, prefix_sharing=prefix_sharing,
                                      dtype=dtype)


def cmd_eval(args: argparse.Namespace) -> int:
    from .data import describe_problems, load_comparisons
    from .evaluate import check_sections, pair_metrics, pairs_of

    if not Path(args.model_dir).is_dir():
        raise UsageError(f"MODEL_DIR: {args.model_dir} is not a directory")
    loaded = load_comparisons(args.data, args.format, args.skip_invalid)
    if loaded.problems:
        print(describe_problems(loaded.problems, args.data) + "\n(skipped: --skip-invalid)", file=sys.stderr)
    sections = None
    if args.sections:
        try:
            sections = check_sections(json.loads(Path(args.sections).read_text()))
        except (OSError, json.JSONDecodeError, ValueError) as e:
            raise UsageError(f"--sections: cannot use {args.sections}: {e}") from None
        present = {c.subset for c in loaded.comparisons}
        absent = sorted({s for m in sections.values() for s in m} - present)
        if absent:
            print(f"rewardkit: note: --sections subsets not in {args.data}: {', '.join(absent)}", file=sys.stderr)
    rm = _load_scorer(args.model_dir, args.max_length, args.prefix_sharing, args.dtype)
    from tqdm.auto import tqdm

    with tqdm(total=len(loaded.comparisons), desc="score", disable=args.json, unit="cmp") as bar:
        rewards = rm.score_comparisons(loaded.comparisons, args.batch_size, bar)
    metrics = pair_metrics(pairs_of(loaded.comparisons, rewards), sections)
    metrics["skipped"] = len(loaded.problems)
    if args.report:
        from .report import write_report

        page = write_report(args.report, loaded.comparisons, rewards, metrics, title="Reward model evaluation",
                            details={"model": args.model_dir, "data": args.data})
        print(f"report: {page}", file=sys.stderr)
    if args.json:
        print(json.dumps(metrics))
    else:
        _print_metrics(metrics, f"{args.data} ({metrics['pairs']} pairs):")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from .data import RecordError, iter_rows, parse_record

    rows = list(iter_rows(args.input)) if Path(args.input).is_file() else None
    if rows is None:
        raise UsageError(f"INPUT: no such file: {args.input}")
    jobs: list[tuple[str, Any]] = []  # (kind, payload) per record, in order
    problems = []
    for where, raw in rows:
        try:
            if isinstance(raw, RecordError):
                raise raw
            if isinstance(raw, dict) and "response" in raw and "chosen" not in raw:
                prompt, response = raw.get("prompt"), raw.get("response")
                for name, v in (("prompt", prompt), ("response", response)):
                    if not isinstance(v, (str, list)) or not v:
                        raise RecordError(f"field '{name}' must be a non-empty string or message list")
                jobs.append(("single", (prompt, response)))
            else:
                comps = parse_record(raw, "auto", where)
                if len(comps) != 1:
                    raise RecordError("score takes one comparison per record (unwrap LMFlow 'instances' first)")
                jobs.append(("group", comps[0]))
        except RecordError as e:
            problems.append(f"{where}: {e}")
    if problems:
        more = f"\n  ... and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise UsageError(f"{len(problems)} invalid record(s) in {args.input}:\n  " + "\n  ".join(problems[:5]) + more)

    rm = _load_scorer(args.model_dir, args.max_length, args.prefix_sharing, args.dtype)
    encoded = [rm.encoder.encode_texts(p[0], [p[1]]) if k == "single" else rm.encoder.encode(p) for k, p in jobs]
    from tqdm.auto import tqdm

    # stdout carries the records, so the bar (on stderr) shows only where someone watches it
    with tqdm(total=len(encoded), desc="score", unit="rec",
              disable=args.output is None and not sys.stderr.isatty()) as bar:
        rewards = rm.rewards_for(encoded, args.batch_size, bar)
    if args.normalize:
        rewards = [rm.normalize(r) for r in rewards]
    out = open(args.output, "w") if args.output else sys.stdout
    try:
        for (where, raw), (kind, payload), r in zip(rows, jobs, rewards):
            rec = dict(raw)
            if kind == "single":
                rec["reward"] = r[0]
            elif len(r) == 2 and ("chosen" in raw or "positive" in raw or "response_j" in raw):
                rec["chosen_reward"], rec["rejected_reward"] = r
            else:  # rankings: one reward per response, in the record's own order
                rec["rewards"] = _record_order(raw, r)
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
    finally:
        if args.output:
            out.close()
    if args.output:
        print(f"scored {len(jobs)} records -> {args.output}", file=sys.stderr)
    return 0


def _rating_options(args: argparse.Namespace) -> Any:
    from .ratings import RatingOptions

    return build_config(RatingOptions, None, _overrides(args, RatingOptions))


def _record_order(raw: dict[str, Any], best_first: list[float]) -> list[float]:
    """Rewards of a ranking record in the order its ``responses`` list them.

    The loader orders a {responses, scores} record best first (highest score first, ties already
    rejected); this undoes that so ``rewards[i]`` belongs to ``responses[i]``. An ordered
    ``ranking`` record is already best first.
    """
    scores = raw.get("scores")
    if "responses" not in raw or not isinstance(scores, list):
        return best_first
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))  # the loader's order
    out = [0.0] * len(order)
    for rank, i in enumerate(order):
        out[i] = best_first[rank]
    return out


def cmd_data_check(args: argparse.Namespace) -> int:
    from .data import load_comparisons
    from .stats import data_report, print_report

    loaded = load_comparisons(args.file, args.format, skip_invalid=True, ratings=_rating_options(args))
    report = data_report(loaded, args.file)
    if args.json:
        print(json.dumps(report))
    else:
        print_report(report)
    return 2 if report["invalid"] and args.strict else 0


def cmd_data_convert(args: argparse.Namespace) -> int:
    """Any supported input -> explicit JSONL: pair records and/or ranking records."""
    import gzip

    from .data import comparison_records, describe_dropped, describe_problems, load_comparisons

    opts = _rating_options(args)
    fmt = {"auto": "auto", "ratings": "ratings", "rankings": "rankings", "votes": "votes"}[args.from_format]
    if Path(args.output).resolve() == Path(args.input).resolve():
        raise UsageError("-o/--output must differ from INPUT")
    loaded = load_comparisons(args.input, fmt, args.skip_invalid, ratings=opts)
    if loaded.problems:
        print(describe_problems(loaded.problems, args.input) + "\n(skipped: --skip-invalid)", file=sys.stderr)
    for note in loaded.notes:
        print(note, file=sys.stderr)
    if loaded.dropped:
        print(describe_dropped(loaded.dropped, args.input), file=sys.stderr)
    records = [r for c in loaded.comparisons for r in comparison_records(c, args.to, opts.margin_scale)]
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    try:
        if args.output.endswith(".gz"):
            with gzip.open(args.output, "wt", encoding="utf-8") as f:
                f.write(text)
        else:
            Path(args.output).write_text(text, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"-o/--output: cannot write {args.output}: {e.strerror}") from None
    pairs = sum("chosen" in r for r in records)
    print(f"wrote {len(records)} records ({pairs} pairs, {len(records) - pairs} rankings) from "
          f"{loaded.records} input records to {args.output}; {len(loaded.dropped)} without a preference, "
          f"{len(loaded.problems)} invalid", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------------------- parser


def _add_inference_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by every command that scores with a trained model."""
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default=None,
                   help="weights' dtype for inference (bf16 halves GPU memory; default: as saved)")
    p.add_argument("--prefix-sharing", choices=["auto", "on", "off"], default="auto",
                   help="encode each comparison's prompt once (decoders; same rewards, fewer tokens)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rewardkit", description="Train, evaluate and serve reward models for RLHF.")
    from .version import __version__

    parser.add_argument("--version", action="version", version=f"rewardkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train a reward model (no arguments: the quickstart)",
                       description="Train a reward model. With no arguments: MiniLM-L6 on the bundled "
                                   "hh-rlhf sample. Every option can also be set in --config FILE.yaml.")
    p.add_argument("--config", metavar="FILE", help="YAML file of options (flags override it)")
    _add_config_flags(p, TrainConfig)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="accuracy, margins, calibration and length bias on preference data",
                       description="Evaluate a trained reward model on preference data.")
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("data", metavar="DATA", help="preference file or HF dataset id")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    p.add_argument("--format", default="auto", choices=list(FORMATS))
    p.add_argument("--skip-invalid", action="store_true", help="skip invalid records instead of failing")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=None, help="override the trained max length")
    p.add_argument("--sections", metavar="FILE",
                   help='JSON {section: {subset: weight}} or {section: [subset, ...]} (weights = pair '
                        'counts) for RewardBench-style section scores')
    p.add_argument("--report", metavar="DIR",
                   help="also write DIR/report.html with reward histograms, a reliability diagram and "
                        "margin vs length plots (PNGs beside it; opens offline)")
    _add_inference_flags(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("score", help="add rewards to every record of a file",
                       description="Score records: {prompt, response} gets 'reward'; pairs get "
                                   "'chosen_reward' and 'rejected_reward'; rankings get 'rewards'.")
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("input", metavar="INPUT")
    p.add_argument("-o", "--output", metavar="OUTPUT", help="JSONL output file (default: stdout)")
    p.add_argument("--normalize", action="store_true", help="(r - mean) / std with the stored statistics")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=None, help="override the trained max length")
    _add_inference_flags(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("export", help="turn a checkpoint or LoRA adapter into a loadable model",
                       description="Write a training checkpoint (OUTPUT_DIR/checkpoint-N) as a model "
                                   "directory, or merge a LoRA adapter into plain transformers weights.")
    p.add_argument("source", metavar="CKPT_OR_ADAPTER_DIR")
    p.add_argument("-o", "--output", metavar="OUT", required=True, help="directory to write")
    p.add_argument("--merge", action="store_true",
                   help="LoRA: fold the adapter into the base weights (loads without peft)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("data", help="inspect preference data", description="Inspect preference data.")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    c = data_sub.add_parser("check", help="counts, lengths, duplicates, invalid records",
                            description="Report counts, length statistics, duplicates, how often the "
                                        "chosen response is longer, pairs per prompt and invalid records.")
    c.add_argument("file", metavar="FILE")
    c.add_argument("--format", default="auto", choices=list(FORMATS))
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.add_argument("--strict", action="store_true", help="exit 2 when any record is invalid")
    _add_config_flags(c, RatingOptions)
    c.set_defaults(func=cmd_data_check)

    c = data_sub.add_parser("convert", help="write any preference input as explicit pairs/rankings JSONL",
                            description="Convert a rating table, rankings, votes or any pair shape into "
                                        "explicit JSONL: {prompt, chosen, rejected[, margin]} pairs and "
                                        "{prompt, responses, scores} or {prompt, ranking} rankings. Prompts "
                                        "and records that give no preference are reported on stderr.")
    c.add_argument("input", metavar="INPUT")
    c.add_argument("-o", "--output", metavar="OUTPUT", required=True, help="JSONL file to write (.gz compresses)")
    c.add_argument("--from", dest="from_format", default="auto", choices=["auto", "ratings", "rankings", "votes"],
                   help="input shape (default: auto, which detects a rating table from its columns)")
    c.add_argument("--to", default="auto", choices=["auto", "pairs", "rankings"],
                   help="auto: 2-response comparisons as pairs, longer ones as rankings; pairs: rankings "
                        "expanded into all C(K,2) pairs (margin = score gap x --margin-scale); rankings: "
                        "every comparison as a ranking record")
    c.add_argument("--skip-invalid", action="store_true", help="skip invalid records instead of failing")
    _add_config_flags(c, RatingOptions)
    c.add_argument("--mode", dest="ratings_mode", default=argparse.SUPPRESS, choices=list(MODES),
                   help="alias of --ratings-mode")
    c.set_defaults(func=cmd_data_convert)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .checkpoint import TrainingInterrupted
    from .data import DataError

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
