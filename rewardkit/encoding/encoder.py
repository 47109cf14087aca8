"""Text rendering, tokenization and response-preserving truncation.

Training, evaluation, the Python API, the CLI and the server all encode through `Encoder`, so a
(prompt, response) pair gets the same tokens everywhere.

Layout. Encoders (BERT-like) see the tokenizer's sentence-pair template,
``[CLS] prompt [SEP] response [SEP]`` with token types 0/1. Decoders see
``<bos?> prompt response <eos>``: the reward is read at the final EOS, which has attended to
everything before it. A generative reward model puts its verdict question where the EOS was
(``tail``: ``<bos?> prompt response <question>``) and is read at the question's last token.

Truncation. When prompt + response exceeds ``max_length`` the oldest prompt tokens go first; the
response's end is never cut. Only when a response alone does not fit is it cut, keeping its start
and the final special token (EOS/SEP) or the whole verdict question. All responses of a comparison
share one truncated prompt, so they are judged against the same context (and prefix sharing stays
possible).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rewardkit.data.records import Comparison, Text
from rewardkit.encoding.chat import ChatFormat, render_messages, render_plain  # noqa: F401 - render_plain re-exported


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


def packed_length(e: Encoded) -> int:
    """Tokens of ``e`` in the packed layout (`rewardkit.model.batching.collate_packed`): the shared prefix
    once plus every response."""
    return e.prompt_len + sum(len(s) - e.prompt_len for s in e.input_ids)


def _find(seq: list[int], sub: list[int], start: int = 0) -> int:
    for i in range(start, len(seq) - len(sub) + 1):
        if seq[i:i + len(sub)] == sub:
            return i
    return -1


class Encoder:
    """Renders and tokenizes comparisons for one tokenizer, layout and ``max_length``."""

    def __init__(self, tokenizer: Any, max_length: int, pair_template: bool, tail: list[int] | None = None,
                 chat: bool = False):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.pair_template = pair_template
        # a model trained on chat messages: plain strings are turned into the messages training saw
        # (`rewardkit.encoding.chat`); training itself encodes its data as it is (chat=False)
        self.chat = ChatFormat.of(tokenizer) if chat else None
        self._learn_layout()
        if tail is not None:  # what follows every response instead (a generative model's verdict question)
            if pair_template:
                raise ValueError("a custom tail applies to the concatenated (decoder) layout only")
            self.tail, self.tail_types = list(tail), [self.response_type] * len(tail)
            self.specials = len(self.head) + len(self.mid) + len(self.tail)
            if self.max_length <= self.specials:
                raise ValueError(f"max_length {self.max_length} leaves no room for text")

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
        """(prompt text, response text), with chat messages rendered through the chat template.

        Plain strings stay as they are, unless the model was trained on chat messages (``chat``): then
        a string prompt is one user message (or, ending with the assistant header, an already rendered
        prompt) and a string response the assistant's content (a generated ending cut back to it)."""
        if self.chat is not None:
            prompt, response = self._as_messages(prompt, response)
            if isinstance(prompt, str):  # rendered by the template already: render the answer's turn alone
                return prompt, self._answer_turn(response)
        if isinstance(prompt, str) and isinstance(response, str):
            return prompt, response
        p = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        r = response if isinstance(response, list) else [{"role": "assistant", "content": response}]
        ptext = render_messages(self.tokenizer, p, True)
        full = render_messages(self.tokenizer, p + r, False)
        if not full.startswith(ptext):
            n = 0
            while n < min(len(full), len(ptext)) and full[n] == ptext[n]:
                n += 1
            ptext = full[:n]
        return ptext, full[len(ptext):]

    def _as_messages(self, prompt: Text, response: Text) -> tuple[Text, list[dict[str, str]]]:
        assert self.chat is not None
        if isinstance(response, str):
            response = [{"role": "assistant", "content": self.chat.content(response)}]
        if isinstance(prompt, str):
            if self.chat.is_rendered(prompt):
                self.chat.check()
                return prompt, response
            prompt = [{"role": "user", "content": prompt}]
        return prompt, response

    def _answer_turn(self, response: list[dict[str, str]]) -> str:
        """The text the template renders for ``response`` after any prompt (a regular template's turn)."""
        probe = [{"role": "user", "content": "PROBE_QUESTION"}]
        head = render_messages(self.tokenizer, probe, True)
        return render_messages(self.tokenizer, probe + response, False)[len(head):]

    def _tokens(self, text: str) -> list[int]:
        # verbose=False: texts longer than the model are expected here (truncation comes next), so
        # transformers' "indexing errors" warning would only alarm the user.
        return list(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def encode(self, comp: Comparison) -> Encoded:
        """Encode all responses of a comparison against one jointly truncated prompt."""
        return self.encode_texts(comp.prompt, comp.responses, comp.margin, comp.scores)

    def encode_texts(self, prompt: Text, responses: list[Text], margin: float | None = None,
                     scores: list[float] | None = None) -> Encoded:
        ptext, rtexts = self.render_comparison(prompt, responses)
        return self._assemble(*self.fit(self._tokens(ptext), [self._tokens(rt) for rt in rtexts]),
                              margin=margin, scores=scores)

    def render_comparison(self, prompt: Text, responses: list[Text]) -> tuple[str, list[str]]:
        """(prompt text, response texts): the prompt as rendered with the first response."""
        rendered = [self.render(prompt, r) for r in responses]
        return rendered[0][0], [rt for _, rt in rendered]

    def tokenize_batch(self, texts: list[str]) -> list[list[int]]:
        """``[self._tokens(t) for t in texts]`` in one call into the (fast) tokenizer."""
        if not texts:
            return []
        out = self.tokenizer(texts, add_special_tokens=False, verbose=False,
                             return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        return [list(ids) for ids in out]

    def fit(self, p: list[int], rs: list[list[int]]) -> tuple[list[int], list[int], list[list[int]], bool]:
        """(head, prompt, responses, truncated): the special head actually used and the token ids
        left after response-preserving truncation (see the module docstring)."""
        head = self.head
        if head and p[:len(head)] == head:  # a chat template that already emits BOS
            head = []
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
        return head, p, rs, truncated

    def _assemble(self, head: list[int], p: list[int], rs: list[list[int]], truncated: bool,
                  margin: float | None = None, scores: list[float] | None = None) -> Encoded:
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

    def encode_batch(self, comps: list[Comparison]) -> list[Encoded]:
        """``[self.encode(c) for c in comps]`` with two tokenizer calls for the whole batch.

        One call per text spends most of its time in Python call overhead; a batch goes to the
        fast tokenizer's Rust loop (parallel over cores). Same ids, same truncation.
        """
        rendered = [self.render_comparison(c.prompt, c.responses) for c in comps]
        prompts = self.tokenize_batch([pt for pt, _ in rendered])
        responses = self.tokenize_batch([rt for _, rts in rendered for rt in rts])
        out, at = [], 0
        for c, p in zip(comps, prompts):
            k = len(c.responses)
            out.append(self._assemble(*self.fit(p, responses[at:at + k]), margin=c.margin, scores=c.scores))
            at += k
        return out
