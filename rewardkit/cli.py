"""`rewardkit` command line: a table from subcommand to library function.

Every subcommand's flags are generated from its typed config (`rewardkit.config`): one flag per
field, ``--help`` text from the field's documentation, sections from its group. The work is done by
library functions a Python user can call the same way (`train`, `evaluate`, `score_file`, `serve`,
`export`, `data_report`, `convert_data`). Exit codes: 0 success, 2 usage or data error (one clear
message on stderr, no traceback), 1 an internal error (a bug: the traceback is printed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import traceback
from typing import Any, Callable

from rewardkit.config import (DataCheckConfig, DataConvertConfig, EvalConfig, ExportConfig, ScoreConfig,
                              TrainConfig)
from rewardkit.errors import DataError, TrainingInterrupted, UsageError
from rewardkit.flags import Parser, add_config_flags, config_of, side_by_side_argv
from rewardkit.serving.config import ServeConfig


def quiet_libraries() -> None:
    """Keep library chatter (weight-init notices, hub hints, load reports) out of the user's terminal."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


# --------------------------------------------------------------------------------------- commands


def cmd_train(cfg: TrainConfig) -> int:
    from accelerate import PartialState

    from rewardkit.training.summary import result_text
    from rewardkit.training.trainer import train

    result = train(cfg, log=lambda msg: print(msg, file=sys.stderr))
    if PartialState().is_main_process:  # under `accelerate launch`, one summary is enough
        print(result_text(result, cfg))
    return 0


def cmd_eval(cfg: EvalConfig) -> int:
    from rewardkit.evaluation.evaluate import run_eval

    print(run_eval(cfg))
    return 0


def cmd_score(cfg: ScoreConfig) -> int:
    from rewardkit.evaluation.scoring import score_file

    records = score_file(cfg)
    if cfg.output:
        print(f"scored {records} records -> {cfg.output}", file=sys.stderr)
    return 0


def cmd_export(cfg: ExportConfig) -> int:
    from rewardkit.training.export import export

    print(f"exported {cfg.source} -> {export(cfg.source, cfg.output, merge=cfg.merge, overwrite=cfg.overwrite)}")
    return 0


def cmd_serve(cfg: ServeConfig) -> int:
    from rewardkit.serving.app import serve

    return serve(cfg)


def cmd_data_check(cfg: DataCheckConfig) -> int:
    from rewardkit.data.check import check_data

    report, show = check_data(cfg)
    print(json.dumps(report)) if cfg.json else show(report)
    return 2 if report["invalid"] and cfg.strict else 0


def cmd_data_convert(cfg: DataConvertConfig) -> int:
    from rewardkit.data.convert import convert_data

    done = convert_data(cfg)
    print("\n".join(done.messages + [done.summary(cfg.output)]), file=sys.stderr)
    return 0


# --------------------------------------------------------------------------------------- parser

# subcommand -> (config, function, one-line help, description)
Command = tuple[type, Callable[[Any], int], str, str]
COMMANDS: dict[str, Command] = {
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
DATA_COMMANDS: dict[str, Command] = {
    "check": (DataCheckConfig, cmd_data_check, "counts, lengths, duplicates, invalid records",
              "Report counts, length statistics, duplicates, how often the chosen response is longer, pairs per "
              "prompt and invalid records."),
    "convert": (DataConvertConfig, cmd_data_convert, "write any preference input as explicit pairs/rankings JSONL",
                "Convert a rating table, rankings, votes or any pair shape into explicit JSONL: {prompt, chosen, "
                "rejected[, margin]} pairs and {prompt, responses, scores} or {prompt, ranking} rankings. Prompts "
                "and records that give no preference are reported on stderr."),
}


def _add_commands(sub: Any, table: dict[str, Command], prefix: str) -> None:
    for name, (cls, func, short, description) in table.items():
        p = sub.add_parser(name, help=short, description=description, usage=f"{prefix} {name} [options]"
                           + "".join(f" {f.metadata.get('metavar')}" for f in dataclasses.fields(cls)
                                     if f.metadata.get("positional")) + f"  (see {prefix} {name} --help)")
        if cls is TrainConfig:
            p.add_argument("--config", metavar="FILE", help="YAML file of options (flags override it)")
        add_config_flags(p, cls)
        p.set_defaults(func=func, cls=cls)


def build_parser() -> Parser:
    from rewardkit.version import __version__

    parser = Parser(prog="rewardkit", description="Train, evaluate and serve reward models for RLHF.")
    parser.add_argument("--version", action="version", version=f"rewardkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    _add_commands(sub, COMMANDS, "rewardkit")
    data = sub.add_parser("data", help="inspect and convert preference data", description="Inspect preference data.")
    _add_commands(data.add_subparsers(dest="data_command", metavar="ACTION", parser_class=Parser), DATA_COMMANDS,
                  "rewardkit data")
    return parser


def _subparser(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The deepest (sub)command parser that ``argv`` names, for errors about its flags."""
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for i, word in enumerate(argv):
        for action in actions:
            if word in action.choices:
                return _subparser(action.choices[word], argv[i + 1:])
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    argv = side_by_side_argv(_subparser(parser, argv[:1]), argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        target = _subparser(parser, argv)
        target.error(target.suggest(unknown) if isinstance(target, Parser) else f"unrecognized arguments: {unknown}")
    if not getattr(args, "func", None):
        _subparser(parser, argv).print_help()
        return 2
    try:
        quiet_libraries()
        return int(args.func(config_of(args.cls, args, getattr(args, "config", None))) or 0)
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
