"""Served throughput of `rewardkit serve` on loopback, next to offline `score_batch` on the same items.

RL loops call a reward server with many small requests in flight: OpenRLHF's client posts one
rollout per request. This runs a bounded load against a real ``rewardkit serve`` process:

* 1, 8 and 32 concurrent clients, each sending single-item requests (OpenRLHF's pattern) and
  8-item requests, through ``POST /score``;
* the same server with ``--no-batching`` (one request per forward pass);
* offline ``RewardModel.score_batch`` (batch size 32) on the same items in this process, whose
  rewards every served reward is checked against (max |served - offline| is reported).

For each configuration the three run back to back (offline, batched server, unbatched server; both
servers stay up, idle when not measured), so a shared machine's load hits them alike.

It reports items/s, p50/p99 request latency and the client's own CPU per item. Client and server
share the machine, so the served numbers pay for the client's HTTP work too; ``--client`` picks the
load generator: ``httpx`` (AsyncClient, as `RewardClient` uses) and/or ``raw`` (a minimal HTTP/1.1
client, the way wrk-style load generators keep out of the server's way).

    python benchmarks/bench_serve.py                          # MiniLM-L6 (fresh head), 256 items
    python benchmarks/bench_serve.py --items 64 --concurrency 1,8   # smoke test
    python benchmarks/bench_serve.py --model rewardkit-out --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def fresh_head(out: Path, max_length: int, backbone: str | None = None) -> Path:
    """A backbone (default: the bundled MiniLM-L6) with a fresh reward head, saved as a rewardkit model
    directory."""
    import torch

    from rewardkit.model.artifacts import save_model
    from rewardkit.model.backbone import load_backbone

    torch.manual_seed(0)
    model, tok = load_backbone(backbone)
    save_model(model, tok, out, {"max_length": max_length})
    return out


def start_server(model: Path, *flags: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = common.child_env()
    env.pop("REWARDKIT_API_KEY", None)
    log = tempfile.TemporaryFile("w+")  # not a pipe: an unread pipe could fill and stall the server
    proc = subprocess.Popen([sys.executable, "-m", "rewardkit", "serve", str(model), "--port", str(port), *flags],
                            env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"server exited {proc.returncode}: {log.read()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


def stop_server(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=120)


def _requests(n: int, per_request: int) -> list[list[int]]:
    return [list(range(i, min(i + per_request, n))) for i in range(0, n, per_request)]


def _summary(items: int, seconds: float, cpu: float, rewards: list[float], latencies: list[float],
             errors: list[str]) -> dict[str, Any]:
    latencies.sort()
    return {"items_per_s": items / seconds, "seconds": seconds, "rewards": rewards, "errors": errors,
            "client_cpu_ms_per_item": 1000 * cpu / items, "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]}


async def load_httpx(url: str, items: list[tuple[str, str]], clients: int, per_request: int) -> dict[str, Any]:
    """``clients`` workers pull requests of ``per_request`` items from one shared list until it is empty."""
    import httpx

    rewards: list[float] = [float("nan")] * len(items)
    latencies: list[float] = []
    errors: list[str] = []
    next_request = iter(_requests(len(items), per_request))

    async def worker(http: httpx.AsyncClient) -> None:
        for idx in next_request:
            body = [{"prompt": items[i][0], "response": items[i][1]} for i in idx]
            t0 = time.perf_counter()
            resp = await http.post("/score", json=body)
            latencies.append(time.perf_counter() - t0)
            if resp.status_code != 200:
                errors.append(f"{resp.status_code}: {resp.text[:200]}")
                continue
            for i, r in zip(idx, resp.json()["rewards"]):
                rewards[i] = r

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=600) as http:
        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(http) for _ in range(clients)))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return _summary(len(items), seconds, cpu, rewards, latencies, errors)


async def load_raw(url: str, items: list[tuple[str, str]], clients: int, per_request: int) -> dict[str, Any]:
    """The same load from a minimal HTTP/1.1 client: one keep-alive socket per worker, no pool.

    On a machine whose cores the server needs, the load generator's own CPU is taken from the
    server (httpx spent 1.6-2.5 ms of CPU per request here, about a tenth of a 64-token item's
    forward pass over 2 cores). Load generators such as wrk are written to cost next to nothing; this is that, in
    Python: the request is written as bytes and the reply is read by its Content-Length.
    """
    host, port = url.removeprefix("http://").split(":")
    rewards: list[float] = [float("nan")] * len(items)
    latencies: list[float] = []
    errors: list[str] = []
    next_request = iter(_requests(len(items), per_request))
    head = f"POST /score HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\nContent-Length: "

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for idx in next_request:
                body = json.dumps([{"prompt": items[i][0], "response": items[i][1]} for i in idx]).encode()
                t0 = time.perf_counter()
                writer.write(f"{head}{len(body)}\r\n\r\n".encode() + body)
                status = int((await reader.readline()).split()[1])
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                reply = await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                if status != 200:
                    errors.append(f"{status}: {reply[:200]!r}")
                    continue
                for i, r in zip(idx, json.loads(reply)["rewards"]):
                    rewards[i] = r
        finally:
            writer.close()

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(clients)))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return _summary(len(items), seconds, cpu, rewards, latencies, errors)


LOADERS = {"httpx": load_httpx, "raw": load_raw}


def offline_rate(rm: Any, items: list[tuple[str, str]]) -> tuple[float, list[float]]:
    t0 = time.perf_counter()
    rewards = rm.score_batch([p for p, _ in items], [r for _, r in items], batch_size=32)
    return len(items) / (time.perf_counter() - t0), rewards


def _median_row(reps: list[dict[str, Any]], servers: list[str]) -> dict[str, Any]:
    """Medians over the repeats; the ratios are medians of ratios within one repeat (paired)."""
    med = statistics.median
    row: dict[str, Any] = {"offline_items_per_s": round(med(r["offline"] for r in reps), 1)}
    for name in servers:
        row[name] = {k: round(med(r[name][k] for r in reps), 2) for k in
                     ("items_per_s", "p50_ms", "p99_ms", "client_cpu_ms_per_item")}
        row[name]["errors"] = sum(r[name]["errors"] for r in reps)
        row[name]["max_abs_diff"] = max(r[name]["max_abs_diff"] for r in reps)
        row[name]["vs_offline"] = round(med(r[name]["items_per_s"] / r["offline"] for r in reps), 2)
        row[name]["vs_offline_each"] = [round(r[name]["items_per_s"] / r["offline"], 2) for r in reps]
    if "batched" in servers and "unbatched" in servers:
        each = [r["batched"]["items_per_s"] / r["unbatched"]["items_per_s"] for r in reps]
        row["batched_vs_unbatched"] = round(med(each), 2)
        row["batched_vs_unbatched_each"] = [round(x, 2) for x in each]
    return row


def measure(rm: Any, servers: dict[str, str], items: list[tuple[str, str]], concurrency: list[int],
            sizes: list[int], loaders: list[str], repeat: int) -> list[dict[str, Any]]:
    """Per configuration and repeat: offline, then each server, back to back, so all see the same load."""
    rows = []
    for per_request in sizes:
        for clients in concurrency:
            for loader in loaders:
                reps = []
                for _ in range(repeat):
                    rate, offline = offline_rate(rm, items)
                    rep: dict[str, Any] = {"offline": rate}
                    for name, url in servers.items():
                        res = asyncio.run(LOADERS[loader](url, items, clients, per_request))
                        rep[name] = {**{k: res[k] for k in ("items_per_s", "p50_ms", "p99_ms",
                                                            "client_cpu_ms_per_item")},
                                     "errors": len(res["errors"]),
                                     "max_abs_diff": max(abs(a - b) for a, b in zip(res["rewards"], offline))}
                    reps.append(rep)
                row = {"clients": clients, "items_per_request": per_request, "client": loader, "repeats": repeat,
                       **_median_row(reps, list(servers))}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="rewardkit model directory (default: MiniLM-L6 with a fresh head)")
    ap.add_argument("--backbone", help="instead of --model: this backbone directory with a fresh head")
    ap.add_argument("--data", default=None, help="preference file (default: shared hh-rlhf, else the bundled sample)")
    ap.add_argument("--items", type=int, default=256, help="(prompt, chosen) items to score per run")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--request-items", default="1,8", help="items per request")
    ap.add_argument("--client", default="httpx,raw",
                    help="load generators: httpx (AsyncClient, what RewardClient uses) and/or raw (a minimal "
                         "HTTP/1.1 client that leaves the CPU to the server)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="measure each configuration this many times (offline and servers interleaved) and "
                         "report medians: single passes of a few seconds vary by 20-30%% on a small machine")
    ap.add_argument("--no-unbatched", action="store_true", help="skip the --no-batching server")
    ap.add_argument("--serve-flags", default="", help="extra flags for the batched server, e.g. '--max-wait-ms 5'")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = ap.parse_args()
    concurrency = [int(x) for x in args.concurrency.split(",")]
    sizes = [int(x) for x in args.request_items.split(",")]
    loaders = args.client.split(",")
    if not set(loaders) <= set(LOADERS):
        ap.error(f"--client: choose from {', '.join(LOADERS)}")

    from rewardkit import RewardModel

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else fresh_head(Path(tmp) / "fresh", args.max_length, args.backbone)
        comps = common.load_pairs(args.data or common.default_data(), args.items)
        items = [(c.prompt, c.responses[0]) for c in comps][:args.items]
        rm = RewardModel.from_pretrained(model)  # the device the server picks too (cuda when there is one)
        offline_rate(rm, items[:32])  # warm-up
        batched = args.serve_flags.split()
        flags = {"batched": batched} if args.no_unbatched else {"batched": batched, "unbatched": ["--no-batching"]}
        procs = {name: start_server(model, *f) for name, f in flags.items()}
        try:
            for _, url in procs.values():
                for loader in loaders:
                    asyncio.run(LOADERS[loader](url, items[:32], 8, 1))  # warm-up: first calls, allocator
            rows = measure(rm, {name: url for name, (_, url) in procs.items()}, items, concurrency, sizes, loaders,
                           args.repeat)
        finally:
            codes = {name: stop_server(proc) for name, (proc, _) in procs.items()}
    result = {"items": len(items), "max_length": args.max_length, "runs": rows, "exit_codes": codes,
              "load_average": os.getloadavg(), "cpus": os.cpu_count()}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{len(items)} items, max length {args.max_length}, medians of {args.repeat} repeat(s) (vs offline: "
          f"the median of the repeats' ratios); "
          f"servers exited {codes}")
    print(f"{'clients':>7} {'items/req':>9} {'client':<6} {'offline/s':>9} {'server':<10} {'items/s':>8} "
          f"{'vs offline':>10} {'p50 ms':>8} {'p99 ms':>8} {'client ms/item':>14} {'max|diff|':>10} {'errors':>6}")
    for r in rows:
        for name in flags:
            x = r[name]
            print(f"{r['clients']:>7} {r['items_per_request']:>9} {r['client']:<6} {r['offline_items_per_s']:>9.1f} "
                  f"{name:<10} {x['items_per_s']:>8.1f} {x['vs_offline']:>10.2f} "
                  f"{x['p50_ms']:>8.1f} {x['p99_ms']:>8.1f} {x['client_cpu_ms_per_item']:>14.2f} "
                  f"{x['max_abs_diff']:>10.1e} {x['errors']:>6}")
        if "batched_vs_unbatched" in r:
            print(f"{'':>7} {'':>9} {'':<6} {'':>9} batched / unbatched {r['batched_vs_unbatched']:.2f}; each repeat: "
                  f"vs offline {r['batched']['vs_offline_each']}, vs unbatched {r['batched_vs_unbatched_each']}")
    print(f"load average after the run: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
