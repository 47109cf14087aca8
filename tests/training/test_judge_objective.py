"""``--objective judge``: a pairwise generative judge on the synthetic chain task (scripts/synthetic_judge.py),
read in both orders; `compare`, `rank` (Bradley-Terry over every verdict), the card's snippet, the server's
group scores, the TRL adapter's group-relative rewards, LoRA with --merge, bad flags."""

from __future__ import annotations

import asyncio
import json
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from card.test_card import card_parts

from rewardkit import RewardModel, TrainConfig, train
from rewardkit.cli import main
from rewardkit.model.judge import bradley_terry_scores, both_orders

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import synthetic_judge as task  # noqa: E402

PROMPT = "start 3 steps 3"
GOOD, BAD = "3 > 9 ; 9 > 6 ; 6 > 4 ;", "3 > 9 ; 9 > 2 ; 2 > 5 ;"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("judge")
    rng = random.Random(0)
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in task.pairs(300, rng)))
    (d / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in task.pairs(40, rng)))
    return {"base": task.base(d, 0), "train": d / "train.jsonl", "test": d / "test.jsonl", "root": d}


def _cfg(files: dict[str, Path], out: Path, **kw: Any) -> TrainConfig:
    base = dict(model=str(files["base"]), train_data=str(files["train"]), eval_data=str(files["test"]),
                output_dir=str(out), objective="judge", judge_template=task.TEMPLATE, judge_tokens=task.TOKENS,
                batch_size=16, lr=2e-3, epochs=2, max_length=96, precision="fp32", seed=0, logging_steps=5)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def judge_dir(files: dict[str, Path]) -> Path:
    out = files["root"] / "judge"
    train(_cfg(files, out), log=lambda _m: None)
    return out


def test_bradley_terry_and_both_orders_by_hand() -> None:
    p, agree = both_orders(2.0, -2.0)  # A first: A wins; B first: A (now second) wins too
    assert agree and p == pytest.approx(1 / (1 + 2.718281828459045 ** -2.0))
    assert both_orders(1.0, 1.0) == (pytest.approx(0.5), False)  # "always A": no preference, inconsistent
    scores = bradley_terry_scores(3, [(0, 1, 0.9), (1, 2, 0.9), (0, 2, 0.9)])
    assert scores[0] > scores[1] > scores[2] and sum(scores) == pytest.approx(0.0, abs=1e-9)
    assert bradley_terry_scores(2, [(0, 1, 0.5)]) == pytest.approx([0.0, 0.0], abs=1e-9)


