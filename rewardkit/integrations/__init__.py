"""Adapters that plug a rewardkit reward model into RL frameworks (TRL, verl; OpenRLHF needs none).

Each adapter scores through one `RewardSource`: either in-process, with a `RewardModel` loaded from a
model directory, or remote, with a `RewardClient` talking to ``rewardkit serve``. Both encode
(prompt, response) exactly as training did (the server uses the same `Encoder`), which is the
point of these adapters: the frameworks' built-in reward-model paths tokenize differently (see
docs/rl.md for the measured gap).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any, Sequence

Text = Any  # a string, or a list of {"role", "content"} chat messages


def is_url_source(source: Any) -> bool:
    """A base URL (or a comma-separated list of them) rather than a model directory."""
    return isinstance(source, str) and source.strip().startswith(("http://", "https://"))


class RewardSource:
    """Rewards for parallel lists of prompts and responses, sync or async, from one backend."""

    def __init__(self, source: Any, *, normalize: bool = False, batch_size: int = 32,
                 api_key: str | None = None, device: str | None = None, dtype: Any = None,
                 client_options: dict[str, Any] | None = None):
        from rewardkit.model.reward_model import RewardModel

        client_module = sys.modules.get("rewardkit.client")  # httpx is imported only when a server is used
        self.normalize = normalize
        self.batch_size = batch_size
        self.model: Any = None
        self.client: Any = None  # a RewardClient
        if client_module is not None and isinstance(source, client_module.RewardClient):
            self.client = source
        elif is_url_source(source) or (isinstance(source, (list, tuple)) and source and is_url_source(source[0])):
            from rewardkit.client import RewardClient

            self.client = RewardClient(source, api_key=api_key, **(client_options or {}))
        elif isinstance(source, RewardModel):
            self.model = source
        else:
            self.model = RewardModel.from_pretrained(str(source), device=device, dtype=dtype)
        if self.client is not None and normalize:
            raise ValueError("normalize=True applies to in-process scoring only; start the server with "
                             "`rewardkit serve MODEL_DIR --normalize` to serve normalised rewards")
        self._lock = threading.Lock()  # one forward pass at a time on an in-process model

    @property
    def description(self) -> str:
        return f"server {','.join(self.client.urls)}" if self.client else "in-process RewardModel"

    def score(self, prompts: Sequence[Text], responses: Sequence[Text]) -> list[float]:
        if self.client is not None:
            return self.client.score(prompts, responses)
        with self._lock:
            return self.model.score_batch(list(prompts), list(responses), batch_size=self.batch_size,
                                          normalize=self.normalize)

    async def ascore(self, prompts: Sequence[Text], responses: Sequence[Text]) -> list[float]:
        if self.client is not None:
            return await self.client.ascore(prompts, responses)
        # the forward pass is CPU/GPU-bound: keep it off the event loop
        return await asyncio.get_running_loop().run_in_executor(None, self.score, prompts, responses)
