"""``--objective gating``: a gate over a frozen regression model's attributes (scripts/synthetic_gating.py):
only the gate trains, its weights are per prompt and sum to 1, the export carries it, the card's snippet and
the server reproduce `RewardModel.score`, and a model without attributes is refused naming --model."""

from __future__ import annotations

import csv
import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from card.test_card import card_parts

from rewardkit import RewardModel, TrainConfig, train
from rewardkit.cli import main

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import synthetic_gating as task  # noqa: E402

CASES = [("task quality number 3", "great great the answer is here"),
         ("task brevity number 3", "short short short the answer is here great")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("gating")
    rng = random.Random(0)
    with open(d / "ratings.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["prompt", "response", "quality", "brevity"])
        writer.writeheader()
        writer.writerows(task.rating_rows(400, rng))
    for name, n in (("train", 200), ("test", 40)):
        (d / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in task.pairs(n, rng)))
    common = dict(max_length=48, precision="fp32", seed=0, logging_steps=5, batch_size=32)
    train(TrainConfig(model=str(task.base(d, 0)), train_data=str(d / "ratings.csv"), output_dir=str(d / "regression"),
                      objective="regression", score_column="quality,brevity", epochs=2, lr=2e-3, eval_split=0.1,
                      **common), log=lambda _m: None)
    train(TrainConfig(model=str(d / "regression"), train_data=str(d / "train.jsonl"), eval_data=str(d / "test.jsonl"),
                      output_dir=str(d / "gated"), objective="gating", epochs=4, lr=5e-3, **common), log=lambda _m: None)
    return {"root": d, "regression": d / "regression", "gated": d / "gated"}


def test_only_the_gate_trains_and_its_weights_are_reported(runs: dict[str, Path]) -> None:
    from safetensors.torch import load_file

    before, after = (load_file(str(runs[k] / "model.safetensors")) for k in ("regression", "gated"))
    assert before.keys() == after.keys() and all((before[k] == after[k]).all() for k in before)  # frozen
    assert (runs["gated"] / "gating.safetensors").is_file()
    m = json.loads((runs["gated"] / "eval.json").read_text())["eval"]
    assert set(m["gate_weights"]) == {"all", "quality", "brevity"}
    for weights in m["gate_weights"].values():
        assert set(weights) == {"quality", "brevity"} and sum(weights.values()) == pytest.approx(1.0, abs=1e-6)
    # the gate reads the prompt: quality prompts weight quality more than brevity prompts do
    assert m["gate_weights"]["quality"]["quality"] > m["gate_weights"]["brevity"]["quality"] + 0.2
    assert m["accuracy"] > 0.8  # no fixed weighting passes 0.6 on these pairs (the script's baseline)
    rm = RewardModel.from_pretrained(runs["gated"], device="cpu")
    w = rm.gate_weights([p for p, _ in CASES], [r for _, r in CASES])
    assert all(sum(x.values()) == pytest.approx(1.0, abs=1e-6) for x in w)
    assert rm.score_attributes([CASES[0][0]], [CASES[0][1]])[0].keys() == {"quality", "brevity"}


def test_card_snippet_and_server_reproduce_the_gated_reward(runs: dict[str, Path], tmp_path: Path) -> None:
    from serve_util import Server

    rm = RewardModel.from_pretrained(runs["gated"], device="cpu")
    want = [rm.score(p, r) for p, r in CASES]
    _, body = card_parts(runs["gated"])
    code = re.search(r"```python\n(.*?)```", body.split("## Score it with plain transformers", 1)[1], re.S).group(1)
    code = re.sub(r"^MODEL = .*$", f"MODEL = {str(runs['gated'])!r}", code, count=1, flags=re.M)
    code += f"\nimport json\nprint('R', json.dumps([reward(p, r) for p, r in {CASES!r}]))\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads([x for x in proc.stdout.splitlines() if x.startswith("R ")][-1].split(" ", 1)[1])
    assert got == pytest.approx(want, abs=1e-5)
    server = Server(runs["gated"], log=tmp_path / "serve.log")
    try:
        body = server.post("/score", [{"prompt": p, "response": r} for p, r in CASES]).json()
    finally:
        server.stop()
    assert body["rewards"] == pytest.approx(want, abs=1e-5)


def test_eval_reports_the_gate_weights_per_subset(runs: dict[str, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    test = runs["root"] / "test.jsonl"
    assert main(["eval", str(runs["gated"]), str(test), "--json", "--report", str(tmp_path / "report")]) == 0
    m = json.loads(capsys.readouterr().out)
    trained = json.loads((runs["gated"] / "eval.json").read_text())["eval"]
    assert m["accuracy"] == pytest.approx(trained["accuracy"])
    for subset in ("all", "quality", "brevity"):
        assert m["gate_weights"][subset] == pytest.approx(trained["gate_weights"][subset], abs=1e-5)
    assert (tmp_path / "report" / "gate_weights.png").stat().st_size > 1000
    assert "Gate weights (mean per subset)" in (tmp_path / "report" / "report.html").read_text()
    assert (runs["gated"] / "report" / "gate_weights.png").is_file()  # the held-out report at the end of training


@pytest.mark.slow
def test_two_processes_killed_and_resumed_match_one_process(runs: dict[str, Path], tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from test_multiprocess import _kill_after_first_checkpoint_then_resume, _same_training_curve

    common = dict(model=str(runs["regression"]), objective="gating", train_data=str(runs["root"] / "train.jsonl"),
                  eval_data=str(runs["root"] / "test.jsonl"), batch_size=8, lr=5e-3, max_length=48, precision="fp32",
                  logging_steps=1, seed=4, save_steps=2, save_total_limit=0, epochs=1)
    single = train(TrainConfig(output_dir=str(tmp_path / "one"), grad_accum=2, **common), log=lambda _m: None)
    out = tmp_path / "two"
    _kill_after_first_checkpoint_then_resume(out, common)
    _same_training_curve(tmp_path / "one", out, single.steps, "pairs_seen")
    a, b = (load_file(str(d / "gating.safetensors")) for d in (tmp_path / "one", out))
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4


def test_a_model_without_attributes_is_refused(runs: dict[str, Path], llama_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert main(["train", "--objective", "gating", "--model", str(llama_dir), "--train-data",
                 str(runs["root"] / "train.jsonl"), "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--objective gating: --model" in err and "not a multi-attribute regression model" in err
    assert not out.exists()
