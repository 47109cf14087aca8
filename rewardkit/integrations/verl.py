"""verl custom reward functions that score with a rewardkit model, in-process or via ``rewardkit serve``.

verl's reward loop calls ``compute_score(data_source=..., solution_str=..., ground_truth=...,
extra_info=..., **reward_kwargs)`` once per rollout (awaited when it is a coroutine function,
else run in a thread pool). ``solution_str`` is the decoded response only; the prompt reaches the
function only through ``extra_info``, the dict the dataset's ``extra_info`` column holds (verl
adds ``num_turns`` and ``rollout_reward_scores`` to it). So the data preprocessing must put the
prompt there, e.g. ``"extra_info": {"prompt": question}`` or the chat messages.

Wiring (verl >= 0.7 keys; older releases use the top-level ``custom_reward_function``)::

    reward.custom_reward_function.path=pkg://rewardkit.integrations.verl
    reward.custom_reward_function.name=compute_score
    +reward.custom_reward_function.reward_kwargs.url=http://127.0.0.1:8000   # or .model_dir=/path/rm

Options (``reward_kwargs`` or environment): ``url`` / ``REWARDKIT_URL`` (comma-separated for
several servers), ``model_dir`` / ``REWARDKIT_MODEL_DIR`` (in-process), ``api_key`` /
``REWARDKIT_API_KEY``, ``prompt_key`` (default: the first of prompt, raw_prompt, question),
``normalize`` (in-process only). Concurrent calls on one event loop are gathered into one batch
(one forward pass, or one HTTP request) instead of one request per rollout.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from rewardkit.errors import UsageError
from rewardkit.integrations import RewardSource, Text

PROMPT_KEYS = ("prompt", "raw_prompt", "question")
BATCH_WINDOW_S = 0.005  # how long the first call of a burst waits for the others to join its batch
MAX_BATCH = 256

_scorers: dict[tuple[Any, ...], RewardSource] = {}
_batchers: dict[tuple[int, tuple[Any, ...]], "_Batcher"] = {}


def _plain(x: Any) -> Any:
    """numpy arrays and scalars (what verl's parquet columns turn into) as plain Python values."""
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):
        x = x.tolist()
    if isinstance(x, list):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x


def prompt_from(extra_info: Any, prompt_key: str | None = None) -> Text:
    """The prompt stored in ``extra_info``: a string or a list of chat messages."""
    if not isinstance(extra_info, dict):
        raise ValueError("rewardkit compute_score: extra_info is missing; put the prompt in the dataset's "
                         "extra_info column (e.g. extra_info={'prompt': ...}) when preprocessing for verl")
    keys = (prompt_key,) if prompt_key else PROMPT_KEYS
    for key in keys:
        value = extra_info.get(key)
        if value is not None:
            value = _plain(value)
            if isinstance(value, str) or (isinstance(value, list) and all(isinstance(m, dict) for m in value)):
                return value
            raise ValueError(f"rewardkit compute_score: extra_info[{key!r}] is a {type(value).__name__}; "
                             f"expected a string or a list of chat messages")
    raise ValueError(f"rewardkit compute_score: extra_info has none of {list(keys)} (keys: {sorted(extra_info)}); "
                     f"put the prompt there when preprocessing the data, or set reward_kwargs.prompt_key")


def _options(url: str | None, model_dir: str | None, api_key: str | None,
             normalize: bool) -> tuple[Any, ...]:
    url = url or os.environ.get("REWARDKIT_URL") or None
    model_dir = model_dir or os.environ.get("REWARDKIT_MODEL_DIR") or None
    if url and model_dir:
        raise ValueError("rewardkit compute_score: give either url (a running `rewardkit serve`) or model_dir "
                         "(in-process), not both")
    if not url and not model_dir:
        raise ValueError("rewardkit compute_score: no reward model configured; set reward_kwargs.url or "
                         "reward_kwargs.model_dir (or REWARDKIT_URL / REWARDKIT_MODEL_DIR)")
    return ("url", url, api_key, False) if url else ("dir", str(model_dir), None, bool(normalize))


