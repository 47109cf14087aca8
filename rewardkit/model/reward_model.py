"""`RewardModel`: score (prompt, response) pairs with a trained reward model, from Python.

It loads a full or LoRA model directory (`rewardkit.model.artifacts`), renders and truncates text with
the same `Encoder` as training, runs the same `RewardNet` pooling (and prefix sharing for
decoders), and returns Python floats; ``rewardkit eval``, ``rewardkit score`` and the server all
score through it.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from itertools import combinations

from rewardkit.data.records import Comparison, Text, text_key
from rewardkit.encoding.encoder import Encoded
from rewardkit.errors import UsageError
from rewardkit.model.artifacts import load_model_dir
from rewardkit.model.attribute_head import RegressionMeta
from rewardkit.model.backbone import make_encoder
from rewardkit.model.critique import CritiqueNet, CritiqueSpec, critiqued, generate_critiques, load_head
from rewardkit.model.gating import GatedNet, load_gate, score_gated
from rewardkit.model.gguf import is_gguf
from rewardkit.model.judge import bradley_terry_scores, both_orders, pair_text
from rewardkit.encoding.steps import StepEncoder, StepTextEncoder
from rewardkit.data.steps import aggregate
from rewardkit.model.net import RewardNet, VerdictNet, score_encoded, score_steps_encoded
from rewardkit.model.verdict import DEFAULT_ANSWERS, DEFAULT_TEMPLATE, Verdict
from rewardkit.model.precision import native_bf16, resolve_dtype
from rewardkit.model.prefix_sharing import resolve_flex_attention, resolve_packing, resolve_prefix_sharing


def sigmoid(x: float) -> float:
    """The logistic function, without overflow for large ``|x|``: P(a preferred over b) = sigmoid(r_a - r_b)
    under the Bradley-Terry model (`RewardModel.compare`, calibration metrics)."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


