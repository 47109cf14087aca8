"""``--objective critique``: critique-out-loud on the parity task (scripts/synthetic_critique.py). The data,
the batch layout worked by hand, greedy generation batched vs alone, both stages end to end, `RewardModel`
with its critiques, the card's snippet, the server, eval's report, LoRA with --merge, export from a
checkpoint, bad inputs, and the 2-process kill/resume run."""

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

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import synthetic_critique as task  # noqa: E402

BITS = 7
PROMPT = "bits 1 0 1 1 0 0 0"  # parity 1
RIGHT, WRONG = "parity 1", "parity 0"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("critique")
    rng = random.Random(0)
    train_rows = task.pairs(48, BITS, rng, exclude={PROMPT})
    test_rows = task.pairs(16, BITS, rng, exclude={PROMPT} | {r["prompt"] for r in train_rows})
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train_rows))
    (d / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test_rows))
    return {"base": task.base(d, 0), "train": d / "train.jsonl", "test": d / "test.jsonl", "root": d}


def _cfg(files: dict[str, Path], out: Path, **kw: Any) -> TrainConfig:
    base = dict(model=str(files["base"]), train_data=str(files["train"]), eval_data=str(files["test"]),
                output_dir=str(out), objective="critique", critique_template=task.TEMPLATE,
                max_critique_tokens=BITS + 4, critique_sft_epochs=12, epochs=4, batch_size=8, lr=3e-3,
                max_length=48, precision="fp32", seed=0, logging_steps=5)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def critique_dir(files: dict[str, Path]) -> Path:
    out = files["root"] / "critique"
    train(_cfg(files, out), log=lambda _m: None)
    return out


def test_the_reference_critique_carries_the_running_parity() -> None:
    assert task.critique_of([1, 0, 1, 1, 0, 0], 1) == "1 1 0 1 1 1 so 1 right"
    assert task.critique_of([1, 0, 1, 1, 0, 0], 0) == "1 1 0 1 1 1 so 1 wrong"


def test_collate_critique_worked_example() -> None:
    from rewardkit.encoding.encoder import Encoded
    from rewardkit.model.critique import collate_critique

    # context (3 tokens) + own critique + EOS for chosen and rejected, then the two reference sequences
    item = Encoded([[5, 6, 7, 20, 1], [5, 6, 8, 21, 22, 1], [5, 6, 7, 30, 31, 1], [5, 6, 8, 32, 1]], None, 2, False)
    batch = collate_critique([item], [(3, 3)], pad_id=0)
    assert batch.input_ids.shape == (4, 6) and batch.sizes.tolist() == [2]
    assert batch.pair_better.tolist() == [0] and batch.pair_worse.tolist() == [1]
    # rewards at rows 0 and 1's last tokens; then row 2 predicts 30 31 1 at cols 2..4, row 3 predicts 32 1
    assert batch.reward_row.tolist() == [0, 1, 2, 2, 2, 3, 3]
    assert batch.reward_col.tolist() == [4, 5, 2, 3, 4, 2, 3]
    assert batch.read_ids.tolist() == [-1, -1, 30, 31, 1, 32, 1]


def test_the_net_reads_the_head_and_the_lm_where_asked(files: dict[str, Path]) -> None:
    from transformers import AutoModelForCausalLM

    from rewardkit.encoding.encoder import Encoded
    from rewardkit.model.critique import CritiqueNet, collate_critique, new_head

    model = AutoModelForCausalLM.from_pretrained(files["base"]).eval()
    net = CritiqueNet(model, new_head(64, 0), row_chunk=0).eval()
    item = Encoded([[0, 5, 6, 7, 1], [0, 5, 6, 8, 9, 1], [0, 5, 6, 7, 10, 1], [0, 5, 8, 1]], None, 2, False)
    batch = collate_critique([item], [(3, 2)], pad_id=3)
    with torch.no_grad():
        values = net(**batch.inputs())
        hidden = model.model(input_ids=torch.tensor([[0, 5, 6, 8, 9, 1]])).last_hidden_state[0]
        logits = model(input_ids=torch.tensor([[0, 5, 6, 7, 10, 1]])).logits[0].log_softmax(-1)
    assert values[1].item() == pytest.approx(net.head(hidden[-1]).item(), abs=1e-5)
    assert values[2:5].tolist() == pytest.approx([logits[2, 7].item(), logits[3, 10].item(), logits[4, 1].item()],
                                                 abs=1e-5)


