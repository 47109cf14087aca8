"""Dynamic batching for `rewardkit serve`: many small requests, few large forward passes.

RL loops send one rollout per request with many requests in flight (OpenRLHF's client), so a
server that runs one forward per request leaves the hardware mostly idle on overhead. Here every
request becomes a `QueuedJob` on one queue; a single batcher task takes jobs in arrival order up to a
token budget and runs the batch on one worker thread, so the event loop keeps accepting and parsing
requests meanwhile. While a batch runs, the next one fills up. When the queue runs dry before the
budget is reached, the batcher waits for more (at most ``max_wait`` after the oldest job arrived),
but only until the batch holds as many items as the previous one: under closed-loop load (RL
workers send their next rollout when the last is scored) those clients return right after each
batch, and a lone client (previous batch: its one item) never waits.

The worker sorts a batch's items by length and cuts it into forward passes under the same token
budget (rows x longest row; `rewardkit.model.batching.token_budget_batches`, as training's passes),
so padding stays small. With packed rows (``--packing``, decoders on a GPU) an item costs its real
tokens instead, so a pass holds as many items as the budget allows. Results go back to each job in its own item
order. Rewards do not depend on the batch: padding is masked and the reward read at each row's
last real token.

A job whose client disconnected is skipped if its batch has not started; a full queue refuses new
jobs (`QueueFull`, answered 503 + Retry-After); `drain` waits for every accepted job.
"""

from __future__ import annotations

import asyncio
import collections
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from rewardkit.encoding.encoded_set import tokens_of
from rewardkit.encoding.encoder import Encoded
from rewardkit.serving.prometheus import Metrics


class QueueFull(Exception):
    """More items are waiting than ``max_queue_items``."""


def item_cost(e: Encoded, packed: bool = False, share_prefix: bool = False) -> int:
    """Tokens an item occupies in a forward pass: its rows times its longest row, or with packed rows
    its real tokens (prompt once with prefix sharing)."""
    if packed:
        return tokens_of([e], share_prefix)[0]
    return len(e.input_ids) * e.longest


@dataclass
class QueuedJob:
    items: list[Encoded]
    future: asyncio.Future
    tokens: int = 0  # what its items cost against the token budget (`item_cost`)
    enqueued: float = field(default_factory=time.perf_counter)
    cancelled: bool = False
    running: bool = False


class Batcher:
    """One queue, one batcher task, one model thread (see the module docstring)."""

    def __init__(self, run: Callable[[list[Encoded]], list[list[float]]], metrics: Metrics,
                 max_batch_tokens: int, max_wait_s: float, max_queue_items: int, batching: bool = True,
                 cost: Callable[[Encoded], int] = item_cost):
        self.run = run
        self.cost = cost
        self.metrics = metrics
        self.max_batch_tokens = max_batch_tokens
        self.max_wait_s = max_wait_s
        self.max_queue_items = max_queue_items
        self.batching = batching
        self.queue: collections.deque[QueuedJob] = collections.deque()
        self.queued_items = 0
        self.pending = 0  # accepted jobs not yet answered (queued or running)
        self.wakeup = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rewardkit-model")
        self.task: asyncio.Task | None = None
        # Items of the previous batch. Under closed-loop load (each client sends its next request when
        # the last one is answered) that many items come back right after a batch: waiting for them
        # keeps batches full, and with one client (expect = 1) a request never waits at all.
        self.expect = 1

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._loop(), name="rewardkit-batcher")

    async def submit(self, items: list[Encoded]) -> QueuedJob:
        """Queue ``items`` as one job; await ``job.future`` for their rewards."""
        if self.queued_items + len(items) > self.max_queue_items:
            self.metrics.count("rejected")
            raise QueueFull(f"{self.queued_items} items already waiting (limit {self.max_queue_items})")
        job = QueuedJob(items=items, future=asyncio.get_running_loop().create_future(),
                        tokens=sum(self.cost(e) for e in items))
        self.queue.append(job)
        self._queued(len(items))
        self.pending += 1
        self.idle.clear()
        job.future.add_done_callback(self._answered)
        self.wakeup.set()
        return job

    def cancel(self, job: QueuedJob) -> None:
        """The client left: drop the job unless its batch already runs (then its result is discarded)."""
        if job.cancelled or job.future.done():
            return
        job.cancelled = True
        if job in self.queue:
            self.queue.remove(job)
            self._queued(-len(job.items))
        if not job.running:  # queued, or in a batch still waiting for company: never computed
            self.metrics.count("dropped")
            job.future.cancel()

    def _queued(self, n: int) -> None:
        self.queued_items += n
        self.metrics.queue_items = self.queued_items

    def _answered(self, _: Any) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.idle.set()

    async def drain(self) -> None:
        """Wait until every accepted job is answered, then stop the batcher."""
        await self.idle.wait()
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=True)

    def _take(self, batch: list[QueuedJob], tokens: int) -> int:
        """Move queued jobs into ``batch`` in arrival order while the token budget allows."""
        while self.queue:
            job = self.queue[0]
            cost = job.tokens
            if batch and (not self.batching or tokens + cost > self.max_batch_tokens):
                break
            self.queue.popleft()
            self._queued(-len(job.items))
            batch.append(job)
            tokens += cost
            if not self.batching:
                break
        return tokens

    async def _form(self) -> list[QueuedJob]:
        """The next batch: queued jobs up to the budget, waiting briefly for more when it is not full."""
        while not self.queue:
            self.wakeup.clear()
            await self.wakeup.wait()
        batch: list[QueuedJob] = []
        tokens = self._take(batch, 0)
        if not self.batching:
            return batch
        deadline = batch[0].enqueued + self.max_wait_s
        while (tokens < self.max_batch_tokens and self._items(batch) < self.expect
               and (not self.queue or self._fits(tokens))):
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            self.wakeup.clear()
            try:
                await asyncio.wait_for(self.wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                break
            tokens = self._take(batch, tokens)
        return batch

    @staticmethod
    def _items(batch: list[QueuedJob]) -> int:
        return sum(len(job.items) for job in batch)

    def _fits(self, tokens: int) -> bool:
        return tokens + self.queue[0].tokens <= self.max_batch_tokens

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [job for job in await self._form() if not job.cancelled]
            if not batch:
                continue
            for job in batch:
                job.running = True
            items = [e for job in batch for e in job.items]
            self.expect = len(items)
            started = time.perf_counter()
            try:
                rewards = await loop.run_in_executor(self.executor, self.run, items)
            except Exception as e:  # noqa: BLE001 - reported to each waiting request as a 500
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(e)
                continue
            seconds = time.perf_counter() - started
            self.metrics.batch(len(items), sum(sum(len(r) for r in e.input_ids) for e in items),
                               sum(e.truncated for e in items), seconds,
                               [started - job.enqueued for job in batch for _ in job.items])
            offset = 0
            for job in batch:
                n = len(job.items)
                if not job.future.done():
                    job.future.set_result(rewards[offset:offset + n])
                offset += n
