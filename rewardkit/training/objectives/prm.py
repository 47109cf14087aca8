"""``--objective prm``: a process reward model, one reward for every step of a solution.

Data: solutions labelled step by step (`rewardkit.data.steps`: TRL's stepwise rows, Math-Shepherd's
tagged text, per-step ratings under ``--neutral``), split prompt-disjoint. Each solution is encoded as
``<bos?> prompt step_1 SEP ... step_n SEP`` (`rewardkit.encoding.steps`) and step i's reward is read at
its separator: from a fresh score head (``--prm-readout head``; the model exports as token
classification) or as the log-odds of two tokens from the LM head (``tokens``, Math-Shepherd's way; the
model stays a causal LM). The loss is the binary cross-entropy of every step's label (only the last
step's with ``--prm-last-step-only``), a mean over the steps of the pass.

Held-out metrics (`rewardkit.evaluation.step_metrics`): step accuracy and the error class's F1,
ProcessBench's first-error localization, and with ``correct`` labels best-of-N by aggregated step
rewards against random choice and majority vote.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from rewardkit.config import TrainConfig
from rewardkit.data.steps import StepSolution, load_step_solutions
from rewardkit.encoding.steps import StepEncoded, StepEncoder
from rewardkit.errors import DataError, UsageError
from rewardkit.evaluation.held_out import score_steps_sharded
from rewardkit.evaluation.step_metrics import prm_metrics
from rewardkit.model.backbone import check_decoder_only, load_backbone, load_causal_lm
from rewardkit.model.batching import Batch, BatchLayout, collate_steps
from rewardkit.model.net import RewardNet, VerdictNet
from rewardkit.model.verdict import parse_answers
from rewardkit.training.objectives.base import Data, Evaluation, Objective, Readout, Traits
from rewardkit.training.resume import data_fingerprint

if TYPE_CHECKING:
    from rewardkit.training.startup import Run


def prm(cfg: TrainConfig) -> Objective:
    """The PRM objective with the readout --prm-readout names."""
    return PRMObjective(cfg, StepTokens(cfg) if cfg.prm_readout == "tokens" else StepHead(cfg))


class StepData(Data):
    """Step-labelled solutions of the training and held-out files (a prompt-disjoint split without --eval-data)."""

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg)
        self.train: list[StepSolution] = []
        self.held_out: list[StepSolution] = []
        self.unfit: list[str] = []  # solutions whose last step alone does not fit --max-length

    def _load(self, run: Run, source: str) -> list[StepSolution]:
        loaded = load_step_solutions(source, "auto", self.cfg.skip_invalid, self.cfg.neutral)
        if loaded.problems:
            from rewardkit.data.records import describe_problems

            run.say(describe_problems(loaded.problems, source) + "\n(skipped: --skip-invalid)")
        self.skipped += len(loaded.problems)
        return loaded.solutions

    def load(self, run: Run) -> None:
        cfg = self.cfg
        solutions = self._load(run, cfg.train_data)
        if cfg.eval_data:
            self.train, self.held_out = solutions, self._load(run, cfg.eval_data)
            return
        prompts = sorted({s.prompt for s in solutions})
        random.Random(cfg.seed).shuffle(prompts)
        held = set(prompts[:round(cfg.held_out_fraction() * len(prompts))])
        self.train = [s for s in solutions if s.prompt not in held]
        self.held_out = [s for s in solutions if s.prompt in held]

    def encode(self, run: Run, encoder: StepEncoder) -> None:  # type: ignore[override]
        def encode_side(solutions: list[StepSolution]) -> tuple[list[StepSolution], list[StepEncoded]]:
            kept, items = [], []
            for s in solutions:
                e = encoder.encode(s.prompt, s.steps, s.labels)
                if e is None:
                    self.unfit.append(s.source)
                else:
                    kept.append(s)
                    items.append(e)
            return kept, items

        self.train, self.items = encode_side(self.train)
        self.held_out, self.held = encode_side(self.held_out)
        if not self.items:
            raise DataError(f"{self.cfg.train_data}: no solution fits --max-length {self.cfg.max_length}")
        dropped = sum(e.dropped for e in self.items)
        run.say(f"data: {len(self.items)} training solutions ({sum(len(e.labels or []) for e in self.items)} steps), "
                f"{len(self.held)} held out; {self.truncated} truncated to --max-length {self.cfg.max_length} "
                f"({dropped} oldest steps left out)"
                + (f"; {len(self.unfit)} solutions left out, their last step alone longer than --max-length: "
                   f"{', '.join(self.unfit[:5])}" if self.unfit else ""))

    def fingerprint(self) -> str:
        labels = json.dumps([[e.labels for e in self.items], [e.labels for e in self.held]])
        return hashlib.sha256(f"{data_fingerprint(self.items, self.held)}|{labels}".encode()).hexdigest()[:16]

    def counts(self) -> dict[str, Any]:
        return {"train_solutions": len(self.items), "train_steps": sum(len(e.labels or []) for e in self.items),
                "truncated": self.truncated, "eval_solutions": len(self.held), "unfit_solutions": len(self.unfit)}


class StepHead(Readout):
    """A decoder with a fresh 1-output head, read at every step's separator."""

    def load_model(self) -> tuple[nn.Module, Any]:
        check_decoder_only(self.cfg.model, "--objective prm")  # an encoder's state at a separator sees later steps
        model, tokenizer = load_backbone(self.cfg.model, dropout=self.cfg.dropout)
        self.separator_id = StepEncoder(tokenizer, self.cfg.max_length, self.cfg.step_separator).separator_id
        return model, tokenizer

    def encoder(self, model: nn.Module, tokenizer: Any) -> StepEncoder:  # type: ignore[override]
        return StepEncoder(tokenizer, self.cfg.max_length, self.cfg.step_separator)

    def meta(self) -> dict[str, Any]:
        return {"objective": "prm", "prm": {"separator": self.cfg.step_separator, "separator_id": self.separator_id,
                                            "readout": "head", "aggregate": self.cfg.prm_aggregate}}


