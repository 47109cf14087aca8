"""``--objective critique``: critique-out-loud reward models (Ankner et al., "Critique-out-loud reward
models"), trained as the paper does, in two stages of the one loop:

1. ``critique-lm`` (``--critique-sft-epochs`` epochs, in OUTPUT_DIR/critique-lm): the causal LM learns to
   write the reference critiques, the language-model loss on critique tokens (and the closing EOS) given
   ``prompt response <--critique-template>``;
2. ``critique``: that model writes its own critique of every training and held-out response (greedy, KV
   cache, at most ``--max-critique-tokens``), and a fresh scalar head reads ``prompt response template
   critique <eos>`` at its last token, trained with Bradley-Terry on the pairs while the LM loss on the
   reference critiques goes on, weighted by ``--critique-lm-weight``.

Data: preference pairs with ``chosen_critique`` and ``rejected_critique`` (`rewardkit.data.critiques`).
The saved model is a plain ``AutoModelForCausalLM`` with ``critique_head.safetensors`` beside it and
``config.rewardkit.critique`` (template, token budget); `RewardModel` generates the critique and scores it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch import nn

from rewardkit.config import TrainConfig
from rewardkit.data.critiques import CritiquedPair, load_critiqued
from rewardkit.data.loading import split_by_prompt
from rewardkit.data.records import describe_problems, input_kind
from rewardkit.encoding.encoder import Encoded, Encoder
from rewardkit.errors import UsageError, flag
from rewardkit.evaluation.held_out import evaluate_net, in_eval_mode, on_shards
from rewardkit.model.backbone import load_causal_lm, make_encoder
from rewardkit.model.batching import Batch, BatchLayout
from rewardkit.model.critique import (HEAD_FILE, CritiqueNet, CritiqueSpec, collate_critique, critique_tokens,
                                      critiqued, generate_critiques, head_state, new_head, resolve_critique)
from rewardkit.model.net import TokenLogProbNet
from rewardkit.training.losses import batch_loss
from rewardkit.training.objectives.base import Data, Evaluation, Objective, Readout, Traits
from rewardkit.training.objectives.sft import SFTObjective
from rewardkit.training.resume import data_fingerprint

if TYPE_CHECKING:
    from rewardkit.training.startup import Run


class CritiqueReadout(Readout):
    """The causal LM of --model with the critique layout; in the reward stage, a fresh head beside it."""

    def __init__(self, cfg: TrainConfig, reward: bool):
        super().__init__(cfg)
        self.reward = reward
        self.spec: CritiqueSpec | None = None
        self.head: nn.Linear | None = None
        self.model: nn.Module | None = None

    def load_model(self) -> tuple[nn.Module, Any]:
        model, tokenizer = load_causal_lm(self.cfg.model, dropout=self.cfg.dropout, what="--objective critique")
        self.spec = resolve_critique(tokenizer, self.cfg.critique_template, self.cfg.max_critique_tokens)
        if self.reward:
            self.head = new_head(model.config.hidden_size, self.cfg.seed)
        self.model = model
        return model, tokenizer

    def encoder(self, model: nn.Module, tokenizer: Any) -> Encoder:
        assert self.spec is not None
        return make_encoder(model, tokenizer, self.cfg.max_length, tail=self.spec.template_ids)

    def net(self, model: nn.Module) -> nn.Module:
        if not self.reward:
            return TokenLogProbNet(model)
        assert self.head is not None
        return CritiqueNet(model, self.head)

    def meta(self) -> dict[str, Any]:
        assert self.spec is not None
        return {"objective": "critique" if self.reward else "critique-lm", "critique": self.spec.to_meta()}


class CritiqueData(Data):
    """Critiqued pairs (`rewardkit.data.critiques`), split by prompt; encoded for the LM stage (one item per
    reference critique) or the reward stage (one item per pair: own critiques, then reference ones)."""

    def __init__(self, cfg: TrainConfig, readout: CritiqueReadout):
        super().__init__(cfg)
        self.readout = readout
        self.train: list[CritiquedPair] = []
        self.held_pairs: list[CritiquedPair] = []
        self.reference_contexts: list[tuple[int, int]] = []  # reward stage: context lengths of items' refs
        self.held_critiques: list[tuple[str, str]] = []  # reward stage: the model's critiques, held-out side

    def _read(self, run: Run, source: str) -> list[CritiquedPair]:
        pairs, problems = load_critiqued(source, self.cfg.skip_invalid, self.cfg.rating_options())
        if problems:
            run.say(describe_problems(problems, source) + "\n(skipped: --skip-invalid)")
        self.skipped += len(problems)
        return pairs

    def load(self, run: Run) -> None:
        cfg = self.cfg
        if not cfg.train_data:
            raise UsageError(f"{flag('objective')} critique needs {flag('train_data')}: preference pairs with "
                             "chosen_critique and rejected_critique")
        pairs = self._read(run, cfg.train_data)
        if cfg.eval_data:
            self.train, self.held_pairs = pairs, self._read(run, cfg.eval_data)
            return
        by_id = {id(p.comparison): p for p in pairs}
        train, held = split_by_prompt([p.comparison for p in pairs], cfg.held_out_fraction(), cfg.seed)
        self.train, self.held_pairs = [by_id[id(c)] for c in train], [by_id[id(c)] for c in held]

    @property
    def held_out(self) -> list[Any]:
        return [p.comparison for p in self.held_pairs]

    def _contexts(self, encoder: Encoder, pairs: list[CritiquedPair]) -> list[Encoded]:
        return [encoder.encode_texts(p.comparison.prompt, p.comparison.responses) for p in pairs]

    def encode(self, run: Run, encoder: Encoder) -> None:
        spec, tok = self.readout.spec, encoder.tokenizer
        assert spec is not None
        train, held = self._contexts(encoder, self.train), self._contexts(encoder, self.held_pairs)
        def references(pairs: list[CritiquedPair]) -> list[list[list[int]]]:
            return [[critique_tokens(tok, c, spec) for c in p.critiques] for p in pairs]

        refs = references(self.train)
        if not self.readout.reward:  # the LM stage: every reference critique after its context
            def lm_items(encoded: list[Encoded], critiques: list[list[list[int]]]) -> list[Encoded]:
                return [Encoded([critiqued(ctx, c, spec)], None, len(ctx), e.truncated)
                        for e, cs in zip(encoded, critiques) for ctx, c in zip(e.input_ids, cs)]
            self.items, self.held = lm_items(train, refs), lm_items(held, references(self.held_pairs))
            run.say(f"critique LM: {len(self.items)} training and {len(self.held)} held-out reference critiques; "
                    f"{self.truncated} contexts truncated to --max-length {self.cfg.max_length}")
            return
        own = self._generate(run, [ctx for e in train + held for ctx in e.input_ids], spec)
        mine, theirs = own[:2 * len(train)], own[2 * len(train):]
        self.items = [Encoded([critiqued(e.input_ids[k], mine[2 * i + k], spec) for k in (0, 1)]
                              + [critiqued(e.input_ids[k], refs[i][k], spec) for k in (0, 1)],
                              None, e.prompt_len, e.truncated) for i, e in enumerate(train)]
        self.reference_contexts = [(len(e.input_ids[0]), len(e.input_ids[1])) for e in train]
        self.held = [Encoded([critiqued(e.input_ids[k], theirs[2 * i + k], spec) for k in (0, 1)], None,
                             e.prompt_len, e.truncated) for i, e in enumerate(held)]
        self.held_critiques = [(tok.decode(theirs[2 * i]).strip(), tok.decode(theirs[2 * i + 1]).strip())
                               for i in range(len(held))]
        run.say(f"data: {len(self.items)} training and {len(self.held)} held-out critiqued pairs; {self.truncated} "
                f"truncated to --max-length {self.cfg.max_length}; critiques written by the model: "
                f"mean {sum(map(len, own)) / max(1, len(own)):.1f} tokens (at most {spec.max_tokens})")

    def _generate(self, run: Run, contexts: list[list[int]], spec: CritiqueSpec) -> list[list[int]]:
        """The model's own critique after every context: each process writes its share, all get all."""
        model, accelerator = self.readout.model, run.accelerator
        assert model is not None
        model.to(accelerator.device)
        pad = int(model.config.pad_token_id if model.config.pad_token_id is not None else spec.eos_id)
        return on_shards(in_eval_mode(model, accelerator, lambda mine: generate_critiques(
            model, mine, spec, pad, self.cfg.eval_batch_size, accelerator.device)), contexts, accelerator)

    def fingerprint(self) -> str:
        return data_fingerprint(self.items, self.held)

    def counts(self) -> dict[str, Any]:
        if not self.readout.reward:
            return {"train_critiques": len(self.items), "truncated": self.truncated, "eval_critiques": len(self.held)}
        return {"train_comparisons": len(self.items), "truncated": self.truncated}

    def inputs(self) -> str:
        return input_kind([p.comparison for p in self.train + self.held_pairs])