def get_scorer(key: tuple[Any, ...]) -> RewardSource:
    """One scorer per configuration and process: the model is loaded once, connections pooled."""
    scorer = _scorers.get(key)
    if scorer is None:
        kind, source, api_key, normalize = key
        scorer = RewardSource(source, api_key=api_key, normalize=normalize)
        _scorers[key] = scorer
    return scorer


class _Batcher:
    """Gathers the calls made on one event loop within a few milliseconds into one scoring call."""

    def __init__(self, scorer: RewardSource):
        self.scorer = scorer
        self.pending: list[tuple[Text, str, asyncio.Future]] = []
        self.batches = 0  # scoring calls made (for tests and diagnostics)

    async def submit(self, prompt: Text, response: str) -> float:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending.append((prompt, response, future))
        if len(self.pending) == 1:
            loop.create_task(self._flush())
        elif len(self.pending) >= MAX_BATCH:
            self._take_and_score(loop)
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(BATCH_WINDOW_S)
        if self.pending:
            self._take_and_score(asyncio.get_running_loop())

    def _take_and_score(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self.pending = self.pending, []
        self.batches += 1
        loop.create_task(self._score(batch))

    async def _score(self, batch: list[tuple[Text, str, asyncio.Future]]) -> None:
        try:
            rewards = await self.scorer.ascore([b[0] for b in batch], [b[1] for b in batch])
        except BaseException as e:  # noqa: BLE001 - every waiting rollout gets the error
            for _, _, f in batch:
                if not f.done():
                    f.set_exception(e)
            return
        for (_, _, f), r in zip(batch, rewards):
            if not f.done():
                f.set_result(r)


async def compute_score(data_source: Any = None, solution_str: str = "", ground_truth: Any = None,
                        extra_info: dict[str, Any] | None = None, *, url: str | None = None,
                        model_dir: str | None = None, api_key: str | None = None,
                        prompt_key: str | None = None, normalize: bool = False, **kwargs: Any) -> float:
    """verl's async custom reward function: the reward of ``solution_str`` for the prompt in ``extra_info``.

    ``data_source`` and ``ground_truth`` are accepted and ignored (a reward model needs neither);
    verl's extra kwargs (``reward_router_address``, ``reward_model_tokenizer``) are ignored too.
    """
    prompt = prompt_from(extra_info, prompt_key)
    key = _options(url, model_dir, api_key, normalize)
    loop_key = (id(asyncio.get_running_loop()), key)
    batcher = _batchers.get(loop_key)
    if batcher is None:
        scorer = get_scorer(key)
        if getattr(scorer.model, "judge", False):  # its batches are cut by time, so a group may be split
            raise UsageError(f"rewardkit compute_score: {model_dir} is a pairwise judge, which scores the responses "
                             "to a prompt together; use rewardkit.integrations.verl.compute_score_batch (verl's "
                             "batch reward manager)")
        batcher = _batchers[loop_key] = _Batcher(scorer)
    return await batcher.submit(prompt, solution_str)


def compute_score_sync(data_source: Any = None, solution_str: str = "", ground_truth: Any = None,
                       extra_info: dict[str, Any] | None = None, *, url: str | None = None,
                       model_dir: str | None = None, api_key: str | None = None,
                       prompt_key: str | None = None, normalize: bool = False, **kwargs: Any) -> float:
    """The same as a plain function, for reward managers that refuse coroutines (verl's ``remote``)."""
    prompt = prompt_from(extra_info, prompt_key)
    return get_scorer(_options(url, model_dir, api_key, normalize)).score([prompt], [solution_str])[0]


def compute_score_batch(data_sources: Any = None, solution_strs: Any = (), ground_truths: Any = None,
                        extra_infos: Any = None, *, url: str | None = None, model_dir: str | None = None,
                        api_key: str | None = None, prompt_key: str | None = None,
                        normalize: bool = False, **kwargs: Any) -> list[float]:
    """For verl's ``batch`` reward manager: lists in, one reward per response out."""
    responses = list(solution_strs)
    infos = list(extra_infos) if extra_infos is not None else [None] * len(responses)
    prompts = [prompt_from(info, prompt_key) for info in infos]
    return get_scorer(_options(url, model_dir, api_key, normalize)).score(prompts, responses)
