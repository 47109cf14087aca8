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
from typing import Any

import torch
from torch import nn

from rewardkit.data.records import Comparison, text_key
from rewardkit.encoding.encoder import Encoded
from rewardkit.evaluation.held_out import shard
from rewardkit.model.backbone import load_causal_lm
from rewardkit.model.batching import Batch, BatchLayout, collate_lm, sorted_batches
from rewardkit.model.net import TokenLogProbNet
from rewardkit.training.objectives.base import Evaluation, Objective
from rewardkit.training.objectives.pairwise import PairwiseObjective


def chosen_only(comparisons: list[Comparison]) -> list[Comparison]:
    """Each comparison's best response after its prompt, every (prompt, response) once."""
    seen: set[tuple[str, str]] = set()
    out = []
    for c in comparisons:
        key = (c.prompt_key(), text_key(c.responses[0]))
        if key not in seen:
            seen.add(key)
            out.append(Comparison(prompt=c.prompt, responses=[c.responses[0]], source=c.source))
    return out


class SFTObjective(PairwiseObjective):
    """Prompt + chosen response in, the response's tokens as targets (see the module doc). Data loading
    and encoding are the pairwise objective's, on the chosen responses alone."""

    name = "sft"
    unit = "responses"
    logged = ("loss",)
    term_weights = {"nll": 1.0}
    prefix_sharing = False
    packing = False  # language-model batches read every response token: one row per example
    reward_statistics = False

    def load(self, run: Any) -> None:
        super().load(run)
        self.train, self.held_out = chosen_only(self.train), chosen_only(self.held_out)
        run.say(f"SFT examples: {len(self.train)} training and {len(self.held_out)} held-out (prompt, chosen) "
                "responses")

    def load_model(self) -> tuple[nn.Module, Any]:
        return load_causal_lm(self.cfg.model, dropout=self.cfg.dropout, what="--objective sft")

    def net(self, model: nn.Module) -> nn.Module:
        return TokenLogProbNet(model)

    def collate(self, members: list[int], pad_id: int, layout: BatchLayout, prompt_ids: list[int]) -> Batch:
        return collate_lm([self.items[j] for j in members], pad_id)

    def counts(self, batch: Batch) -> dict[str, float]:
        return {"nll": float(len(batch.reward_row))}

    def loss(self, outputs: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        return {"nll": -outputs.mean()}

    # ------------------------------------------------------------------ evaluation and the saved model
    def evaluate(self, run: Any, net: nn.Module, pad_id: int, layout: BatchLayout) -> Evaluation | None:
        """Held-out perplexity of the chosen responses (every process scores its share of them)."""
        if not self.held_enc:
            return None
        nll, tokens, responses = sum_log_likelihood(net, shard(self.held_enc, run.accelerator), pad_id,
                                                    self.cfg.eval_batch_size, run.accelerator)
        nll, tokens, responses = run.reduce_sum([nll, tokens, responses])
        mean = nll / tokens
        return Evaluation({"perplexity": math.exp(mean), "nll": mean, "tokens": int(tokens),
                           "chosen_responses": int(responses)}, [])

    results_table = Objective.results_table  # perplexity, not the pairwise table

    def describe(self, metrics: dict[str, Any]) -> str:
        return f"eval perplexity {metrics['perplexity']:.4f}"

    @property
    def loss_name(self) -> str:
        return "sft"

    def model_meta(self, model: nn.Module, weights: dict[str, torch.Tensor] | None) -> dict[str, Any]:
        return {"objective": "sft"}

    def write_report(self, path: Any, evaluation: Evaluation, details: dict[str, str]) -> None:
        return None  # perplexity is one number (eval.json, the card); there are no rewards to draw

    def summary(self) -> tuple[dict[str, Any], dict[str, Any]]:
        counts = {"train_responses": len(self.items), "truncated": self.truncated, "eval_responses": len(self.held_enc)}
        return counts, {"objective": "sft"}


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
