"""`rewardkit serve` as a real process on 127.0.0.1: rewards equal offline `RewardModel` rewards on
every route, whatever the batching; OpenRLHF- and verl-shaped requests; auth; limits.

Each server is a module-scoped child process (`python -m rewardkit serve ...`) on a free port.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_util import REPO, Server, spread_bert, spread_llama

from rewardkit import RewardModel

KEY = "test-secret-7f3a9c"
TOL = 1e-4

PROMPTS = ["How do I bake bread?", "What is the capital of France?", "Tell me a joke.",
           "\n\nHuman: How do I do task 3?\n\nAssistant:", "Why is the sky blue? " * 6]
RESPONSES = ["Mix flour, water, yeast and salt, then bake.", "Paris.", "Why did the chicken cross the road?",
             " Happy to help. Step one is to read the manual carefully.", "Rayleigh scattering " * 12]


@pytest.fixture(scope="module")
def bert_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return spread_bert(tmp_path_factory.mktemp("serve-bert"))


@pytest.fixture(scope="module")
def llama_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return spread_llama(tmp_path_factory.mktemp("serve-llama"))


@pytest.fixture(scope="module")
def bert_rm(bert_model: Path) -> RewardModel:
    return RewardModel.from_pretrained(bert_model, device="cpu")


@pytest.fixture(scope="module")
def llama_rm(llama_model: Path) -> RewardModel:
    return RewardModel.from_pretrained(llama_model, device="cpu")


@pytest.fixture(scope="module")
def bert_server(bert_model: Path) -> Any:
    """Token-protected, with small limits so the limit tests stay cheap."""
    server = Server(bert_model, "--max-body-bytes", "65536", "--max-items", "64", "--max-chars", "4000", key=KEY)
    yield server
    assert server.stop() == 0, server.output()


@pytest.fixture(scope="module")
def llama_server(llama_model: Path) -> Any:
    """No token, default host."""
    server = Server(llama_model)
    yield server
    assert server.stop() == 0, server.output()


def close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(math.isfinite(x) and abs(x - y) <= TOL for x, y in zip(a, b))


# ----------------------------------------------------------------------------------- /score


def test_rewards_are_spread_out(bert_rm: RewardModel, llama_rm: RewardModel) -> None:
    """Guard for every equality below: the test models give clearly different rewards per text."""
    for rm in (bert_rm, llama_rm):
        r = rm.score_batch(PROMPTS, RESPONSES)
        assert max(r) - min(r) > 0.05, r


@pytest.mark.parametrize("which", ["bert", "llama"])
def test_score_matches_offline_single_and_batched(which: str, request: pytest.FixtureRequest) -> None:
    server = request.getfixturevalue(f"{which}_server")
    rm = request.getfixturevalue(f"{which}_rm")
    offline = rm.score_batch(PROMPTS, RESPONSES)
    for p, r, want in zip(PROMPTS, RESPONSES, offline):
        got = server.post("/score", {"prompt": p, "response": r})
        assert got.status_code == 200, got.text
        assert close(got.json()["rewards"], [want])
    got = server.post("/score", [{"prompt": p, "response": r} for p, r in zip(PROMPTS, RESPONSES)])
    assert close(got.json()["rewards"], offline)


def test_score_pairs_and_messages(bert_server: Server, bert_rm: RewardModel) -> None:
    """A pair item is one comparison (shared, jointly truncated prompt) as in RewardModel.compare."""
    msgs = [{"role": "user", "content": "Hi, who are you?"}]
    items = [{"prompt": PROMPTS[0], "chosen": RESPONSES[0], "rejected": RESPONSES[2]},
             {"prompt": msgs, "response": "I am a model."},
             {"prompt": PROMPTS[4] * 3, "chosen": RESPONSES[4], "rejected": "short"}]  # truncated
    got = bert_server.post("/score", items).json()["rewards"]
    want_pair = bert_rm.rewards_for([bert_rm.encoder.encode_texts(PROMPTS[0], [RESPONSES[0], RESPONSES[2]])])[0]
    want_long = bert_rm.rewards_for([bert_rm.encoder.encode_texts(PROMPTS[4] * 3, [RESPONSES[4], "short"])])[0]
    assert close(got[0], want_pair) and close(got[2], want_long)
    assert close([got[1]], [bert_rm.score(msgs, "I am a model.")])


def test_32_concurrent_clients(bert_server: Server, bert_rm: RewardModel) -> None:
    """32 clients at once, single- and 3-item requests: no 5xx, one finite reward per item, = offline."""
    prompts = [f"{p} (variant {i})" for i in range(8) for p in PROMPTS]
    responses = [r for _ in range(8) for r in RESPONSES]
    offline = bert_rm.score_batch(prompts, responses)
    failures: list[str] = []

    async def client(cid: int, http: httpx.AsyncClient) -> None:
        for k in range(4):
            idx = [(cid * 4 + k + j) % len(prompts) for j in range(1 + (cid + k) % 3)]
            body = [{"prompt": prompts[i], "response": responses[i]} for i in idx]
            resp = await http.post("/score", json=body)
            if resp.status_code != 200 or not close(resp.json()["rewards"], [offline[i] for i in idx]):
                failures.append(f"client {cid}: {resp.status_code} {resp.text[:200]}")

    async def main() -> None:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=bert_server.url, headers=bert_server.headers, limits=limits,
                                     timeout=60) as http:
            await asyncio.gather(*(client(c, http) for c in range(32)))

    asyncio.run(main())
    assert not failures, failures[:5]
    metrics = httpx.get(bert_server.url + "/metrics", headers=bert_server.headers).text
    sizes = [line for line in metrics.splitlines() if line.startswith("rewardkit_batch_items_count")]
    batches = int(sizes[0].split()[-1])
    items = int(next(line for line in metrics.splitlines() if line.startswith("rewardkit_items_total")).split()[-1])
    assert items > batches, "concurrent requests were never batched together"


# ----------------------------------------------------------------------------------- OpenRLHF


def test_get_reward_openrlhf_shapes(llama_server: Server, llama_rm: RewardModel) -> None:
    """Payloads exactly as OpenRLHF's SingleTurnAgentExecutor posts them (one sample, or sharded lists)."""
    prompts = PROMPTS[:4]
    offline = llama_rm.score_batch(prompts, RESPONSES[:4])
    # OpenRLHF decodes prompt + generated tokens with skip_special_tokens=False: BOS/EOS appear as text
    queries = ["<s>" + p + r + "</s>" for p, r in zip(prompts, RESPONSES)]
    for q, p, want in zip(queries, prompts, offline):
        resp = llama_server.post("/get_reward", {"query": [q], "prompts": ["<s>" + p], "labels": [None]})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert set(body) == {"rewards", "scores", "extra_logs"} and body["extra_logs"] == {}
        assert close(body["rewards"], [want]) and body["scores"] == body["rewards"]
    resp = llama_server.post("/get_reward", {"query": queries, "prompts": ["<s>" + p for p in prompts],
                                             "labels": ["a", 1, None, {"x": 1}], "datasource": "gsm8k",
                                             "extra": {"anything": [1, 2]}})
    assert close(resp.json()["rewards"], offline)


