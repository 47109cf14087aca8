"""`rewardkit.client.RewardClient` against real `rewardkit serve` processes and tiny scripted HTTP servers.

The real servers check that the client's rewards equal offline `RewardModel.score_batch`; the
scripted ones (a few lines of http.server) play the failures a real server cannot be made to
produce on demand: 503/500 then success, malformed replies, a slow replica next to a fast one.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import pytest
from serve_util import Server, free_port, spread_bert

from rewardkit import RewardModel
from rewardkit.client import RewardClient, RewardServerError

KEY = "client-test-key-51c2"
PROMPTS = ["How do I bake bread?", "What is the capital of France?", "Tell me a joke.",
           "\n\nHuman: How do I do task 3?\n\nAssistant:", "Why is the sky blue?"]
RESPONSES = ["Mix flour, water, yeast and salt, then bake.", "Paris.", "Why did the chicken cross the road?",
             " Happy to help. Step one is to read the manual carefully.", "Rayleigh scattering."]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return spread_bert(tmp_path_factory.mktemp("client-bert"))


@pytest.fixture(scope="module")
def rm(model_dir: Path) -> RewardModel:
    return RewardModel.from_pretrained(model_dir, device="cpu")


@pytest.fixture(scope="module")
def server(model_dir: Path) -> Any:
    s = Server(model_dir, key=KEY)
    yield s
    assert s.stop() == 0, s.output()


def _items(n: int) -> tuple[list[str], list[str]]:
    return ([f"{PROMPTS[i % 5]} (#{i})" for i in range(n)], [RESPONSES[(3 * i) % 5] for i in range(n)])


# ------------------------------------------------------------------ against the real server
def test_score_equals_offline_sync_async_chunked(server: Server, rm: RewardModel,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    prompts, responses = _items(23)
    offline = rm.score_batch(prompts, responses)
    assert max(offline) - min(offline) > 0.05  # the equality below could not pass by accident
    monkeypatch.setenv("REWARDKIT_API_KEY", KEY)  # the key comes from the environment
    with RewardClient(server.url, chunk_size=5, max_in_flight=3) as client:
        got = client.score(prompts, responses)
        assert client.router.sent == [5]  # 23 items -> 5 requests of <= 5
        assert got == pytest.approx(offline, abs=1e-4)
        got_async = asyncio.run(client.ascore(prompts, responses))
        assert got_async == pytest.approx(offline, abs=1e-4)
        assert client.router.sent == [10] and client.router.in_flight == [0]
        assert client.score([], []) == []


def test_pairs_and_chat_messages(server: Server, rm: RewardModel) -> None:
    client = RewardClient(server.url, api_key=KEY)
    pairs = client.score_pairs(PROMPTS[:2], RESPONSES[:2], RESPONSES[2:4])
    for p, c, r, got in zip(PROMPTS[:2], RESPONSES[:2], RESPONSES[2:4], pairs):
        want = rm.rewards_for([rm.encoder.encode_texts(p, [c, r])])[0]
        assert list(got) == pytest.approx(want, abs=1e-4)
    msgs = [{"role": "user", "content": "Hi, who are you?"}]
    assert client.score([msgs], ["I am a model."]) == pytest.approx([rm.score(msgs, "I am a model.")], abs=1e-4)


def test_4xx_is_raised_with_the_servers_message_and_never_retried(server: Server) -> None:
    client = RewardClient(server.url, api_key="wrong-key", max_retries=4, backoff=0.01)
    with pytest.raises(RewardServerError) as e:
        client.score(["p"], ["r"])
    assert e.value.status == 401 and client.router.sent == [1]
    assert "wrong-key" not in str(e.value)
    client = RewardClient(server.url, api_key=KEY, max_retries=4, backoff=0.01)
    with pytest.raises(RewardServerError) as e:
        client.score_items([{"prompt": "p", "response": 7}])
    assert e.value.status == 422 and client.router.sent == [1]
    assert e.value.detail.startswith("items[0].response: must be"), e.value.detail
    assert e.value.detail in str(e.value)  # the server names the field; the client passes it on


def test_connection_refused_first_then_the_live_server(server: Server, rm: RewardModel) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client = RewardClient([dead, server.url], api_key=KEY, chunk_size=2, backoff=0.01)
    client.router.COOLDOWN = 600.0  # a loaded test machine must not outlast the cool-down
    got = client.score(PROMPTS, RESPONSES)
    assert got == pytest.approx(rm.score_batch(PROMPTS, RESPONSES), abs=1e-4)
    refused = client.router.sent[0]
    assert 1 <= refused <= 2  # the first requests in flight may both pick it before one fails
    assert client.score(PROMPTS, RESPONSES) == pytest.approx(got, abs=1e-6)
    assert client.router.sent[0] == refused  # then avoided during its cool-down
    with pytest.raises(RewardServerError, match="gave up after 3 attempts.*ConnectError"):
        RewardClient(dead, max_retries=2, backoff=0.01).score(["p"], ["r"])


def test_two_real_servers_share_the_load(server: Server, model_dir: Path, rm: RewardModel) -> None:
    second = Server(model_dir, key=KEY)
    try:
        prompts, responses = _items(40)
        client = RewardClient([server.url, second.url], api_key=KEY, chunk_size=2, max_in_flight=8)
        got = asyncio.run(client.ascore(prompts, responses))
        assert got == pytest.approx(rm.score_batch(prompts, responses), abs=1e-4)
        assert sum(client.router.sent) == 20 and min(client.router.sent) >= 3, client.router.sent
    finally:
        assert second.stop() == 0


# ------------------------------------------------------------------ scripted servers
class Scripted:
    """A loopback HTTP server answering POSTs from a script: a list of (status, body, headers, delay)."""

    def __init__(self, script: list[tuple[int, Any, dict[str, str], float]] | Callable[[list], tuple]):
        self.requests: list[Any] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                status, reply, headers, delay = (script(body) if callable(script)
                                                 else script[min(len(outer.requests), len(script)) - 1])
                time.sleep(delay)
                data = reply.encode() if isinstance(reply, str) else json.dumps(reply).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _ok(body: list) -> tuple:
    return 200, {"rewards": [0.5 + i for i in range(len(body))]}, {}, 0.0


def test_retries_503_and_500_with_backoff_then_succeeds() -> None:
    s = Scripted([(503, {"error": {"message": "server busy", "code": 503}}, {"Retry-After": "0"}, 0.0),
                  (500, {"detail": "internal error"}, {}, 0.0),
                  (200, {"rewards": [1.5, -2.0]}, {}, 0.0)])
    try:
        client = RewardClient(s.url, max_retries=3, backoff=0.01)
        assert client.score(["a", "b"], ["x", "y"]) == [1.5, -2.0]
        assert len(s.requests) == 3 and s.requests[2] == [{"prompt": "a", "response": "x"},
                                                          {"prompt": "b", "response": "y"}]
    finally:
        s.close()


def test_retry_after_is_honoured_and_retries_run_out() -> None:
    s = Scripted([(503, {"detail": "server busy"}, {"Retry-After": "1"}, 0.0), (200, {"rewards": [3.0]}, {}, 0.0)])
    try:
        t0 = time.monotonic()
        assert RewardClient(s.url, backoff=0.01).score(["a"], ["x"]) == [3.0]
        assert time.monotonic() - t0 >= 0.95
    finally:
        s.close()
    s = Scripted([(502, "<html>bad gateway</html>", {"Content-Type": "text/html"}, 0.0)])
    try:
        with pytest.raises(RewardServerError, match="gave up after 3 attempts.*HTTP 502.*bad gateway"):
            RewardClient(s.url, max_retries=2, backoff=0.01).score(["a"], ["x"])
        assert len(s.requests) == 3
    finally:
        s.close()


@pytest.mark.parametrize("reply,match", [
    ({"rewards": [1.0]}, "1 rewards for 2 items"),
    ({"rewards": [1.0, float("nan")]}, r"rewards\[1\] = nan is not a finite number"),
    ({"rewards": [1.0, "2"]}, r"rewards\[1\] = '2'"),
    ({"rewards": [1.0, True]}, r"rewards\[1\] = True"),
    ({"rewards": [1.0, None]}, r"rewards\[1\] = None"),
    ({"scores": [1.0, 2.0]}, "no 'rewards' list"),
    ([1.0, 2.0], "no 'rewards' list"),
    ("not json", "not JSON"),
])
def test_malformed_replies_are_rejected_not_retried(reply: Any, match: str) -> None:
    s = Scripted([(200, reply, {}, 0.0)])
    try:
        with pytest.raises(RewardServerError, match="malformed reply: " + match):
            RewardClient(s.url, max_retries=3, backoff=0.01).score(["a", "b"], ["x", "y"])
        assert len(s.requests) == 1
    finally:
        s.close()


def test_pair_replies_must_be_finite_pairs() -> None:
    s = Scripted([(200, {"rewards": [[1.0, 2.0], 3.0]}, {}, 0.0)])
    try:
        with pytest.raises(RewardServerError, match=r"rewards\[1\] = 3.0 is not a finite \[chosen, rejected\]"):
            RewardClient(s.url).score_pairs(["p", "q"], ["a", "b"], ["c", "d"])
    finally:
        s.close()


def test_least_loaded_routing_favours_the_fast_replica() -> None:
    slow = Scripted(lambda body: (*_ok(body)[:3], 0.4))
    fast = Scripted(lambda body: (*_ok(body)[:3], 0.01))
    try:
        client = RewardClient([slow.url, fast.url], chunk_size=1, max_in_flight=6)
        got = asyncio.run(client.ascore([f"p{i}" for i in range(60)], ["r"] * 60))
        assert got == [0.5] * 60
        n_slow, n_fast = len(slow.requests), len(fast.requests)
        assert n_slow + n_fast == 60 and n_fast >= 4 * n_slow, (n_slow, n_fast)
        assert client.router.in_flight == [0, 0]
        # the same through the sync path (thread pool)
        slow.requests.clear(), fast.requests.clear()
        assert client.score([f"p{i}" for i in range(30)], ["r"] * 30) == [0.5] * 30
        assert len(fast.requests) >= 3 * len(slow.requests), (len(slow.requests), len(fast.requests))
    finally:
        slow.close()
        fast.close()


def test_constructor_checks() -> None:
    with pytest.raises(ValueError, match="needs a base URL"):
        RewardClient([])
    with pytest.raises(ValueError, match="must start with http"):
        RewardClient("127.0.0.1:8000")
    with pytest.raises(ValueError, match="timeout must be a positive"):
        RewardClient("http://x", timeout=float("inf"))
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        RewardClient("http://x").score(["a", "b"], ["c"])
    c = RewardClient("http://a:1, http://b:2/")
    assert c.urls == ["http://a:1", "http://b:2"] and c._timeout.read == 60.0
