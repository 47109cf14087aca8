"""Prometheus metrics of `rewardkit serve`, in the text exposition format, without a dependency.

A handful of counters, gauges and histograms is all a reward server needs; writing the format
(https://prometheus.io/docs/instrumenting/exposition_formats/) directly keeps the install small.
Every update takes one lock, so the model thread and the event loop may both record.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Iterable

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
TOKEN_BUCKETS = (64, 256, 1024, 4096, 16384, 65536, 262144)


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


def _num(x: float) -> str:
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(float(x)) if not float(x).is_integer() else str(int(x)) if abs(x) < 1e15 else repr(float(x))


class Histogram:
    def __init__(self, buckets: Iterable[float]):
        self.bounds = tuple(buckets)
        self.counts = [0] * len(self.bounds)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        for i, b in enumerate(self.bounds):
            if value <= b:
                self.counts[i] += 1
                break
        self.total += 1
        self.sum += value

    def lines(self, name: str, labels: dict[str, str]) -> list[str]:
        out, running = [], 0
        for b, c in zip(self.bounds, self.counts):
            running += c
            out.append(f"{name}_bucket{_labels({**labels, 'le': _num(b)})} {running}")
        out.append(f"{name}_bucket{_labels({**labels, 'le': '+Inf'})} {self.total}")
        out.append(f"{name}_sum{_labels(labels)} {_num(self.sum)}")
        out.append(f"{name}_count{_labels(labels)} {self.total}")
        return out


class Metrics:
    """Everything /metrics reports. Names start with ``rewardkit_``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = time.time()
        self.requests: dict[tuple[str, str], int] = {}  # (route, status) -> count
        self.request_seconds: dict[str, Histogram] = {}
        self.queue_seconds = Histogram(LATENCY_BUCKETS)
        self.batch_items = Histogram(SIZE_BUCKETS)
        self.batch_tokens = Histogram(TOKEN_BUCKETS)
        self.errors: dict[str, int] = {}  # kind -> count
        self.items = 0
        self.tokens = 0
        self.model_seconds = 0.0
        self.truncated = 0
        self.dropped = 0  # requests whose client left before their batch ran
        self.rejected = 0  # 503: queue full
        self.queue_items = 0
        self.recent_tokens_per_s = 0.0
        self.rewards_n = 0
        self.rewards_mean = 0.0
        self.rewards_m2 = 0.0

    def request(self, route: str, status: int, seconds: float) -> None:
        with self.lock:
            key = (route, str(status))
            self.requests[key] = self.requests.get(key, 0) + 1
            self.request_seconds.setdefault(route, Histogram(LATENCY_BUCKETS)).observe(seconds)
            if status >= 400:
                kind = "server" if status >= 500 else "client"
                self.errors[kind] = self.errors.get(kind, 0) + 1

    def batch(self, items: int, tokens: int, truncated: int, seconds: float, waits: list[float]) -> None:
        with self.lock:
            self.batch_items.observe(items)
            self.batch_tokens.observe(tokens)
            self.items += items
            self.tokens += tokens
            self.truncated += truncated
            self.model_seconds += seconds
            if seconds > 0:
                rate = tokens / seconds
                self.recent_tokens_per_s = rate if not self.recent_tokens_per_s else \
                    0.8 * self.recent_tokens_per_s + 0.2 * rate
            for w in waits:
                self.queue_seconds.observe(w)

    def rewards(self, values: Iterable[float]) -> None:
        """Running mean and variance (Welford) of every reward served."""
        with self.lock:
            for x in values:
                self.rewards_n += 1
                d = x - self.rewards_mean
                self.rewards_mean += d / self.rewards_n
                self.rewards_m2 += d * (x - self.rewards_mean)

    def summary(self) -> str:
        """Requests by route and status in one line, e.g. ``/score 200=31, /score 499=1``.

        Printed when the server stops, so an operator (and the drain test) can match what clients saw
        against what reached the application.
        """
        with self.lock:
            parts = [f"{route} {status}={n}" for (route, status), n in sorted(self.requests.items())]
        return ", ".join(parts) or "none"

    def count(self, what: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, what, getattr(self, what) + n)

    def render(self) -> str:
        with self.lock:
            return "\n".join(self._lines()) + "\n"

    def _lines(self) -> list[str]:
        out: list[str] = []

        def head(name: str, kind: str, text: str) -> None:
            out.extend([f"# HELP {name} {text}", f"# TYPE {name} {kind}"])

        head("rewardkit_requests_total", "counter", "HTTP requests by route and status code.")
        for (route, status), n in sorted(self.requests.items()):
            out.append(f"rewardkit_requests_total{_labels({'route': route, 'status': status})} {n}")
        head("rewardkit_request_seconds", "histogram", "Request latency, body read to response, by route.")
        for route, h in sorted(self.request_seconds.items()):
            out.extend(h.lines("rewardkit_request_seconds", {"route": route}))
        head("rewardkit_errors_total", "counter", "Error responses: client (4xx) and server (5xx).")
        for kind in ("client", "server"):
            out.append(f"rewardkit_errors_total{_labels({'kind': kind})} {self.errors.get(kind, 0)}")
        head("rewardkit_queue_seconds", "histogram", "Time an item waited in the queue before its batch ran.")
        out.extend(self.queue_seconds.lines("rewardkit_queue_seconds", {}))
        head("rewardkit_batch_items", "histogram", "Items (comparisons) per model batch.")
        out.extend(self.batch_items.lines("rewardkit_batch_items", {}))
        head("rewardkit_batch_tokens", "histogram", "Tokens per model batch.")
        out.extend(self.batch_tokens.lines("rewardkit_batch_tokens", {}))
        scalars = [
            ("rewardkit_items_total", "counter", "Items scored.", self.items),
            ("rewardkit_tokens_total", "counter", "Tokens scored.", self.tokens),
            ("rewardkit_model_seconds_total", "counter", "Seconds the model spent on batches.", self.model_seconds),
            ("rewardkit_tokens_per_second", "gauge", "Recent model throughput (moving average over batches).",
             self.recent_tokens_per_s),
            ("rewardkit_truncated_total", "counter", "Items cut to the model's max length.", self.truncated),
            ("rewardkit_dropped_total", "counter", "Requests dropped because the client disconnected.", self.dropped),
            ("rewardkit_rejected_total", "counter", "Requests answered 503 because the queue was full.", self.rejected),
            ("rewardkit_queue_items", "gauge", "Items waiting for the model now.", self.queue_items),
            ("rewardkit_rewards_total", "counter", "Rewards served.", self.rewards_n),
            ("rewardkit_reward_mean", "gauge", "Mean of every reward served.", self.rewards_mean),
            ("rewardkit_reward_std", "gauge", "Standard deviation of every reward served.",
             math.sqrt(self.rewards_m2 / self.rewards_n) if self.rewards_n > 1 else 0.0),
            ("rewardkit_uptime_seconds", "gauge", "Seconds since the server started.", time.time() - self.started),
        ]
        for name, kind, text, value in scalars:
            head(name, kind, text)
            out.append(f"{name} {_num(value)}")
        return out
