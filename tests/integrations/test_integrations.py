"""RL-framework adapters: TRL's GRPOTrainer (run for real on CPU) and verl's compute_score (called as verl does)."""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import CHAT_TEMPLATE, _bpe_tokenizer
from serve_util import Server, spread_llama

from rewardkit import RewardModel
from rewardkit.integrations.trl import AsyncTRLReward, TRLReward, trl_reward_func

KEY = "integrations-key-93be"


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama reward model with a chat template whose rewards differ visibly between texts."""
    return spread_llama(tmp_path_factory.mktemp("rk-llama-chat"), CHAT_TEMPLATE)


@pytest.fixture(scope="module")
def rm(rm_dir: Path) -> RewardModel:
    return RewardModel.from_pretrained(rm_dir, device="cpu")


@pytest.fixture(scope="module")
def server(rm_dir: Path) -> Any:
    s = Server(rm_dir, key=KEY)
    yield s
    assert s.stop() == 0, s.output()


PROMPTS = ["Human: How do I bake bread? Assistant:", "Human: What is the capital of France? Assistant:",
           "Human: Tell me a joke. Assistant:", "Human: What is a fox? Assistant:"]


def _tiny_policy(tmp: Path, chat: bool) -> tuple[Any, Any]:
    """A random 2-layer Llama causal LM with the tests' byte-level BPE tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _bpe_tokenizer(CHAT_TEMPLATE if chat else None)
    tok.pad_token = tok.eos_token
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=64, max_position_embeddings=256,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg), tok


@pytest.mark.parametrize("chat", [False, True], ids=["plain", "conversational"])
def test_grpo_trainer_logs_rewardkit_rewards(tmp_path: Path, rm_dir: Path, rm: RewardModel, chat: bool) -> None:
    pytest.importorskip("trl")
    calls: list[dict[str, Any]] = []

    class Recording(TRLReward):
        def __call__(self, prompts: Any, completions: Any, **kwargs: Any) -> list[float]:
            out = super().__call__(prompts, completions, **kwargs)
            calls.append(self.last_call)
            return out

    reward = Recording(str(rm_dir), name="rk_reward")  # the adapter, recording what TRL passed
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    policy, tok = _tiny_policy(tmp_path, chat)
    prompts = [[{"role": "user", "content": p}] for p in PROMPTS] if chat else PROMPTS
    args = GRPOConfig(output_dir=str(tmp_path / "grpo"), per_device_train_batch_size=4, num_generations=2,
                      max_completion_length=6, max_steps=2, logging_steps=1, report_to="none", use_cpu=True,
                      bf16=False, learning_rate=1e-4, save_strategy="no", seed=0)
    trainer = GRPOTrainer(model=policy, reward_funcs=reward, args=args,
                          train_dataset=Dataset.from_dict({"prompt": prompts}), processing_class=tok)
    trainer.train()

    logged = [h["rewards/rk_reward/mean"] for h in trainer.state.log_history if "rewards/rk_reward/mean" in h]
    assert len(calls) == 2 and len(logged) == 2, (len(calls), trainer.state.log_history)
    for call, mean in zip(calls, logged):
        assert len(call["prompts"]) == 4
        if chat:  # TRL's conversational format reached the adapter as messages
            assert isinstance(call["prompts"][0], list) and call["completions"][0][0]["role"] == "assistant"
        else:
            assert all(isinstance(c, str) for c in call["completions"])
        expected = [rm.score(p, c) for p, c in zip(call["prompts"], call["completions"])]  # one by one
        assert max(expected) - min(expected) > 1e-3  # distinct rewards: the comparison means something
        assert call["rewards"] == pytest.approx(expected, abs=1e-4)
        assert mean == pytest.approx(sum(expected) / len(expected), abs=1e-4)


def test_trl_reward_checks_inputs_and_names(bert_dir: Path) -> None:
    reward = trl_reward_func(str(bert_dir))
    assert reward.__name__ == "rewardkit" and "in-process" in repr(reward)
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        reward(prompts=["a", "b"], completions=["x"])
    with pytest.raises(TypeError, match="completion 0 is a int"):
        reward(prompts=["a"], completions=[3])
    rm = RewardModel.from_pretrained(bert_dir, device="cpu")
    out = reward(prompts=["q1", "q2"], completions=["r1", "r2"], completion_ids=[[1], [2]], trainer_state=None)
    assert out == pytest.approx(rm.score_batch(["q1", "q2"], ["r1", "r2"]), abs=1e-5)


