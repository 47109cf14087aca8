"""``--objective prm`` end to end on the synthetic chain task (scripts/synthetic_prm.py, tiny decoder):
training, held-out step metrics, the exports (token classification; the causal LM for the token readout;
LoRA merged), the card's snippet, `RewardModel.score_steps`, `rewardkit score`, the server and the TRL
adapter, bad flags, and (slow) two processes killed and resumed."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from card.test_card import card_parts

from rewardkit import RewardModel, TrainConfig, train
from rewardkit.cli import main
from rewardkit.data.steps import aggregate, load_step_solutions

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import synthetic_prm as task  # noqa: E402

PROMPT, STEPS = "start 3 steps 3", ["3 > 9", "9 > 6", "6 > 1"]  # RULE: 3 -> 9 -> 6 -> 4; the last step is wrong


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("prm")
    rng = random.Random(0)
    task.write_split(d / "train.jsonl", [(rng.randrange(10), rng.randint(*task.TRAIN_STEPS)) for _ in range(800)], 1, rng)
    task.write_split(d / "test.jsonl", [(s, n) for s in range(10) for n in (4, 5)], 3, random.Random(1))
    return {"base": task.write_base(d, 0), "train": d / "train.jsonl", "test": d / "test.jsonl", "root": d}


def _cfg(files: dict[str, Path], out: Path, **kw: Any) -> TrainConfig:
    base = dict(model=str(files["base"]), train_data=str(files["train"]), eval_data=str(files["test"]),
                output_dir=str(out), objective="prm", step_separator=";", batch_size=16, lr=3e-3, epochs=2,
                max_length=64, precision="fp32", seed=0, logging_steps=5)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def head_run(files: dict[str, Path]) -> Path:
    out = files["root"] / "head"
    train(_cfg(files, out, epochs=12), log=lambda _m: None)  # long enough to learn the rule, not just positions
    return out


def snippet_steps(model_dir: Path, cases: list[tuple[str, list[str]]]) -> list[list[float]]:
    """The card's plain-transformers snippet, run in a fresh process on (prompt, steps) cases."""
    _, body = card_parts(model_dir)
    code = re.search(r"```python\n(.*?)```", body.split("## Score it with plain transformers", 1)[1], re.S).group(1)
    code = re.sub(r"^MODEL = .*$", f"MODEL = {str(model_dir)!r}", code, count=1, flags=re.M)
    code += f"\nimport json\nprint('STEPS', json.dumps([step_rewards(p, s) for p, s in {cases!r}]))\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads([x for x in proc.stdout.splitlines() if x.startswith("STEPS ")][-1].split(" ", 1)[1])


def test_prm_learns_the_steps_and_reports_them(head_run: Path) -> None:
    summary = json.loads((head_run / "eval.json").read_text())
    m = summary["eval"]
    for key in ("step_accuracy", "error_f1", "majority_error_f1", "first_error_f1", "first_error_accuracy_correct"):
        assert key in m
    assert m["steps"] > 0 and m["step_accuracy"] > m["majority_step_accuracy"]  # the rule is being learnt
    assert "best_of_n_min" in m["best_of_n"] and "best_of_n_majority_vote" in m["best_of_n"]
    assert (head_run / "report" / "steps.png").is_file()
    assert summary["train_solutions"] == 800 and summary["solutions_seen"] == 9600


def test_the_export_is_token_classification_and_the_snippet_reproduces_score_steps(head_run: Path) -> None:
    from transformers import AutoModelForTokenClassification

    config = json.loads((head_run / "config.json").read_text())
    assert config["architectures"] == ["LlamaForTokenClassification"]
    assert config["rewardkit"]["prm"]["separator"] == ";"
    rm = RewardModel.from_pretrained(head_run, device="cpu")
    want = rm.score_steps(PROMPT, STEPS)
    model, info = AutoModelForTokenClassification.from_pretrained(head_run, output_loading_info=True)
    assert not info["missing_keys"]
    e = rm.encoder.encode_steps(PROMPT, STEPS)
    with torch.no_grad():
        logits = model.eval()(input_ids=torch.tensor(e.input_ids)).logits[0, :, 0]
    assert [torch.sigmoid(logits[i]).item() for i in e.positions] == pytest.approx(want, abs=1e-5)
    long_case = ("start 1 steps 30", [f"{i} > {i}" for i in range(10)] * 3)  # truncated: oldest steps NaN
    got = snippet_steps(head_run, [(PROMPT, STEPS), long_case])
    assert got[0] == pytest.approx(want, abs=1e-5)
    long_want = rm.score_steps(*long_case)
    assert sum(x != x for x in long_want) > 0 and [x for x in got[1] if x == x] == pytest.approx(
        [x for x in long_want if x == x], abs=1e-5)
    assert rm.score(PROMPT, " ; ".join(STEPS) + " ;") == pytest.approx(aggregate(want, "min"), abs=1e-6)