def test_get_reward_splitting_rule(llama_server: Server, llama_rm: RewardModel, bert_server: Server,
                                   bert_rm: RewardModel) -> None:
    p, r = PROMPTS[3], RESPONSES[3]  # hh-rlhf style: split at the last "\n\nAssistant:"
    want = llama_rm.score(p, r)
    for q in (p + r, "<s>" + p + r, "<s><s>" + p + r + "</s>", p + r + "</s></s>", "<|pad|><s>" + p + r):
        got = llama_server.post("/get_reward", {"query": [q]}).json()["rewards"]
        assert close(got, [want]), q
    # prompts[i] that does not prefix the query: the marker rule still applies
    got = llama_server.post("/get_reward", {"query": [p + r], "prompts": ["something else"]}).json()["rewards"]
    assert close(got, [want])
    # BERT: the sentence-pair layout needs the split; [CLS]/[SEP] written as text are not doubled
    want = bert_rm.score(p, r)
    for q in (p + r, "[CLS]" + p + r + "[SEP]"):
        got = bert_server.post("/get_reward", {"query": [q]}).json()["rewards"]
        assert close(got, [want]), q
    # no split point: scored whole, as a response after an empty prompt, oldest tokens cut first
    text = "no assistant marker here " * 40
    got = llama_server.post("/get_reward", {"query": [text]}).json()["rewards"]
    enc = llama_rm.encoder.encode_text(text)
    assert enc.truncated and close(got, llama_rm.rewards_for([enc])[0])
    assert enc.input_ids[0][-1] == llama_rm.tokenizer.eos_token_id


def test_chat_template_split(tmp_path: Path) -> None:
    """A chat-form query splits after the template's assistant header and keeps its end-of-turn."""
    from conftest import CHAT_TEMPLATE

    rm = RewardModel.from_pretrained(spread_llama(tmp_path / "chat", CHAT_TEMPLATE), device="cpu")
    from rewardkit.serving.inputs import TextSplitter

    splitter = TextSplitter(rm.encoder)
    msgs = [{"role": "user", "content": "How do I bake bread?"}]
    reply = [{"role": "assistant", "content": "Mix and bake."}]
    text = rm.tokenizer.apply_chat_template(msgs + reply, tokenize=False)
    spec = splitter.split(text, None, "query[0]")
    got = rm.rewards_for([rm.encoder.encode_texts(spec.prompt, spec.responses)])[0]
    assert close(got, [rm.score(msgs, reply)])


