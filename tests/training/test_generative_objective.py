"""--objective generative (issue 21): the reward is the LM head's log P(yes) - log P(no) after a verdict
question; Bradley-Terry on comparisons, binary cross-entropy on a rating table's verdicts; plain
transformers (the card's snippet) and the server give the same rewards. Tiny Llama, fp32."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import pairs_records, write_jsonl
from serve_util import Server, spread_causal_llama

from rewardkit import RewardModel, TrainConfig, train
from rewardkit.errors import UsageError

VERDICT = dict(verdict_template=" Is the answer helpful? Answer:", verdict_tokens=" good, bad")
PROBES = [("Question 3: how do I do task number 3?", "Happy to help. Step one for task 3 is to read the manual."),
          ("Question 5: how do I do task number 5?", "No. Figure out task 5 yourself, it is not my problem."),
          ("How do I boil an egg? " * 6, "Simmer it for eight minutes, then cool it in cold water.")]


def gen_cfg(model: Path, data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(model=str(model), train_data=str(data), output_dir=str(out), objective="generative", eval_split=0.25,
                max_length=64, batch_size=4, lr=1e-3, epochs=2, precision="fp32", logging_steps=1, seed=0, **VERDICT)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def spread_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return spread_causal_llama(tmp_path_factory.mktemp("causal-llama"))


@pytest.fixture(scope="module")
def gen_run(spread_base: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("generative")
    data = write_jsonl(d / "pairs.jsonl", pairs_records(48))
    train(gen_cfg(spread_base, data, d / "out", lr=3e-3), log=lambda m: None)
    return d / "out", data


def test_generative_rm_learns_and_saves_a_causal_lm(gen_run: tuple[Path, Path]) -> None:
    out, _ = gen_run
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    meta = config["rewardkit"]
    assert meta["objective"] == "generative" and meta["verdict"]["answers"] == [" good", " bad"]
    summary = json.loads((out / "eval.json").read_text())
    assert summary["eval"]["accuracy"] >= 0.9, summary["eval"]  # polite vs rude answers, 12 held-out pairs
    assert "log P(' good') - log P(' bad')" in (out / "README.md").read_text()


def _snippet_reward(model_dir: Path):  # type: ignore[no-untyped-def]
    code = re.search(r"## Score it with plain transformers.*?```python\n(.*?)```", (model_dir / "README.md").read_text(),
                     re.S).group(1)
    namespace: dict = {}
    exec(code.replace("print(reward(", "(reward("), namespace)  # noqa: S102 - the card's own code
    return namespace["reward"]


def test_card_snippet_and_reward_model_agree(gen_run: tuple[Path, Path]) -> None:
    """The card's plain-transformers snippet (template appended, log-softmax at the next token) gives
    RewardModel.score's reward, long prompts (truncated) included; the rewards really differ."""
    out, _ = gen_run
    rm = RewardModel.from_pretrained(out, device="cpu", dtype="fp32")
    reward = _snippet_reward(out)
    want = [rm.score(p, r) for p, r in PROBES]
    assert [reward(p, r) for p, r in PROBES] == pytest.approx(want, abs=1e-5)
    assert max(want) - min(want) > 0.1
    assert rm.compare(*PROBES[0][:1], PROBES[0][1], PROBES[1][1]) > 0.5  # the polite answer wins


def test_verdict_is_read_from_the_lm_head(gen_run: tuple[Path, Path]) -> None:
    """VerdictNet's reward is exactly log P(yes) - log P(no) of plain transformers at the question's end."""
    from transformers import AutoModelForCausalLM

    out, _ = gen_run
    rm = RewardModel.from_pretrained(out, device="cpu", dtype="fp32")
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    yes, no = rm.verdict.answer_ids
    for p, r in PROBES:
        ids = rm.encoder.encode_texts(p, [r]).input_ids[0]
        assert ids[-len(rm.verdict.template_ids):] == rm.verdict.template_ids  # the question is never cut
        with torch.no_grad():
            logp = model(input_ids=torch.tensor([ids])).logits[0, -1].log_softmax(-1)
        assert rm.score(p, r) == pytest.approx((logp[yes] - logp[no]).item(), abs=1e-5)


