"""Text rendering, tokenization and response-preserving truncation.

Training, evaluation, the Python API, the CLI and the server all encode through `Encoder`, so a
(prompt, response) pair gets the same tokens everywhere.

Layout. Encoders (BERT-like) see the tokenizer's sentence-pair template,
``[CLS] prompt [SEP] response [SEP]`` with token types 0/1. Decoders see
``<bos?> prompt response <eos>``: the reward is read at the final EOS, which has attended to
everything before it.

Truncation. When prompt + response exceeds ``max_length`` the oldest prompt tokens go first; the
response's end is never cut. Only when a response alone does not fit is it cut, keeping its start
and the final special token (EOS/SEP). All responses of a comparison share one truncated prompt,
so they are judged against the same context (and prefix sharing stays possible).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .records import Comparison, Text

_ROLE_NAMES = {"user": "Human", "assistant": "Assistant", "system": "System"}


@dataclass
class Encoded:
    """Token ids of one comparison: one full sequence per response, best first."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    prompt_len: int  # leading tokens shared by every sequence (specials + prompt + separator)
    truncated: bool
    margin: float | None = None
    scores: list[float] | None = None

    @property
    def longest(self) -> int:
        return max(len(s) for s in self.input_ids)


def render_plain(messages: list[dict[str, str]]) -> str:
    """The fallback chat template, hh-rlhf style: "\\n\\nHuman: ...\\n\\nAssistant: ..."."""
    return "".join(f"\n\n{_ROLE_NAMES.get(m['role'], m['role'].capitalize())}: {m['content']}"
                   for m in messages)


def _find(seq: list[int], sub: list[int], start: int = 0) -> int:
    for i in range(start, len(seq) - len(sub) + 1):
        if seq[i:i + len(sub)] == sub:
            return i
    return -1


class Encoder:
    """Renders and tokenizes comparisons for one tokenizer, layout and ``max_length``."""

    def __init__(self, tokenizer: Any, max_length: int, pair_template: bool):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.pair_template = pair_template
        self._learn_layout()

    def _learn_layout(self) -> None:
        """Find the special tokens the tokenizer wraps around one text or a text pair.

        Probing with two known words works for any tokenizer (WordPiece, BPE, SentencePiece) and
        avoids per-family special cases.
        """
        tok = self.tokenizer
        a = tok("a", add_special_tokens=False)["input_ids"]
        b = tok("b", add_special_tokens=False)["input_ids"]
        if self.pair_template:
            enc = tok("a", "b", return_token_type_ids=True)
        else:
            enc = tok("a", return_token_type_ids=True)
        ids = list(enc["input_ids"])
        types = list(enc.get("token_type_ids") or [0] * len(ids))
        ia = _find(ids, a)
        ib = _find(ids, b, ia + len(a)) if self.pair_template else -1
        if ia < 0 or (self.pair_template and ib < 0):
            ia, ids, types = 0, list(a) + (list(b) if self.pair_template else []), [0] * (len(a) + len(b))
            ib = len(a) if self.pair_template else -1
        self.head = ids[:ia]
        self.head_types = types[:ia]
        self.prompt_type = types[ia] if ia < len(types) else 0
        if self.pair_template:
            self.mid = ids[ia + len(a):ib]
            self.mid_types = types[ia + len(a):ib]
            self.response_type = types[ib]
            self.tail = ids[ib + len(b):]
            self.tail_types = types[ib + len(b):]
        else:
            self.mid, self.mid_types = [], []
            self.response_type = self.prompt_type
            self.tail = ids[ia + len(a):]
            self.tail_types = types[ia + len(a):]
            eos = tok.eos_token_id
            if eos is not None and (not self.tail or self.tail[-1] != eos):
                self.tail = self.tail + [eos]
                self.tail_types = self.tail_types + [self.response_type]
        self.uses_token_types = any(t != 0 for t in types)
        self.specials = len(self.head) + len(self.mid) + len(self.tail)
        if self.max_length <= self.specials:
            raise ValueError(f"max_length {self.max_length} leaves no room for text")

    def render(self, prompt: Text, response: Text) -> tuple[str, str]:
        """(prompt text, response text), with chat messages rendered through the chat template."""
        if isinstance(prompt, str) and isinstance(response, str):
            return prompt, response
        p = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        r = response if isinstance(response, list) else [{"role": "assistant", "content": response}]
        if getattr(self.tokenizer, "chat_template", None):
            ptext = self.tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
            full = self.tokenizer.apply_chat_template(p + r, tokenize=False)
        else:
            ptext = render_plain(p) + "\n\nAssistant:"
            full = render_plain(p + r)
        if not full.startswith(ptext):
            n = 0
            while n < min(len(full), len(ptext)) and full[n] == ptext[n]:
                n += 1
            ptext = full[:n]
        return ptext, full[len(ptext):]

    def _tokens(self, text: str) -> list[int]:
        # verbose=False: texts longer than the model are expected here (truncation comes next), so
        # transformers' "indexing errors" warning would only alarm the user.
        return list(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def encode(self, comp: Comparison) -> Encoded:
        """Encode all responses of a comparison against one jointly truncated prompt."""
        return self.encode_texts(comp.prompt, comp.responses, comp.margin, comp.scores)

    def encode_texts(self, prompt: Text, responses: list[Text], margin: float | None = None,
                     scores: list[float] | None = None) -> Encoded:
        rendered = [self.render(prompt, r) for r in responses]
        p = self._tokens(rendered[0][0])
        head = self.head
        if head and p[:len(head)] == head:  # a chat template that already emits BOS
            head = []
        rs = [self._tokens(rt) for _, rt in rendered]
        budget = self.max_length - len(head) - len(self.mid) - len(self.tail)
        longest = max(len(r) for r in rs)
        truncated = len(p) + longest > budget
        if truncated:
            if longest <= budget:
                keep = budget - longest
            else:
                keep = min(len(p), budget // 8)
                rs = [r[:budget - keep] for r in rs]
            p = p[len(p) - keep:] if keep else []
        ids, types = [], []
        for r in rs:
            ids.append(head + p + self.mid + r + self.tail)
            if self.uses_token_types:
                types.append(self.head_types[:len(head)] + [self.prompt_type] * len(p) + self.mid_types
                             + [self.response_type] * len(r) + self.tail_types)
        return Encoded(input_ids=ids, token_type_ids=types if self.uses_token_types else None,
                       prompt_len=len(head) + len(p) + len(self.mid), truncated=truncated,
                       margin=margin, scores=scores)

    # ------------------------------------------------------------ one raw text (rewardkit serve)
    def encode_text(self, text: str) -> Encoded:
        """One text with no prompt to split off, scored as a response after an empty prompt.

        Identical to ``encode_texts("", [text])`` when it fits. A text too long for the model
        loses its *oldest* tokens (left side) instead: the server gets whole transcripts whose end,
        where the reward is read, matters most.
        """
        r = self._tokens(text)
        head = [] if self.head and r[:len(self.head)] == self.head else self.head
        budget = self.max_length - len(head) - len(self.mid) - len(self.tail)
        truncated = len(r) > budget
        if truncated:
            r = r[len(r) - budget:]
        ids = head + self.mid + r + self.tail
        types = None
        if self.uses_token_types:
            types = [self.head_types[:len(head)] + self.mid_types + [self.response_type] * len(r) + self.tail_types]
        return Encoded(input_ids=[ids], token_type_ids=types, prompt_len=len(head) + len(self.mid),
                       truncated=truncated)