# ----------------------------------------------------------------------------------- /classify


def test_classify_vllm_shape(llama_server: Server, llama_rm: RewardModel) -> None:
    p, r = PROMPTS[3], RESPONSES[3]
    want = llama_rm.score(p, r)
    body = llama_server.post("/classify", {"model": "/some/path/rm", "input": p + r, "use_activation": False,
                                           "add_special_tokens": False}).json()
    assert body["object"] == "list" and body["model"] and body["usage"]["prompt_tokens"] > 0
    (row,) = body["data"]
    assert row["index"] == 0 and row["num_classes"] == 1 and close(row["probs"], [want])
    # verl reads output["data"][-1]["probs"][-1]; older verl sends "activation": false
    body = llama_server.post("/classify", {"model": "m", "input": [p + r, PROMPTS[0] + RESPONSES[0]],
                                           "activation": False}).json()
    assert [d["index"] for d in body["data"]] == [0, 1] and close(body["data"][0]["probs"], [want])
    body = llama_server.post("/classify", {"input": [p + r], "use_activation": True}).json()
    assert close(body["data"][0]["probs"], [1 / (1 + math.exp(-want))])
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    body = llama_server.post("/classify", {"messages": msgs}).json()
    assert close(body["data"][0]["probs"], [llama_rm.score(msgs[:1], msgs[1:])])


def test_models_health_metrics(llama_server: Server) -> None:
    assert httpx.get(llama_server.url + "/health").json() == {"status": "ok"}
    models = httpx.get(llama_server.url + "/v1/models").json()
    assert models["data"][0]["max_model_len"] == 96
    text = httpx.get(llama_server.url + "/metrics").text
    for name in ("rewardkit_request_seconds_bucket", "rewardkit_queue_seconds_bucket", "rewardkit_batch_items_bucket",
                 "rewardkit_tokens_per_second", "rewardkit_truncated_total", "rewardkit_reward_mean",
                 "rewardkit_reward_std", "rewardkit_errors_total"):
        assert name in text, name
    assert "rewardkit_serve" not in text and "Human:" not in text  # no payloads in metrics


# ----------------------------------------------------------------------------------- auth


def test_every_route_but_health_needs_the_token(bert_server: Server) -> None:
    url = bert_server.url
    assert httpx.get(url + "/health").status_code == 200
    for method, route in [("POST", "/score"), ("POST", "/get_reward"), ("POST", "/classify"),
                          ("GET", "/v1/models"), ("GET", "/metrics"), ("GET", "/nonexistent")]:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"},
                        {"Authorization": KEY}):
            resp = httpx.request(method, url + route, headers=headers, json={"query": ["x"]})
            assert resp.status_code == 401, (route, headers, resp.status_code)
            assert KEY not in resp.text and "wrong" not in resp.text
    assert httpx.get(url + "/v1/models", headers=bert_server.headers).status_code == 200


def test_token_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from rewardkit.serving import app as serve

    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(serve.hmac, "compare_digest", spy)
    guard = serve.Guard(None, KEY, serve.Metrics())
    scope = {"path": "/score", "headers": [(b"authorization", f"Bearer {KEY}x".encode())]}
    assert not guard._authorized(scope) and calls == [(f"{KEY}x".encode(), KEY.encode())]
    scope["headers"] = [(b"authorization", f"Bearer {KEY}".encode())]
    assert guard._authorized(scope)
    assert guard._authorized({"path": "/health", "headers": []})


def test_public_host_without_token_exits_2(tmp_path: Path) -> None:
    """Refused before the model loads (MODEL_DIR need not even exist)."""
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "rewardkit", "serve", str(tmp_path / "none"), "--host", "0.0.0.0"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "REWARDKIT_API_KEY" in proc.stderr and "--allow-unauthenticated" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_exposure_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rewardkit.errors import UsageError
    from rewardkit.serving.config import ServeConfig, is_loopback

    assert ServeConfig().host == "127.0.0.1"
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "127.1.2.3"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.com"))
    monkeypatch.delenv("REWARDKIT_API_KEY", raising=False)
    with pytest.raises(UsageError):
        ServeConfig(model_dir="m", host="0.0.0.0").check_exposure(None)
    ServeConfig(model_dir="m", host="0.0.0.0", allow_unauthenticated=True).check_exposure(None)
    key_file = tmp_path / "key"
    key_file.write_text("s3cret\n")
    cfg = ServeConfig(model_dir="m", host="0.0.0.0", api_key_file=str(key_file))
    assert cfg.api_key() == "s3cret"
    cfg.check_exposure(cfg.api_key())
    monkeypatch.setenv("REWARDKIT_API_KEY", "from-env")
    assert ServeConfig(model_dir="m").api_key() == "from-env"
    key_file.write_text("")
    with pytest.raises(UsageError, match="empty"):
        ServeConfig(model_dir="m", api_key_file=str(key_file)).api_key()