class CritiqueLMObjective(SFTObjective):
    """Stage 1: the language-model loss on the reference critiques (SFT's step and perplexity)."""

    name = "critique-lm"
    traits = Traits(unit="critiques", logged=("loss",), packing=False, reward_statistics=False)

    def __init__(self, cfg: TrainConfig):
        readout = CritiqueReadout(cfg, reward=False)
        Objective.__init__(self, cfg, CritiqueData(cfg, readout), readout)

    def evaluate(self, run: Run, net: nn.Module, pad_id: int, layout: BatchLayout) -> Evaluation | None:
        """Held-out perplexity of the reference critiques."""
        result = super().evaluate(run, net, pad_id, layout)
        if result is not None:
            result.metrics["critiques"] = result.metrics.pop("chosen_responses")
        return result

    @property
    def loss_name(self) -> str:
        return "critique-lm"


class CritiqueObjective(Objective):
    """Stage 2: Bradley-Terry on the head over the model's own critiques, plus the LM loss on the references."""

    name = "critique"
    traits = Traits(unit="pairs", logged=("loss", "accuracy"), packing=False, reward_statistics=True)

    def __init__(self, cfg: TrainConfig):
        self.readout: CritiqueReadout
        self.data: CritiqueData
        readout = CritiqueReadout(cfg, reward=True)
        super().__init__(cfg, CritiqueData(cfg, readout), readout)
        self.term_weights = {"pairwise": 1.0, "critique_nll": cfg.critique_lm_weight}

    def collate(self, members: list[int], pad_id: int, layout: BatchLayout, prompt_ids: list[int]) -> Batch:
        return collate_critique([self.items[j] for j in members], [self.data.reference_contexts[j] for j in members],
                                pad_id)

    def counts(self, batch: Batch) -> dict[str, float]:
        assert batch.read_ids is not None
        return {"pairwise": float(batch.pair_weight.sum()), "critique_nll": float((batch.read_ids >= 0).sum()),
                "accuracy": float(len(batch.pair_better))}

    def loss(self, outputs: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        rewards = 2 * batch.num_comparisons  # the head's rewards come first (`collate_critique`)
        pairwise, accuracy = batch_loss(outputs[:rewards], batch, "bt", self.cfg.center_coef)
        return {"pairwise": pairwise, "critique_nll": -outputs[rewards:].mean(), "accuracy": accuracy}

    def evaluate(self, run: Run, net: nn.Module, pad_id: int, layout: BatchLayout) -> Evaluation | None:
        """Held-out pairwise metrics of the head over the critiques the model wrote before this stage."""
        if not self.data.held:
            return None
        metrics, rewards = evaluate_net(net, self.data.held_out, self.data.held, pad_id, self.cfg.eval_batch_size,
                                        run.accelerator)
        return Evaluation(metrics, [r for rs in rewards for r in rs], rewards)

    def describe(self, metrics: dict[str, Any]) -> str:
        return f"eval accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f}"

    def results_table(self, metrics: dict[str, Any]) -> str:
        from rewardkit.evaluation.evaluate import metrics_table

        return metrics_table(metrics, f"held-out evaluation ({metrics['pairs']} pairs):")

    def reward_items(self) -> Sequence[Encoded]:
        """The training pairs with the model's own critiques (not the reference ones)."""
        return [Encoded(e.input_ids[:2], None, e.prompt_len, e.truncated) for e in self.data.items]

    def write_report(self, path: Path, evaluation: Evaluation, details: dict[str, str]) -> Path:
        """The held-out report, with example critiques of right and wrong judgements."""
        from rewardkit.evaluation.report import TrainingRun, write_report

        return write_report(path, self.data.held_out, evaluation.details, evaluation.metrics,
                            title="Held-out evaluation", details=details,
                            training=TrainingRun(Path(self.cfg.output_dir) / "metrics.jsonl"),
                            critiques=self.data.held_critiques)

    @property
    def loss_name(self) -> str:
        return "critique"

    def save_extra(self, directory: Path) -> None:
        from safetensors.torch import save_file

        assert self.readout.head is not None
        save_file(head_state(self.readout.head), str(directory / HEAD_FILE))

    def tracker_config(self) -> dict[str, Any]:
        return {"critique_lm_weight": self.cfg.critique_lm_weight}


def critique(cfg: TrainConfig) -> Objective:
    """``--objective critique`` (stage 2) or ``critique-lm`` (stage 1, also on its own)."""
    return CritiqueLMObjective(cfg) if cfg.objective == "critique-lm" else CritiqueObjective(cfg)