class StepTokens(StepHead):
    """A causal LM read at every step's separator: log P(right token) - log P(wrong token) of the next token."""

    def load_model(self) -> tuple[nn.Module, Any]:
        model, tokenizer = load_causal_lm(self.cfg.model, dropout=self.cfg.dropout, what="--objective prm")
        self.separator_id = StepEncoder(tokenizer, self.cfg.max_length, self.cfg.step_separator).separator_id
        ids = []
        for token in parse_answers(self.cfg.prm_tokens, "--prm-tokens"):
            pieces = list(tokenizer(token, add_special_tokens=False)["input_ids"])
            if len(pieces) != 1:
                raise UsageError(f"--prm-tokens: {token!r} is {len(pieces)} tokens for this tokenizer, not one")
            ids.append(pieces[0])
        if ids[0] == ids[1]:
            raise UsageError(f"--prm-tokens: {self.cfg.prm_tokens!r} names the same token twice")
        self.token_ids = tuple(ids)
        return model, tokenizer

    def net(self, model: nn.Module) -> nn.Module:
        return VerdictNet(model, *self.token_ids)

    def meta(self) -> dict[str, Any]:
        meta = super().meta()
        meta["prm"].update(readout="tokens", tokens=list(parse_answers(self.cfg.prm_tokens, "--prm-tokens")),
                           token_ids=list(self.token_ids))
        return meta


class PRMObjective(Objective):
    """Solutions in, a reward per step out (see the module doc)."""

    name = "prm"
    traits = Traits(unit="solutions", logged=("loss", "accuracy"), packing=False, reward_statistics=False)
    term_weights = {"bce": 1.0}

    def __init__(self, cfg: TrainConfig, readout: Readout):
        self.data: StepData
        super().__init__(cfg, StepData(cfg), readout)

    def collate(self, members: list[int], pad_id: int, layout: BatchLayout, prompt_ids: list[int]) -> Batch:
        return collate_steps([self.items[j] for j in members], pad_id, self.cfg.prm_last_step_only)

    def counts(self, batch: Batch) -> dict[str, float]:
        return {"bce": float(len(batch.reward_row)), "accuracy": float(len(batch.reward_row))}

    def loss(self, outputs: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        assert batch.targets is not None
        return {"bce": F.binary_cross_entropy_with_logits(outputs, batch.targets),
                "accuracy": ((outputs > 0).float() == batch.targets).float().mean()}

    def _held_logits(self, run: Run, net: nn.Module, pad_id: int) -> list[list[float]]:
        return score_steps_sharded(net, self.data.held, pad_id, self.cfg.eval_batch_size, run.accelerator)

    def evaluate(self, run: Run, net: nn.Module, pad_id: int, layout: BatchLayout) -> Evaluation | None:
        data = self.data
        if not data.held:
            return None
        logits = self._held_logits(run, net, pad_id)
        labels = [e.labels or [] for e in data.held]
        metrics = prm_metrics([s.prompt for s in data.held_out], logits, labels, [s.correct for s in data.held_out],
                              [s.answer for s in data.held_out])
        return Evaluation(metrics, [x for row in logits for x in row], (logits, labels))

    def describe(self, metrics: dict[str, Any]) -> str:
        return (f"eval step accuracy {metrics['step_accuracy']:.4f}, error F1 {metrics['error_f1'] or 0:.4f}, "
                f"first-error F1 {metrics['first_error_f1'] or 0:.4f}")

    @property
    def loss_name(self) -> str:
        return "prm"

    def write_report(self, path: Path, evaluation: Evaluation, details: dict[str, str]) -> Path:
        from rewardkit.evaluation.step_report import write_step_report

        logits, labels = evaluation.details
        return write_step_report(path, evaluation.metrics, logits, labels, details)
