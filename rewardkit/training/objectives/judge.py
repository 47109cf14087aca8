"""``--objective judge``: a pairwise generative judge, trained with cross-entropy on its verdict token.

The model reads the prompt and two responses in a template and answers with a verdict token (``A`` or
``B``, `rewardkit.model.judge`); its reward is ``log P(A) - log P(B)``. Every training pair is seen in
both orders (the better response as A, then as B), so the judge cannot learn a position. Data: any
preference shape (`parts.ComparisonData`); a K-way ranking gives its C(K,2) pairs. Held-out metrics:
accuracy of the decision averaged over both orders, the accuracy of each order alone, and position
consistency (both orders agree).
"""

from __future__ import annotations

from itertools import combinations
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from rewardkit.config import TrainConfig
from rewardkit.encoding.encoder import Encoder
from rewardkit.evaluation.held_out import score_sharded
from rewardkit.model.batching import Batch, BatchLayout, collate_for
from rewardkit.model.judge import both_orders, pair_text
from rewardkit.training.objectives.base import Evaluation, Objective, Traits
from rewardkit.training.objectives.generative import VerdictBCE
from rewardkit.training.objectives.parts import ComparisonData, VerdictHead
from rewardkit.training.resume import data_fingerprint

if TYPE_CHECKING:
    from rewardkit.training.startup import Run


class JudgedPairs(ComparisonData):
    """Comparisons as judge items: every (better, worse) pair of a comparison in both orders, label 1 when
    response A is the better one."""

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg)
        self.labels = torch.empty(0)
        self.held_pairs: list[tuple[int, int, int]] = []  # (comparison, better, worse) of every held-out pair

    def _items(self, encoder: Encoder, comps: list[Any]) -> tuple[list[Any], list[float], list[tuple[int, int, int]]]:
        items, labels, pairs = [], [], []
        for n, c in enumerate(comps):
            for i, j in combinations(range(len(c.responses)), 2):
                better, worse = c.responses[i], c.responses[j]
                items.append(encoder.encode_texts(c.prompt, [pair_text(_text(better), _text(worse))]))
                items.append(encoder.encode_texts(c.prompt, [pair_text(_text(worse), _text(better))]))
                labels += [1.0, 0.0]
                pairs.append((n, i, j))
        return items, labels, pairs

    def encode(self, run: Run, encoder: Encoder) -> None:
        self.items, labels, _ = self._items(encoder, self.train)
        self.held, _, self.held_pairs = self._items(encoder, self.held_out)
        self.labels = torch.tensor(labels)
        run.say(f"data: {len(self.items) // 2} training pairs judged in both orders, {len(self.held) // 2} held out; "
                f"{self.truncated} judge inputs truncated to --max-length {self.cfg.max_length}")

    def prompt_groups(self) -> list[list[int]]:
        return [[2 * k, 2 * k + 1] for k in range(len(self.items) // 2)]  # a pair's two orders in one batch

    def fingerprint(self) -> str:
        return data_fingerprint(self.items, self.held)

    def counts(self) -> dict[str, Any]:
        return {"train_pairs": len(self.items) // 2, "truncated": self.truncated, "eval_pairs": len(self.held) // 2}


def _text(response: Any) -> str:
    """A response as text for the judge's template (a chat answer: its messages' contents)."""
    return response if isinstance(response, str) else "\n".join(m["content"] for m in response)


class JudgeObjective(VerdictBCE, Objective):
    """Pairs in both orders, binary cross-entropy of the verdict (see the module doc)."""

    name = "judge"
    traits = Traits(unit="judgements", logged=("loss", "accuracy"), packing=False, reward_statistics=False)
    term_weights = {"bce": 1.0}

    def __init__(self, cfg: TrainConfig):
        self.data: JudgedPairs
        super().__init__(cfg, JudgedPairs(cfg), VerdictHead(cfg, objective="judge"))

    def collate(self, members: list[int], pad_id: int, layout: BatchLayout, prompt_ids: list[int]) -> Batch:
        batch = collate_for([self.items[j] for j in members], pad_id, False)
        batch.targets = self.data.labels[members]
        return batch


    def evaluate(self, run: Run, net: nn.Module, pad_id: int, layout: BatchLayout) -> Evaluation | None:
        if not self.data.held:
            return None
        scores = [r[0] for r in score_sharded(net, self.data.held, pad_id, self.cfg.eval_batch_size, run.accelerator)]
        judged = [both_orders(scores[2 * k], scores[2 * k + 1]) for k in range(len(scores) // 2)]
        n = len(judged)
        metrics = {"pairs": n, "accuracy": sum(p > 0.5 for p, _ in judged) / n,
                   "accuracy_better_as_a": sum(scores[2 * k] > 0 for k in range(n)) / n,
                   "accuracy_better_as_b": sum(scores[2 * k + 1] < 0 for k in range(n)) / n,
                   "position_consistency": sum(agree for _, agree in judged) / n,
                   "mean_p_better": sum(p for p, _ in judged) / n}
        return Evaluation(metrics, scores)

    def describe(self, metrics: dict[str, Any]) -> str:
        return (f"eval accuracy {metrics['accuracy']:.4f} (both orders), position consistency "
                f"{metrics['position_consistency']:.4f}")

    @property
    def loss_name(self) -> str:
        return "judge"
