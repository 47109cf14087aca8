"""HTTP client for ``rewardkit serve``: score (prompt, response) items from an RL loop.

Why a client at all: the reward call sits in the inner loop of PPO/GRPO, where a hung request
stalls a whole training step and a silently mis-shaped reply poisons advantages. So this client

* keeps pooled keep-alive connections (one ``httpx.Client`` / ``httpx.AsyncClient`` per client);
* cuts large calls into requests of ``chunk_size`` items, several in flight at once, so the
  server's dynamic batcher can merge them;
* retries connection errors, timeouts and 5xx answers (503 honours ``Retry-After``) with
  exponential backoff and full jitter, so many RL workers do not retry in lock-step, and never
  retries a 4xx: a bad request stays bad, and the server's message is raised as is;
* always has a finite timeout;
* checks that every reply holds exactly one finite reward per item sent;
* spreads requests over several base URLs, each to the one with the fewest requests in flight
  (a server that just refused a connection is avoided for a short cool-down).

The wire contract (``POST /score``): a JSON list of items, each ``{"prompt", "response"}``
(strings or chat-message lists) or ``{"prompt", "chosen", "rejected"}``; the reply is
``{"rewards": [...]}`` with a float per response item and ``[chosen, rejected]`` per pair;
errors are ``{"error": {"message": ...}}`` (``{"detail": ...}`` is understood too).
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import httpx

Text = Any  # a string, or a list of {"role", "content"} chat messages

DEFAULT_TIMEOUT = 60.0
RETRY_STATUSES = frozenset({500, 502, 503, 504})


class RewardServerError(RuntimeError):
    """The server refused a request (4xx), kept failing past the retries, or sent a malformed reply.

    ``status`` is the HTTP status (None for connection failures and malformed replies) and
    ``detail`` the server's own message when it gave one.
    """

    def __init__(self, message: str, status: int | None = None, detail: str | None = None):
        super().__init__(message)
        self.status = status
        self.detail = detail


class _Retry(Exception):
    """Internal: this attempt failed in a way worth retrying (after ``wait`` seconds at least)."""

    def __init__(self, reason: str, wait: float = 0.0):
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


def _retry_after(value: str | None, cap: float) -> float:
    """Seconds asked for by a ``Retry-After`` header (delta-seconds or an HTTP date), capped."""
    if not value:
        return 0.0
    try:
        return min(cap, max(0.0, float(value)))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return 0.0
    return min(cap, max(0.0, when - time.time()))


def _detail(response: httpx.Response) -> str:
    """The server's error message: rewardkit's (and OpenAI's) ``{"error": {"message": ...}}``,
    FastAPI's ``{"detail": ...}``, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"]
        if "detail" in body:
            d = body["detail"]
            return d if isinstance(d, str) else str(d)[:500]
    return str(body)[:500]


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_rewards(body: Any, items: Sequence[dict[str, Any]], url: str) -> list[Any]:
    """The reply's rewards, after checking one finite reward (or finite pair) per item, in order."""
    rewards = body.get("rewards") if isinstance(body, dict) else None
    if not isinstance(rewards, list):
        raise RewardServerError(f"{url}: malformed reply: no 'rewards' list")
    if len(rewards) != len(items):
        raise RewardServerError(f"{url}: malformed reply: {len(rewards)} rewards for {len(items)} items")
    for i, (r, item) in enumerate(zip(rewards, items)):
        if "chosen" in item:
            ok = isinstance(r, list) and len(r) == 2 and all(_finite(x) for x in r)
        else:
            ok = _finite(r)
        if not ok:
            raise RewardServerError(f"{url}: malformed reply: rewards[{i}] = {r!r} is not a finite "
                                    f"{'[chosen, rejected] pair' if 'chosen' in item else 'number'}")
    return [[float(x) for x in r] if isinstance(r, list) else float(r) for r in rewards]


class _Router:
    """Least-loaded choice among base URLs, with a short cool-down for ones that refused us."""

    COOLDOWN = 2.0

    def __init__(self, urls: Sequence[str]):
        self.urls = list(urls)
        self.in_flight = [0] * len(self.urls)
        self.down_until = [0.0] * len(self.urls)
        self.sent = [0] * len(self.urls)  # requests started per URL (for tests and diagnostics)
        self._next = 0
        self._lock = threading.Lock()

    def acquire(self) -> int:
        with self._lock:
            now = time.monotonic()
            n = len(self.urls)
            order = [(self._next + k) % n for k in range(n)]  # rotate to break ties fairly
            up = [i for i in order if self.down_until[i] <= now] or order
            i = min(up, key=lambda j: self.in_flight[j])
            self._next = (i + 1) % n
            self.in_flight[i] += 1
            self.sent[i] += 1
            return i

    def release(self, i: int, refused: bool = False) -> None:
        with self._lock:
            self.in_flight[i] -= 1
            if refused:
                self.down_until[i] = time.monotonic() + self.COOLDOWN


class RewardClient:
    """Score items on one or more ``rewardkit serve`` instances, synchronously or with ``await``.

    >>> client = RewardClient("http://127.0.0.1:8000")          # api_key from REWARDKIT_API_KEY
    >>> client.score(["How do I boil an egg?"], ["Simmer it for 8 minutes."])
    [0.73]

    ``base_urls``: one URL, a comma-separated string or a list (``REWARDKIT_URL`` when omitted).
    ``chunk_size`` items go in one request, at most ``max_in_flight`` requests at once per call.
    ``max_retries`` retries per request after the first attempt; the wait before retry ``k`` is
    uniform in ``[0, min(max_backoff, backoff * 2**k)]`` and never shorter than ``Retry-After``.
    """

    def __init__(self, base_urls: str | Sequence[str] | None = None, *, api_key: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, chunk_size: int = 64, max_in_flight: int = 8,
                 max_retries: int = 5, backoff: float = 0.25, max_backoff: float = 30.0,
                 max_connections: int = 64, path: str = "/score"):
        urls = base_urls if base_urls is not None else os.environ.get("REWARDKIT_URL", "")
        if isinstance(urls, str):
            urls = [u for u in (s.strip() for s in urls.split(",")) if u]
        if not urls:
            raise ValueError("RewardClient needs a base URL (argument or REWARDKIT_URL)")
        for u in urls:
            if not u.startswith(("http://", "https://")):
                raise ValueError(f"RewardClient: base URL must start with http:// or https:// (got {u!r})")
        if not (timeout and math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"RewardClient: timeout must be a positive number of seconds (got {timeout!r})")
        if chunk_size < 1 or max_in_flight < 1 or max_retries < 0:
            raise ValueError("RewardClient: chunk_size and max_in_flight must be >= 1, max_retries >= 0")
        self.router = _Router([u.rstrip("/") for u in urls])
        self.path = path
        self.chunk_size = chunk_size
        self.max_in_flight = max_in_flight
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        key = api_key if api_key is not None else os.environ.get("REWARDKIT_API_KEY")
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._timeout = httpx.Timeout(timeout)
        self._limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._sync: httpx.Client | None = None
        self._async: dict[int, tuple[Any, httpx.AsyncClient]] = {}  # per event loop: httpx pools are loop-bound
        self._lock = threading.Lock()

    @property
    def urls(self) -> list[str]:
        return self.router.urls

    # ------------------------------------------------------------------ public API
    def score(self, prompts: Sequence[Text], responses: Sequence[Text]) -> list[float]:
        """One reward per (prompt, response), in input order."""
        return self.score_items(_response_items(prompts, responses))

    async def ascore(self, prompts: Sequence[Text], responses: Sequence[Text]) -> list[float]:
        """``score`` for async code (TRL's async reward functions, verl's reward loop)."""
        return await self.ascore_items(_response_items(prompts, responses))

    def score_pairs(self, prompts: Sequence[Text], chosen: Sequence[Text],
                    rejected: Sequence[Text]) -> list[tuple[float, float]]:
        """(chosen reward, rejected reward) per pair, each pair encoded against one shared prompt."""
        return [tuple(r) for r in self.score_items(_pair_items(prompts, chosen, rejected))]  # type: ignore[misc]

    async def ascore_pairs(self, prompts: Sequence[Text], chosen: Sequence[Text],
                           rejected: Sequence[Text]) -> list[tuple[float, float]]:
        out = await self.ascore_items(_pair_items(prompts, chosen, rejected))
        return [tuple(r) for r in out]  # type: ignore[misc]

    def score_items(self, items: Sequence[dict[str, Any]]) -> list[Any]:
        """Raw ``/score`` items -> their rewards, chunked, concurrent, retried, checked."""
        chunks = self._chunks(items)
        if len(chunks) <= 1:
            return [r for c in chunks for r in self._post_sync(c)]
        with ThreadPoolExecutor(max_workers=min(self.max_in_flight, len(chunks))) as pool:
            parts = list(pool.map(self._post_sync, chunks))
        return [r for part in parts for r in part]

    async def ascore_items(self, items: Sequence[dict[str, Any]]) -> list[Any]:
        chunks = self._chunks(items)
        gate = asyncio.Semaphore(self.max_in_flight)

        async def one(chunk: list[dict[str, Any]]) -> list[Any]:
            async with gate:
                return await self._post_async(chunk)

        parts = await asyncio.gather(*(one(c) for c in chunks))
        return [r for part in parts for r in part]

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        entry = self._async.pop(id(asyncio.get_running_loop()), None)
        if entry is not None:
            await entry[1].aclose()

    def __enter__(self) -> "RewardClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> "RewardClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
        self.close()

    # ------------------------------------------------------------------ internals
    def _chunks(self, items: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        items = list(items)
        return [items[i:i + self.chunk_size] for i in range(0, len(items), self.chunk_size)]

    def _client(self) -> httpx.Client:
        with self._lock:
            if self._sync is None:
                self._sync = httpx.Client(timeout=self._timeout, limits=self._limits, headers=self._headers)
            return self._sync

    def _aclient(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        entry = self._async.get(id(loop))
        if entry is None or entry[0] is not loop:
            # forget pools of loops that have ended (asyncio.run per call): their sockets died with them
            self._async = {k: v for k, v in self._async.items() if not v[0].is_closed()}
            entry = (loop, httpx.AsyncClient(timeout=self._timeout, limits=self._limits, headers=self._headers))
            self._async[id(loop)] = entry
        return entry[1]

    def _outcome(self, url: str, response: httpx.Response, chunk: list[dict[str, Any]]) -> list[Any]:
        """Rewards of a finished request, or ``_Retry`` for a retryable status, or a raised 4xx."""
        status = response.status_code
        if status == 200:
            try:
                body = response.json()
            except ValueError:
                raise RewardServerError(f"{url}: malformed reply: not JSON", status) from None
            return check_rewards(body, chunk, url)
        detail = _detail(response)
        if status in RETRY_STATUSES or status >= 500:
            raise _Retry(f"HTTP {status}: {detail}", _retry_after(response.headers.get("retry-after"),
                                                                  self.max_backoff))
        raise RewardServerError(f"{url}: HTTP {status}: {detail}", status, detail)

    def _delay(self, attempt: int, floor: float) -> float:
        cap = min(self.max_backoff, self.backoff * (2 ** attempt))
        return max(floor, random.uniform(0.0, cap))

    def _post_sync(self, chunk: list[dict[str, Any]]) -> list[Any]:
        last = ""
        for attempt in range(self.max_retries + 1):
            i = self.router.acquire()
            url, refused = self.router.urls[i], False
            try:
                response = self._client().post(url + self.path, json=chunk)
                return self._outcome(url, response, chunk)
            except (httpx.TransportError, _Retry) as e:  # scoring is idempotent: try again
                last, wait, refused = _failed_attempt(url, e)
            finally:
                self.router.release(i, refused)
            if attempt < self.max_retries:
                time.sleep(self._delay(attempt, wait))
        raise RewardServerError(f"gave up after {self.max_retries + 1} attempts; last error: {last}")

    async def _post_async(self, chunk: list[dict[str, Any]]) -> list[Any]:
        last = ""
        for attempt in range(self.max_retries + 1):
            i = self.router.acquire()
            url, refused = self.router.urls[i], False
            try:
                response = await self._aclient().post(url + self.path, json=chunk)
                return self._outcome(url, response, chunk)
            except (httpx.TransportError, _Retry) as e:  # scoring is idempotent: try again
                last, wait, refused = _failed_attempt(url, e)
            finally:
                self.router.release(i, refused)
            if attempt < self.max_retries:
                await asyncio.sleep(self._delay(attempt, wait))
        raise RewardServerError(f"gave up after {self.max_retries + 1} attempts; last error: {last}")


def _failed_attempt(url: str, e: Exception) -> tuple[str, float, bool]:
    """(message, least wait before the next attempt, connection refused) for a retryable failure:
    a transport error (refused, reset, timed out) or a `_Retry` the response asked for."""
    if isinstance(e, _Retry):
        return f"{url}: {e.reason}", e.wait, False
    return f"{url}: {type(e).__name__}: {e}", 0.0, isinstance(e, httpx.ConnectError)


def _response_items(prompts: Sequence[Text], responses: Sequence[Text]) -> list[dict[str, Any]]:
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    return [{"prompt": p, "response": r} for p, r in zip(prompts, responses)]


def _pair_items(prompts: Sequence[Text], chosen: Sequence[Text], rejected: Sequence[Text]) -> list[dict[str, Any]]:
    if not len(prompts) == len(chosen) == len(rejected):
        raise ValueError(f"{len(prompts)} prompts, {len(chosen)} chosen, {len(rejected)} rejected")
    return [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in zip(prompts, chosen, rejected)]
