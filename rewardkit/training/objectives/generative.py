"""``--objective generative``: the reward read from the language-model head, after a verdict question.

The model sees ``prompt response <--verdict-template>`` and the reward is
``log P(yes) - log P(no)`` for the next token (`rewardkit.model.verdict`,
`rewardkit.model.net.VerdictNet`). Nothing new is initialised, so what the pretrained model knows
carries over. Two ways to train it:

* on comparisons (any preference shape): Bradley-Terry on the log-odds, with margins, centering,
  Plackett-Luce rankings and per-prompt balancing exactly as for a scalar head (the pairwise
  objective with a `VerdictHead` readout);
* on a rating table: binary cross-entropy of ``sigmoid(reward)`` against a verdict, yes for answers
  scoring at least ``--hi``, no below ``--lo`` (default: ``--hi``), answers in between left out
  (`VerdictRatingsObjective`). Without ``--hi`` there is no verdict to learn: exit 2.

The export is a plain ``AutoModelForCausalLM`` whose ``config.rewardkit["verdict"]`` holds the
question and answers, so `RewardModel`, ``rewardkit eval/score/serve`` and the RL adapters score it
without flags, and its card's snippet reproduces the reward with transformers alone.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from rewardkit.config import TrainConfig
from rewardkit.data.loading import is_rating_table, split_by_prompt
from rewardkit.data.ratings import LabelledAnswer, label_answers
from rewardkit.data.readers import iter_rows
from rewardkit.data.records import check_usable, describe_problems
from rewardkit.encoding.encoder import Encoder
from rewardkit.errors import DataError, UsageError, flag
from rewardkit.evaluation.held_out import score_sharded
from rewardkit.evaluation.metrics import bt_loss
from rewardkit.model.batching import Batch, BatchLayout, collate_for
from rewardkit.training.objectives.base import Data, Evaluation, Objective, Traits
from rewardkit.training.objectives.pairwise import PairwiseObjective
from rewardkit.training.objectives.parts import VerdictHead
from rewardkit.training.resume import data_fingerprint

if TYPE_CHECKING:
    from rewardkit.training.startup import Run


def generative(cfg: TrainConfig) -> Objective:
    """``--objective generative``: the pairwise objective with the verdict readout on comparisons, the
    verdict's binary cross-entropy on a rating table."""
    if cfg.train_data and is_rating_table(cfg.train_data, cfg.format, cfg.rating_options()):
        return VerdictRatingsObjective(cfg)
    return PairwiseObjective(cfg, readout=VerdictHead(cfg), name="generative")


class LabelledAnswers(Data):
    """Answers of a rating table with a yes/no verdict (score >= --hi is yes, below --lo no), split by prompt."""

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg)
        self.answers: list[LabelledAnswer] = []
        self.held_answers: list[LabelledAnswer] = []
        self.labels = torch.empty(0)

    def _labelled(self, run: Run, source: str) -> list[LabelledAnswer]:
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

    def load(self, run: Run) -> None:
        cfg = self.cfg
        answers = self._labelled(run, cfg.train_data)
        if cfg.eval_data:
            self.answers, self.held_answers = answers, self._labelled(run, cfg.eval_data)
        else:
            self.answers, self.held_answers = split_by_prompt(answers, cfg.held_out_fraction(), cfg.seed)
        if len({a.label for a in self.answers}) < 2:
            raise DataError(f"{cfg.train_data}: every training answer has the same verdict; move {flag('hi')} "
                            f"/ {flag('lo')} so that both occur")

    def encode(self, run: Run, encoder: Encoder) -> None:
        self.items = [encoder.encode_texts(a.prompt, [a.response]) for a in self.answers]
        self.held = [encoder.encode_texts(a.prompt, [a.response]) for a in self.held_answers]
        self.labels = torch.tensor([a.label for a in self.answers])
        run.say(f"data: {len(self.items)} training answers ({int(self.labels.sum())} yes), {len(self.held)} "
                f"held out; {self.truncated} truncated to --max-length {self.cfg.max_length}")

    def fingerprint(self) -> str:
        labels = json.dumps([[a.label for a in self.answers], [a.label for a in self.held_answers]])
        return hashlib.sha256(f"{data_fingerprint(self.items, self.held)}|{labels}".encode()).hexdigest()[:16]

    def counts(self) -> dict[str, Any]:
        return {"train_answers": len(self.items), "truncated": self.truncated, "eval_answers": len(self.held)}


class VerdictBCE:
    """The step of a verdict learnt with binary cross-entropy: one log-odds per item against its 0/1 target
    (``batch.targets``), the mean over the pass, with the verdict's accuracy (rating tables here, the judge)."""

    def counts(self, batch: Batch) -> dict[str, float]:
        return {"bce": float(len(batch.targets)), "accuracy": float(len(batch.targets))}

    def loss(self, outputs: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        return {"bce": F.binary_cross_entropy_with_logits(outputs, batch.targets),
                "accuracy": ((outputs > 0).float() == batch.targets).float().mean()}


class VerdictRatingsObjective(VerdictBCE, Objective):
    """A rating table in, binary cross-entropy of the verdict against ``score >= --hi`` (module doc)."""

    name = "generative"
    traits = Traits(unit="answers", logged=("loss", "accuracy"))
    term_weights = {"bce": 1.0}

    def __init__(self, cfg: TrainConfig):
        if cfg.hi is None:
            raise UsageError(f"{flag('hi')}: --objective generative on a rating table trains a yes/no verdict; give "
                             f"the score from which an answer is 'yes' ({flag('hi')}, and {flag('lo')} below which it "
                             "is 'no', default the same)")
        self.data: LabelledAnswers
        super().__init__(cfg, LabelledAnswers(cfg), VerdictHead(cfg))

    def collate(self, members: list[int], pad_id: int, layout: BatchLayout, prompt_ids: list[int]) -> Batch:
        batch = collate_for([self.items[j] for j in members], pad_id, False, layout.pack)
        batch.targets = self.data.labels[members]
        return batch


    def evaluate(self, run: Run, net: nn.Module, pad_id: int, layout: BatchLayout) -> Evaluation | None:
        """Held-out verdict accuracy and cross-entropy of ``sigmoid(reward)``."""
        if not self.data.held:
            return None
        rewards = [r[0] for r in score_sharded(net, self.data.held, pad_id, self.cfg.eval_batch_size,
                                               run.accelerator, pack=layout.pack)]
        labels = [a.label for a in self.data.held_answers]
        bce = [bt_loss(r if y else -r) for r, y in zip(rewards, labels)]  # -log sigmoid(+-r): BCE of sigmoid(r)
        metrics = {"accuracy": sum((r > 0) == bool(y) for r, y in zip(rewards, labels)) / len(labels),
                   "loss": sum(bce) / len(bce), "answers": len(labels), "yes_rate": sum(labels) / len(labels),
                   "predicted_yes_rate": sum(r > 0 for r in rewards) / len(rewards)}
        return Evaluation(metrics, rewards)

    def describe(self, metrics: dict[str, Any]) -> str:
        return f"eval verdict accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f}"

    @property
    def loss_name(self) -> str:
        return "bce"
