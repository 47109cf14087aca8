"""The dynamic batcher on its own (no model, no server): order, token budget, back-pressure, drops."""

from __future__ import annotations

import asyncio
import threading

import pytest

from rewardkit.encoding.encoder import Encoded
from rewardkit.serving.batcher import Batcher, QueueFull
from rewardkit.serving.prometheus import Metrics


def enc(n: int, rows: int = 1, tag: int = 0) -> Encoded:
    return Encoded(input_ids=[[tag] * n for _ in range(rows)], token_type_ids=None, prompt_len=0, truncated=False)


def run_batcher(jobs: list[list[Encoded]], **kwargs: object) -> tuple[list[list[list[float]]], list[int]]:
    """Submit all jobs at once; the fake model returns each item's tag and length, records batch sizes."""
    sizes: list[int] = []

    def model(items: list[Encoded]) -> list[list[float]]:
        sizes.append(len(items))
        return [[float(e.input_ids[0][0]), float(e.longest)] for e in items]

    async def main() -> list[list[list[float]]]:
        b = Batcher(model, Metrics(), **kwargs)  # type: ignore[arg-type]
        b.start()
        submitted = [await b.submit(items) for items in jobs]
        out = [await job.future for job in submitted]
        await b.drain()
        return out

    return asyncio.run(main()), sizes


def test_results_keep_request_and_item_order() -> None:
    jobs = [[enc(3 + (7 * j + i) % 11, tag=100 * j + i) for i in range(1 + j % 4)] for j in range(20)]
    out, sizes = run_batcher(jobs, max_batch_tokens=10_000, max_wait_s=0.01, max_queue_items=1000)
    for j, items in enumerate(jobs):
        assert out[j] == [[float(e.input_ids[0][0]), float(e.longest)] for e in items]
    assert len(sizes) < len(jobs)  # queued together -> batched together
    _, unbatched = run_batcher(jobs, max_batch_tokens=10_000, max_wait_s=0.01, max_queue_items=1000, batching=False)
    assert unbatched == [len(items) for items in jobs]  # one request per forward


def test_batches_stay_under_the_token_budget() -> None:
    jobs = [[enc(10)] for _ in range(30)]
    _, sizes = run_batcher(jobs, max_batch_tokens=50, max_wait_s=0.01, max_queue_items=1000)
    assert max(sizes) <= 5 and sum(sizes) == 30


def test_queue_full_and_dropped_jobs() -> None:
    gate = threading.Event()
    seen: list[int] = []

    def model(items: list[Encoded]) -> list[list[float]]:
        gate.wait(10)
        seen.extend(e.input_ids[0][0] for e in items)
        return [[0.0] for _ in items]

    async def main() -> Metrics:
        metrics = Metrics()
        b = Batcher(model, metrics, max_batch_tokens=5, max_wait_s=0.0, max_queue_items=3)
        b.start()
        first = await b.submit([enc(5, tag=1)])
        await asyncio.sleep(0.05)  # the first batch now blocks in the model thread
        queued = [await b.submit([enc(5, tag=t)]) for t in (2, 3, 4)]
        with pytest.raises(QueueFull):
            await b.submit([enc(5, tag=5)])
        b.cancel(queued[1])  # its client left
        assert queued[1].future.cancelled()
        gate.set()
        await first.future
        for job in (queued[0], queued[2]):
            await job.future
        await b.drain()
        return metrics

    metrics = asyncio.run(main())
    assert seen == [1, 2, 4]  # the dropped job never reached the model
    assert metrics.dropped == 1 and metrics.rejected == 1 and metrics.queue_items == 0
    text = metrics.render()
    assert "rewardkit_dropped_total 1" in text and "rewardkit_rejected_total 1" in text


def test_wait_adapts_to_the_previous_batch() -> None:
    """A lone client never waits; after a 4-item batch, the next batch waits for 4 items (or max_wait)."""
    import time

    sizes: list[int] = []

    def model(items: list[Encoded]) -> list[list[float]]:
        sizes.append(len(items))
        return [[0.0] for _ in items]

    async def main() -> tuple[float, float]:
        b = Batcher(model, Metrics(), max_batch_tokens=10_000, max_wait_s=1.0, max_queue_items=100)
        b.start()
        t0 = time.perf_counter()
        await (await b.submit([enc(4)])).future
        lone = time.perf_counter() - t0
        await (await b.submit([enc(4)] * 4)).future
        t0 = time.perf_counter()
        first = await b.submit([enc(4)])
        await asyncio.sleep(0.1)
        rest = [await b.submit([enc(4)]) for _ in range(3)]
        for job in [first, *rest]:
            await job.future
        grouped = time.perf_counter() - t0
        await b.drain()
        return lone, grouped

    lone, grouped = asyncio.run(main())
    assert lone < 0.5 and grouped < 0.9  # neither waited for the 1 s deadline
    assert sizes == [1, 4, 4]


def test_packed_items_cost_their_real_tokens() -> None:
    from rewardkit.serving.batcher import item_cost

    e = Encoded(input_ids=[[1, 2, 3, 4, 9], [1, 2, 3, 7, 8, 9, 9]], token_type_ids=None, prompt_len=3, truncated=False)
    assert item_cost(e) == 2 * 7  # padded: rows x longest row
    assert item_cost(e, packed=True) == 5 + 7  # packed rows hold the real tokens
    assert item_cost(e, packed=True, share_prefix=True) == 3 + 2 + 4  # the prompt once


def test_a_packed_server_cuts_passes_by_real_tokens(llama_dir: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """The model thread of a packed server runs passes of up to the budget in real tokens (more items per
    pass than padded rows would allow) and returns the rewards of unpacked scoring, in item order."""
    import torch

    from rewardkit.model.backbone import load_backbone
    from rewardkit.model.batching import token_budget_batches
    from rewardkit.model.reward_model import RewardModel
    from rewardkit.serving.app import ModelWorker
    from rewardkit.serving.config import ServeConfig

    model, tok = load_backbone(str(llama_dir))
    torch.manual_seed(1)
    for p in model.parameters():
        p.data.normal_(0, 0.2)
    plain = RewardModel(model, tok, device="cpu", packing="off", max_length=64)
    packed = RewardModel(model, tok, device="cpu", packing="on", max_length=64)
    items = [packed.encoder.encode_texts(f"question {i} " + "more words " * (i % 5), [f"answer {i} " + "x " * i])
             for i in range(12)]
    budget = 160
    worker = ModelWorker(packed, ServeConfig(model_dir="unused", max_batch_tokens=budget), Metrics())
    passes: list[int] = []
    real = packed.rewards_for
    monkeypatch.setattr(packed, "rewards_for", lambda chunk, batch_size: passes.append(
        sum(worker.cost(e) for e in chunk)) or real(chunk, batch_size=batch_size))
    got = worker._run(items)
    assert got == [pytest.approx(r, abs=1e-5) for r in plain.rewards_for(items)]
    assert max(passes) <= budget and sum(passes) == sum(worker.cost(e) for e in items)
    padded = token_budget_batches([e.longest for e in items], [len(e.input_ids) for e in items], budget)
    assert len(passes) < len(padded)
