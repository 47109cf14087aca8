"""``--objective generative``: the reward read from the language-model head, after a verdict question.

The model sees ``prompt response <--verdict-template>`` and the reward is
``log P(yes) - log P(no)`` for the next token (`rewardkit.model.verdict`,
`rewardkit.model.net.VerdictNet`). Nothing new is initialised, so what the pretrained model knows
carries over. Two ways to train it:

* on comparisons (any preference shape): Bradley-Terry on the log-odds, with margins, centering,
  Plackett-Luce rankings and per-prompt balancing exactly as for a scalar head (`GenerativeObjective`
  is the pairwise objective with another readout);
* on a rating table: binary cross-entropy of ``sigmoid(reward)`` against a verdict, yes for answers
  scoring at least ``--hi``, no below ``--lo`` (default: ``--hi``), answers in between left out
  (`GenerativeRatingsObjective`). Without ``--hi`` there is no verdict to learn: exit 2.

The export is a plain ``AutoModelForCausalLM`` whose ``config.rewardkit["verdict"]`` holds the
question and answers, so `RewardModel`, ``rewardkit eval/score/serve`` and the RL adapters score it
without flags, and its card's snippet reproduces the reward with transformers alone.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rewardkit.data.loading import split_by_prompt
from rewardkit.data.ratings import LabelledAnswer, label_answers
from rewardkit.data.readers import iter_rows
from rewardkit.data.records import check_usable, describe_problems
from rewardkit.encoding.encoder import Encoder
from rewardkit.errors import DataError, UsageError, flag
from rewardkit.evaluation.held_out import score_sharded
from rewardkit.evaluation.metrics import bt_loss
from rewardkit.model.backbone import load_causal_lm, make_encoder
from rewardkit.model.batching import Batch, BatchLayout, collate_for
from rewardkit.model.net import VerdictNet
from rewardkit.model.verdict import Verdict, resolve_verdict
from rewardkit.training.objectives.base import Evaluation, Objective
from rewardkit.training.objectives.pairwise import PairwiseObjective
from rewardkit.training.resume import data_fingerprint

class GenerativeObjective(PairwiseObjective):
    """Comparisons in, Bradley-Terry on the verdict log-odds (see the module doc)."""

    name = "generative"

    def __init__(self, cfg: Any):
        super().__init__(cfg)
        self.verdict: Verdict | None = None

    def load_model(self) -> tuple[nn.Module, Any]:
        """The decoder with its LM head; the verdict resolved for its tokenizer (each answer one token)."""
        model, tokenizer = load_causal_lm(self.cfg.model, dropout=self.cfg.dropout, what="--objective generative")
        self.verdict = resolve_verdict(tokenizer, self.cfg.verdict_template, self.cfg.verdict_tokens)
        return model, tokenizer

    def encoder(self, model: nn.Module, tokenizer: Any) -> Encoder:
        assert self.verdict is not None
        return make_encoder(model, tokenizer, self.cfg.max_length, tail=self.verdict.template_ids)

    def net(self, model: nn.Module) -> nn.Module:
        assert self.verdict is not None
        return VerdictNet(model, *self.verdict.answer_ids)

    def model_meta(self, model: nn.Module, weights: dict[str, torch.Tensor] | None) -> dict[str, Any]:
        assert self.verdict is not None
        return {"objective": "generative", "verdict": self.verdict.to_meta()}

    def checkpoint_meta(self) -> dict[str, Any]:
        """What `rewardkit export` needs to write a checkpoint as a generative model: the verdict."""
        assert self.verdict is not None
        return {**super().checkpoint_meta(), "verdict": self.verdict.to_meta()}

    def summary(self) -> tuple[dict[str, Any], dict[str, Any]]:
        counts, facts = super().summary()
        return counts, {**facts, "objective": "generative"}


class GenerativeRatingsObjective(GenerativeObjective):
    """A rating table in, binary cross-entropy of the verdict against ``score >= --hi`` (module doc)."""

    unit = "answers"
    logged = ("loss", "accuracy")
    term_weights = {"bce": 1.0}
    prefix_sharing = False

    def __init__(self, cfg: Any):
        super().__init__(cfg)
        if cfg.hi is None:
            raise UsageError(f"{flag('hi')}: --objective generative on a rating table trains a yes/no verdict; give "
                             f"the score from which an answer is 'yes' ({flag('hi')}, and {flag('lo')} below which it "
                             "is 'no', default the same)")
        self.answers: list[LabelledAnswer] = []
        self.held_answers: list[LabelledAnswer] = []

    def _labelled(self, run: Any, source: str) -> list[LabelledAnswer]:
        cfg = self.cfg
        answers, loaded = label_answers(iter_rows(source), source, cfg.rating_options(), cfg.hi,
                                        cfg.lo if cfg.lo is not None else cfg.hi)
        for note in loaded.notes:
            run.say(note)
        check_usable(loaded.problems, [], len(answers), source, cfg.skip_invalid, "no answers with a verdict")
        if loaded.problems:
            run.say(describe_problems(loaded.problems, source))
        self.skipped += len(loaded.problems)
        return answers

    def load(self, run: Any) -> None:
        cfg = self.cfg
        answers = self._labelled(run, cfg.train_data)
        if cfg.eval_data:
            self.answers, self.held_answers = answers, self._labelled(run, cfg.eval_data)
        else:
            self.answers, self.held_answers = split_by_prompt(answers, cfg.held_out_fraction(), cfg.seed)
        if len({a.label for a in self.answers}) < 2:
            raise DataError(f"{cfg.train_data}: every training answer has the same verdict; move {flag('hi')} "
                            f"/ {flag('lo')} so that both occur")

    def encode(self, run: Any, encoder: Encoder) -> None:
        self.items = [encoder.encode_texts(a.prompt, [a.response]) for a in self.answers]
        self.held_enc = [encoder.encode_texts(a.prompt, [a.response]) for a in self.held_answers]
        self.labels = torch.tensor([a.label for a in self.answers])
        run.say(f"data: {len(self.items)} training answers ({int(self.labels.sum())} yes), {len(self.held_enc)} "
                f"held out; {self.truncated} truncated to --max-length {self.cfg.max_length}")

    def prompt_groups(self) -> list[list[int]]:
        return [[i] for i in range(len(self.items))]

    def fingerprint(self) -> str:
        labels = json.dumps([[a.label for a in self.answers], [a.label for a in self.held_answers]])
        return hashlib.sha256(f"{data_fingerprint(self.items, self.held_enc)}|{labels}".encode()).hexdigest()[:16]

    def legacy_fingerprint(self) -> str | None:
        return None

    def collate(self, members: list[int], pad_id: int, layout: BatchLayout, prompt_ids: list[int]) -> Batch:
        batch = collate_for([self.items[j] for j in members], pad_id, False, layout.pack)
        batch.targets = self.labels[members]
        return batch

    def counts(self, batch: Batch) -> dict[str, float]:
        return {"bce": float(len(batch.targets)), "accuracy": float(len(batch.targets))}

    def loss(self, outputs: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        return {"bce": F.binary_cross_entropy_with_logits(outputs, batch.targets),
                "accuracy": ((outputs > 0).float() == batch.targets).float().mean()}

    def evaluate(self, run: Any, net: nn.Module, pad_id: int, layout: BatchLayout) -> Evaluation | None:
        """Held-out verdict accuracy and cross-entropy of ``sigmoid(reward)``."""
        if not self.held_enc:
            return None
        rewards = [r[0] for r in score_sharded(net, self.held_enc, pad_id, self.cfg.eval_batch_size, run.accelerator,
                                               pack=layout.pack)]
        labels = [a.label for a in self.held_answers]
        bce = [bt_loss(r if y else -r) for r, y in zip(rewards, labels)]  # -log sigmoid(+-r): BCE of sigmoid(r)
        metrics = {"accuracy": sum((r > 0) == bool(y) for r, y in zip(rewards, labels)) / len(labels),
                   "loss": sum(bce) / len(bce), "answers": len(labels), "yes_rate": sum(labels) / len(labels),
                   "predicted_yes_rate": sum(r > 0 for r in rewards) / len(rewards)}
        return Evaluation(metrics, rewards)

    results_table = Objective.results_table  # verdict accuracy on answers, not the pairwise table

    def describe(self, metrics: dict[str, Any]) -> str:
        return f"eval verdict accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f}"

    @property
    def loss_name(self) -> str:
        return "bce"

    def reward_items(self) -> list:
        return self.items

    def write_report(self, path: Any, evaluation: Evaluation, details: dict[str, str]) -> None:
        return None  # the pairwise report draws comparisons; answers with verdicts are none

    def summary(self) -> tuple[dict[str, Any], dict[str, Any]]:
        counts = {"train_answers": len(self.items), "truncated": self.truncated, "eval_answers": len(self.held_enc)}
        return counts, {"objective": "generative"}
