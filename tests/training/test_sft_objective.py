"""--objective sft (issue 21): a decoder trained as a causal LM on prompt + chosen response, the loss on the
response's tokens only; a reward model starts from it; --sft-epochs runs both stages. Tiny Llama, fp32."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import pairs_records, write_jsonl

from rewardkit import RewardModel, TrainConfig, train
from rewardkit.errors import UsageError


def sft_cfg(model: Path, data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(model=str(model), train_data=str(data), output_dir=str(out), objective="sft", eval_split=0.25,
                max_length=64, batch_size=4, lr=1e-2, epochs=6, precision="fp32", logging_steps=1, seed=0)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def sft_run(llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("sft")
    data = write_jsonl(d / "pairs.jsonl", pairs_records(32))
    train(sft_cfg(llama_dir, data, d / "out"), log=lambda m: None)
    return d / "out", data


def test_sft_writes_a_causal_lm_and_reports_perplexity(sft_run: tuple[Path, Path]) -> None:
    from transformers import AutoModelForCausalLM

    out, _ = sft_run
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["rewardkit"]["objective"] == "sft"
    assert "normalization" not in config["rewardkit"]  # a language model has no rewards
    AutoModelForCausalLM.from_pretrained(out)  # plain transformers loads it
    summary = json.loads((out / "eval.json").read_text())
    assert summary["objective"] == "sft" and summary["eval"]["chosen_responses"] == 8
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if r["split"] == "train"]
    assert losses[-1] < losses[0] - 1.0  # it learns the chosen responses
    # held-out perplexity is exp(mean NLL) and far below a uniform guess over the vocabulary
    assert summary["eval"]["perplexity"] == pytest.approx(2.718281828 ** summary["eval"]["nll"], rel=1e-6)
    assert summary["eval"]["perplexity"] < 50
    card = (out / "README.md").read_text()
    assert "not a reward model itself" in card and "rewardkit train --model" in card


def test_loss_is_the_response_tokens_nll(llama_dir: Path) -> None:
    """collate_lm reads exactly the response tokens and the EOS, and TokenLogProbNet gives plain
    transformers' log-probabilities for them: the SFT loss is on response tokens only."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rewardkit.model.backbone import make_encoder
    from rewardkit.model.batching import collate_lm
    from rewardkit.model.net import TokenLogProbNet

    model = AutoModelForCausalLM.from_pretrained(llama_dir).eval()
    tok = AutoTokenizer.from_pretrained(llama_dir)
    enc = make_encoder(model, tok, 48)
    items = [enc.encode_texts("Human: How do I bake bread?", [" Mix flour and water."]),
             enc.encode_texts("Tell me a joke. " * 8, [" Why did the chicken cross the road?"])]
    batch = collate_lm(items, pad_id=0)
    for i, e in enumerate(items):
        seq, p = e.input_ids[0], e.prompt_len
        rows = batch.reward_row == i
        assert batch.read_ids[rows].tolist() == seq[p:]  # response tokens and the final EOS, no prompt token
        assert batch.reward_col[rows].tolist() == list(range(p - 1, len(seq) - 1))
        assert seq[-1] == tok.eos_token_id
    with torch.no_grad():
        got = TokenLogProbNet(model)(**batch.inputs())
        want = []
        for e in items:
            seq, p = e.input_ids[0], e.prompt_len
            logp = model(input_ids=torch.tensor([seq])).logits[0].float().log_softmax(-1)
            want += [logp[t - 1, seq[t]].item() for t in range(p, len(seq))]
    assert got.tolist() == pytest.approx(want, abs=1e-5)


