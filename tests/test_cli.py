"""The command line: --help of every subcommand, exit codes, clean errors, one real run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import pairs_records, write_jsonl

from rewardkit.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "rewardkit", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)


@pytest.mark.parametrize("argv", [[], ["train"], ["eval"], ["score"], ["data"], ["data", "check"]])
def test_help_of_every_subcommand(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: rewardkit")
    if argv == ["train"]:
        for f in ("--train-data", "--eval-split", "--max-length", "--center-coef", "--skip-invalid", "--precision"):
            assert f in out


def test_unknown_flag_is_a_usage_error(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        main(["train", "--no-such-flag"])
    assert e.value.code == 2


def test_bad_flag_value_names_the_flag(capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--lr", "fast"]) == 2
    assert "--lr expects float" in capsys.readouterr().err


def test_yaml_config_and_flag_precedence(tmp_path: Path) -> None:
    from rewardkit.cli import build_parser
    from rewardkit.flags import config_of as _config
    from rewardkit.config import TrainConfig

    (tmp_path / "c.yaml").write_text("lr: 0.001\nbatch-size: 8\nmax_length: 128\n")
    args = build_parser().parse_args(["train", "--config", str(tmp_path / "c.yaml"), "--batch-size", "4"])
    cfg = _config(TrainConfig, args, args.config)
    assert (cfg.lr, cfg.batch_size, cfg.max_length, cfg.epochs) == (0.001, 4, 128, 1.0)


def test_yaml_unknown_key_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "c.yaml").write_text("learning_rate: 0.1\n")
    assert main(["train", "--config", str(tmp_path / "c.yaml")]) == 2
    assert "unknown option 'learning_rate'" in capsys.readouterr().err


BAD_FILES = {
    "badjson.jsonl": ('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": oops}\n', ":2: not valid JSON"),
    "norejected.jsonl": ('{"prompt": "p", "chosen": "a"}\n', ":1: missing field 'rejected'"),
    "emptychosen.jsonl": ('{"prompt": "p", "chosen": "  ", "rejected": "b"}\n', ":1: field 'chosen' is empty"),
    "same.jsonl": ('{"prompt": "p", "chosen": "x", "rejected": "x"}\n', ":1: chosen and rejected are identical"),
    "columns.csv": ("text,label\nhello,1\n", ":1: CSV columns"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_malformed_files_exit_2_with_file_line_reason(name: str, tmp_path: Path, bert_dir: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    text, expected = BAD_FILES[name]
    path = tmp_path / name
    path.write_text(text)
    code = main(["train", "--model", str(bert_dir), "--train-data", str(path), "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and f"{path}{expected}" in err and "Traceback" not in err


def test_malformed_file_in_a_real_process(tmp_path: Path, bert_dir: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": oops}\n')
    res = run_cli("eval", str(bert_dir), str(path))
    assert res.returncode == 2, res.stderr
    assert f"{path}:2: not valid JSON" in res.stderr and "Traceback" not in res.stderr


def test_missing_model_is_exit_2(tmp_path: Path, pairs_file: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["train", "--model", str(tmp_path / "nope"), "--train-data", str(pairs_file),
                 "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "--model" in err and "Traceback" not in err


def test_end_to_end_train_eval_score(tmp_path: Path, bert_dir: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", pairs_records(24))
    out = tmp_path / "out"
    res = run_cli("train", "--model", str(bert_dir), "--train-data", str(data), "--output-dir", str(out),
                  "--max-length", "64", "--batch-size", "4", "--lr", "1e-3", "--epochs", "2", "--eval-split", "0.25",
                  "--precision", "fp32")
    assert res.returncode == 0, res.stderr
    assert "accuracy" in res.stdout and f"model saved to {out}" in res.stdout
    assert "truncated to --max-length 64" in res.stderr

    res = run_cli("eval", str(out), str(data), "--json")
    assert res.returncode == 0, res.stderr
    metrics = json.loads(res.stdout)  # exactly one JSON object on stdout
    assert metrics["pairs"] == 24 and 0.0 <= metrics["accuracy"] <= 1.0
    for key in ("mean_margin", "ece", "brier", "chosen_longer_rate", "prefers_longer_rate"):
        assert key in metrics

    scored = tmp_path / "scored.jsonl"
    res = run_cli("score", str(out), str(data), "-o", str(scored))
    assert res.returncode == 0, res.stderr
    rows = [json.loads(x) for x in scored.read_text().splitlines()]
    assert len(rows) == 24 and rows[0]["prompt"] == pairs_records(24)[0]["prompt"]
    acc = sum(r["chosen_reward"] > r["rejected_reward"] for r in rows) / len(rows)
    assert abs(acc - metrics["accuracy"]) < 1e-9


def test_a_bad_choice_is_one_line_under_the_short_usage(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        main(["train", "--loss", "foo"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["usage: rewardkit train [options]  (see rewardkit train --help)",
                   "rewardkit train: error: argument --loss: invalid choice: 'foo' (choose from 'bt', 'pl')"]


def test_a_misspelled_flag_names_the_closest_one(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        main(["train", "--batch-szie", "8"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "rewardkit train: error: unrecognized arguments: --batch-szie (did you mean --batch-size?)" in err
    assert len(err.strip().splitlines()) == 2 and "usage: rewardkit train [options]" in err
    with pytest.raises(SystemExit):
        main(["data", "convert", "x.csv", "-o", "y.jsonl", "--to-format", "pairs"])
    assert "rewardkit data convert: error: unrecognized arguments: --to-format (did you mean" in capsys.readouterr().err


def test_help_shows_defaults_as_they_are_typed(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in out
    assert "(default: ' Yes, No')" in out  # the leading space is part of the token
    assert "(default: '\\n\\nQuestion: Is the response helpful and harmless? Answer:')" in out
    assert "(default: 16)" in out.split("--batch-size")[1][:200]


def test_data_convert_takes_format_like_every_command_and_creates_folders(tmp_path: Path) -> None:
    rows = [{"prompt": "p1", "response": "good", "score": 5}, {"prompt": "p1", "response": "bad", "score": 1}]
    src = write_jsonl(tmp_path / "ratings.jsonl", rows)
    out = tmp_path / "new" / "folder" / "pairs.jsonl"
    assert main(["data", "convert", str(src), "-o", str(out), "--format", "ratings"]) == 0
    assert json.loads(out.read_text()) == {"prompt": "p1", "chosen": "good", "rejected": "bad", "margin": 4.0}
    old = tmp_path / "old.jsonl"  # the earlier spelling still works
    assert main(["data", "convert", str(src), "-o", str(old), "--from", "ratings"]) == 0
    assert old.read_text() == out.read_text()
