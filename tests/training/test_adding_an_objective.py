"""ARCHITECTURE.md's "Adding an objective" is a complete recipe: its code block, saved as a module and
registered with one line, trains through the CLI, resumes, exports a model that scores, and needs
nothing else; the contract refuses an objective that leaves a method out."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from conftest import pairs_records, write_jsonl

from rewardkit import RewardModel, TrainConfig, train
from rewardkit import config as config_module
from rewardkit.cli import main

ARCHITECTURE = Path(__file__).resolve().parents[2] / "ARCHITECTURE.md"


def recipe() -> str:
    section = ARCHITECTURE.read_text().split("## Adding an objective", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def hinge_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The recipe as the module hinge_toy, registered as --objective hinge (one line in the registry)."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "hinge_toy.py").write_text(recipe())
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    monkeypatch.setitem(config_module.OBJECTIVES, "hinge", "hinge_toy:HingeObjective")
    yield "hinge_toy"
    sys.modules.pop("hinge_toy", None)


def test_the_recipe_trains_resumes_and_saves_a_model_that_scores(hinge_module: str, llama_dir: Path,
                                                                 tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs_records(32))
    out = tmp_path / "hinge"
    args = ["train", "--objective", "hinge", "--model", str(llama_dir), "--train-data", str(data), "--output-dir",
            str(out), "--max-length", "64", "--batch-size", "4", "--lr", "1e-3", "--eval-split", "0.25",
            "--precision", "fp32", "--logging-steps", "1", "--save-steps", "2", "--save-total-limit", "2"]
    assert main(args) == 0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    train_rows = [x for x in lines if x["split"] == "train"]
    assert train_rows[-1]["loss"] < train_rows[0]["loss"] and "accuracy" in train_rows[0]
    summary = json.loads((out / "eval.json").read_text())
    assert summary["eval"]["accuracy"] > 0.5 and summary["pairs_seen"] == 24
    rm = RewardModel.from_pretrained(out, device="cpu")
    assert rm.meta["loss"] == "hinge"
    good = rm.score("Question 99: how do I do task number 99?", "Happy to help. Step one is to read the manual.")
    bad = rm.score("Question 99: how do I do task number 99?", "No. Figure it out yourself, not my problem.")
    assert good > bad
    # the loop's resume works for it unchanged: from the last checkpoint to the same end
    (out / "eval.json").unlink()
    first_weights = (out / "model.safetensors").read_bytes()
    assert main(args + ["--resume"]) == 0
    assert (out / "model.safetensors").read_bytes() == first_weights
    assert json.loads((out / "eval.json").read_text())["resumed_from_step"] > 0


def test_an_objective_is_also_given_directly(hinge_module: str, llama_dir: Path, tmp_path: Path) -> None:
    import importlib

    hinge = importlib.import_module(hinge_module)
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs_records(16))
    cfg = TrainConfig(model=str(llama_dir), train_data=str(data), output_dir=str(tmp_path / "o"), max_length=64,
                      batch_size=4, precision="fp32", eval_split=0.25)
    result = train(cfg, log=lambda _m: None, objective=hinge.HingeObjective(cfg))
    assert result.pairs_seen == 12 and result.eval_metrics["pairs"] == 4


def test_the_contract_refuses_an_objective_without_its_methods() -> None:
    from rewardkit.training.objectives.base import Objective
    from rewardkit.training.objectives.parts import ComparisonData, ScalarHead

    class Incomplete(Objective):  # no evaluate, no describe: refused when built, not halfway through a run
        def collate(self, *a):  # type: ignore[no-untyped-def]
            return None

        def counts(self, batch):  # type: ignore[no-untyped-def]
            return {}

        def loss(self, outputs, batch):  # type: ignore[no-untyped-def]
            return {}

    cfg = TrainConfig()
    with pytest.raises(TypeError, match="abstract methods describe, evaluate"):
        Incomplete(cfg, ComparisonData(cfg), ScalarHead(cfg))


def test_every_registered_objective_builds() -> None:
    from rewardkit.training.objectives import Objective, objective_for

    for name in config_module.OBJECTIVES:
        assert isinstance(objective_for(TrainConfig(objective=name, hi=3.0)), Objective), name
