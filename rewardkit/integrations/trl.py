"""A TRL ``GRPOTrainer(reward_funcs=...)`` callable that scores exactly as the model was trained.

Why not pass the model directory to TRL directly: TRL then tokenizes ``prompt + completion`` (or
the reward tokenizer's chat template) with ``add_special_tokens=False``, so a BERT-type reward
model sees no [CLS]/[SEP] and a decoder trained to read its final EOS sees none; and nothing is
truncated the way training truncated. The rewards come out shifted and partly re-ordered
(measured in docs/rl.md). This callable hands TRL's (prompt, completion) pairs to
rewardkit's own encoder instead, in-process or through ``rewardkit serve``.

TRL calls a reward function as ``f(prompts=..., completions=..., completion_ids=..., **columns)``
and logs it under ``__name__`` (``rewards/<name>/mean``). Prompts and completions are both plain
strings (standard format) or both lists of chat messages (conversational format: the prompt's
messages, and ``[{"role": "assistant", "content": ...}]``); rewardkit renders either.

    from rewardkit.integrations.trl import trl_reward_func
    trainer = GRPOTrainer(model=policy, reward_funcs=trl_reward_func("rm-out/"), ...)
    trainer = GRPOTrainer(model=policy, reward_funcs=trl_reward_func("http://127.0.0.1:8000"), ...)
"""

from __future__ import annotations

from typing import Any, Sequence

from rewardkit.integrations import RewardSource, Text


def _check(prompts: Sequence[Text], completions: Sequence[Text]) -> None:
    if len(prompts) != len(completions):
        raise ValueError(f"rewardkit reward: {len(prompts)} prompts but {len(completions)} completions")
    for i, (p, c) in enumerate(zip(prompts, completions)):
        for what, x in (("prompt", p), ("completion", c)):
            if not isinstance(x, (str, list)):
                raise TypeError(f"rewardkit reward: {what} {i} is a {type(x).__name__}; expected a string "
                                f"or a list of chat messages")


class TRLReward:
    """Synchronous reward function for TRL: ``f(prompts, completions, **kwargs) -> list[float]``.

    ``source``: a model directory (scored in-process), a ``RewardModel``, a server base URL (or a
    comma-separated list of them), or a ``RewardClient``. ``name`` is what TRL logs the reward as.
    ``normalize`` applies the eval-set statistics stored in the model (in-process only).
    The last call's inputs and rewards are kept in ``last_call`` for inspection and tests.
    """

    def __init__(self, source: Any, *, name: str = "rewardkit", normalize: bool = False,
                 batch_size: int = 32, api_key: str | None = None, device: str | None = None,
                 dtype: Any = None, client_options: dict[str, Any] | None = None):
        self.scorer = RewardSource(source, normalize=normalize, batch_size=batch_size, api_key=api_key,
                                   device=device, dtype=dtype, client_options=client_options)
        self.__name__ = name  # TRL: get_callable_name(f) reads __name__, logs rewards/<name>/mean
        self.last_call: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.__name__!r}, {self.scorer.description})"

    def __call__(self, prompts: Sequence[Text], completions: Sequence[Text], **kwargs: Any) -> list[float]:
        _check(prompts, completions)
        rewards = self.scorer.score(list(prompts), list(completions))
        self.last_call = {"prompts": list(prompts), "completions": list(completions), "rewards": rewards}
        return rewards


class AsyncTRLReward(TRLReward):
    """The same, as a coroutine: TRL runs async reward functions concurrently with each other
    (``asyncio.gather`` on its own loop), so a remote reward overlaps with other async rewards."""

    async def __call__(self, prompts: Sequence[Text], completions: Sequence[Text],  # type: ignore[override]
                       **kwargs: Any) -> list[float]:
        _check(prompts, completions)
        rewards = await self.scorer.ascore(list(prompts), list(completions))
        self.last_call = {"prompts": list(prompts), "completions": list(completions), "rewards": rewards}
        return rewards


def trl_reward_func(source: Any, *, name: str = "rewardkit", asynchronous: bool = False,
                    **options: Any) -> TRLReward:
    """A reward function for ``GRPOTrainer(reward_funcs=...)`` (see `TRLReward` for ``options``)."""
    cls = AsyncTRLReward if asynchronous else TRLReward
    return cls(source, name=name, **options)
