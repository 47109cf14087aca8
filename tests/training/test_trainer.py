"""End-to-end training on tiny models: data -> training -> export -> scoring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import one_step, pairs_records, write_jsonl

from rewardkit import RewardModel, TrainConfig, train
from rewardkit.errors import UsageError
from rewardkit.training.batch_plan import plan_rounds


def _cfg(model_dir: Path, data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(model=str(model_dir), train_data=str(data), output_dir=str(out), max_length=64, batch_size=4,
                eval_batch_size=8, lr=1e-3, epochs=3, eval_split=0.25, precision="fp32", logging_steps=2)
    base.update(kw)
    return TrainConfig(**base)


def test_decoder_trains_exports_and_scores(llama_dir: Path, pairs_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = train(_cfg(llama_dir, pairs_file, out, eval_steps=3), log=lambda _m: None)
    assert result.train_comparisons == 18 and result.pairs_seen == 54
    assert result.eval_metrics["accuracy"] >= 0.8  # polite vs rude is easy
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert {x["split"] for x in lines} == {"train", "eval"}
    assert lines[-1]["split"] == "eval" and lines[-1]["step"] == result.steps
    train_losses = [x["loss"] for x in lines if x["split"] == "train"]
    assert train_losses[-1] < train_losses[0]
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    meta = json.loads((out / "config.json").read_text())["rewardkit"]
    assert meta["max_length"] == 64 and meta["normalization"]["std"] > 0

    rm = RewardModel.from_pretrained(out, device="cpu")
    rec = pairs_records(30)[-1]
    assert rm.score(rec["prompt"], rec["chosen"]) > rm.score(rec["prompt"], rec["rejected"])
    assert rm.compare(rec["prompt"], rec["chosen"], rec["rejected"]) > 0.5


def test_every_pair_is_trained_even_when_truncated(bert_dir: Path, tmp_path: Path) -> None:
    long_prompt = " ".join(f"context{i}" for i in range(200))
    recs = [{"prompt": long_prompt + f" q{i}", "chosen": f"a good answer {i}", "rejected": f"bad {i}"} for i in range(10)]
    data = write_jsonl(tmp_path / "long.jsonl", recs)
    messages: list[str] = []
    result = train(_cfg(bert_dir, data, tmp_path / "out", eval_split=0.0, epochs=1, max_length=32), log=messages.append)
    assert result.pairs_seen == 10 and result.truncated == 10
    assert any("10 training and 0 held-out comparisons truncated" in m for m in messages)


def test_refuses_to_overwrite_a_trained_model(bert_dir: Path, pairs_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    train(_cfg(bert_dir, pairs_file, out, epochs=1), log=lambda _m: None)
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(UsageError, match="already holds a trained model"):
        train(_cfg(bert_dir, pairs_file, out, epochs=1), log=lambda _m: None)
    assert (out / "model.safetensors").read_bytes() == before


def test_same_seed_same_model(bert_dir: Path, pairs_file: Path, tmp_path: Path) -> None:
    a = train(_cfg(bert_dir, pairs_file, tmp_path / "a", epochs=1), log=lambda _m: None)
    b = train(_cfg(bert_dir, pairs_file, tmp_path / "b", epochs=1), log=lambda _m: None)
    assert a.eval_metrics == b.eval_metrics


def test_grad_accum_matches_a_larger_batch_plan() -> None:
    batches = [[0, 1], [2, 3], [4, 5], [6]]
    assert plan_rounds(batches, 1) == [[[0, 1]], [[2, 3]], [[4, 5]], [[6]]]
    # two processes: the short last round is re-dealt so both take a step and nothing is lost
    rounds = plan_rounds([[0, 1], [2, 3], [4, 5, 6]], 2)
    assert rounds[0] == [[0, 1], [2, 3]] and sorted(rounds[1][0] + rounds[1][1]) == [4, 5, 6]


def test_own_data_is_trained_on_whole_unless_a_split_is_asked_for() -> None:
    assert TrainConfig().held_out_fraction() == 0.1  # the quickstart holds out 10% of the bundled sample
    assert TrainConfig(train_data="prefs.jsonl").held_out_fraction() == 0.0
    assert TrainConfig(train_data="prefs.jsonl", eval_split=0.2).held_out_fraction() == 0.2
    assert TrainConfig(eval_split=0.0).held_out_fraction() == 0.0


def test_invalid_config_names_the_flag() -> None:
    with pytest.raises(UsageError, match="--eval-split"):
        TrainConfig(eval_split=1.5).validate()
    with pytest.raises(UsageError, match="--scheduler must be one of"):
        TrainConfig(scheduler="exp").validate()


def test_margin_and_centering_change_training(bert_dir: Path, tmp_path: Path) -> None:
    recs = [dict(r, margin=2.0) for r in pairs_records(12)]
    data = write_jsonl(tmp_path / "m.jsonl", recs)
    plain = train(_cfg(bert_dir, data, tmp_path / "p", epochs=1, use_margin=False), log=lambda _m: None)
    margin = train(_cfg(bert_dir, data, tmp_path / "m", epochs=1, center_coef=0.1), log=lambda _m: None)
    assert plain.eval_metrics["mean_margin"] != margin.eval_metrics["mean_margin"]
    assert torch.isfinite(torch.tensor(margin.eval_metrics["loss"]))


@pytest.mark.parametrize("extra", [{"center_coef": 0.1}, {"loss": "pl"}, {"balance_per_prompt": True}])
def test_split_passes_give_the_whole_batch_gradient(bert_dir: Path, extra: dict) -> None:
    """A micro-batch run as parts of unequal size sums to the whole batch's loss and gradient."""
    from rewardkit.data.records import Comparison
    from rewardkit.model.backbone import load_backbone, make_encoder
    from rewardkit.model.net import RewardNet
    from rewardkit.training.batch_plan import split_into_passes
    from rewardkit.training.objectives.pairwise import PairwiseObjective

    model, tok = load_backbone(str(bert_dir))
    enc = make_encoder(model, tok, 64)
    comps = [Comparison(prompt=f"question {i} " + "and more " * (i % 4) * 3,
                        responses=[f"answer {j} to {i} " + "detail " * ((i + j) % 5) for j in range(2 + i % 2)],
                        margin=0.5 if i % 3 == 0 else None) for i in range(8)]
    groups = [i // 2 for i in range(8)]  # two comparisons per prompt: balance weights 1/2 each
    objective = PairwiseObjective(TrainConfig(**extra))
    objective.data.items = [enc.encode(c) for c in comps]
    net = RewardNet(model)

    def grads(parts: list[list[int]]) -> tuple[float, float, list[torch.Tensor]]:
        net.zero_grad()
        values = one_step(objective, net, parts, prompt_of=groups, pad_id=tok.pad_token_id)[0]
        return float(values["loss"]), float(values["accuracy"]), [p.grad.clone() for p in net.parameters()
                                                                  if p.grad is not None]

    items = objective.items
    widths = [e.longest for e in items]
    rows = [len(e.input_ids) for e in items]
    candidates = (split_into_passes(list(range(8)), widths, rows, groups, budget)
                  for budget in range(max(widths), 40 * max(widths), 8))
    parts = next(p for p in candidates if len({len(x) for x in p}) > 1)  # unequal shares of the loss
    whole, split = grads([list(range(8))]), grads(parts)
    assert split[0] == pytest.approx(whole[0], abs=1e-6) and split[1] == pytest.approx(whole[1], abs=1e-6)
    assert max((a - b).abs().max().item() for a, b in zip(whole[2], split[2])) < 1e-6


def test_split_passes_give_the_same_training(llama_dir: Path, tmp_path: Path) -> None:
    """End to end on a decoder (packed rows): --pass-tokens changes neither the losses nor the model."""
    extra = {"balance_per_prompt": True, "grad_accum": 2}
    recs = pairs_records(16)
    for i, r in enumerate(recs):
        r["margin"] = 0.25 * (i % 3)
        if i % 4 == 0:  # a longer pair, so parts differ in width
            r["prompt"] += " " + " ".join(f"detail{j}" for j in range(12))
    data = write_jsonl(tmp_path / "pairs.jsonl", recs)
    runs = {}
    for tokens in (0, 150):  # parts of 1-2 pairs, unequal shares of the batch loss
        out = tmp_path / f"out-{tokens}"
        result = train(_cfg(llama_dir, data, out, epochs=1, pass_tokens=tokens, logging_steps=1, **extra),
                       log=lambda _m: None)
        losses = [x["loss"] for x in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
                  if x["split"] == "train"]
        runs[tokens] = (result, losses)
    (whole, whole_losses), (split, split_losses) = runs[0], runs[150]
    assert split.pairs_seen == whole.pairs_seen and len(whole_losses) >= 2
    assert split_losses == pytest.approx(whole_losses, abs=1e-5)
    assert split.eval_metrics["loss"] == pytest.approx(whole.eval_metrics["loss"], abs=1e-5)


@pytest.mark.parametrize("objective", ["bt", "generative"])
def test_packed_rows_train_like_plain_rows(llama_dir: Path, tmp_path: Path, objective: str) -> None:
    """--packing on (several comparisons per row, passes cut by real tokens) trains exactly as --packing
    off, with prefix sharing and per-prompt balancing in play."""
    recs = pairs_records(16)
    for i, r in enumerate(recs):
        if i % 4 == 0:
            r["prompt"] += " " + " ".join(f"detail{j}" for j in range(12))
    data = write_jsonl(tmp_path / "pairs.jsonl", recs)
    runs = {}
    for packing in ("off", "on"):
        out = tmp_path / f"out-{packing}"
        result = train(_cfg(llama_dir, data, out, epochs=1, packing=packing, pass_tokens=400, logging_steps=1,
                            balance_per_prompt=True, objective=objective, verdict_tokens=" good, bad"),
                       log=lambda _m: None)
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        runs[packing] = (result, [x["loss"] for x in rows if x["split"] == "train"],
                         json.loads((out / "eval.json").read_text()))
    (plain, plain_losses, plain_eval), (packed, packed_losses, packed_eval) = runs["off"], runs["on"]
    assert packed_eval["packing"] is True and plain_eval["packing"] is False
    assert packed_losses == pytest.approx(plain_losses, abs=1e-5) and len(plain_losses) >= 2
    assert packed.eval_metrics["mean_margin"] == pytest.approx(plain.eval_metrics["mean_margin"], abs=1e-5)


@pytest.mark.slow  # torch.compile on a CPU: about a minute of compilation
def test_compiled_training_matches_eager(llama_dir: Path, tmp_path: Path) -> None:
    """--compile on (forced on a CPU) trains as --compile off does, and eval.json times the warm-up
    (compilation) apart from the steady state."""
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs_records(24))
    runs = {}
    for setting in ("off", "on"):
        out = tmp_path / setting
        result = train(_cfg(llama_dir, data, out, epochs=2, compile=setting, logging_steps=1, packing="on"),
                       log=lambda _m: None)
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        runs[setting] = (result, [x["loss"] for x in rows if x["split"] == "train"],
                         json.loads((out / "eval.json").read_text()))
    (eager, eager_losses, _), (compiled, compiled_losses, summary) = runs["off"], runs["on"]
    assert compiled_losses == pytest.approx(eager_losses, abs=1e-4) and len(eager_losses) >= 6
    assert compiled.eval_metrics["mean_margin"] == pytest.approx(eager.eval_metrics["mean_margin"], abs=1e-4)
    assert summary["warmup_steps"] == 5 and summary["steady_steps_per_second"] > 0
    assert summary["warmup_seconds"] > 0