def test_server_returns_the_same_rewards(gen_run: tuple[Path, Path], tmp_path: Path) -> None:
    out, _ = gen_run
    rm = RewardModel.from_pretrained(out, device="cpu", dtype="fp32")
    want = [rm.score(p, r) for p, r in PROBES]
    server = Server(out, "--dtype", "fp32", log=tmp_path / "serve.log")
    try:
        got = server.post("/score", [{"prompt": p, "response": r} for p, r in PROBES]).json()["rewards"]
        openrlhf = server.post("/get_reward", {"query": [p + r for p, r in PROBES],
                                               "prompts": [p for p, _ in PROBES]}).json()["rewards"]
    finally:
        assert server.stop() == 0
    assert got == pytest.approx(want, abs=1e-5)
    assert openrlhf == pytest.approx(want, abs=1e-5)


def test_trl_adapter_scores_like_the_model(gen_run: tuple[Path, Path]) -> None:
    from rewardkit.integrations.trl import trl_reward_func

    out, _ = gen_run
    rm = RewardModel.from_pretrained(out, device="cpu", dtype="fp32")
    func = trl_reward_func(str(out), device="cpu", dtype="fp32")
    got = func(prompts=[p for p, _ in PROBES], completions=[r for _, r in PROBES])
    assert got == pytest.approx([rm.score(p, r) for p, r in PROBES], abs=1e-5)


@pytest.mark.parametrize("bad, flag, message", [
    ({"verdict_tokens": " goodness gracious, bad"}, "--verdict-tokens", "not one"),
    ({"verdict_tokens": " good"}, "--verdict-tokens", "two answers"),
    ({"verdict_tokens": " good, good"}, "--verdict-tokens", "same token"),
    ({"verdict_template": "   "}, "--verdict-template", "empty"),
])
def test_bad_verdicts_are_refused_naming_the_flag(llama_dir: Path, tmp_path: Path, bad: dict, flag: str,
                                                   message: str) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs_records(8))
    with pytest.raises(UsageError, match=f"{flag}.*{message}"):
        train(gen_cfg(llama_dir, data, tmp_path / "out", **bad), log=lambda m: None)
    assert not (tmp_path / "out" / "metrics.jsonl").exists()


def _rating_table(path: Path) -> Path:
    rows = [{"prompt": r["prompt"], "response": r[key], "score": score}
            for r in pairs_records(24) for key, score in (("chosen", 4), ("rejected", 1))]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["prompt", "response", "score"])
        w.writeheader()
        w.writerows(rows)
    return path


def test_rating_table_trains_a_verdict_with_bce(spread_base: Path, tmp_path: Path) -> None:
    table = _rating_table(tmp_path / "rated.csv")
    with pytest.raises(UsageError, match="--hi"):
        train(gen_cfg(spread_base, table, tmp_path / "no-threshold"), log=lambda m: None)
    out = tmp_path / "out"
    result = train(gen_cfg(spread_base, table, out, hi=3.0, lr=3e-3), log=lambda m: None)
    assert result.eval_metrics["answers"] == 12 and result.eval_metrics["accuracy"] >= 0.9, result.eval_metrics
    assert json.loads((out / "config.json").read_text())["rewardkit"]["loss"] == "bce"
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"train"' in x]
    assert rows[-1]["loss"] < rows[0]["loss"]


