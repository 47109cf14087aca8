"""Scoring: the Python API, `rewardkit score` and `rewardkit eval` agree on the same inputs.

Scorers are tiny random backbones saved with `save_model`, their linear layers re-drawn with a
larger scale: with transformers' default init (std 0.02) every input gets nearly the same reward
(margins ~1e-5), and a 1e-5 agreement check would prove nothing. Re-drawn, margins spread over O(1).
"""

from __future__ import annotations

import json
import math
import random
import statistics
from pathlib import Path

import pytest
import torch
from conftest import pairs_records, write_jsonl

from rewardkit.cli import main
from rewardkit.model.artifacts import save_model
from rewardkit.model.backbone import load_backbone
from rewardkit.model.reward_model import RewardModel

MAX_LENGTH = 40  # short enough that the longest records below are truncated
NORM = {"mean": 0.25, "std": 2.0, "source": "test", "count": 1}
WORDS = "the model should answer helpfully and kindly while refusing harmful requests politely".split()


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _scorer_dir(root: Path, backbone: Path) -> Path:
    model, tok = load_backbone(str(backbone))
    torch.manual_seed(1)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, std=1.0 if name.endswith(("score", "classifier")) else 0.2)
    save_model(model, tok, root, {"max_length": MAX_LENGTH, "normalization": NORM})
    return root


