"""`rewardkit serve`: the reward model as an HTTP server for RL loops (FastAPI + uvicorn).

Routes (the protocol in full, with examples: docs/serving.md):

* ``POST /score``       rewardkit's own: {prompt, response} or {prompt, chosen, rejected} items
* ``POST /get_reward``  OpenRLHF's remote reward model: {"query": [...], "prompts": [...]}
* ``POST /classify``    vLLM's pooling shape, which verl's reward loop calls
* ``GET /health`` (no auth), ``GET /v1/models``, ``GET /metrics`` (Prometheus text)

Every item is encoded by the model's own `Encoder` (the training layout: rendering, special tokens,
response-preserving truncation) and scored by `RewardModel.rewards_for`, through the dynamic
batcher (`rewardkit.serving.batcher`), so served rewards equal `RewardModel.score` whatever the
batching. Request parsing and the transcript-splitting rule live in `rewardkit.serving.inputs`,
metrics in `rewardkit.serving.prometheus`, the settings in `rewardkit.serving.config`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import logging
import math
import signal
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Awaitable, Callable

from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from rewardkit.data.records import text_key
from rewardkit.encoding.encoder import Encoded
from rewardkit.errors import UsageError
from rewardkit.model.batching import token_budget_batches
from rewardkit.serving.batcher import Batcher, QueueFull, item_cost
from rewardkit.serving.config import ServeConfig
from rewardkit.serving.inputs import (
    BadRequest,
    Limits,
    Spec,
    TextSplitter,
    encode_specs,
    parse_classify,
    parse_get_reward,
    parse_json,
    parse_score,
)
from rewardkit.serving.prometheus import Metrics

log = logging.getLogger("rewardkit.serving.app")
ROUTES = ("/score", "/get_reward", "/classify", "/health", "/v1/models", "/metrics")


class ClientGone(Exception):
    """The client disconnected while its request waited."""


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Any:
    kind = {401: "authentication_error", 413: "request_too_large", 503: "overloaded"}.get(
        status, "invalid_request_error" if status < 500 else "server_error")
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status,
                        headers=headers)


# ----------------------------------------------------------------------------------- scoring


class ModelWorker:
    """The model side: encoding off the event loop, the batcher, reward post-processing."""

    def __init__(self, rm: Any, cfg: ServeConfig, metrics: Metrics):
        self.rm = rm
        self.cfg = cfg
        self.metrics = metrics
        self.splitter = TextSplitter(rm.encoder)
        self.limits = Limits(max_items=cfg.max_items, max_chars=cfg.max_chars)
        # one thread: a fast tokenizer must not be used from two threads at once
        self.encode_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rewardkit-encode")
        self.cost = functools.partial(item_cost, packed=bool(rm.pack), share_prefix=rm.share_prefix)
        self.batcher = Batcher(self._run, metrics, cfg.max_batch_tokens, cfg.max_wait_ms / 1000.0,
                               cfg.max_queue_items, cfg.batching, self.cost)
        self.stats = rm.meta.get("normalization") if cfg.normalize else None

    def _run(self, items: list[Encoded]) -> list[list[float]]:
        """Model thread: length-sorted forward passes under the token budget, results in item order.

        Packed rows cost their real tokens, counted as that many one-token rows (as training's plan)."""
        out: list[list[float]] = [[] for _ in items]
        if self.rm.pack:
            widths, rows = [1] * len(items), [self.cost(e) for e in items]
        else:
            widths, rows = [e.longest for e in items], [len(e.input_ids) for e in items]
        for idx in token_budget_batches(widths, rows, self.cfg.max_batch_tokens):
            rewards = self.rm.rewards_for([items[i] for i in idx], batch_size=len(idx))
            for i, r in zip(idx, rewards):
                out[i] = r
        return out

    async def score(self, specs: list[Spec], wait_disconnect: Callable[[], Awaitable[None]]
                    ) -> tuple[list[list[float]], int, list[list[str]] | None]:
        """(rewards of every spec's responses, tokens scored, a critique model's critiques of them or None);
        ClientGone if the client leaves first."""
        if not specs:
            return [], 0, None
        loop = asyncio.get_running_loop()
        if getattr(self.rm, "judge", False):  # a pairwise judge ranks each prompt's responses against each other
            rewards = await loop.run_in_executor(self.encode_pool, judge_specs, self.rm, specs)
            self.metrics.rewards([x for r in rewards for x in r])
            return rewards, 0, None
        if getattr(self.rm, "critique", None) is not None:  # writes a critique per response, then scores it
            rewards, critiques = await loop.run_in_executor(self.encode_pool, critique_specs, self.rm, specs)
            self.metrics.rewards([x for r in rewards for x in r])
            return rewards, 0, critiques
        encoded = await loop.run_in_executor(self.encode_pool, encode_specs, self.rm.encoder, specs)
        job = await self.batcher.submit(encoded)
        watch = asyncio.ensure_future(wait_disconnect())
        try:
            await asyncio.wait({job.future, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
        if not job.future.done():
            self.batcher.cancel(job)
            if not job.future.done():  # already running: its result is simply not sent
                job.future.add_done_callback(lambda f: f.cancelled() or f.exception())
            raise ClientGone()
        rewards = job.future.result()
        flat = [x for r in rewards for x in r]
        if not all(math.isfinite(x) for x in flat):
            raise RuntimeError("the model produced a non-finite reward")
        if self.stats:
            rewards = [[(x - self.stats["mean"]) / self.stats["std"] for x in r] for r in rewards]
            flat = [x for r in rewards for x in r]
        self.metrics.rewards(flat)
        return rewards, sum(len(row) for e in encoded for row in e.input_ids), None


def score_body(rm: Any, rewards: list[list[float]], kinds: list[str], critiques: list[list[str]] | None) -> dict:
    """/score's answer: a reward per item (a list for a pair or group item); a process reward model's
    aggregate and every step's reward; a critique model's critiques beside its rewards."""
    if rm.prm is not None:
        return {"rewards": [r[0] for r in rewards], "step_rewards": [r[1:] for r in rewards],
                "aggregate": rm.prm.get("aggregate", "min")}
    out: dict[str, Any] = {"rewards": [r[0] if k == "response" else r for r, k in zip(rewards, kinds)]}
    if critiques is not None:
        out["critiques"] = [c[0] if k == "response" else c for c, k in zip(critiques, kinds)]
    return out


def critique_specs(rm: Any, specs: list[Spec]) -> tuple[list[list[float]], list[list[str]]]:
    """A critique model's rewards and critiques for request items (generation runs here, one request at a time)."""
    rewards = rm.rewards_for(encode_specs(rm.encoder, specs))
    return rewards, rm.last_critiques


def judge_specs(rm: Any, specs: list[Spec]) -> list[list[float]]:
    """A judge's rewards for request items: the responses sharing a prompt in one request are a group and
    get their Bradley-Terry scores from every pairwise verdict (a lone response is a 422: no silent 0)."""
    for spec in specs:
        if spec.text is not None or spec.responses is None or len(spec.responses) != 1:
            raise BadRequest(f"{spec.where}: a judge scores responses to a prompt; send prompt and response")
    groups = Counter(text_key(s.prompt) for s in specs)
    for spec in specs:
        if groups[text_key(spec.prompt)] == 1:
            raise BadRequest(f"{spec.where}: the only response to its prompt in this request; a pairwise judge "
                             "scores each response against the others to the same prompt, so send them together")
    try:
        return [[r] for r in rm.score_batch([s.prompt for s in specs], [s.responses[0] for s in specs])]
    except ValueError as e:
        raise BadRequest(f"{specs[0].where}: cannot be encoded: {e}") from None


# ----------------------------------------------------------------------------------- transport


async def read_body(receive: Callable[[], Awaitable[dict]], headers: dict[str, str], limit: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds ``limit`` bytes."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(f"body: {declared} bytes, more than the limit of {limit}", 413)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BadRequest(f"body: more than the limit of {limit} bytes", 413)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _disconnect_waiter(receive: Callable[[], Awaitable[dict]]) -> Callable[[], Awaitable[None]]:
    async def wait() -> None:
        while (await receive())["type"] != "http.disconnect":
            await asyncio.sleep(0.01)  # a stray non-disconnect message: keep listening
    return wait


class Guard:
    """Outermost ASGI layer: bearer-token check on every route but /health, metrics, no tracebacks out."""

    def __init__(self, app: Any, api_key: str | None, metrics: Metrics):
        self.app = app
        self.key = api_key.encode("utf-8") if api_key else None
        self.metrics = metrics

    def _authorized(self, scope: dict) -> bool:
        if self.key is None or scope["path"] == "/health":
            return True
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                # compare_digest on the whole value: time does not depend on where a guess goes wrong
                return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key)
        return False

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = {"code": 500}

        async def tracked(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        route = scope["path"] if scope["path"] in ROUTES else "other"
        try:
            if not self._authorized(scope):
                await _error(401, "missing or invalid bearer token (send 'Authorization: Bearer KEY')",
                             {"WWW-Authenticate": "Bearer"})(scope, receive, tracked)
            else:
                await self.app(scope, receive, tracked)
        finally:
            self.metrics.request(route, status["code"], time.perf_counter() - start)


# ----------------------------------------------------------------------------------- app


def create_app(rm: Any, cfg: ServeConfig, api_key: str | None) -> Any:
    """The ASGI application: FastAPI routes wrapped in `Guard`."""
    metrics = Metrics()
    scorer = ModelWorker(rm, cfg, metrics)
    name = cfg.model_name or Path(cfg.model_dir).resolve().name

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> Any:
        scorer.batcher.start()
        yield
        await scorer.batcher.drain()  # uvicorn has already waited for in-flight requests
        scorer.encode_pool.shutdown(wait=True)

    app = FastAPI(title="rewardkit", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.scorer = scorer

    async def handle(request: Request, parse: Callable[[Any], Any], reply: Callable[..., dict]) -> Response:
        try:
            body = await read_body(request.receive, dict(request.headers), cfg.max_body_bytes)
            if cfg.log_payloads:
                log.info("%s %s", request.url.path, body[:4096].decode("utf-8", "replace"))
            parsed = parse(parse_json(body))
            specs = parsed[0]
            rewards, tokens, critiques = await scorer.score(specs, _disconnect_waiter(request.receive))
            request.state.critiques = critiques
            return JSONResponse(reply(rewards, tokens, *parsed[1:]))
        except BadRequest as e:
            return _error(e.status, e.message)
        except QueueFull as e:
            return _error(503, f"server busy: {e}; retry shortly", {"Retry-After": "1"})
        except ClientGone:
            return Response(status_code=499)
        except Exception:  # noqa: BLE001 - logged here; the client gets no internals
            log.exception("internal error on %s", request.url.path)
            return _error(500, "internal error while scoring (see the server log)")

    @app.post("/score")
    async def score(request: Request) -> Response:
        def reply(rewards: list[list[float]], tokens: int, kinds: list[str]) -> dict:
            return score_body(rm, rewards, kinds, request.state.critiques)
        return await handle(request, lambda d: parse_score(d, scorer.limits), reply)

    @app.post("/get_reward")
    async def get_reward(request: Request) -> Response:
        def reply(rewards: list[list[float]], tokens: int) -> dict:
            flat = [r[0] for r in rewards]
            return {"rewards": flat, "scores": flat, "extra_logs": {}}
        return await handle(request, lambda d: (parse_get_reward(d, scorer.limits, scorer.splitter),), reply)

    @app.post("/classify")
    async def classify(request: Request) -> Response:
        def reply(rewards: list[list[float]], tokens: int, activation: bool) -> dict:
            values = [r[0] for r in rewards]
            if activation:
                values = [1.0 / (1.0 + math.exp(-x)) if x >= -700 else 0.0 for x in values]
            return {"id": f"classify-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()),
                    "model": name, "data": [{"index": i, "label": None, "probs": [v], "num_classes": 1}
                                            for i, v in enumerate(values)],
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0,
                              "prompt_tokens_details": None}}
        return await handle(request, lambda d: parse_classify(d, scorer.limits, scorer.splitter), reply)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": int(metrics.started),
                                            "owned_by": "rewardkit", "max_model_len": rm.max_length}]}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    return Guard(app, api_key, metrics)


# ----------------------------------------------------------------------------------- process


def _uvicorn_server(app: Any, cfg: ServeConfig) -> Any:
    """A uvicorn server whose SIGTERM/SIGINT drain in-flight requests and then return normally.

    uvicorn re-raises the captured signal after its graceful shutdown, which would end the process
    with the signal's status; a drained shutdown is a success, so it exits 0 instead.
    """
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            previous = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for s, handler in previous.items():
                    signal.signal(s, handler)

    config = uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False,
                            lifespan="on", timeout_graceful_shutdown=None, server_header=False)
    return Server(config)


