"""A step-labelled solution as token ids for a process reward model (`StepEncoder`).

Layout: ``<bos?> prompt step_1 SEP step_2 SEP ... step_n SEP``: each step is tokenized on its own and
followed by the separator token (``--step-separator``, one token of the tokenizer, appended by id so it
never merges with the step's text), and step i's reward is read at its separator, which has seen the
prompt and every step up to i. The prompt and steps are plain text (a chat model's template is not
applied: PRM data is a question and its reasoning).

Truncation keeps the latest steps whole: when the solution does not fit ``max_length``, the oldest steps
go first (their labels with them), then the prompt's oldest tokens, down to a quarter of the budget; a
kept step is never cut. A solution whose last step alone does not fit cannot be encoded (None: the
caller reports it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rewardkit.encoding.encoder import Encoded, Encoder
from rewardkit.errors import UsageError


@dataclass
class StepEncoded(Encoded):
    """One solution's ids (``input_ids[0]``), where each kept step's separator sits, and its labels."""

    positions: list[int] | None = None  # index of each kept step's separator token
    labels: list[bool] | None = None  # the kept steps' labels (training data), else None
    dropped: int = 0  # oldest steps left out to fit max_length


class StepEncoder:
    """Encodes (prompt, steps) for one tokenizer, separator and ``max_length`` (see the module doc)."""

    def __init__(self, tokenizer: Any, max_length: int, separator: str, flag: str = "--step-separator"):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.separator = separator
        self.head = Encoder(tokenizer, max_length, pair_template=False).head  # BOS where the tokenizer adds one
        ids = list(tokenizer(separator, add_special_tokens=False)["input_ids"])
        if len(ids) != 1:
            pieces = tokenizer.convert_ids_to_tokens(ids)
            raise UsageError(f"{flag} {separator!r} is {len(ids)} tokens for this tokenizer ({pieces}), not one; pick "
                             "a separator that is a single token (the reward of each step is read at it)")
        self.separator_id = ids[0]

    def _tokens(self, texts: list[str]) -> list[list[int]]:
        out = self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        return [list(x) for x in out]

    def encode(self, prompt: str, steps: list[str], labels: list[bool] | None = None) -> StepEncoded | None:
        p, *parts = self._tokens([prompt, *steps])
        parts = [s + [self.separator_id] for s in parts]
        budget = self.max_length - len(self.head)
        keep = len(parts)
        floor = min(len(p), budget // 4)  # the prompt tokens kept while whole steps still fit
        while keep and sum(len(s) for s in parts[len(parts) - keep:]) > budget - floor:
            keep -= 1
        if keep == 0:
            if len(parts[-1]) > budget:
                return None
            keep = 1
        kept = parts[len(parts) - keep:]
        room = budget - sum(len(s) for s in kept)
        whole = len(p)
        p = p[max(0, len(p) - room):]
        ids, positions = list(self.head) + p, []
        for s in kept:
            ids += s
            positions.append(len(ids) - 1)
        dropped = len(parts) - keep
        return StepEncoded(input_ids=[ids], token_type_ids=None, prompt_len=len(self.head) + len(p),
                           truncated=dropped > 0 or len(p) < whole, positions=positions,
                           labels=None if labels is None else list(labels[dropped:]), dropped=dropped)


class StepTextEncoder:
    """A PRM's (prompt, response) texts: the response is cut into steps at the separator's text, then
    encoded by a `StepEncoder`; stands where an `Encoder` does for scoring (`RewardModel`, the server)."""

    def __init__(self, base: Encoder, steps: StepEncoder):
        self.base, self.steps = base, steps
        self.tokenizer, self.chat, self.head, self.pair_template = base.tokenizer, base.chat, base.head, False
        self.max_length = steps.max_length

    def split(self, response: str) -> list[str]:
        """The response's steps: its text between separators, empty pieces left out."""
        return [s for s in response.split(self.steps.separator) if s.strip()]

    def encode_steps(self, prompt: str, steps: list[str]) -> StepEncoded:
        encoded = self.steps.encode(prompt, steps)
        if encoded is None:
            raise ValueError(f"the last step alone is longer than max_length {self.max_length} tokens")
        return encoded

    def encode_texts(self, prompt: Any, responses: list[Any], margin: float | None = None,
                     scores: list[float] | None = None) -> StepEncoded:
        if len(responses) != 1:
            raise ValueError("a process reward model scores one response at a time")
        ptext, rtext = self.base.render(prompt, responses[0])
        steps = self.split(rtext)
        if not steps:
            raise ValueError("the response has no step")
        return self.encode_steps(ptext, steps)

    def encode_text(self, text: str) -> StepEncoded:
        return self.encode_texts("", [text])

    def encode(self, comp: Any) -> StepEncoded:
        return self.encode_texts(comp.prompt, comp.responses)
