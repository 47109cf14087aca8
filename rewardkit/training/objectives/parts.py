"""Components objectives are made of (`rewardkit.training.objectives.base`): data and readouts.

* `ComparisonData`: comparisons (prompt + K >= 2 responses, best first) from any preference shape
  rewardkit reads, split prompt-disjoint or read from --eval-data, tokenized through the cache;
  ``chosen_only`` keeps each comparison's best response once (the SFT examples).
* `ScalarHead`: a backbone with a fresh 1-output head, the reward read at the last token (decoders)
  or the pooled first token (encoders).
* `VerdictHead`: a causal LM read after a verdict question, ``log P(yes) - log P(no)`` of the next
  token (`rewardkit.model.verdict`).
* `LanguageModelHead`: a causal LM whose network returns the log-probabilities of given tokens (SFT).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn
from tqdm.auto import tqdm

from rewardkit.config import TrainConfig
from rewardkit.data.file_cache import load_cached
from rewardkit.data.loading import bundled_sample, group_by_prompt, split_by_prompt
from rewardkit.data.records import Comparison, input_kind, is_benchmark, text_key
from rewardkit.encoding.cache import encode_cached
from rewardkit.encoding.encoded_set import truncated_count
from rewardkit.encoding.encoder import Encoder
from rewardkit.errors import UsageError
from rewardkit.model.backbone import load_backbone, load_causal_lm, make_encoder
from rewardkit.model.net import TokenLogProbNet, VerdictNet
from rewardkit.model.verdict import Verdict, resolve_verdict
from rewardkit.training.objectives.base import Data, Readout
from rewardkit.training.resume import data_fingerprint

if TYPE_CHECKING:
    from rewardkit.training.startup import Run


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


class ComparisonData(Data):
    """Comparisons from any preference shape (see the module doc); with ``chosen_only``, the SFT examples."""

    def __init__(self, cfg: TrainConfig, chosen_only: bool = False):
        super().__init__(cfg)
        self.chosen_only = chosen_only
        self.train: list[Comparison] = []
        self.held_out: list[Comparison] = []

    def load(self, run: Run) -> None:
        cfg = self.cfg
        source = cfg.train_data or bundled_sample()
        loaded = load_cached(source, cfg.format, cfg.skip_invalid, cfg.rating_options())
        for message in loaded.messages(source):
            run.say(message)
        self.skipped = len(loaded.problems)
        if not cfg.eval_data:
            self.train, self.held_out = split_by_prompt(loaded.comparisons, cfg.held_out_fraction(), cfg.seed)
        else:
            held = load_cached(cfg.eval_data, cfg.format, cfg.skip_invalid, cfg.rating_options())
            for message in held.messages(cfg.eval_data):
                run.say(message)
            self.train, self.held_out = loaded.comparisons, held.comparisons
            self.skipped += len(held.problems)
        kind = is_benchmark(self.train + self.held_out)
        if kind:
            raise UsageError(f"{source}: {kind} benchmark rows are for `rewardkit eval` (each benchmark scores them by "
                             "its own rules); to train on them, write them as pairs first: rewardkit data convert "
                             "FILE -o pairs.jsonl")
        if self.chosen_only:
            self.train, self.held_out = chosen_only(self.train), chosen_only(self.held_out)
            run.say(f"SFT examples: {len(self.train)} training and {len(self.held_out)} held-out (prompt, chosen) "
                    "responses")

    def encode(self, run: Run, encoder: Encoder) -> None:
        """Tokenize (through the cache) and report truncation."""
        self.items = encode_cached(encoder, self.train,
                                   lambda c: tqdm(c, desc="tokenize", disable=not run.main, leave=False))
        self.held = encode_cached(encoder, self.held_out)
        if self.chosen_only:
            return
        run.say(f"data: {len(self.items)} training comparisons, {len(self.held)} held out"
                f"{f', {self.skipped} invalid records skipped' if self.skipped else ''}; "
                f"{self.truncated} training and {truncated_count(self.held)} held-out comparisons truncated to "
                f"--max-length {self.cfg.max_length} (prompt start dropped, responses kept)")

    def prompt_groups(self) -> list[list[int]]:
        if not self.cfg.balance_per_prompt:
            return super().prompt_groups()
        return group_by_prompt(self.train)

    def fingerprint(self) -> str:
        return data_fingerprint(self.items, self.held)

    def counts(self) -> dict[str, Any]:
        if self.chosen_only:
            return {"train_responses": len(self.items), "truncated": self.truncated, "eval_responses": len(self.held)}
        return {"train_comparisons": len(self.items), "truncated": self.truncated,
                "eval_truncated": truncated_count(self.held)}

    def inputs(self) -> str:
        return input_kind(self.train + self.held_out)


class ScalarHead(Readout):
    """A backbone with a fresh 1-output head."""

    def load_model(self) -> tuple[nn.Module, Any]:
        return load_backbone(self.cfg.model, dropout=self.cfg.dropout)


class VerdictHead(Readout):
    """A causal LM read after --verdict-template: ``log P(yes) - log P(no)`` (`rewardkit.model.verdict`);
    ``objective``: whose question and answers (``generative``: --verdict-*, ``judge``: --judge-*)."""

    def __init__(self, cfg: TrainConfig, objective: str = "generative"):
        super().__init__(cfg)
        self.verdict: Verdict | None = None
        self.objective = objective

    def load_model(self) -> tuple[nn.Module, Any]:
        """The decoder with its LM head; the verdict resolved for its tokenizer (each answer one token)."""
        model, tokenizer = load_causal_lm(self.cfg.model, dropout=self.cfg.dropout, what=f"--objective {self.objective}")
        if self.objective == "judge":
            self.verdict = resolve_verdict(tokenizer, self.cfg.judge_template, self.cfg.judge_tokens,
                                           ("--judge-template", "--judge-tokens"))
        else:
            self.verdict = resolve_verdict(tokenizer, self.cfg.verdict_template, self.cfg.verdict_tokens)
        return model, tokenizer

    def encoder(self, model: nn.Module, tokenizer: Any) -> Encoder:
        assert self.verdict is not None
        return make_encoder(model, tokenizer, self.cfg.max_length, tail=self.verdict.template_ids)

    def net(self, model: nn.Module) -> nn.Module:
        assert self.verdict is not None
        return VerdictNet(model, *self.verdict.answer_ids)

    def meta(self) -> dict[str, Any]:
        assert self.verdict is not None
        return {"objective": self.objective, "verdict": self.verdict.to_meta()}


class LanguageModelHead(Readout):
    """A causal LM whose network returns the log-probability of each target token (SFT)."""

    def load_model(self) -> tuple[nn.Module, Any]:
        return load_causal_lm(self.cfg.model, dropout=self.cfg.dropout, what="--objective sft")

    def net(self, model: nn.Module) -> nn.Module:
        return TokenLogProbNet(model)

    def meta(self) -> dict[str, Any]:
        return {"objective": "sft"}