def test_async_trl_reward_is_seen_as_async_by_trl(bert_dir: Path) -> None:
    trl_utils = pytest.importorskip("trl.trainer.utils")
    reward = trl_reward_func(str(bert_dir), asynchronous=True, name="rk_async")
    assert isinstance(reward, AsyncTRLReward)
    assert trl_utils.is_async_callable(reward) and trl_utils.get_callable_name(reward) == "rk_async"
    sync = trl_reward_func(str(bert_dir))
    assert not trl_utils.is_async_callable(sync)
    out = asyncio.run(reward(prompts=["q1"], completions=["r1"]))
    assert out == pytest.approx(sync(prompts=["q1"], completions=["r1"]), abs=1e-5)


def test_trl_reward_normalize_only_in_process() -> None:
    with pytest.raises(ValueError, match="rewardkit serve MODEL_DIR --normalize"):
        trl_reward_func("http://127.0.0.1:9", normalize=True)


# ---------------------------------------------------------------------------------------- verl
def _verl_wrap(raw_fn: Any, reward_kwargs: dict[str, Any]) -> Any:
    """verl.trainer.ppo.reward.get_custom_reward_fn: kwargs merged in, async kept async."""
    async def call_async(fn: Any, extra: dict[str, Any], *a: Any, **kw: Any) -> Any:
        return await fn(*a, **{**kw, **extra})

    def call_sync(fn: Any, extra: dict[str, Any], *a: Any, **kw: Any) -> Any:
        return fn(*a, **{**kw, **extra})

    wrap = call_async if inspect.iscoroutinefunction(raw_fn) else call_sync
    return functools.partial(wrap, raw_fn, reward_kwargs)


def _load_like_verl(module_path: str, name: str) -> Any:
    """verl.utils.import_utils.load_extern_object for a ``pkg://`` path."""
    assert module_path.startswith("pkg://")
    return getattr(importlib.import_module(module_path[len("pkg://"):].replace("/", ".")), name)


def _verl_items() -> list[dict[str, Any]]:
    """What verl's naive reward manager passes per rollout (extra_info from parquet: numpy values)."""
    chat = np.array([{"role": "user", "content": "How do I bake bread?"}], dtype=object)
    return [
        {"prompt": "Question 1: how do I do task number 1?", "response": "Happy to help. Step one is reading.",
         "extra_info": {"split": "train", "index": np.int64(0), "prompt": "Question 1: how do I do task number 1?"}},
        {"prompt": [{"role": "user", "content": "How do I bake bread?"}], "response": "Mix flour and water.",
         "extra_info": {"split": "train", "index": np.int64(1), "prompt": chat}},
        {"prompt": "What is 2+2?", "response": "4",
         "extra_info": {"question": "What is 2+2?", "answer": "4"}},
    ]


def _verl_run_single(fn: Any, item: dict[str, Any]) -> Any:
    extra_info = dict(item["extra_info"])
    extra_info["num_turns"] = None  # added by verl's reward manager before the call
    extra_info["rollout_reward_scores"] = {}
    return fn(data_source="hh", solution_str=item["response"], ground_truth=None, extra_info=extra_info)


def test_verl_async_compute_score_in_process(rm_dir: Path, rm: RewardModel) -> None:
    from rewardkit.integrations import verl as rk_verl

    raw = _load_like_verl("pkg://rewardkit.integrations.verl", "compute_score")
    assert inspect.iscoroutinefunction(raw)
    fn = _verl_wrap(raw, {"model_dir": str(rm_dir)})
    assert inspect.iscoroutinefunction(fn)  # verl's naive manager checks this to decide to await
    items = _verl_items() * 3

    async def reward_loop() -> list[float]:  # RewardLoopWorker.compute_score_batch: one task per rollout
        return await asyncio.gather(*[asyncio.create_task(_verl_run_single(fn, it)) for it in items])

    rewards = asyncio.run(reward_loop())
    expected = rm.score_batch([it["prompt"] for it in items], [it["response"] for it in items])
    assert all(isinstance(r, float) and math.isfinite(r) for r in rewards)
    assert rewards == pytest.approx(expected, abs=1e-4)
    batchers = [b for (_, key), b in rk_verl._batchers.items() if key[1] == str(rm_dir)]
    assert sum(b.batches for b in batchers) == 1  # 9 concurrent rollouts, one forward pass