# ----------------------------------------------------------------------------------- limits


@pytest.mark.parametrize("route,body,status,needle", [
    ("/score", {"prompt": "p", "response": "x" * 5000}, 422, "body.response: 5000 characters"),
    ("/score", [{"prompt": "p", "response": "r"}] * 65, 422, "65 items"),
    ("/score", {"prompt": "p"}, 422, "missing 'response'"),
    ("/get_reward", {"query": ["a", 3]}, 422, "query[1]: must be a string"),
    ("/get_reward", {"query": ["a"], "prompts": ["a", "b"]}, 422, "prompts: 2 entries"),
    ("/score", [], 422, "empty list"),
    ("/classify", {"input": [1, 2, 3]}, 422, "token ids"),
    ("/classify", {"input": "x", "use_activation": "yes"}, 422, "use_activation"),
    ("/score", "x" * 70000, 413, "limit of 65536"),
])
def test_limits_name_the_field(bert_server: Server, route: str, body: Any, status: int, needle: str) -> None:
    resp = bert_server.post(route, body)
    assert resp.status_code == status, resp.text
    assert needle in resp.json()["error"]["message"]


def test_get_reward_answers_an_empty_query_list_with_empty_lists(bert_server: Server) -> None:
    """OpenRLHF splits one rollout over several URLs evenly: the other servers get empty lists."""
    resp = bert_server.post("/get_reward", {"query": [], "prompts": [], "labels": []})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"rewards": [], "scores": [], "extra_logs": {}}


def test_bad_bytes_are_4xx(bert_server: Server) -> None:
    for raw, needle in [(b'{"prompt": "\xff\xfe", "response": "r"}', "UTF-8"),
                        (b'{"prompt": NaN, "response": "r"}', "NaN"),
                        (b"[" * 5000, "nested"), (b'{"prompt": "\\ud800", "response": "r"}', "surrogate"),
                        (b'{"prompt": "p", "response": "r"', "not valid JSON")]:
        resp = httpx.post(bert_server.url + "/score", content=raw, headers=bert_server.headers)
        assert resp.status_code == 422 and needle in resp.json()["error"]["message"], (raw[:20], resp.text)


def test_concurrent_threads_match(llama_server: Server, llama_rm: RewardModel) -> None:
    """Plain threads with their own connections (OpenRLHF's pattern): order kept per request."""
    queries = [p + r for p, r in zip(PROMPTS, RESPONSES)] * 4
    want = [llama_rm.rewards_for([_encode(llama_rm, q)])[0][0] for q in queries]
    results: dict[int, Any] = {}

    def worker(i: int) -> None:
        results[i] = llama_server.post("/get_reward", {"query": [queries[i]], "prompts": [None]})

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(queries))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(close(results[i].json()["rewards"], [want[i]]) for i in range(len(queries)))


def _encode(rm: RewardModel, q: str) -> Any:
    """The splitting rule by hand, for texts with no special tokens: hh marker, else whole."""
    cut = q.rfind("\n\nAssistant:")
    if cut < 0:
        return rm.encoder.encode_text(q)
    end = cut + len("\n\nAssistant:")
    return rm.encoder.encode_texts(q[:end], [q[end:]])


def test_lora_adapter_dir(bert_model: Path, tmp_path: Path) -> None:
    """A LoRA adapter directory serves through the same RewardModel.from_pretrained path."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rewardkit.model.artifacts import save_adapter
    from rewardkit.model.lora import apply_lora

    model = AutoModelForSequenceClassification.from_pretrained(bert_model)
    peft_model = apply_lora(model, r=4, alpha=8, dropout=0.0, targets=None)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)  # a trained-looking adapter: rewards differ from the base model's
    save_adapter(peft_model, AutoTokenizer.from_pretrained(bert_model), tmp_path / "adapter", {"max_length": 64})
    rm = RewardModel.from_pretrained(tmp_path / "adapter", device="cpu")
    base = RewardModel.from_pretrained(bert_model, device="cpu").score_batch(PROMPTS, RESPONSES)
    offline = rm.score_batch(PROMPTS, RESPONSES)
    assert max(abs(a - b) for a, b in zip(offline, base)) > 1e-3
    server = Server(tmp_path / "adapter")
    try:
        got = server.post("/score", [{"prompt": p, "response": r} for p, r in zip(PROMPTS, RESPONSES)])
        assert close(got.json()["rewards"], offline)
    finally:
        assert server.stop() == 0
