"""How a chat-trained reward model's texts map back to the messages it was trained on (`ChatFormat`).

A reward model trained on chat messages saw ``template(prompt messages + [assistant: content])``:
the prompt rendered up to the assistant header (``add_generation_prompt``), then the content with the
template's turn ending (``<|im_end|>\\n`` for ChatML), then the model's EOS. At scoring time the same
conversation arrives in other forms, and each must give the training text exactly:

* a plain string prompt and response (``rm.score("How do I ...?", "Simmer it ...")``, TRL's standard
  data): the prompt is one user message, the response the assistant's content;
* a prompt already rendered by the template (it ends with the assistant header) and the text a policy
  generated after it: generation stops at an end token (``<|im_end|>``) rather than the template's
  full turn ending, and may carry padding, so the response's end is cut back to its content and the
  template renders the turn again;
* a whole rendered transcript (OpenRLHF's query, verl's ``/classify`` text), which
  `rewardkit.serving.inputs.TextSplitter` splits at the last assistant header into the two above.

The turn is learned by rendering probe conversations, never assumed per family. A template whose
rendering of the answer depends on the conversation before it (or which changes the prompt once an
answer follows) is *irregular*: rendered texts cannot be mapped back safely, so they are refused
(`ChatFormat.problem`) and chat messages must be sent instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PROBE_REPLY = "PROBE_REPLY_7f3a"
HH_HEADER = "\n\nAssistant:"
_ROLE_NAMES = {"user": "Human", "assistant": "Assistant", "system": "System"}


def render_plain(messages: list[dict[str, str]]) -> str:
    """The fallback chat template, hh-rlhf style: "\\n\\nHuman: ...\\n\\nAssistant: ..."."""
    return "".join(f"\n\n{_ROLE_NAMES.get(m['role'], m['role'].capitalize())}: {m['content']}"
                   for m in messages)


def render_messages(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    """``messages`` through the tokenizer's chat template, or the plain template when it has none."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    return render_plain(messages) + (HH_HEADER if generation_prompt else "")


class RenderError(ValueError):
    """A text that cannot be mapped to the training layout; the message says why and what to send."""


@dataclass(frozen=True)
class ChatFormat:
    """The assistant turn of one tokenizer's chat template (or of the plain template)."""

    header: str  # what the generation prompt appends: the assistant turn's header
    lead: str  # between the header and the content (" " for the plain template)
    suffix: str  # after the content: the turn ending ("<|im_end|>\n")
    ends: tuple[str, ...]  # texts a generated response may end with, longest first
    problem: str = ""  # why rendered texts cannot be mapped back (an irregular template), else ""

    @classmethod
    def of(cls, tokenizer: Any) -> "ChatFormat":
        user = [{"role": "user", "content": "PROBE_QUESTION"}]
        other = [{"role": "system", "content": "PROBE_SYSTEM"}, {"role": "user", "content": "Q1"},
                 {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}]
        try:
            tails = []
            for prompt in (user, other):
                head = render_messages(tokenizer, prompt, True)
                full = render_messages(tokenizer, prompt + [{"role": "assistant", "content": PROBE_REPLY}], False)
                tails.append(full[len(head):] if full.startswith(head) else None)
            plain = render_messages(tokenizer, user, False)
            head = render_messages(tokenizer, user, True)
        except Exception as e:  # noqa: BLE001 - a template that cannot render a probe
            return cls("", "", "", (), f"its chat template cannot render a probe conversation ({type(e).__name__})")
        header = head[len(plain):] if head.startswith(plain) else ""
        tok_ends = [t for t in (tokenizer.eos_token, tokenizer.pad_token) if t]
        if tails[0] is None or PROBE_REPLY not in tails[0] or not header:
            return cls(header, "", "", (), "its chat template changes the prompt once an answer follows it")
        at = tails[0].index(PROBE_REPLY)
        lead, suffix = tails[0][:at], tails[0][at + len(PROBE_REPLY):]
        ends = sorted({e for e in (suffix, suffix.rstrip(), suffix.strip(), *tok_ends) if e.strip()},
                      key=len, reverse=True)
        problem = "" if tails[1] == tails[0] else (
            "its chat template renders an answer differently depending on the conversation before it")
        return cls(header, lead, suffix, tuple(ends), problem)

    def is_rendered(self, prompt: str) -> bool:
        """A prompt already rendered by the template: it ends with the assistant header."""
        return bool(self.header) and prompt.endswith(self.header)

    def content(self, generated: str, after_header: bool = False) -> str:
        """A response's content from the text after the assistant header: its turn ending, end tokens and
        padding removed (``after_header``: also the template's lead, e.g. the plain template's space)."""
        text = generated
        if after_header and self.lead and text.startswith(self.lead):
            text = text[len(self.lead):]
        changed = True
        while changed:
            changed = False
            for end in self.ends:
                if text.endswith(end):
                    text, changed = text[:-len(end)], True
                    break
        return text

    def check(self) -> None:
        if self.problem:
            raise RenderError(f"this model was trained on chat messages and {self.problem}, so a rendered "
                              "text cannot be mapped back to them; send the conversation as chat messages")
