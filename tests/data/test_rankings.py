"""K-way rankings: parsing, invalid records at the CLI, one forward pass, per-prompt batches, and
the synthetic known-order experiment (Plackett-Luce vs pairwise) on a tiny model."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from conftest import write_jsonl

from rewardkit.cli import main
from rewardkit.data.formats import parse_record
from rewardkit.data.loading import group_by_prompt, load_comparisons
from rewardkit.data.records import Comparison
from rewardkit.errors import RecordError
from rewardkit.model.batching import collate

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------------- parsing


def test_responses_with_scores_are_sorted_best_first() -> None:
    [c] = parse_record({"prompt": "p", "responses": ["ok", "best", "bad"], "scores": [2, "3.5", 1]})
    assert c.responses == ["best", "ok", "bad"]
    assert c.scores == [3.5, 2.0, 1.0]


def test_ranking_is_best_first_and_may_carry_scores() -> None:
    [c] = parse_record({"prompt": "p", "ranking": ["a", "b", "c", "d"]})
    assert c.responses == ["a", "b", "c", "d"] and c.scores is None
    [c] = parse_record({"question": "p", "ranking": ["a", "b"], "scores": [2, 1]})
    assert c.prompt == "p" and c.scores == [2.0, 1.0]


def test_ranking_of_messages() -> None:
    prompt = [{"role": "user", "content": "hi"}]
    ranking = [[{"role": "assistant", "content": "hello!"}], [{"role": "assistant", "content": "go away"}]]
    [c] = parse_record({"prompt": prompt, "ranking": ranking})
    assert c.prompt == prompt and c.responses == ranking


@pytest.mark.parametrize("record, reason", [
    ({"prompt": "p", "ranking": ["only"]}, "field 'ranking' needs at least 2 responses, got 1"),
    ({"prompt": "p", "responses": ["a"], "scores": [1]}, "field 'responses' needs at least 2 responses, got 1"),
    ({"prompt": "p", "responses": ["a", "b", "c"], "scores": [1, 2]}, "field 'scores' has 2 values for 3 responses"),
    ({"prompt": "p", "ranking": ["a", "b"], "scores": [1, 2, 3]}, "field 'scores' has 3 values for 2 responses"),
    ({"prompt": "p", "ranking": ["a", "b", "a"]}, "field 'ranking' has duplicate responses (ranking[0] and ranking[2]"),
    ({"prompt": "p", "responses": ["a", "b", "c"], "scores": [3, 1, 3]}, "field 'scores' has ties"),
    ({"prompt": "p", "responses": ["a", "b"], "scores": [1, "nan"]}, "field 'scores[1]' must be a finite number"),
    ({"prompt": "p", "responses": ["a", "b"]}, "field 'scores' is missing"),
    ({"prompt": "p", "ranking": ["a", "b"], "scores": [1, 2]}, "must not increase along 'ranking'"),
    ({"prompt": "p", "ranking": "a, b"}, "field 'ranking' must be a list of responses"),
    ({"ranking": ["a", "b"]}, "missing field 'prompt'"),
    ({"prompt": "p", "ranking": ["a", " "]}, "field 'ranking[1]' is empty"),
])
def test_invalid_rankings_are_rejected_with_a_reason(record: dict, reason: str) -> None:
    with pytest.raises(RecordError) as e:
        parse_record(record)
    assert reason in str(e.value)


# --------------------------------------------------------------------------------------- CLI, exit 2

BAD_RANKINGS = [
    {"prompt": "fine", "ranking": ["good answer", "bad answer"]},
    {"prompt": "one", "ranking": ["lonely answer"]},
    {"prompt": "lengths", "responses": ["x", "y", "z"], "scores": [3, 2]},
    {"prompt": "dups", "ranking": ["same", "other", "same"]},
]
BAD_LINES = [":2: field 'ranking' needs at least 2 responses, got 1",
             ":3: field 'scores' has 2 values for 3 responses",
             ":4: field 'ranking' has duplicate responses"]


@pytest.mark.parametrize("command", ["convert", "check", "train"])
def test_invalid_rankings_exit_2_with_file_line_reason(command: str, tmp_path: Path, bert_dir: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    path = write_jsonl(tmp_path / "rankings.jsonl", BAD_RANKINGS)
    argv = {"convert": ["data", "convert", str(path), "-o", str(tmp_path / "out.jsonl")],
            "check": ["data", "check", str(path), "--strict"],
            "train": ["train", "--model", str(bert_dir), "--train-data", str(path),
                      "--output-dir", str(tmp_path / "model")]}[command]
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err
    shown = captured.out + err if command == "check" else err  # check prints its report on stdout
    for line in BAD_LINES:
        assert f"{path}{line}" in shown
    assert "Traceback" not in err
    if command != "check":
        assert "3 invalid record(s)" in err
        assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "model" / "config.json").exists()


def test_check_reports_invalid_rankings(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_jsonl(tmp_path / "rankings.jsonl", BAD_RANKINGS)
    assert main(["data", "check", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["invalid"] == 3 and report["comparisons"] == 1
    assert [r.split(str(path))[1] for r in report["invalid_records"]] == [
        ":2: field 'ranking' needs at least 2 responses, got 1",
        ":3: field 'scores' has 2 values for 3 responses",
        ":4: field 'ranking' has duplicate responses (ranking[0] and ranking[2] are identical)"]


def test_convert_rankings_to_pairs_and_back(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = write_jsonl(tmp_path / "r.jsonl", [
        {"prompt": "p", "responses": ["mid", "top", "low"], "scores": [2, 5, 1], "subset": "s"},
        {"prompt": "q", "ranking": ["first", "second", "third"]}])
    pairs = tmp_path / "pairs.jsonl"
    assert main(["data", "convert", str(src), "-o", str(pairs), "--to", "pairs", "--margin-scale", "0.5"]) == 0
    got = [json.loads(x) for x in pairs.read_text().splitlines()]
    assert got[:3] == [
        {"prompt": "p", "chosen": "top", "rejected": "mid", "margin": 1.5, "subset": "s"},
        {"prompt": "p", "chosen": "top", "rejected": "low", "margin": 2.0, "subset": "s"},
        {"prompt": "p", "chosen": "mid", "rejected": "low", "margin": 0.5, "subset": "s"}]
    assert got[3:] == [{"prompt": "q", "chosen": "first", "rejected": "second"},
                       {"prompt": "q", "chosen": "first", "rejected": "third"},
                       {"prompt": "q", "chosen": "second", "rejected": "third"}]
    back = tmp_path / "rankings.jsonl"
    assert main(["data", "convert", str(src), "-o", str(back)]) == 0  # --to auto keeps K > 2 as rankings
    comps = load_comparisons(str(back)).comparisons
    assert [c.responses for c in comps] == [["top", "mid", "low"], ["first", "second", "third"]]
    assert comps[0].scores == [5.0, 2.0, 1.0] and comps[0].subset == "s"
    assert "wrote 2 records (0 pairs, 2 rankings)" in capsys.readouterr().err


# --------------------------------------------------------------------------------------- one forward pass


def test_mixed_k_batch_scores_like_single_responses(bert_dir: Path) -> None:
    """A pair and a 3-way ranking in one padded batch give each response the reward it gets alone."""
    from rewardkit.model.backbone import load_backbone, make_encoder
    from rewardkit.model.net import RewardNet, compute_rewards

    model, tok = load_backbone(str(bert_dir))
    model.eval()
    encoder = make_encoder(model, tok, 64)
    comps = [Comparison("Say hi.", ["Hello there, friend.", "No."]),
             Comparison("Count to three.", ["One, two, three.", "One two.", "Seven."])]
    items = [encoder.encode(c) for c in comps]
    net = RewardNet(model)
    calls = []
    net.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        together = compute_rewards(net, collate(items, tok.pad_token_id))
        alone = [compute_rewards(net, collate([encoder.encode_texts(c.prompt, [r])], tok.pad_token_id)).item()
                 for c in comps for r in c.responses]
    assert len(calls) == 1 + 5  # the mixed batch took one forward pass
    assert together.tolist() == pytest.approx(alone, abs=1e-5)


# --------------------------------------------------------------------------------------- per-prompt batches


def _shared_prompt_pairs() -> list[dict]:
    """Prompts with 1, 2, 3 and 4 pair records, plus a ranking sharing a prompt with pairs."""
    recs = []
    for p in range(8):
        for j in range(p % 4 + 1):
            recs.append({"prompt": f"prompt {p}: please answer", "chosen": f"a kind reply {p} {j}",
                         "rejected": f"rude reply {p} {j} " + "x " * j})
    recs.append({"prompt": "prompt 3: please answer", "ranking": ["best of all", "middle one", "worst one"]})
    return recs


def test_plan_training_keeps_prompt_groups_whole() -> None:
    from rewardkit.training.batch_plan import plan_micro_batches

    comps = [c for r in _shared_prompt_pairs() for c in parse_record(r)]
    units = group_by_prompt(comps)
    lengths = [len(str(c.responses)) for c in comps]
    for world in (1, 2, 3):
        rounds = plan_micro_batches(units, lengths, batch_size=3, epochs=1, seed=0, world=world)
        seen = [i for rnd in rounds for batch in rnd for i in batch]
        assert sorted(set(seen)) == list(range(len(comps)))  # every comparison is used
        for rnd in rounds:
            for batch in rnd:
                for u in units:
                    inside = [i in batch for i in u]
                    assert all(inside) or not any(inside), f"prompt group {u} split across batches"
    # singleton units reproduce the plain length-grouped plan exactly
    from rewardkit.model.batching import length_grouped_batches
    single = plan_micro_batches([[i] for i in range(len(comps))], lengths, 4, 1, 0, 1)
    assert [rnd[0] for rnd in single] == length_grouped_batches(lengths, 4, 0)


def test_training_batches_hold_whole_prompts_with_unit_weight(tmp_path: Path, bert_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """--loss bt --balance-per-prompt: every batch holds whole prompt groups; weights sum to 1 per prompt."""
    from rewardkit import TrainConfig, train
    from rewardkit.training.objectives import pairwise as pairwise_mod

    seen: list[tuple[list[int], list[int], torch.Tensor]] = []
    real_collate = pairwise_mod.collate_for

    def spy(items, pad_id, share, pack=0, **kw):  # type: ignore[no-untyped-def]
        batch = real_collate(items, pad_id, share, pack, **kw)
        seen.append(([len(e.input_ids) for e in items], list(kw["prompt_ids"]), batch.pair_weight.clone()))
        return batch

    monkeypatch.setattr(pairwise_mod, "collate_for", spy)
    data = write_jsonl(tmp_path / "pairs.jsonl", _shared_prompt_pairs())
    cfg = TrainConfig(model=str(bert_dir), train_data=str(data), eval_split=0.0, batch_size=3, epochs=2,
                      loss="bt", balance_per_prompt=True, output_dir=str(tmp_path / "out"), max_length=64,
                      precision="fp32")
    train(cfg, log=lambda _m: None)
    comps = [c for r in _shared_prompt_pairs() for c in parse_record(r)]
    size_of_group = {}
    for u, members in enumerate(group_by_prompt(comps)):
        size_of_group[u] = len(members)
    assert seen
    for sizes, groups, weights in seen:
        pair_group = [g for k, g in zip(sizes, groups) for _ in range(k * (k - 1) // 2)]
        for g in set(groups):
            assert groups.count(g) == size_of_group[g]  # the whole prompt is in this batch
            total = sum(w for w, pg in zip(weights.tolist(), pair_group) if pg == g)
            assert total == pytest.approx(1.0)
        assert len(set(groups)) <= 3  # batch_size counts prompts when balancing


# --------------------------------------------------------------------------------------- known order


def _synthetic_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("synthetic_rankings", ROOT / "scripts" / "synthetic_rankings.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_ranking_scores_by_hand() -> None:
    sr = _synthetic_module()
    assert sr.ranking_scores([3.0, 2.0, 1.0]) == (1.0, 1.0, 1.0)
    assert sr.ranking_scores([1.0, 2.0, 3.0]) == (-1.0, 0.0, 0.0)
    tau, acc, top1 = sr.ranking_scores([2.0, 3.0, 1.0])  # 2 of 3 pairs right
    assert (tau, acc, top1) == (pytest.approx(1 / 3), pytest.approx(2 / 3), 0.0)
    assert sr.ranking_scores([1.0, 1.0, 1.0]) == (0.0, 0.0, 0.0)


def test_synthetic_rankings_pl_learns_the_true_order(tmp_path: Path, bert_dir: Path) -> None:
    """Acceptance: PL orders held-out rankings far better than chance, and no worse than pairwise BT."""
    sr = _synthetic_module()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = sr.run(str(bert_dir), tmp_path, n_train=200, n_test=60, k=4, beta=1.0, epochs=1.0,
                     batch_size=8, lr=2e-3, seed=0)
    finally:
        torch.set_num_threads(threads)
    pl, bt = res["pl"], res["bt"]
    assert pl["kendall_tau"] > 0.6 and pl["pairwise_accuracy"] > 0.8  # chance: 0 and 0.5
    assert pl["kendall_tau"] >= bt["kendall_tau"] - 0.05