def test_reward_model_starts_from_the_sft_model(sft_run: tuple[Path, Path], tmp_path: Path) -> None:
    """`rewardkit train --model SFT_DIR`: the backbone's weights come from SFT, the score head is new, the
    LM head is left out; RewardModel refuses the SFT directory itself."""
    from safetensors.torch import load_file

    sft_dir, data = sft_run
    out = tmp_path / "rm"
    train(TrainConfig(model=str(sft_dir), train_data=str(data), output_dir=str(out), eval_split=0.25, max_length=64,
                      batch_size=4, lr=1e-5, precision="fp32"), log=lambda m: None)
    rm_weights, sft_weights = load_file(str(out / "model.safetensors")), load_file(str(sft_dir / "model.safetensors"))
    assert "score.weight" in rm_weights and "lm_head.weight" not in rm_weights
    layer = "model.layers.0.mlp.down_proj.weight"
    assert (rm_weights[layer] - sft_weights[layer]).abs().max() < 1e-3  # one tiny step away from SFT's
    assert json.loads((out / "config.json").read_text())["architectures"] == ["LlamaForSequenceClassification"]
    with pytest.raises(UsageError, match="SFT model"):
        RewardModel.from_pretrained(sft_dir, device="cpu")


def test_sft_epochs_runs_both_stages_and_resume_skips_a_finished_stage(llama_dir: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs_records(24))
    out = tmp_path / "out"
    cfg = dict(model=str(llama_dir), train_data=str(data), output_dir=str(out), eval_split=0.25, max_length=64,
               batch_size=4, lr=1e-3, precision="fp32", sft_epochs=1, save_steps=2, save_total_limit=2)
    logs: list[str] = []
    result = train(TrainConfig(**cfg), log=logs.append)
    assert json.loads((out / "sft" / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert json.loads((out / "config.json").read_text())["architectures"] == ["LlamaForSequenceClassification"]
    settings = (out / "train_config.yaml").read_text()
    assert f"model: {out / 'sft'}" in settings and "\nsft_epochs: 1\n" in settings
    assert any("SFT stage: 1 epoch(s)" in m for m in logs) and result.eval_metrics["pairs"] == 6
    # an interrupted reward-model stage resumes without training SFT again
    (out / "eval.json").unlink()
    sft_mtime = (out / "sft" / "model.safetensors").stat().st_mtime
    logs.clear()
    train(TrainConfig(**cfg, resume="latest"), log=logs.append)
    assert any("SFT stage: finished" in m for m in logs)
    assert (out / "sft" / "model.safetensors").stat().st_mtime == sft_mtime


@pytest.mark.parametrize("objective", ["sft", "generative"])
def test_an_encoder_backbone_is_refused_and_nothing_is_lost(bert_dir: Path, tmp_path: Path, objective: str) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs_records(8))
    out = tmp_path / "out"
    out.mkdir()
    (out / "eval.json").write_text("{}")  # a finished earlier run that --overwrite would replace
    done = subprocess.run([sys.executable, "-m", "rewardkit", "train", "--objective", objective, "--model",
                           str(bert_dir), "--train-data", str(data), "--output-dir", str(out), "--overwrite"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert f"--objective {objective} needs a decoder" in done.stderr and str(bert_dir) in done.stderr
    assert "Traceback" not in done.stderr
    assert (out / "eval.json").read_text() == "{}"  # refused before the output directory was touched


def test_sft_with_lora_exports_adapter_and_merged(llama_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from rewardkit.training.export import export

    data = write_jsonl(tmp_path / "pairs.jsonl", pairs_records(16))
    out = tmp_path / "out"
    result = train(sft_cfg(llama_dir, data, out, epochs=1, lora_r=4, merge=True, save_steps=1,
                             save_total_limit=0), log=lambda m: None)
    assert (out / "adapter_config.json").is_file() and (out / "merged" / "config.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(out / "merged")
    exported = export(out / f"checkpoint-{result.steps}", tmp_path / "exported", merge=True)
    again = AutoModelForCausalLM.from_pretrained(exported)
    ids = torch.tensor([[5, 17, 33, 41]])
    with torch.no_grad():
        assert (merged(input_ids=ids).logits - again(input_ids=ids).logits).abs().max() < 1e-4
