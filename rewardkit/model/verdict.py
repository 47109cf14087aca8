"""A generative reward model's verdict: the question after the response, and the two answer tokens.

The reward is read from the language-model head instead of a fresh scalar head (Zhang et al.,
"Generative Verifiers"; Mahan et al., "Generative Reward Models"): the model sees
``prompt response <template>`` and the reward is ``log P(yes) - log P(no)`` for the next token
(`rewardkit.model.net.VerdictNet`). The template is tokenized on its own and appended after the
response (it takes the place of a reward model's EOS, `rewardkit.encoding.encoder.Encoder`'s
``tail``), so truncation never cuts it; each answer must be exactly one token of the tokenizer.
``config.rewardkit["verdict"]`` stores the template, the answers and their token ids, so the saved
model scores exactly as it was trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rewardkit.errors import UsageError

DEFAULT_TEMPLATE = "\n\nQuestion: Is the response helpful and harmless? Answer:"
DEFAULT_ANSWERS = " Yes, No"


@dataclass
class Verdict:
    """The verdict question and answers, as text and as the tokenizer's ids."""

    template: str
    answers: tuple[str, str]  # (yes, no)
    template_ids: list[int]
    answer_ids: tuple[int, int]

    def to_meta(self) -> dict[str, Any]:
        return {"template": self.template, "answers": list(self.answers), "template_ids": list(self.template_ids),
                "answer_ids": list(self.answer_ids)}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "Verdict | None":
        """The verdict stored with a generative model; None for any other model."""
        v = meta.get("verdict")
        if not v:
            return None
        yes, no = v["answers"]
        yes_id, no_id = v["answer_ids"]
        return cls(str(v["template"]), (str(yes), str(no)), [int(i) for i in v["template_ids"]],
                   (int(yes_id), int(no_id)))


def parse_answers(spec: str, flag: str = "--verdict-tokens") -> tuple[str, str]:
    """``" Yes, No"`` -> (" Yes", " No"): the yes answer, a comma, the no answer (spaces kept: " Yes"
    and "Yes" are different tokens)."""
    parts = spec.split(",")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise UsageError(f"{flag}: expected two answers, YES,NO (e.g. ' Yes, No'), got {spec!r}")
    return parts[0], parts[1]


def resolve_verdict(tokenizer: Any, template: str, answers: str,
                    flags: tuple[str, str] = ("--verdict-template", "--verdict-tokens")) -> Verdict:
    """The verdict for this tokenizer; UsageError naming the flag (``flags``: the template's and the
    answers') for an empty template, an answer that is not exactly one token, or two answers that are the
    same token."""
    if not template.strip():
        raise UsageError(f"{flags[0]} is empty: the model needs a question to answer after the response")
    template_ids = list(tokenizer(template, add_special_tokens=False)["input_ids"])
    if not template_ids:
        raise UsageError(f"{flags[0]} {template!r} gives no tokens")
    ids = []
    for answer in parse_answers(answers, flags[1]):
        pieces = list(tokenizer(answer, add_special_tokens=False)["input_ids"])
        if len(pieces) != 1:
            shown = tokenizer.convert_ids_to_tokens(pieces)
            raise UsageError(f"{flags[1]}: {answer!r} is {len(pieces)} tokens for this tokenizer ({shown}), "
                             "not one; pick answers that are single tokens (a leading space often matters)")
        ids.append(pieces[0])
    if ids[0] == ids[1]:
        raise UsageError(f"{flags[1]}: {answers!r} names the same token twice")
    yes, no = parse_answers(answers, flags[1])
    return Verdict(template, (yes, no), template_ids, (ids[0], ids[1]))