def test_score_server_and_trl_adapter_return_step_rewards_and_their_aggregate(head_run: Path, tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture) -> None:
    from serve_util import Server

    from rewardkit.integrations.trl import trl_reward_func

    rm = RewardModel.from_pretrained(head_run, device="cpu")
    want = rm.score_steps(PROMPT, STEPS)
    response = " ; ".join(STEPS) + " ;"
    requests = tmp_path / "requests.jsonl"
    requests.write_text(json.dumps({"prompt": PROMPT, "response": response}) + "\n")
    assert main(["score", str(head_run), str(requests), "-o", str(tmp_path / "scored.jsonl")]) == 0
    scored = json.loads((tmp_path / "scored.jsonl").read_text())
    assert scored["step_rewards"] == pytest.approx(want, abs=1e-5)
    assert scored["reward"] == pytest.approx(min(want), abs=1e-5)
    assert trl_reward_func(rm)(prompts=[PROMPT], completions=[response]) == pytest.approx([min(want)], abs=1e-5)
    server = Server(head_run, "--prm-aggregate", "prod", log=tmp_path / "serve.log")
    try:
        body = server.post("/score", {"prompt": PROMPT, "response": response}).json()
        reward = server.post("/get_reward", {"query": [PROMPT + response], "prompts": [PROMPT]}).json()
    finally:
        server.stop()
    assert body["step_rewards"][0] == pytest.approx(want, abs=1e-5) and body["aggregate"] == "prod"
    prod = want[0] * want[1] * want[2]
    assert body["rewards"] == pytest.approx([prod], abs=1e-5) and reward["rewards"] == pytest.approx([prod], abs=1e-5)


def test_token_readout_keeps_the_causal_lm(files: dict[str, Path]) -> None:
    from transformers import AutoModelForCausalLM

    out = files["root"] / "tokens"
    train(_cfg(files, out, prm_readout="tokens", prm_tokens="1,0", epochs=1), log=lambda _m: None)
    assert json.loads((out / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    AutoModelForCausalLM.from_pretrained(out)
    rm = RewardModel.from_pretrained(out, device="cpu")
    assert snippet_steps(out, [(PROMPT, STEPS)])[0] == pytest.approx(rm.score_steps(PROMPT, STEPS), abs=1e-5)


def test_lora_with_merge_exports_token_classification(files: dict[str, Path]) -> None:
    out = files["root"] / "lora"
    train(_cfg(files, out, lora_r=4, merge=True, epochs=1), log=lambda _m: None)
    adapter = RewardModel.from_pretrained(out, device="cpu")
    merged = RewardModel.from_pretrained(out / "merged", device="cpu")
    assert json.loads((out / "merged" / "config.json").read_text())["architectures"] == ["LlamaForTokenClassification"]
    assert merged.score_steps(PROMPT, STEPS) == pytest.approx(adapter.score_steps(PROMPT, STEPS), abs=1e-5)


@pytest.mark.parametrize("flags,message", [
    (["--step-separator", "> ;"], "--step-separator '> ;' is 2 tokens"),
    (["--prm-readout", "tokens", "--prm-tokens", "1 2,0"], "--prm-tokens: '1 2' is 2 tokens"),
])
def test_bad_flags_exit_2_naming_them(files: dict[str, Path], tmp_path: Path, flags: list[str], message: str,
                                      capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert main(["train", "--objective", "prm", "--model", str(files["base"]), "--train-data", str(files["train"]),
                 "--output-dir", str(out), "--step-separator", ";", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not out.exists()


def test_an_encoder_backbone_is_refused(files: dict[str, Path], bert_dir: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert main(["train", "--objective", "prm", "--model", str(bert_dir), "--train-data", str(files["train"]),
                 "--output-dir", str(out)]) == 2
    assert "--objective prm needs a decoder" in capsys.readouterr().err and not out.exists()


def test_held_out_steps_are_the_file_s(files: dict[str, Path]) -> None:
    solutions = load_step_solutions(str(files["test"])).solutions
    assert len(solutions) == 60 and {len(s.steps) for s in solutions} == {4, 5}


@pytest.mark.slow
def test_two_processes_killed_and_resumed_match_one_process(files: dict[str, Path], tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from test_multiprocess import _kill_after_first_checkpoint_then_resume, _same_training_curve

    common = dict(model=str(files["base"]), objective="prm", step_separator=";", train_data=str(files["train"]),
                  eval_data=str(files["test"]), batch_size=8, lr=3e-3, max_length=64, precision="fp32",
                  logging_steps=1, seed=4, save_steps=2, save_total_limit=0, epochs=1)
    single = train(TrainConfig(output_dir=str(tmp_path / "one"), grad_accum=2, **common), log=lambda _m: None)
    out = tmp_path / "two"
    _kill_after_first_checkpoint_then_resume(out, common)
    _same_training_curve(tmp_path / "one", out, single.steps, "solutions_seen")
    a, b = load_file(str(tmp_path / "one" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4
