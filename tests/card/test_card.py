"""The model card (OUTPUT_DIR/README.md): its plain-transformers snippet reproduces rewardkit's rewards.

Each model is trained a few steps in fp32; the card's snippet is cut out of README.md, pointed at
the model directory and run in a fresh Python process, and its rewards are compared with
`RewardModel.score` on the same inputs (short, prompt-truncated and, with a chat template, chat
messages).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import pairs_records, write_jsonl

from rewardkit import RewardModel, TrainConfig, train
from rewardkit.card.text import write_card

LONG_PROMPT = " ".join(f"Question {i}: how do I do task number {i}?" for i in range(20))
INPUTS: list[tuple[Any, Any]] = [
    ("Question 3: how do I do task number 3?", "Happy to help. Step one for task 3 is to read the manual."),
    ("Question 4: how do I do task number 4?", "No. Figure out task 4 yourself, it is not my problem."),
    (LONG_PROMPT, "Happy to help. Read the manual carefully."),  # the prompt loses its oldest tokens
]
CHAT_INPUTS: list[tuple[Any, Any]] = [
    ([{"role": "user", "content": "How do I do task 5?"}], "Happy to help with task 5."),
    ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Task 6?"}],
     [{"role": "assistant", "content": "Read the manual."}]),
]


def _train(model_dir: Path, data: Path, out: Path, **kw: Any) -> Path:
    cfg = dict(model=str(model_dir), train_data=str(data), output_dir=str(out), max_length=48, batch_size=4,
               eval_batch_size=8, lr=1e-3, epochs=1, eval_split=0.25, precision="fp32", logging_steps=2)
    cfg.update(kw)
    train(TrainConfig(**cfg), log=lambda _m: None)
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("card-data") / "pairs.jsonl", pairs_records(24))


def card_parts(model_dir: Path) -> tuple[dict[str, Any], str]:
    """(front matter, body) of the card."""
    text = (model_dir / "README.md").read_text()
    m = re.match(r"^---\n(.*?)\n---\n(.*)$", text, re.S)
    assert m, "README.md does not start with a YAML front matter block"
    return yaml.safe_load(m.group(1)), m.group(2)


def run_snippet(model_dir: Path, inputs: list[tuple[Any, Any]]) -> list[float]:
    """Run the card's plain-transformers snippet in a fresh process on ``inputs``."""
    _, body = card_parts(model_dir)
    section = body.split("## Score it with plain transformers", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    code = re.sub(r"^MODEL = .*$", f"MODEL = {str(model_dir)!r}", code, count=1, flags=re.M)
    code += f"\nimport json\nprint('REWARDS', json.dumps([reward(p, r) for p, r in {inputs!r}]))\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("REWARDS ")][-1]
    return json.loads(line.split(" ", 1)[1])


def assert_reproduces(model_dir: Path, inputs: list[tuple[Any, Any]]) -> None:
    rm = RewardModel.from_pretrained(model_dir, device="cpu")
    want = [rm.score(p, r) for p, r in inputs]
    got = run_snippet(model_dir, inputs)
    assert got == pytest.approx(want, abs=1e-5), (got, want)
    assert max(want) - min(want) > 1e-4  # the inputs really score differently


@pytest.mark.parametrize("family", ["bert", "llama", "qwen"])
def test_card_snippet_reproduces_rewardkit(family: str, request: pytest.FixtureRequest, data: Path,
                                           tmp_path: Path) -> None:
    model_dir = request.getfixturevalue(f"{family}_dir")
    out = _train(model_dir, data, tmp_path / "out")
    inputs = INPUTS + (CHAT_INPUTS if family == "qwen" else [])
    if family != "bert":  # decoders: the snippet also cuts an over-long response as rewardkit does
        inputs.append(("Question 9?", " ".join(f"Step {i}: read the manual." for i in range(30))))
    assert_reproduces(out, inputs)
    meta, body = card_parts(out)
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-classification"
    assert meta["tags"] == ["reward-model", "rewardkit"]
    assert "base_model" not in meta  # a local path: the Hub only takes ids there
    assert f"`{model_dir}`" in body
    results = meta["model-index"][0]["results"]
    metrics = {m["type"]: m["value"] for r in results for m in r["metrics"]}
    assert results[0]["task"]["type"] == "text-classification" and results[0]["dataset"]["name"]
    final = json.loads((out / "eval.json").read_text())["eval"]
    assert metrics["accuracy"] == pytest.approx(final["accuracy"]) and metrics["loss"] == pytest.approx(final["loss"])
    assert "| training comparisons | 18 |" in body and "| held-out pairs | 6 |" in body
    assert "| max length (tokens) | 48 |" in body
    if family == "bert":  # the sentence-pair call's limit, stated: 48 - [CLS] [SEP] [SEP] - 1
        assert "Exact while the response fits in 44 tokens" in body
    if family == "bert":
        assert "[CLS] prompt [SEP] response [SEP]" in body and "token types 0 (prompt) / 1 (response)" in body
    else:
        tok = RewardModel.from_pretrained(out, device="cpu").tokenizer
        assert "prompt response </s>" in body and f"Pad token: `{tok.pad_token}`" in body and "distinct from EOS" in body
    if family == "qwen":
        assert "apply_chat_template" in body


def test_front_matter_names_hub_ids(bert_dir: Path, tmp_path: Path) -> None:
    """Hub ids go into base_model/datasets; the bundled backbone is named by its Hub id."""
    out = tmp_path / "copy"
    shutil.copytree(bert_dir, out)
    write_card(out, {"model": None, "train_data": None, "max_length": 64}, {"eval": {"accuracy": 0.7, "pairs": 10}})
    meta, body = card_parts(out)
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert meta["datasets"] == ["Anthropic/hh-rlhf"]
    write_card(out, {"model": "Qwen/Qwen2.5-0.5B", "train_data": "org/prefs:train"}, {})
    meta, body = card_parts(out)
    assert meta["base_model"] == "Qwen/Qwen2.5-0.5B" and meta["datasets"] == ["org/prefs"]
    assert "model-index" not in meta and "No held-out data was evaluated" in body


def test_lora_adapter_and_merged_cards(llama_dir: Path, data: Path, tmp_path: Path) -> None:
    out = _train(llama_dir, data, tmp_path / "lora", lora_r=4, merge=True)
    meta, _ = card_parts(out)
    assert meta["library_name"] == "peft"
    assert_reproduces(out, INPUTS)
    meta, _ = card_parts(out / "merged")
    assert meta["library_name"] == "transformers"
    assert_reproduces(out / "merged", INPUTS)


def test_export_writes_a_card(bert_dir: Path, data: Path, tmp_path: Path) -> None:
    from rewardkit.training.export import export

    run = _train(bert_dir, data, tmp_path / "run", save_steps=2, save_total_limit=0)
    exported = export(next(run.glob("checkpoint-*")), tmp_path / "exported")
    _, body = card_parts(exported)
    assert "| exported from checkpoint at step | 2 |" in body
    assert_reproduces(exported, INPUTS[:2])


def test_a_card_failure_never_fails_the_run(bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rewardkit.card.text as card

    def broken(_d: Path) -> None:
        raise RuntimeError("tokenizer exploded")

    monkeypatch.setattr(card, "read_layout", broken)
    out = tmp_path / "copy"
    shutil.copytree(bert_dir, out)
    write_card(out)
    meta, body = card_parts(out)
    assert meta["tags"] == ["reward-model", "rewardkit"]
    assert "RuntimeError: tokenizer exploded" in body and "RewardModel.from_pretrained" in body


@pytest.mark.parametrize("family,lora", [("bert", False), ("bert", True), ("llama", False)])
def test_regression_card_reproduces_the_combined_reward(family: str, lora: bool, request: pytest.FixtureRequest,
                                                        tmp_path: Path) -> None:
    """A multi-attribute model's card: the snippet returns the weighted sum of its ratings, as
    `RewardModel.score` does, for a folded head (full weights, merged adapter) and an adapter's unfolded one."""
    from conftest import rated_rows, regression_cfg, write_csv

    model_dir = request.getfixturevalue(f"{family}_dir")
    data = write_csv(tmp_path / "rated.csv", rated_rows(8, 3))
    out = tmp_path / "out"
    train(regression_cfg(model_dir, data, out, epochs=2, attribute_weights="helpfulness=1,verbosity=-0.5",
                         **({"lora_r": 4, "merge": True} if lora else {})), log=lambda _m: None)
    inputs: list[tuple[Any, Any]] = [("question number 1", "great great the answer"),
                                     ("question number 2", "long long long the answer"),
                                     ("question number 3", "the answer")]
    for d in [out] + ([out / "merged"] if lora else []):
        assert_reproduces(d, inputs)
        _, body = card_parts(d)
        assert body.count("2 outputs, ratings of `helpfulness`, `verbosity`") == 1  # decoders too: said once
        assert "helpfulness: 1, verbosity: -0.5" in body
        assert ("OFFSET, SCALE" in body) == (d == out and lora)  # only the adapter keeps the head unfolded
        assert "rm.score_attributes" in body and "| objective | regression |" in body
    meta, body = card_parts(out)
    final = json.loads((out / "eval.json").read_text())["eval"]
    metrics = {m["type"]: m["value"] for r in meta["model-index"][0]["results"] for m in r["metrics"]}
    assert metrics["spearman"] == pytest.approx(final["mean_spearman"], abs=1e-6)  # the card rounds to 6 places
    assert f"| held-out rated responses | {final['responses']} |" in body and "`verbosity`: Spearman" in body