def test_the_judge_trains_in_both_orders_and_reports_consistency(judge_dir: Path) -> None:
    summary = json.loads((judge_dir / "eval.json").read_text())
    m = summary["eval"]
    assert m["pairs"] == 40 and summary["train_pairs"] == 300 and summary["judgements_seen"] == 1200
    for key in ("accuracy", "accuracy_better_as_a", "accuracy_better_as_b", "position_consistency"):
        assert 0.0 <= m[key] <= 1.0
    config = json.loads((judge_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["rewardkit"]["objective"] == "judge"


def test_compare_rank_and_the_card_snippet(judge_dir: Path) -> None:
    rm = RewardModel.from_pretrained(judge_dir, device="cpu")
    p, agree = rm.judge_pair(PROMPT, GOOD, BAD)
    assert rm.compare(PROMPT, GOOD, BAD) == pytest.approx(p)
    assert rm.compare(PROMPT, BAD, GOOD) == pytest.approx(1 - p, abs=1e-6)  # symmetric by construction
    ranks = rm.rank(PROMPT, [GOOD, BAD, "3 > 1 ; 1 > 7 ; 7 > 3 ;"])
    assert len(ranks) == 3 and sum(ranks) == pytest.approx(0.0, abs=1e-6)
    assert rm.score_batch([PROMPT] * 3, [GOOD, BAD, "3 > 1 ; 1 > 7 ; 7 > 3 ;"]) == pytest.approx(ranks, abs=1e-6)
    _, body = card_parts(judge_dir)
    code = re.search(r"```python\n(.*?)```", body.split("## Score it with plain transformers", 1)[1], re.S).group(1)
    code = re.sub(r"^MODEL = .*$", f"MODEL = {str(judge_dir)!r}", code, count=1, flags=re.M)
    code += f"\nprint('P', compare({PROMPT!r}, {GOOD!r}, {BAD!r}))\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert float([x for x in proc.stdout.splitlines() if x.startswith("P ")][-1].split()[1]) == pytest.approx(p, abs=1e-5)


def test_server_and_trl_give_group_relative_rewards(judge_dir: Path, tmp_path: Path) -> None:
    from serve_util import Server

    from rewardkit.integrations.trl import trl_reward_func

    rm = RewardModel.from_pretrained(judge_dir, device="cpu")
    group = [GOOD, BAD, "3 > 1 ; 1 > 7 ; 7 > 3 ;"]
    want = rm.rank(PROMPT, group)
    other = rm.rank("start 5 steps 3", [GOOD, BAD])
    trl = trl_reward_func(rm)(prompts=[PROMPT, "start 5 steps 3", PROMPT, PROMPT, "start 5 steps 3"],
                              completions=[GOOD, GOOD, BAD, group[2], BAD])
    assert trl == pytest.approx([want[0], other[0], want[1], want[2], other[1]], abs=1e-5)
    server = Server(judge_dir, log=tmp_path / "serve.log")
    try:
        body = server.post("/score", [{"prompt": PROMPT, "response": r} for r in group]).json()
        lone = server.post("/score", [{"prompt": PROMPT, "response": GOOD}, {"prompt": PROMPT, "response": BAD},
                                      {"prompt": "start 5 steps 3", "response": GOOD}])
        again = server.post("/score", [{"prompt": PROMPT, "response": r} for r in group]).json()
    finally:
        server.stop()
    assert body["rewards"] == pytest.approx(want, abs=1e-5)
    assert lone.status_code == 422 and "the only response to its prompt" in lone.text and "[2]" in lone.text
    assert again["rewards"] == body["rewards"]  # and it keeps serving


def test_a_lone_response_is_refused_not_scored_0(judge_dir: Path) -> None:
    from rewardkit.errors import UsageError
    from rewardkit.integrations.verl import compute_score, compute_score_batch, compute_score_sync

    rm = RewardModel.from_pretrained(judge_dir, device="cpu")
    with pytest.raises(UsageError, match="item 0: a pairwise judge"):
        rm.score(PROMPT, GOOD)
    with pytest.raises(UsageError, match="alone"):
        compute_score_sync(solution_str=GOOD, extra_info={"prompt": PROMPT}, model_dir=str(judge_dir))
    with pytest.raises(UsageError, match="compute_score_batch"):
        asyncio.run(compute_score(solution_str=GOOD, extra_info={"prompt": PROMPT}, model_dir=str(judge_dir)))
    got = compute_score_batch(solution_strs=[GOOD, BAD], extra_infos=[{"prompt": PROMPT}] * 2, model_dir=str(judge_dir))
    assert got == pytest.approx(rm.rank(PROMPT, [GOOD, BAD]), abs=1e-6)


def test_lora_with_merge(files: dict[str, Path]) -> None:
    out = files["root"] / "lora"
    train(_cfg(files, out, lora_r=4, merge=True, epochs=1), log=lambda _m: None)
    adapter = RewardModel.from_pretrained(out, device="cpu")
    merged = RewardModel.from_pretrained(out / "merged", device="cpu")
    assert merged.judge_pair(PROMPT, GOOD, BAD)[0] == pytest.approx(adapter.judge_pair(PROMPT, GOOD, BAD)[0], abs=1e-5)


def test_a_verdict_that_is_not_one_token_exits_2(files: dict[str, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert main(["train", "--objective", "judge", "--model", str(files["base"]), "--train-data", str(files["train"]),
                 "--output-dir", str(out), "--judge-template", task.TEMPLATE, "--judge-tokens", " A B, B"]) == 2
    err = capsys.readouterr().err
    assert "--judge-tokens: ' A B' is 2 tokens" in err and not out.exists()


@pytest.mark.slow
def test_two_processes_killed_and_resumed_match_one_process(files: dict[str, Path], tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from test_multiprocess import _kill_after_first_checkpoint_then_resume, _same_training_curve

    common = dict(model=str(files["base"]), objective="judge", judge_template=task.TEMPLATE, judge_tokens=task.TOKENS,
                  train_data=str(files["train"]), eval_data=str(files["test"]), batch_size=8, lr=2e-3, max_length=96,
                  precision="fp32", logging_steps=1, seed=4, save_steps=2, save_total_limit=0, epochs=3)
    single = train(TrainConfig(output_dir=str(tmp_path / "one"), grad_accum=2, **common), log=lambda _m: None)
    out = tmp_path / "two"
    _kill_after_first_checkpoint_then_resume(out, common)
    _same_training_curve(tmp_path / "one", out, single.steps, "judgements_seen")
    a, b = load_file(str(tmp_path / "one" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4
