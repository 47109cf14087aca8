"""`rewardkit serve` settings: one typed dataclass, documented once.

The CLI builds the flags of `rewardkit serve` from these fields (``--max-batch-tokens`` for
``max_batch_tokens``, ``--no-batching`` for ``batching``), declared with `rewardkit.options.option`
like every other config, so the help text lives here only. This
module imports neither torch nor the web stack: the CLI can build its parser cheaply.

The API key is deliberately *not* a field: a flag would put the secret in ``ps`` output and shell
history. It comes from ``REWARDKIT_API_KEY`` or the file named by ``--api-key-file``.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from rewardkit.config import ScorerOptions, check
from rewardkit.errors import UsageError
from rewardkit.options import option

API_KEY_ENV = "REWARDKIT_API_KEY"


@dataclass
class ServeConfig(ScorerOptions):
    """Everything `rewardkit serve` needs; defaults suit one RL job on the same machine.

    How the model is loaded (MODEL_DIR, --dtype, --max-length, --prefix-sharing) is shared with
    `eval` and `score` (`rewardkit.config.ScorerOptions`).
    """

    host: str = option(
        "Address to bind. Anything but a loopback address needs an API key (REWARDKIT_API_KEY or "
        "--api-key-file) unless --allow-unauthenticated.", "127.0.0.1")
    port: int = option("TCP port to listen on.", 8000)
    device: str | None = option("torch device, e.g. cpu, cuda, cuda:1. Default: cuda when available, else cpu.", None)
    normalize: bool = option(
        "Return (r - mean) / std with the statistics stored at training time, on every route.", False)
    prm_aggregate: str | None = option(
        "A process reward model's solution reward from its steps (min, prod, last, mean of their probabilities); "
        "default: the one it was trained with.", None, choices=["min", "prod", "last", "mean"])
    model_name: str | None = option(
        "Name reported by /v1/models and /classify (default: the model directory's name).", None)
    batching: bool = option(
        "Batch items of concurrent requests into one forward pass. --no-batching runs one request "
        "per forward (for comparison).", True)
    max_batch_tokens: int = option(
        "Token budget of one forward pass (padded rows x longest row; real tokens with packed rows); "
        "requests queued together are batched up to it.", 16384)
    max_wait_ms: float = option(
        "Longest wait for more requests after the first one of a batch; the batcher stops waiting "
        "once the batch is as large as the previous one (so a lone client never waits).", 20.0)
    max_queue_items: int = option("Items waiting for the model before new requests get 503 with Retry-After.", 4096)
    max_body_bytes: int = option("Largest request body accepted (larger: 413).", 16 * 1024 * 1024)
    max_items: int = option("Most items (query texts, /score items, /classify inputs) per request (more: 422).", 1024)
    max_chars: int = option("Most characters per text, or per message list (more: 422).", 200_000)
    api_key_file: str | None = option(
        "File holding the bearer token clients must send (overrides REWARDKIT_API_KEY).", None)
    allow_unauthenticated: bool = option(
        "Allow a non-loopback --host without an API key (anyone who reaches the port can use it).", False)
    log_payloads: bool = option(
        "Log request bodies (texts included). Off by default: prompts and rollouts stay out of logs.", False)

    def validate(self) -> None:
        """Raise UsageError naming the flag of the first bad value."""
        super().validate()
        checks = [
            (0 <= self.port <= 65535, "port", "must be in [0, 65535]"),
            (self.max_batch_tokens >= 1, "max_batch_tokens", "must be >= 1"),
            (self.max_wait_ms >= 0, "max_wait_ms", "must be >= 0"),
            (self.max_queue_items >= 1, "max_queue_items", "must be >= 1"),
            (self.max_body_bytes >= 1024, "max_body_bytes", "must be >= 1024"),
            (self.max_items >= 1, "max_items", "must be >= 1"),
            (self.max_chars >= 1, "max_chars", "must be >= 1"),
        ]
        check(self, checks)

    def api_key(self) -> str | None:
        """The bearer token from --api-key-file or REWARDKIT_API_KEY; None when neither is set.

        Errors name the file, never its contents.
        """
        if self.api_key_file:
            p = Path(self.api_key_file).expanduser()
            try:
                key = p.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as e:
                reason = getattr(e, "strerror", None) or "not UTF-8 text"
                raise UsageError(f"--api-key-file: cannot read {p}: {reason}") from None
            if not key:
                raise UsageError(f"--api-key-file: {p} is empty")
            return key
        key = os.environ.get(API_KEY_ENV, "").strip()
        return key or None

    def check_exposure(self, key: str | None) -> None:
        """Refuse to serve an open reward model beyond this machine unless told to."""
        if key is None and not is_loopback(self.host) and not self.allow_unauthenticated:
            raise UsageError(
                f"--host {self.host} is reachable from other machines, but no API key is set: set "
                f"{API_KEY_ENV} or pass --api-key-file FILE (clients then send 'Authorization: Bearer "
                "KEY'), or pass --allow-unauthenticated to serve without one")


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and 'localhost' stay on this machine; every other address may not."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
