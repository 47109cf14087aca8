"""``--model FILE.gguf``: what goes wrong is an exit-2 error naming ``--model``; before any output is written.

A real GGUF file is trained on in tests/test_real_model.py (SmolLM2-135M-Instruct); here only the
failures, which need no model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import pairs_records, write_jsonl

from rewardkit import RewardModel
from rewardkit.cli import main
from rewardkit.errors import UsageError


def test_a_missing_gguf_file_names_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs_records(8))
    out = tmp_path / "out"
    assert main(["train", "--model", str(tmp_path / "nope.gguf"), "--train-data", str(data),
                 "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--model: no such file" in err and "nope.gguf" in err and "Traceback" not in err
    assert not out.exists()


def test_an_unreadable_gguf_file_names_the_flag_and_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("gguf")
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs_records(8))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier work")
    assert main(["train", "--model", str(bad), "--train-data", str(data), "--output-dir", str(out),
                 "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert f"--model: cannot read GGUF file {bad}" in err and "Traceback" not in err
    assert (out / "keep.txt").read_text() == "earlier work"


def test_reward_model_refuses_a_gguf_language_model(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a reward model.*RewardModel.generative"):
        RewardModel.from_pretrained(tmp_path / "lm.gguf")