def test_generative_lora_adapter_and_merged_score_alike(spread_base: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs_records(16))
    out = tmp_path / "out"
    train(gen_cfg(spread_base, data, out, epochs=1, lora_r=4, merge=True), log=lambda m: None)
    adapter = RewardModel.from_pretrained(out, device="cpu", dtype="fp32")
    merged = RewardModel.from_pretrained(out / "merged", device="cpu", dtype="fp32")
    want = [adapter.score(p, r) for p, r in PROBES]
    assert [merged.score(p, r) for p, r in PROBES] == pytest.approx(want, abs=1e-4)
    for d in (out, out / "merged"):
        assert [_snippet_reward(d)(p, r) for p, r in PROBES] == pytest.approx(want, abs=1e-4)


def test_cli_eval_with_report_and_score(gen_run: tuple[Path, Path], tmp_path: Path) -> None:
    """`rewardkit eval --report` and `rewardkit score` work on a generative model without extra flags."""
    import subprocess
    import sys

    out, data = gen_run
    done = subprocess.run([sys.executable, "-m", "rewardkit", "eval", str(out), str(data), "--json", "--report",
                           str(tmp_path / "report"), "--dtype", "fp32"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["pairs"] == 48 and (tmp_path / "report" / "report.html").is_file()
    items = write_jsonl(tmp_path / "items.jsonl", [{"prompt": p, "response": r} for p, r in PROBES])
    done = subprocess.run([sys.executable, "-m", "rewardkit", "score", str(out), str(items), "-o",
                           str(tmp_path / "scored.jsonl"), "--dtype", "fp32"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rm = RewardModel.from_pretrained(out, device="cpu", dtype="fp32")
    got = [json.loads(x)["reward"] for x in (tmp_path / "scored.jsonl").read_text().splitlines()]
    assert got == pytest.approx([rm.score(p, r) for p, r in PROBES], abs=1e-5)


@pytest.mark.parametrize("lora", [False, True])
def test_checkpoint_export_scores_like_the_final_model(spread_base: Path, tmp_path: Path, lora: bool) -> None:
    """`rewardkit export OUT/checkpoint-N` of a generative run is a generative model again (verdict kept;
    a LoRA checkpoint as an adapter and merged), scoring as the run's final model does."""
    from rewardkit.model.artifacts import read_meta
    from rewardkit.training.export import export

    data = write_jsonl(tmp_path / "pairs.jsonl", pairs_records(12))
    out = tmp_path / "out"
    result = train(gen_cfg(spread_base, data, out, epochs=1, eval_split=0.0, save_steps=1, save_total_limit=0,
                           lora_r=4 if lora else 0),
                   log=lambda m: None)
    want = [RewardModel.from_pretrained(out, device="cpu", dtype="fp32").score(p, r) for p, r in PROBES]
    for merge in ([False, True] if lora else [False]):
        exported = export(out / f"checkpoint-{result.steps}", tmp_path / f"exported-{merge}", merge=merge)
        meta = read_meta(exported)
        assert meta["objective"] == "generative" and meta["verdict"]["answers"] == [" good", " bad"]
        rm = RewardModel.from_pretrained(exported, device="cpu", dtype="fp32")
        assert [rm.score(p, r) for p, r in PROBES] == pytest.approx(want, abs=1e-5)


def test_rating_table_held_out_scored_in_packed_rows(spread_base: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """--packing on with a rating table: held-out answers are scored in packed rows, with the metrics of
    --packing off."""
    from rewardkit.training.objectives import generative as generative_mod

    packs: list[int] = []
    real = generative_mod.score_sharded

    def spy(*args: Any, **kw: Any) -> Any:
        packs.append(kw.get("pack", 0))
        return real(*args, **kw)

    monkeypatch.setattr(generative_mod, "score_sharded", spy)
    table = _rating_table(tmp_path / "rated.csv")
    metrics = {}
    for packing in ("off", "on"):
        packs.clear()
        result = train(gen_cfg(spread_base, table, tmp_path / packing, hi=3.0, epochs=1, packing=packing),
                       log=lambda m: None)
        metrics[packing] = result.eval_metrics
        assert packs and set(packs) == {packing == "on"}
    assert metrics["on"] == pytest.approx(metrics["off"], abs=1e-5)