def load_model(cfg: ServeConfig) -> Any:
    """The model through `RewardModel.from_pretrained`: full and LoRA directories alike."""
    from rewardkit.model.reward_model import RewardModel

    p = Path(cfg.model_dir).expanduser()
    if not p.is_dir():
        raise UsageError(f"MODEL_DIR: {cfg.model_dir} is not a directory")
    rm = RewardModel.from_pretrained(str(p), device=cfg.device, dtype=cfg.dtype, max_length=cfg.max_length,
                                     prefix_sharing=cfg.prefix_sharing, packing=cfg.packing)
    if cfg.normalize and not rm.meta.get("normalization"):
        raise UsageError("--normalize: this model has no stored reward statistics to normalise with")
    if cfg.prm_aggregate:
        if rm.prm is None:
            raise UsageError("--prm-aggregate: this is not a process reward model (trained with --objective prm)")
        rm.prm["aggregate"] = cfg.prm_aggregate
    return rm


def serve(cfg: ServeConfig) -> int:
    """Check exposure, load the model, serve until SIGTERM/SIGINT, drain, return 0."""
    key = cfg.api_key()
    cfg.check_exposure(key)  # before the model loads: a refused start costs nothing
    logging.basicConfig(level=logging.INFO, format="rewardkit serve: %(message)s", stream=sys.stderr)
    rm = load_model(cfg)
    app = create_app(rm, cfg, key)
    auth = "bearer token required" if key else "no authentication"
    print(f"rewardkit serve: {cfg.model_dir} on http://{cfg.host}:{cfg.port} ({auth}; batching "
          f"{'on' if cfg.batching else 'off'}; max length {rm.max_length}; device {rm.device})",
          file=sys.stderr, flush=True)
    server = _uvicorn_server(app, cfg)
    try:
        server.run()
    except SystemExit:  # uvicorn exits 1 when it cannot bind
        server.started = False
    if not server.started:
        raise UsageError(f"--host {cfg.host} --port {cfg.port}: could not listen there (in use or not an "
                         "address of this machine)")
    print(f"rewardkit serve: stopped after answering every accepted request (requests by route and status: "
          f"{app.metrics.summary()})", file=sys.stderr, flush=True)
    return 0


__all__ = ["ServeConfig", "create_app", "serve", "load_model"]
