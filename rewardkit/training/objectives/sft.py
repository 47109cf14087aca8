"""``--objective sft``: a decoder trained as a causal LM on prompt + preferred response.

A reward model started from a model that has learned to write the preferred answers reads them
better (LMFlow's recipe: LLaMA-13B on hh-rlhf 71.6% without SFT, 81.8% after one epoch of it).
Every preference shape rewardkit reads gives training examples: each comparison's best response
after its prompt (a rating table's best-rated answers, through the usual rating options), each
(prompt, response) once. The layout and truncation are a decoder reward model's
(``<bos?> prompt response <eos>``, the prompt's oldest tokens dropped, the response never cut), and
the loss is the mean negative log-likelihood of the response tokens and the final EOS
(`rewardkit.model.batching.collate_lm`): the prompt is context, never a target. The held-out side
reports perplexity on its chosen responses. The output is a plain ``AutoModelForCausalLM``
directory; ``rewardkit train --model DIR`` starts a reward model from it (a fresh score head, the LM
head left out), and ``--sft-epochs N`` runs both stages in one command.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from rewardkit.config import TrainConfig
from rewardkit.encoding.encoder import Encoded
from rewardkit.evaluation.held_out import shard
from rewardkit.model.batching import Batch, BatchLayout, collate_lm, sorted_batches
from rewardkit.training.objectives.base import Evaluation, Objective, Traits
from rewardkit.training.objectives.parts import ComparisonData, LanguageModelHead

if TYPE_CHECKING:
    from rewardkit.training.startup import Run


class SFTObjective(Objective):
    """Prompt + chosen response in, the response's tokens as targets (see the module doc)."""

    name = "sft"
    # language-model batches read every response token: one row per example, and no reward to normalise
    traits = Traits(unit="responses", logged=("loss",), packing=False, reward_statistics=False)
    term_weights = {"nll": 1.0}

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg, ComparisonData(cfg, chosen_only=True), LanguageModelHead(cfg))

    def collate(self, members: list[int], pad_id: int, layout: BatchLayout, prompt_ids: list[int]) -> Batch:
        return collate_lm([self.items[j] for j in members], pad_id)

    def counts(self, batch: Batch) -> dict[str, float]:
        return {"nll": float(len(batch.reward_row))}

    def loss(self, outputs: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        return {"nll": -outputs.mean()}

    def evaluate(self, run: Run, net: nn.Module, pad_id: int, layout: BatchLayout) -> Evaluation | None:
        """Held-out perplexity of the chosen responses (every process scores its share of them)."""
        if not self.data.held:
            return None
        nll, tokens, responses = sum_log_likelihood(net, shard(self.data.held, run.accelerator), pad_id,
                                                    self.cfg.eval_batch_size, run.accelerator)
        nll, tokens, responses = run.reduce_sum([nll, tokens, responses])
        mean = nll / tokens
        return Evaluation({"perplexity": math.exp(mean), "nll": mean, "tokens": int(tokens),
                           "chosen_responses": int(responses)}, [])

    def describe(self, metrics: dict[str, Any]) -> str:
        return f"eval perplexity {metrics['perplexity']:.4f}"

    @property
    def loss_name(self) -> str:
        return "sft"


@torch.no_grad()
def sum_log_likelihood(net: nn.Module, items: list[tuple[Encoded, float]], pad_id: int, batch_size: int,
                       accelerator: Any) -> tuple[float, float, float]:
    """(negative log-likelihood summed over response tokens, tokens, responses) of ``items``, each
    (encoded item, weight): weight 0 marks the copies that even out the processes' shares."""
    was_training = net.training
    net.eval()
    nll = tokens = responses = 0.0
    try:
        for idx in sorted_batches([e.longest for e, _ in items], batch_size):
            batch = collate_lm([items[i][0] for i in idx], pad_id).to(accelerator.device)
            with accelerator.autocast():
                logp = net(**batch.inputs()).double()
            weight = torch.tensor([items[i][1] for i in idx], dtype=torch.float64, device=logp.device)
            per_row = weight[batch.reward_row]
            nll -= float((logp * per_row).sum())
            tokens += float(per_row.sum())
            responses += float(weight.sum())
    finally:
        net.train(was_training)
    return nll, tokens, responses