def test_batched_greedy_critiques_equal_one_at_a_time(critique_dir: Path) -> None:
    from rewardkit.model.critique import CritiqueSpec, generate_critiques

    rm = RewardModel.from_pretrained(critique_dir, device="cpu")
    spec = CritiqueSpec.from_meta(rm.meta)
    contexts = [e.input_ids[0] for e in (rm.encoder.encode_texts(p, [WRONG]) for p in
                                         (PROMPT, "bits 1 1", "bits 0 0 0 1 1 0 1 0", "bits 1"))]
    assert len({len(c) for c in contexts}) == 4  # every row is padded differently
    batched = generate_critiques(rm.model, contexts, spec, rm.pad_id, 4, rm.device)
    alone = [generate_critiques(rm.model, [c], spec, rm.pad_id, 1, rm.device)[0] for c in contexts]
    assert batched == alone and all(len(c) <= BITS + 4 for c in batched)


def test_both_stages_train_and_the_model_critiques_then_scores(critique_dir: Path) -> None:
    stage1 = json.loads((critique_dir / "critique-lm" / "eval.json").read_text())
    assert stage1["objective"] == "critique-lm" and stage1["train_critiques"] == 96
    assert stage1["eval"]["perplexity"] < 1.5  # it learned to write the running parity
    summary = json.loads((critique_dir / "eval.json").read_text())
    assert summary["objective"] == "critique" and summary["eval"]["pairs"] == 16
    assert summary["eval"]["accuracy"] >= 0.9
    config = json.loads((critique_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["rewardkit"]["critique"]["max_tokens"] == BITS + 4
    assert (critique_dir / "critique_head.safetensors").is_file()
    assert "Example critiques" in (critique_dir / "report" / "report.html").read_text()
    rm = RewardModel.from_pretrained(critique_dir, device="cpu")
    (good, said_good), (bad, said_bad) = rm.score_batch([PROMPT, PROMPT], [RIGHT, WRONG], return_critique=True)
    assert said_good == "1 1 0 1 1 1 1 so 1 right" and said_bad == "1 1 0 1 1 1 1 so 1 wrong"
    assert good > bad and rm.score(PROMPT, RIGHT) == pytest.approx(good, abs=1e-6)
    assert rm.compare(PROMPT, RIGHT, WRONG) > 0.5


def test_the_card_snippet_writes_the_same_critique_and_reward(critique_dir: Path) -> None:
    rm = RewardModel.from_pretrained(critique_dir, device="cpu")
    want = rm.score_batch([PROMPT, PROMPT], [RIGHT, WRONG], return_critique=True)
    _, body = card_parts(critique_dir)
    code = re.search(r"```python\n(.*?)```", body.split("## Score it with plain transformers", 1)[1], re.S).group(1)
    code = re.sub(r"^MODEL = .*$", f"MODEL = {str(critique_dir)!r}", code, count=1, flags=re.M)
    code += (f"\nimport json\nprint('OUT', json.dumps([critique_and_reward({PROMPT!r}, r) for r in "
             f"({RIGHT!r}, {WRONG!r})]))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads([x for x in proc.stdout.splitlines() if x.startswith("OUT ")][-1][4:])
    for (reward, critique), (text, value) in zip(want, got):
        assert text == critique and value == pytest.approx(reward, abs=1e-5)


def test_server_returns_rewards_and_critiques(critique_dir: Path, tmp_path: Path) -> None:
    from serve_util import Server

    rm = RewardModel.from_pretrained(critique_dir, device="cpu")
    want = rm.score_batch([PROMPT, PROMPT], [RIGHT, WRONG], return_critique=True)
    server = Server(critique_dir, log=tmp_path / "serve.log")
    try:
        body = server.post("/score", [{"prompt": PROMPT, "response": RIGHT},
                                      {"prompt": PROMPT, "response": WRONG}]).json()
        bad = server.post("/score", [{"prompt": PROMPT}])
        again = server.post("/score", [{"prompt": PROMPT, "response": RIGHT}]).json()
    finally:
        server.stop()
    assert body["rewards"] == pytest.approx([r for r, _ in want], abs=1e-5)
    assert body["critiques"] == [c for _, c in want]
    assert bad.status_code in (400, 422) and "response" in bad.text
    assert again["critiques"] == [want[0][1]]  # and it keeps serving


def test_eval_report_shows_example_critiques(critique_dir: Path, files: dict[str, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", str(critique_dir), str(files["test"]), "--report", str(tmp_path / "r")]) == 0
    page = (tmp_path / "r" / "report.html").read_text()
    assert "Example critiques" in page and " so " in page  # a critique the model wrote, next to its reward


def test_lora_with_merge(files: dict[str, Path]) -> None:
    out = files["root"] / "lora"
    train(_cfg(files, out, lora_r=8, merge=True, critique_sft_epochs=1, epochs=1), log=lambda _m: None)
    assert (out / "critique_head.safetensors").is_file() and (out / "merged" / "critique_head.safetensors").is_file()
    adapter = RewardModel.from_pretrained(out, device="cpu")
    merged = RewardModel.from_pretrained(out / "merged", device="cpu")
    a = adapter.score_batch([PROMPT, PROMPT], [RIGHT, WRONG], return_critique=True)
    b = merged.score_batch([PROMPT, PROMPT], [RIGHT, WRONG], return_critique=True)
    assert [c for _, c in a] == [c for _, c in b]
    assert [r for r, _ in a] == pytest.approx([r for r, _ in b], abs=1e-4)


def test_export_from_a_checkpoint_scores_like_the_run(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = train(_cfg(files, out, critique_sft_epochs=1, epochs=1, save_steps=2, save_total_limit=0),
                   log=lambda _m: None)
    last = out / f"checkpoint-{result.steps}"  # the last step's weights: the run's model
    assert last.is_dir(), sorted(p.name for p in out.iterdir())
    assert main(["export", str(last), "-o", str(tmp_path / "exported")]) == 0
    run, exported = (RewardModel.from_pretrained(d, device="cpu") for d in (out, tmp_path / "exported"))
    assert exported.score(PROMPT, RIGHT, return_critique=True)[1] == run.score(PROMPT, RIGHT, return_critique=True)[1]
    assert exported.score(PROMPT, RIGHT) == pytest.approx(run.score(PROMPT, RIGHT), abs=1e-5)


def test_a_missing_critique_exits_2_naming_file_line_and_field(files: dict[str, Path], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    rows = [json.loads(x) for x in files["train"].read_text().splitlines()[:5]]
    del rows[2]["rejected_critique"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["train", "--objective", "critique", "--model", str(files["base"]), "--train-data", str(bad),
                 "--output-dir", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3" in err and "rejected_critique" in err and "Traceback" not in err
    assert (out / "keep.txt").read_text() == "mine" and not (out / "critique-lm").exists()


def test_a_rating_table_gives_pairs_with_each_rows_critique(tmp_path: Path) -> None:
    from conftest import write_csv

    from rewardkit.data.critiques import load_critiqued
    from rewardkit.errors import DataError

    rows = [{"prompt": "p1", "response": "a", "score": 5, "critique": "good"},
            {"prompt": "p1", "response": "b", "score": 1, "critique": "bad"},
            {"prompt": "p2", "response": "c", "score": 2, "critique": "meh"},
            {"prompt": "p2", "response": "d", "score": 4, "critique": "fine"}]
    pairs, problems = load_critiqued(str(write_csv(tmp_path / "rated.csv", rows)))
    assert not problems
    assert [(p.comparison.responses, p.critiques) for p in pairs] == [(["a", "b"], ("good", "bad")),
                                                                      (["d", "c"], ("fine", "meh"))]
    rows[3]["critique"] = " "
    with pytest.raises(DataError, match=r"rated2.csv:5: field 'critique' must be a non-empty string"):
        load_critiqued(str(write_csv(tmp_path / "rated2.csv", rows)))


def test_bad_critique_flags_exit_2(files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = ["train", "--objective", "critique", "--model", str(files["base"]), "--train-data", str(files["train"]),
            "--output-dir", str(tmp_path / "o")]
    assert main(base + ["--max-critique-tokens", "0"]) == 2
    assert "--max-critique-tokens" in capsys.readouterr().err
    assert main(base + ["--loss", "pl"]) == 2
    assert "--loss pl does not apply to --objective critique" in capsys.readouterr().err
    assert main(base + ["--critique-template", ""]) == 2
    assert "--critique-template" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_two_processes_killed_and_resumed_match_one_process(files: dict[str, Path], tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from test_multiprocess import _kill_after_first_checkpoint_then_resume, _same_training_curve

    stage1 = tmp_path / "stage1"  # both runs start their reward stage from the same critique writer
    train(_cfg(files, stage1, objective="critique-lm", epochs=12, critique_sft_epochs=0), log=lambda _m: None)
    common = dict(model=str(stage1), objective="critique", critique_template=task.TEMPLATE,
                  max_critique_tokens=BITS + 4, critique_sft_epochs=0, train_data=str(files["train"]),
                  eval_data=str(files["test"]), batch_size=8, lr=3e-3, max_length=48, precision="fp32",
                  logging_steps=1, seed=4, save_steps=2, save_total_limit=0, epochs=2)
    single = train(TrainConfig(output_dir=str(tmp_path / "one"), grad_accum=2, **common), log=lambda _m: None)
    out = tmp_path / "two"
    _kill_after_first_checkpoint_then_resume(out, common)
    _same_training_curve(tmp_path / "one", out, single.steps, "pairs_seen")
    a, b = load_file(str(tmp_path / "one" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4
    ha, hb = (load_file(str(d / "critique_head.safetensors")) for d in (tmp_path / "one", out))
    assert max((ha[k] - hb[k]).abs().max().item() for k in ha) < 1e-4