class RewardModel:
    """Score (prompt, response) pairs with a trained reward model.

    Inference only: the model is in eval mode and every forward pass runs under
    ``torch.inference_mode``. Rewards come back as Python floats computed in fp32 at the head's
    output, whatever ``dtype`` the weights run in (bf16 halves memory on a GPU).

    >>> rm = RewardModel.from_pretrained("rewardkit-out")
    >>> rm.score("How do I boil an egg?", "Simmer it for 8 minutes.")
    """

    def __init__(self, model: nn.Module, tokenizer: Any, max_length: int = 512,
                 device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                 meta: dict[str, Any] | None = None, prefix_sharing: str = "auto", packing: str = "auto",
                 gate: Any = None, critique_head: nn.Module | None = None):
        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device)
        self.dtype = resolve_dtype(dtype, self.device.type)
        native, why = native_bf16(self.device.type) if self.dtype == torch.bfloat16 else (True, "")
        if not native:
            warnings.warn(f"dtype bf16: {why}; bf16 is emulated here and slower than fp32", stacklevel=2)
        if self.dtype is not None:
            self.model = self.model.to(self.dtype)
        self.model.eval()
        self.meta = meta or {}
        if self.meta.get("objective") == "sft":
            raise UsageError("this is an SFT model (a causal LM trained with --objective sft), not a reward model: "
                             "start a reward model from it with `rewardkit train --model DIR`")
        if self.meta.get("objective") == "critique-lm":
            raise UsageError("this model writes critiques (--objective critique-lm, the first stage of --objective "
                             "critique) but has no reward head: score with the finished critique model")
        # critique-out-loud (--objective critique): the model writes a critique, a head scores it
        self.critique = CritiqueSpec.from_meta(self.meta) if self.meta.get("objective") == "critique" else None
        if self.critique is not None and critique_head is None:
            raise UsageError("a critique model needs its head (critique_head.safetensors beside the model)")
        self.last_critiques: list[list[str]] = []  # the critiques of the last scoring call (critique models)
        # generative reward models (--objective generative): the LM head's yes/no log-odds after a question
        self.verdict = Verdict.from_meta(self.meta)
        self.net = RewardNet(self.model) if self.verdict is None else VerdictNet(self.model, *self.verdict.answer_ids)
        self.tokenizer = tokenizer
        # Padded positions are masked out and the reward is read at the last real token, so at
        # inference any id pads safely: a model saved without a pad token still scores.
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad) if pad is not None else 0
        # regression models (issue 14): K attribute outputs; the reward is their weighted combination
        self.regression = RegressionMeta.from_meta(self.meta, int(model.config.num_labels), "model")
        if self.regression is None and self.verdict is None and self.critique is None and not self.meta.get("prm") and \
                int(model.config.num_labels) > 1:
            raise UsageError(f"not a rewardkit reward model: {model.config.num_labels} outputs and no attribute "
                             "names in config.rewardkit")
        self.max_length = int(self.meta.get("max_length", max_length))
        tail = self.verdict.template_ids if self.verdict else self.critique.template_ids if self.critique else None
        self.encoder = make_encoder(model, tokenizer, self.max_length, tail=tail,
                                    chat=self.meta.get("inputs") == "messages")
        # prompt-gated attribute weights (--objective gating): the gate reads the prompt, the head the response
        self.gate = gate
        if critique_head is not None:
            self.net = CritiqueNet(self.model, critique_head.to(self.device))
        if gate is not None:
            self.net = GatedNet(self.model, gate.to(self.device))
        # a process reward model (--objective prm): a reward at every step, read at the step separator
        self.prm: dict[str, Any] | None = self.meta.get("prm")
        if self.prm is not None:
            self.encoder = StepTextEncoder(self.encoder, StepEncoder(tokenizer, self.max_length, self.prm["separator"]))
            if self.prm.get("readout") == "tokens":
                self.net = VerdictNet(self.model, *self.prm["token_ids"])
        self.share_prefix = resolve_prefix_sharing(prefix_sharing, self.net, self.pad_id, self.max_length)
        self.pack = resolve_packing(packing, self.model, self.device.type, self.max_length)
        resolve_flex_attention(self.net, self.pad_id, self.pack, self.share_prefix)  # GPUs with packed rows only

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None,
                        dtype: str | torch.dtype | None = None, max_length: int | None = None,
                        prefix_sharing: str = "auto", packing: str = "auto") -> "RewardModel":
        """Load a directory written by ``rewardkit train`` (or any 1-label sequence classifier),
        or a LoRA adapter directory.

        ``dtype``: ``"bf16"``, ``"fp16"``, ``"fp32"`` or a torch.dtype; weights are loaded
        directly in it, so a bf16 model never holds an fp32 copy in memory.
        """
        if is_gguf(path):
            raise UsageError(f"{path}: a GGUF file holds a language model, not a reward model; train one with "
                             "`rewardkit train --model FILE.gguf`, or judge zero-shot with "
                             "RewardModel.generative(FILE.gguf, template, answers)")
        want = resolve_dtype(dtype, torch.device(device).type if device else None)
        model, tokenizer, meta = load_model_dir(path, want)
        if max_length:
            meta["max_length"] = max_length
        gating = meta.get("gating")
        gate = load_gate(path, gating["hidden"], len(gating["attributes"]), gating["width"]) if gating else None
        head = load_head(path) if meta.get("objective") == "critique" else None
        return cls(model, tokenizer, device=device, dtype=want, meta=meta, prefix_sharing=prefix_sharing,
                   packing=packing, gate=gate, critique_head=head)

    @classmethod
    def generative(cls, model: str | Path, template: str = DEFAULT_TEMPLATE, answers: str = DEFAULT_ANSWERS,
                   max_length: int = 512, device: str | None = None, dtype: str | torch.dtype | None = None,
                   chat: bool = False) -> "RewardModel":
        """A zero-shot generative reward model from any causal LM (a directory, Hub id or GGUF file): the
        reward is ``log P(yes) - log P(no)`` after ``template``, exactly as ``--objective generative``
        reads it, before any training (the baseline a trained verdict should beat). ``chat``: score
        plain strings as the chat messages of its template (`rewardkit.encoding.chat`)."""
        from rewardkit.model.backbone import load_causal_lm
        from rewardkit.model.verdict import resolve_verdict

        lm, tokenizer = load_causal_lm(str(model), what="RewardModel.generative")
        verdict = resolve_verdict(tokenizer, template, answers)
        meta = {"objective": "generative", "verdict": verdict.to_meta(), "max_length": max_length,
                "inputs": "messages" if chat else "text"}
        want = resolve_dtype(dtype, torch.device(device).type if device else None)
        return cls(lm, tokenizer, device=device, dtype=want, meta=meta)

    # ---------------------------------------------------------------- normalisation
    def normalize(self, rewards: list[float]) -> list[float]:
        """(r - mean) / std with the statistics stored at training time."""
        stats = self.meta.get("normalization")
        if not stats:
            raise UsageError("this model has no stored reward statistics to normalise with")
        return [(r - stats["mean"]) / stats["std"] for r in rewards]

    # ---------------------------------------------------------------- scoring
    def rewards_for(self, encoded: Sequence[Encoded], batch_size: int = 32,
                    progress: Any = None) -> list[list[float]]:
        """Rewards of every response of every encoded comparison, in input order, length-sorted batches.

        A regression model's reward is the combined reward of its attribute outputs."""
        if self.critique is not None:
            return self._critiqued_rewards(encoded, batch_size, progress)
        if self.prm is not None:
            return [[aggregate(steps, self.prm.get("aggregate", "min")), *steps]
                    for steps in self._step_rewards(encoded, batch_size)]
        if self.gate is not None:
            return score_gated(self.net, self.pad_id, encoded, batch_size, self.device)
        if self.regression is None:
            return score_encoded(self.net, self.pad_id, encoded, batch_size, self.device, progress,
                                 share_prefix=self.share_prefix, pack=self.pack)
        return [[self.regression.reward(o) for o in outs] for outs in self.outputs_for(encoded, batch_size, progress)]

    def _critiqued_rewards(self, encoded: Sequence[Encoded], batch_size: int, progress: Any = None
                           ) -> list[list[float]]:
        """A critique model: write a critique after every response (greedy, `rewardkit.model.critique`), then
        read the head at the end of prompt + response + critique. The texts land in ``last_critiques``."""
        assert self.critique is not None
        contexts = [ctx for e in encoded for ctx in e.input_ids]
        written = generate_critiques(self.model, contexts, self.critique, self.pad_id, batch_size, self.device)
        at, full = 0, []
        self.last_critiques = []
        for e in encoded:
            k = len(e.input_ids)
            full.append(Encoded([critiqued(c, w, self.critique) for c, w in zip(e.input_ids, written[at:at + k])],
                                None, e.prompt_len, e.truncated))
            self.last_critiques.append([self.tokenizer.decode(w).strip() for w in written[at:at + k]])
            at += k
        return score_encoded(self.net, self.pad_id, full, batch_size, self.device, progress)

    def _step_rewards(self, encoded: Sequence[Encoded], batch_size: int) -> list[list[float]]:
        return [[sigmoid(x) for x in row] for row in
                score_steps_encoded(self.net, self.pad_id, encoded, batch_size, self.device)]

    def score_steps(self, prompt: str, steps: Sequence[str]) -> list[float]:
        """A process reward model's reward for every step: the probability that the step is right, read at
        its separator. Steps left out to fit max_length (the oldest) are NaN."""
        if self.prm is None:
            raise UsageError("this is not a process reward model (trained with --objective prm)")
        encoded = self.encoder.encode_steps(prompt, list(steps))
        return [float("nan")] * encoded.dropped + self._step_rewards([encoded], 1)[0]

    def outputs_for(self, encoded: Sequence[Encoded], batch_size: int = 32,
                    progress: Any = None) -> list[list[list[float]]]:
        """The head's raw outputs (a list of K floats) for every response of every encoded comparison."""
        net = RewardNet(self.model) if self.gate is not None else self.net  # the attributes, without the gate
        outs = score_encoded(net, self.pad_id, encoded, batch_size, self.device, progress,
                             share_prefix=self.share_prefix, pack=self.pack)
        return [[o if isinstance(o, list) else [o] for o in per] for per in outs]

    def gate_weights(self, prompts: Sequence[Text], responses: Sequence[Text]) -> list[dict[str, float]]:
        """A gated model's attribute weights for each prompt ({attribute: weight}, summing to 1)."""
        if self.gate is None:
            raise UsageError("this model has no gate (trained with --objective gating)")
        encoded = [self.encoder.encode_texts(p, [r]) for p, r in zip(prompts, responses)]
        self.net.weights_only = True
        try:
            weights = score_gated(self.net, self.pad_id, encoded, 32, self.device)
        finally:
            self.net.weights_only = False
        return [dict(zip(self.meta["gating"]["attributes"], w[0])) for w in weights]

    def attributes_for(self, encoded: Sequence[Encoded], batch_size: int = 32,
                       progress: Any = None) -> tuple[list[list[float]], list[list[dict[str, float]]]]:
        """(combined rewards, {attribute: value} dicts) per response of every comparison, one forward pass."""
        reg = self._require_attributes()
        outs = self.outputs_for(encoded, batch_size, progress)
        return ([[reg.reward(o) for o in per] for per in outs], [[reg.as_dict(o) for o in per] for per in outs])

    def _require_attributes(self) -> RegressionMeta:
        if self.regression is None:
            raise UsageError("this model has no attributes (trained with --objective bt)")
        return self.regression

    def score_attributes(self, prompts: Sequence[Text], responses: Sequence[Text],
                         batch_size: int = 32) -> list[dict[str, float]]:
        """{attribute: value} per (prompt, response), in the ratings' original units; ``score`` of the
        same pair is ``sum(weight[a] * value[a])`` with the weights stored in ``config.rewardkit``."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        encoded = [self.encoder.encode_texts(p, [r]) for p, r in zip(prompts, responses)]
        return [per[0] for per in self.attributes_for(encoded, batch_size)[1]]

    def score_comparisons(self, comps: Sequence[Comparison], batch_size: int = 32,
                          progress: Any = None) -> list[list[float]]:
        return self.rewards_for([self.encoder.encode(c) for c in comps], batch_size, progress)

    def score_batch(self, prompts: Sequence[Text], responses: Sequence[Text], batch_size: int = 32,
                    normalize: bool = False, return_critique: bool = False) -> list[Any]:
        """Rewards for parallel lists of prompts and responses, in input order.

        Inputs are sorted by length into batches of ``batch_size`` (each padded only to its own
        longest member) and the results put back in input order. ``return_critique`` (a critique model,
        ``--objective critique``): (reward, the critique it wrote) per response.
        """
        if return_critique and self.critique is None:
            raise UsageError("return_critique: this model writes no critiques (trained with --objective critique)")
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        if self.judge:  # a judge scores a response against the others of its prompt (a GRPO group)
            return self._group_scores(prompts, responses, batch_size)
        encoded = [self.encoder.encode_texts(p, [r]) for p, r in zip(prompts, responses)]
        rewards = [r[0] for r in self.rewards_for(encoded, batch_size)]
        rewards = self.normalize(rewards) if normalize else rewards
        if return_critique:
            return [(r, c[0]) for r, c in zip(rewards, self.last_critiques)]
        return rewards

    def score(self, prompt: Text, response: Text, normalize: bool = False, return_critique: bool = False) -> Any:
        """The reward of one response (with ``return_critique``: (reward, critique), a critique model only)."""
        return self.score_batch([prompt], [response], normalize=normalize, return_critique=return_critique)[0]

    def compare(self, prompt: Text, a: Text, b: Text) -> float:
        """P(a preferred over b) = sigmoid(r_a - r_b) under the Bradley-Terry model.

        a and b are encoded as one comparison (a shared, jointly truncated prompt), exactly as a
        training pair and as ``rewardkit score`` encode {prompt, chosen, rejected} records. A judge
        (``--objective judge``) reads both in both orders and averages (`judge_pair` also says whether the
        two orders agreed).
        """
        if self.judge:
            return self.judge_pair(prompt, a, b)[0]
        ra, rb = self.rewards_for([self.encoder.encode_texts(prompt, [a, b])])[0]
        return sigmoid(ra - rb)

    # ---------------------------------------------------------------- a pairwise judge
    @property
    def judge(self) -> bool:
        return self.meta.get("objective") == "judge"

    def _judge_scores(self, cases: Sequence[tuple[Text, Text, Text]], batch_size: int = 32) -> list[float]:
        """The judge's log-odds that A is better, for (prompt, A, B) cases."""
        encoded = [self.encoder.encode_texts(p, [pair_text(_as_text(a), _as_text(b))]) for p, a, b in cases]
        return [r[0] for r in self.rewards_for(encoded, batch_size)]

    def judge_pair(self, prompt: Text, a: Text, b: Text) -> tuple[float, bool]:
        """(P(a beats b) averaged over both orders, whether the two orders agree): `rewardkit.model.judge`."""
        forward, backward = self._judge_scores([(prompt, a, b), (prompt, b, a)])
        return both_orders(forward, backward)

    def rank(self, prompt: Text, responses: Sequence[Text], batch_size: int = 32) -> list[float]:
        """Scores of several responses to one prompt from every pairwise verdict in both orders, by a
        Bradley-Terry fit (centred log-strengths): group-relative rewards for a GRPO group."""
        if not self.judge:
            raise UsageError("rank needs a pairwise judge (trained with --objective judge); score responses instead")
        pairs = list(combinations(range(len(responses)), 2))
        cases = [c for i, j in pairs for c in ((prompt, responses[i], responses[j]), (prompt, responses[j], responses[i]))]
        scores = self._judge_scores(cases, batch_size)
        wins = [(i, j, both_orders(scores[2 * k], scores[2 * k + 1])[0]) for k, (i, j) in enumerate(pairs)]
        return bradley_terry_scores(len(responses), wins)

    def _group_scores(self, prompts: Sequence[Text], responses: Sequence[Text], batch_size: int) -> list[float]:
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(prompts):
            groups.setdefault(text_key(p), []).append(i)
        lone = next((m[0] for m in groups.values() if len(m) == 1), None)
        if lone is not None:
            raise UsageError(f"item {lone}: a pairwise judge scores each response against the other responses to "
                             "the same prompt, and this one is alone; send a prompt's responses together (a whole "
                             "GRPO group), or use judge_pair(prompt, a, b)")
        out = [0.0] * len(prompts)
        for members in groups.values():
            for i, score in zip(members, self.rank(prompts[members[0]], [responses[i] for i in members], batch_size)):
                out[i] = score
        return out


def _as_text(response: Text) -> str:
    """A response as text for a judge's template (a chat answer: its messages' contents)."""
    return response if isinstance(response, str) else "\n".join(m["content"] for m in response)