def test_verl_sync_and_batch_compute_score(rm_dir: Path, rm: RewardModel, monkeypatch: pytest.MonkeyPatch) -> None:
    from rewardkit.integrations.verl import compute_score_batch, compute_score_sync

    monkeypatch.setenv("REWARDKIT_MODEL_DIR", str(rm_dir))  # configured by environment instead of kwargs
    fn = _verl_wrap(compute_score_sync, {})
    assert not inspect.iscoroutinefunction(fn)
    items = _verl_items()
    expected = rm.score_batch([it["prompt"] for it in items], [it["response"] for it in items])
    assert [_verl_run_single(fn, it) for it in items] == pytest.approx(expected, abs=1e-4)
    batch = compute_score_batch(data_sources=np.array(["hh"] * 3, dtype=object),
                                solution_strs=[it["response"] for it in items], ground_truths=[None] * 3,
                                extra_infos=np.array([it["extra_info"] for it in items], dtype=object))
    assert batch == pytest.approx(expected, abs=1e-4)


def test_verl_compute_score_explains_missing_prompt_and_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from rewardkit.integrations.verl import compute_score_sync

    monkeypatch.delenv("REWARDKIT_URL", raising=False)
    monkeypatch.delenv("REWARDKIT_MODEL_DIR", raising=False)
    with pytest.raises(ValueError, match="extra_info has none of .*'prompt'.*keys: \\['index', 'split'\\]"):
        compute_score_sync("hh", "r", None, {"split": "train", "index": 0}, model_dir="/nonexistent")
    with pytest.raises(ValueError, match="extra_info is missing"):
        compute_score_sync("hh", "r", None, None, model_dir="/nonexistent")
    with pytest.raises(ValueError, match="no reward model configured"):
        compute_score_sync("hh", "r", None, {"prompt": "p"})
    with pytest.raises(ValueError, match="either url .* or model_dir"):
        compute_score_sync("hh", "r", None, {"prompt": "p"}, url="http://x:1", model_dir="/d")
    with pytest.raises(ValueError, match="extra_info\\['prompt'\\] is a int"):
        compute_score_sync("hh", "r", None, {"prompt": 3}, model_dir="/d")


# ---------------------------------------------------------------------------------------- through a server
def test_trl_reward_through_the_server(server: Server, rm: RewardModel) -> None:
    """The same adapter pointed at `rewardkit serve`: plain and conversational TRL inputs = in-process."""
    prompts = PROMPTS + [[{"role": "user", "content": p}] for p in PROMPTS]
    completions = [" Mix flour.", " Paris.", " No.", " A small dog."] * 2
    completions = completions[:4] + [[{"role": "assistant", "content": c.strip()}] for c in completions[4:]]
    expected = rm.score_batch(prompts, completions)
    assert max(expected) - min(expected) > 1e-3
    for asynchronous in (False, True):
        reward = trl_reward_func(server.url, api_key=KEY, asynchronous=asynchronous, client_options={"chunk_size": 3})
        out = reward(prompts=prompts, completions=completions, completion_ids=None)
        out = asyncio.run(out) if asynchronous else out
        assert out == pytest.approx(expected, abs=1e-4)
    from rewardkit.client import RewardClient

    reward = trl_reward_func(RewardClient(server.url, api_key=KEY), name="rk_client")
    assert "server http://127.0.0.1" in repr(reward)
    assert reward(prompts=prompts, completions=completions) == pytest.approx(expected, abs=1e-4)


def test_verl_compute_score_through_the_server(server: Server, rm: RewardModel,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REWARDKIT_API_KEY", KEY)
    raw = _load_like_verl("pkg://rewardkit.integrations.verl", "compute_score")
    fn = _verl_wrap(raw, {"url": server.url})
    items = _verl_items() * 4
    expected = rm.score_batch([it["prompt"] for it in items], [it["response"] for it in items])

    async def reward_loop() -> list[float]:
        return await asyncio.gather(*[asyncio.create_task(_verl_run_single(fn, it)) for it in items])

    assert asyncio.run(reward_loop()) == pytest.approx(expected, abs=1e-4)
    sync = _verl_wrap(_load_like_verl("pkg://rewardkit.integrations.verl", "compute_score_sync"), {"url": server.url})
    assert [_verl_run_single(sync, it) for it in items[:3]] == pytest.approx(expected[:3], abs=1e-4)
