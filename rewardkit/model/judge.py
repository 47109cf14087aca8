"""A pairwise generative judge (``--objective judge``): the layout of its input and how its verdicts rank.

The judge reads the prompt and two responses, ``prompt`` then ``\\n\\nResponse A:\\n<a>\\n\\nResponse B:\\n<b>``,
then the question ``--judge-template`` (appended by id after truncation, as a generative reward model's
verdict question), and its verdict is the log-odds ``log P(A) - log P(B)`` of the two answer tokens
``--judge-tokens`` for the next token (`rewardkit.model.net.VerdictNet`). Every pair is judged in both
orders: ``P(a beats b) = (sigmoid(s(a, b)) + 1 - sigmoid(s(b, a))) / 2`` cancels the judge's position bias,
and the two orders agreeing is its position consistency.

Several responses to one prompt (a GRPO group) get scores from a Bradley-Terry fit over every pairwise
verdict (`bradley_terry_scores`): each response's log-strength, centred, so the group's rewards are
relative, as GRPO uses them.
"""

from __future__ import annotations

import math
from typing import Sequence

DEFAULT_TEMPLATE = "\n\nWhich response is better, A or B? Answer:"
DEFAULT_TOKENS = " A, B"


def pair_text(a: str, b: str) -> str:
    """The two responses as the judge reads them, after the prompt."""
    return f"\n\nResponse A:\n{a}\n\nResponse B:\n{b}"


def both_orders(forward: float, backward: float) -> tuple[float, bool]:
    """(P(a beats b) averaged over both orders, whether the two orders agree) from the judge's log-odds
    ``forward`` = s(a, b) and ``backward`` = s(b, a)."""
    p = (_sigmoid(forward) + 1.0 - _sigmoid(backward)) / 2.0
    return p, (forward > 0) == (backward < 0)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def bradley_terry_scores(n: int, wins: Sequence[tuple[int, int, float]], iterations: int = 200,
                         prior: float = 0.1) -> list[float]:
    """Centred log-strengths of ``n`` responses from soft pairwise outcomes ``(i, j, p)`` (p: the probability
    that i beats j), by the minorization-maximization updates of the Bradley-Terry model with a small
    symmetric prior (``prior`` virtual half-wins against every other), so one-sided verdicts stay finite."""
    if n == 1:
        return [0.0]
    won = [prior * (n - 1) / 2.0] * n
    games: dict[tuple[int, int], float] = {}
    for i, j, p in wins:
        won[i] += p
        won[j] += 1.0 - p
        key = (min(i, j), max(i, j))
        games[key] = games.get(key, 0.0) + 1.0
    for i in range(n):
        for j in range(i + 1, n):
            games[(i, j)] = games.get((i, j), 0.0) + prior
    strength = [1.0] * n
    for _ in range(iterations):
        new = []
        for i in range(n):
            denominator = sum(g / (strength[i] + strength[j if i == k else k])
                              for (k, j), g in games.items() if i in (k, j))
            new.append(won[i] / denominator if denominator else strength[i])
        mean = math.exp(sum(math.log(s) for s in new) / n)
        strength = [s / mean for s in new]
    return [math.log(s) for s in strength]