@pytest.fixture(scope="module", params=["bert", "llama"])
def scorer(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An encoder (sentence-pair layout) and a decoder (last-token pooling, pad token added)."""
    backbone = request.getfixturevalue(f"{request.param}_dir")
    return _scorer_dir(tmp_path_factory.mktemp(f"scorer-{request.param}"), backbone)


def mixed_records(n: int = 14, seed: int = 0) -> list[dict]:
    """Pairs, single responses and a ranking, of very different lengths (some truncated)."""
    rng = random.Random(seed)
    out: list[dict] = []
    for i in range(n):
        prompt = _text(rng, rng.choice([1, 3, 8, 30]))
        if i % 3 == 2:
            out.append({"id": i, "prompt": prompt, "response": _text(rng, rng.choice([1, 5, 25])), "meta": {"k": i}})
        else:
            out.append({"id": i, "prompt": prompt, "chosen": _text(rng, rng.choice([2, 6, 20])),
                        "rejected": _text(rng, rng.choice([1, 4, 12])), "subset": "ab"[i % 2]})
    # scores deliberately not sorted: rewards must follow the record's own response order
    out.append({"id": n, "prompt": "rank these", "responses": ["kindly", "the model", "refusing harmful requests"],
                "scores": [1, 3, 2]})
    return out


def run_cli(argv: list[str], capfd: pytest.CaptureFixture) -> tuple[int, str, str]:
    capfd.readouterr()
    rc = main(argv)
    out, err = capfd.readouterr()
    return rc, out, err


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cli_score_matches_api_score_and_compare(scorer: Path, tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    records = mixed_records()
    src = write_jsonl(tmp_path / "in.jsonl", records)
    rc, _, err = run_cli(["score", str(scorer), str(src), "-o", str(tmp_path / "out.jsonl"), "--batch-size", "3"],
                         capfd)
    assert rc == 0, err
    out = read_jsonl(tmp_path / "out.jsonl")
    # every record once, in order, other fields intact
    assert [r["id"] for r in out] == [r["id"] for r in records]
    for raw, got in zip(records, out):
        added = ("reward", "chosen_reward", "rejected_reward", "rewards")
        assert {k: v for k, v in got.items() if k not in added} == raw

    rm = RewardModel.from_pretrained(scorer, device="cpu")
    singles = [r for r in out if "response" in r]
    pairs = [r for r in out if "chosen" in r]
    assert singles and pairs
    # one batch of everything (mixed lengths, padded together) and batches of one (no padding)
    batched = rm.score_batch([r["prompt"] for r in singles], [r["response"] for r in singles], batch_size=64)
    for r, b in zip(singles, batched):
        assert r["reward"] == pytest.approx(b, abs=1e-5)
        assert r["reward"] == pytest.approx(rm.score(r["prompt"], r["response"]), abs=1e-5)
    spread = [r["chosen_reward"] - r["rejected_reward"] for r in pairs]
    assert statistics.pstdev(spread) > 0.05  # the agreement below is not trivially within 1e-5
    for r in pairs:
        p = 1 / (1 + math.exp(-(r["chosen_reward"] - r["rejected_reward"])))
        assert rm.compare(r["prompt"], r["chosen"], r["rejected"]) == pytest.approx(p, abs=1e-5)
    ranking = out[-1]
    expected = [rm.score(ranking["prompt"], x) for x in ranking["responses"]]
    assert ranking["rewards"] == pytest.approx(expected, abs=1e-5)


def test_cli_and_api_normalize_with_stored_statistics(scorer: Path, tmp_path: Path,
                                                      capfd: pytest.CaptureFixture) -> None:
    records = [{"prompt": "hello there", "response": _text(random.Random(i), 3 + i)} for i in range(5)]
    src = write_jsonl(tmp_path / "in.jsonl", records)
    rc, stdout, err = run_cli(["score", str(scorer), str(src), "--normalize"], capfd)
    assert rc == 0, err
    got = [json.loads(line)["reward"] for line in stdout.splitlines()]
    rm = RewardModel.from_pretrained(scorer, device="cpu")
    raw = rm.score_batch([r["prompt"] for r in records], [r["response"] for r in records])
    assert got == pytest.approx([(x - NORM["mean"]) / NORM["std"] for x in raw], abs=1e-5)
    assert rm.score_batch([r["prompt"] for r in records], [r["response"] for r in records],
                          normalize=True) == pytest.approx(got, abs=1e-5)


def test_eval_json_matches_recomputation_from_score_output(scorer: Path, tmp_path: Path,
                                                           capfd: pytest.CaptureFixture) -> None:
    records = [r for r in mixed_records(24, seed=3) if "chosen" in r]
    src = write_jsonl(tmp_path / "pairs.jsonl", records)
    rc, stdout, err = run_cli(["eval", str(scorer), str(src), "--json", "--batch-size", "5"], capfd)
    assert rc == 0, err
    m = json.loads(stdout)  # exactly one JSON object: json.loads rejects anything after it
    assert stdout.strip().count("\n") == 0
    for key in ("accuracy", "pairs", "mean_margin", "ece", "brier", "chosen_longer_rate", "prefers_longer_rate"):
        assert key in m

    rc, _, err = run_cli(["score", str(scorer), str(src), "-o", str(tmp_path / "s.jsonl"), "--batch-size", "2"], capfd)
    assert rc == 0, err
    scored = read_jsonl(tmp_path / "s.jsonl")
    margins = [r["chosen_reward"] - r["rejected_reward"] for r in scored]
    longer = [len(r["chosen"]) > len(r["rejected"]) for r in scored]
    probs = [1 / (1 + math.exp(-x)) for x in margins]
    n = len(scored)
    assert m["pairs"] == n
    assert m["accuracy"] == pytest.approx(sum(x > 0 for x in margins) / n)
    assert m["mean_margin"] == pytest.approx(sum(margins) / n, abs=1e-5)
    assert m["brier"] == pytest.approx(sum((1 - p) ** 2 for p in probs) / n, abs=1e-5)
    assert m["chosen_longer_rate"] == pytest.approx(sum(longer) / n)
    unequal = [(x, lg) for x, lg, r in zip(margins, longer, scored) if len(r["chosen"]) != len(r["rejected"])]
    assert m["prefers_longer_rate"] == pytest.approx(sum((x > 0) == lg and x != 0 for x, lg in unequal) / len(unequal))
    # ECE: both orientations, 10 equal-width bins
    bins: dict[int, list[tuple[float, int]]] = {}
    for p in probs:
        for f, y in ((p, 1), (1 - p, 0)):
            bins.setdefault(min(int(f * 10), 9), []).append((f, y))
    ece = sum(len(b) / (2 * n) * abs(sum(f for f, _ in b) / len(b) - sum(y for _, y in b) / len(b))
              for b in bins.values())
    assert m["ece"] == pytest.approx(ece, abs=1e-4)
    assert set(m["subsets"]) == {"a", "b"}


def test_score_rejects_bad_records_with_file_and_line(scorer: Path, tmp_path: Path,
                                                      capfd: pytest.CaptureFixture) -> None:
    src = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "p", "response": "r"}, {"prompt": "p", "response": ""},
                                               "not json"])
    rc, stdout, err = run_cli(["score", str(scorer), str(src)], capfd)
    assert rc == 2 and stdout == ""
    assert f"{src}:2" in err and "response" in err and f"{src}:3" in err and "Traceback" not in err


def test_inference_dtype_accepts_strings_and_runs_without_autograd(scorer: Path) -> None:
    rm = RewardModel.from_pretrained(scorer, device="cpu", dtype="bf16")
    assert next(rm.model.parameters()).dtype == torch.bfloat16
    ref = RewardModel.from_pretrained(scorer, device="cpu")
    a = rm.score("hello there", "the model should answer")
    assert isinstance(a, float)
    assert a == pytest.approx(ref.score("hello there", "the model should answer"), abs=0.1)
    with pytest.raises(Exception, match="dtype"):
        RewardModel.from_pretrained(scorer, device="cpu", dtype="int7")
    seen = []
    hook = ref.model.get_input_embeddings().register_forward_hook(  # every reward path embeds
        lambda _m, _i, _o: seen.append(torch.is_inference_mode_enabled()))
    ref.score_batch(["a", "b"], ["c", "d"])
    ref.compare("a", "b", "c")
    hook.remove()
    assert seen and all(seen)


def test_scorer_without_pad_token(llama_dir: Path) -> None:
    """A plain decoder directory whose tokenizer has no pad token still scores, batch-invariantly."""
    rm = RewardModel.from_pretrained(llama_dir, device="cpu")
    assert rm.tokenizer.pad_token_id is None
    both = rm.score_batch(["a question", "q"], ["short", "a much longer answer than the other one"])
    assert both == pytest.approx([rm.score("a question", "short"),
                                  rm.score("q", "a much longer answer than the other one")], abs=1e-5)


def test_normalized_scores_of_a_trained_model_are_standardised_on_its_eval_set(bert_dir: Path, tmp_path: Path) -> None:
    """Acceptance: (r - mean) / std over the eval set's responses has mean 0 and std 1; train writes a report."""
    from rewardkit.config import TrainConfig
    from rewardkit.training.trainer import train

    records = pairs_records(32)
    train_file = write_jsonl(tmp_path / "train.jsonl", records[:24])
    eval_file = write_jsonl(tmp_path / "eval.jsonl", records[24:])
    out = tmp_path / "out"
    train(TrainConfig(model=str(bert_dir), train_data=str(train_file), eval_data=str(eval_file),
                      output_dir=str(out), batch_size=8, epochs=2, max_length=64, lr=5e-3, warmup_ratio=0.0,
                      scheduler="constant", precision="fp32"),
          log=lambda _msg: None)
    rm = RewardModel.from_pretrained(out, device="cpu")
    prompts = [r["prompt"] for r in records[24:] for _ in range(2)]
    responses = [x for r in records[24:] for x in (r["chosen"], r["rejected"])]
    raw = rm.score_batch(prompts, responses)
    assert statistics.pstdev(raw) > 1e-3  # training spread the rewards: normalisation is not dividing noise
    z = rm.score_batch(prompts, responses, normalize=True)
    assert statistics.fmean(z) == pytest.approx(0.0, abs=1e-3)
    assert statistics.pstdev(z) == pytest.approx(1.0, abs=1e-3)
    assert (out / "report" / "report.html").is_file()
    assert json.loads((out / "report" / "metrics.json").read_text())["pairs"] == 8


def test_packed_scoring_gives_the_same_rewards(llama_dir: Path) -> None:
    """RewardModel(packing="on") scores several comparisons per row: the rewards of one row per sequence."""
    from rewardkit.model.backbone import load_backbone

    model, tok = load_backbone(str(llama_dir))
    torch.manual_seed(1)
    for p in model.parameters():
        p.data.normal_(0, 0.2)
    prompts = [f"question {i} " + "more words " * (i % 5) for i in range(9)]
    responses = [f"answer {i} " + "detail " * (i % 3) for i in range(9)]
    plain = RewardModel(model, tok, device="cpu", packing="off", max_length=64)
    packed = RewardModel(model, tok, device="cpu", packing="on", max_length=64)
    assert packed.pack and not plain.pack
    want = plain.score_batch(prompts, responses, batch_size=4)
    assert packed.score_batch(prompts, responses, batch_size=4) == pytest.approx(want, abs=1e-5)
    assert packed.compare(prompts[0], responses[0], responses[1]) == pytest.approx(
        plain.compare(prompts[0], responses[0], responses[1]), abs=1e-6)


def test_packing_on_an_encoder_is_refused(bert_dir: Path) -> None:
    from rewardkit.errors import UsageError

    with pytest.raises(UsageError, match="--packing on: encoders"):
        RewardModel.from_pretrained(bert_dir, device="cpu", packing="on")
    assert RewardModel.from_pretrained(bert_dir, device="cpu", packing="auto").pack is False
