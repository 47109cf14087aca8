"""Request bodies of `rewardkit serve`: parsing, validation and the text-splitting rule.

Everything here is plain Python (no web framework, no torch), so the rules can be tested and
reused on their own. A request turns into a list of `Spec` items; `encode_specs` turns those into
`Encoded` token ids through the model's own `Encoder`, the one training used.

Validation errors are `BadRequest` with the HTTP status and a message naming the field
(``query[3]: must be a string, got int``). Messages name types and sizes, never values: a body may
hold secrets, and echoing a 16 MB text back helps no one.

The splitting rule (``/get_reward``, ``/classify``): a reward model was trained on (prompt,
response) pairs, so a whole transcript is split back into the two before encoding.

A model trained on chat messages (``config.rewardkit.inputs == "messages"``) maps every text back to
those messages (`rewardkit.encoding.chat`), and never guesses:

1. pad tokens (as text) are removed from the start, and leading specials the encoder adds itself
   (a Llama BOS); a BOS that is the template's own first token (SmolLM2's ``<|im_start|>``) is kept,
   and put back when a client stripped it (verl does, expecting its tokenizer to add it again);
2. if a prompt is given and the text starts with it, the text splits there (a plain prompt is then
   one user message); otherwise at the end of the last assistant header of the chat template;
3. the answer's content is what follows, its end (``<|im_end|>`` where generation stopped, the
   template's full turn ending, padding) cut back; the template renders the turn again, as training did;
4. a text with no assistant header is refused (422 naming the field), as is any rendered text when
   the template renders answers differently depending on the conversation.

Any other model: pad and BOS/CLS tokens are removed from the start (the encoder adds its own once);
the text splits at the given prompt, else after the last assistant header (the chat template's, else
hh-rlhf's ``\\n\\nAssistant:``), else is scored whole as a response after an empty prompt. A text
whose prompt part ends with the chat-template header keeps its ending when the template ends turns
with EOS; any other loses its trailing EOS/SEP tokens, so exactly one EOS ends the sequence.
Truncation is training's: the oldest prompt tokens go first; a text with no split point loses its
oldest tokens (left side).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from rewardkit.encoding.chat import RenderError, render_messages
from rewardkit.encoding.encoder import Encoded, Encoder

HH_MARKER = "\n\nAssistant:"
MAX_DEPTH = 32  # the deepest valid body (a list of items of message lists) nests 4 levels


class BadRequest(Exception):
    """A client error: HTTP ``status`` and a message naming the field."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Limits:
    max_items: int
    max_chars: int


@dataclass
class Spec:
    """One item to score: ``responses`` against ``prompt``, or one ``text`` with no split point."""

    where: str  # the item's name in error messages, e.g. "query[3]"
    prompt: Any = None
    responses: list[Any] | None = None
    text: str | None = None


# ------------------------------------------------------------------------------------ JSON


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(s: str) -> float:
    x = float(s)
    if not math.isfinite(x):
        raise ValueError("a number out of range")
    return x


def parse_json(body: bytes) -> Any:
    """The body as JSON: strict UTF-8, no NaN/Infinity, at most `MAX_DEPTH` levels deep."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(f"body: not valid UTF-8 (byte {e.start})") from None
    if not text.strip():
        raise BadRequest("body: empty; send a JSON object")
    try:
        data = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise BadRequest(f"body: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:  # JSONDecodeError included; its message holds positions, not content
        msg = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
        where = f" (line {e.lineno}, column {e.colno})" if isinstance(e, json.JSONDecodeError) else ""
        raise BadRequest(f"body: not valid JSON: {msg}{where}") from None
    _check_depth(data)
    return data


def _check_depth(data: Any) -> None:
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadRequest(f"body: nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values() if isinstance(v, (dict, list)))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value if isinstance(v, (dict, list)))


# ------------------------------------------------------------------------------------ fields


def _kind(value: Any) -> str:
    return "null" if value is None else {dict: "object", list: "list", str: "string", bool: "bool",
                                         int: "number", float: "number"}.get(type(value), type(value).__name__)


def check_string(value: Any, where: str, limits: Limits) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{where}: must be a string, got {_kind(value)}")
    if len(value) > limits.max_chars:
        raise BadRequest(f"{where}: {len(value)} characters, more than the limit of {limits.max_chars}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{where}: contains an unpaired surrogate (not valid Unicode)") from None
    return value


def check_messages(value: list[Any], where: str, limits: Limits) -> list[dict[str, str]]:
    if not value:
        raise BadRequest(f"{where}: empty message list")
    if len(value) > limits.max_items:
        raise BadRequest(f"{where}: {len(value)} messages, more than the limit of {limits.max_items}")
    total = 0
    out = []
    for i, m in enumerate(value):
        w = f"{where}[{i}]"
        if not isinstance(m, dict):
            raise BadRequest(f"{w}: must be a message object {{\"role\", \"content\"}}, got {_kind(m)}")
        for key in ("role", "content"):
            if key not in m:
                raise BadRequest(f"{w}: missing '{key}'")
        role = check_string(m["role"], f"{w}.role", limits)
        if not role:
            raise BadRequest(f"{w}.role: must not be empty")
        content = check_string(m["content"], f"{w}.content", limits)
        total += len(content)
        out.append({"role": role, "content": content})
    if total > limits.max_chars:
        raise BadRequest(f"{where}: {total} characters in all, more than the limit of {limits.max_chars}")
    return out


def check_request_text(value: Any, where: str, limits: Limits) -> Any:
    """A string or a chat-message list."""
    if isinstance(value, list):
        return check_messages(value, where, limits)
    if not isinstance(value, str):
        raise BadRequest(f"{where}: must be a string or a list of chat messages, got {_kind(value)}")
    return check_string(value, where, limits)


def check_list(value: Any, where: str, limits: Limits, allow_empty: bool = False) -> list[Any]:
    if not isinstance(value, list):
        raise BadRequest(f"{where}: must be a list, got {_kind(value)}")
    if not value and not allow_empty:
        raise BadRequest(f"{where}: empty list; send at least one item")
    if len(value) > limits.max_items:
        raise BadRequest(f"{where}: {len(value)} items, more than the limit of {limits.max_items}")
    return value


def _object(data: Any, route: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise BadRequest(f"body: {route} takes a JSON object, got {_kind(data)}")
    return data


# ------------------------------------------------------------------------------------ routes


def parse_score(data: Any, limits: Limits) -> tuple[list[Spec], list[str]]:
    """POST /score: an item or a list of items -> specs and each item's kind ("response"/"pair")."""
    items = check_list(data, "body", limits) if isinstance(data, list) else [data]
    specs, kinds = [], []
    for i, item in enumerate(items):
        where = f"items[{i}]" if isinstance(data, list) else "body"
        if not isinstance(item, dict):
            raise BadRequest(f"{where}: must be an object with 'prompt' and 'response' (or 'chosen' and "
                             f"'rejected'), got {_kind(item)}")
        pair = "chosen" in item or "rejected" in item
        if pair and "response" in item:
            raise BadRequest(f"{where}: give either 'response' or 'chosen'/'rejected', not both")
        keys = ("prompt", "chosen", "rejected") if pair else ("prompt", "response")
        for key in keys:
            if key not in item:
                raise BadRequest(f"{where}: missing '{key}'")
        values = [check_request_text(item[k], f"{where}.{k}", limits) for k in keys]
        specs.append(Spec(where=where, prompt=values[0], responses=values[1:]))
        kinds.append("pair" if pair else "response")
    return specs, kinds


def parse_get_reward(data: Any, limits: Limits, splitter: "TextSplitter") -> list[Spec]:
    """POST /get_reward (OpenRLHF): {"query": [...], "prompts": [...]?, "labels": ...?, ...}."""
    body = _object(data, "/get_reward")
    if "query" not in body:
        raise BadRequest("body: missing 'query' (a list of texts)")
    # OpenRLHF splits one rollout over several server URLs evenly, so the others get empty lists:
    # those are answered with empty lists, not an error it would retry and then drop.
    queries = check_list(body["query"], "query", limits, allow_empty=True)
    prompts = body.get("prompts")
    if prompts is not None:
        if not isinstance(prompts, list):
            raise BadRequest(f"prompts: must be a list, got {_kind(prompts)}")
        if len(prompts) != len(queries):
            raise BadRequest(f"prompts: {len(prompts)} entries for {len(queries)} queries; they must match")
    specs = []
    for i, q in enumerate(queries):
        text = check_string(q, f"query[{i}]", limits)
        prompt = None
        if prompts is not None and prompts[i] is not None:
            prompt = check_string(prompts[i], f"prompts[{i}]", limits)
        specs.append(splitter.split(text, prompt, f"query[{i}]"))
    return specs


def parse_classify(data: Any, limits: Limits, splitter: "TextSplitter") -> tuple[list[Spec], bool]:
    """POST /classify (vLLM pooling shape): {"input": text | [texts]} or {"messages": [...]}."""
    body = _object(data, "/classify")
    if "model" in body and body["model"] is not None and not isinstance(body["model"], str):
        raise BadRequest(f"model: must be a string, got {_kind(body['model'])}")
    activation = False
    for key in ("use_activation", "activation", "softmax"):
        value = body.get(key)
        if value is not None and not isinstance(value, bool):
            raise BadRequest(f"{key}: must be true, false or null, got {_kind(value)}")
        activation = activation or bool(value)
    if "messages" in body and "input" not in body:
        msgs = check_list(body["messages"], "messages", limits)
        msgs = check_messages(msgs, "messages", limits)
        if msgs[-1]["role"] != "assistant" or len(msgs) < 2:
            raise BadRequest("messages: the last message must be the assistant's response to score, "
                             "after at least one other message")
        return [Spec(where="messages", prompt=msgs[:-1], responses=[msgs[-1:]])], activation
    if "input" not in body:
        raise BadRequest("body: missing 'input' (a text or a list of texts) or 'messages'")
    raw = body["input"]
    if isinstance(raw, list) and raw and all(isinstance(x, int) and not isinstance(x, bool) for x in raw):
        raise BadRequest("input: token ids are not accepted; send text so it is encoded as in training")
    texts = check_list(raw, "input", limits) if isinstance(raw, list) else [raw]
    where = (lambda i: f"input[{i}]") if isinstance(raw, list) else (lambda i: "input")
    specs = [splitter.split(check_string(t, where(i), limits), None, where(i)) for i, t in enumerate(texts)]
    return specs, activation


# ------------------------------------------------------------------------------------ splitting


class TextSplitter:
    """Turns one transcript (and maybe its prompt) back into the (prompt, response) of training."""

    def __init__(self, encoder: Encoder):
        tok = encoder.tokenizer
        self.chat = encoder.chat  # a model trained on chat messages: texts map back to its messages
        self.pair_template = encoder.pair_template
        self.pad = tok.pad_token if tok.pad_token not in (None, tok.eos_token) else None
        # leading specials the encoder adds itself (BERT's [CLS], a Llama BOS) are stripped, not doubled; so is
        # a BOS on a plain-text model (training texts had none). A chat model keeps any other: SmolLM2's BOS
        # is <|im_start|>, the template's own first token, which training saw at the start of every prompt.
        added = [t for t in tok.convert_ids_to_tokens(list(encoder.head)) if t]
        plain = [t for t in (tok.bos_token, getattr(tok, "cls_token", None)) if t] if self.chat is None else []
        self.leading = list(dict.fromkeys(added + plain))
        self.trailing = [s for s in (tok.eos_token, getattr(tok, "sep_token", None)) if s]
        self.header, self.keep_end = self._chat_header(tok)
        self.markers = [m for m in (self.header, HH_MARKER) if m]
        # a client that strips the BOS its own tokenizer will add again (verl) removes the template's first
        # token when the BOS *is* that token: it is put back
        start = render_messages(tok, [{"role": "user", "content": "PROBE"}], True) if self.chat else ""
        self.restore = tok.bos_token if tok.bos_token and start.startswith(tok.bos_token) and not added else ""

    @staticmethod
    def _chat_header(tok: Any) -> tuple[str, bool]:
        """(the assistant header of the chat template, whether its turns end with EOS)."""
        if not getattr(tok, "chat_template", None):
            return "", False
        try:
            user = [{"role": "user", "content": "PROBE"}]
            with_gen = tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
            plain = tok.apply_chat_template(user, tokenize=False)
            full = tok.apply_chat_template(user + [{"role": "assistant", "content": "REPLY"}], tokenize=False)
        except Exception:  # noqa: BLE001 - a template that cannot render a probe has no usable header
            return "", False
        header = with_gen[len(plain):] if with_gen.startswith(plain) else ""
        end = full[full.rfind("REPLY") + len("REPLY"):]
        return header, bool(tok.eos_token) and end.rstrip().endswith(tok.eos_token)

    def _clean_start(self, text: str) -> str:
        changed = True
        while changed:
            changed = False
            for s in ([self.pad] if self.pad else []) + self.leading:
                if text.startswith(s):
                    text, changed = text[len(s):], True
        if self.restore and not text.startswith(self.restore):
            text = self.restore + text
        return text

    def _clean_end(self, text: str, chat_form: bool) -> str:
        if self.pad:
            while text.endswith(self.pad):
                text = text[:-len(self.pad)]
        if chat_form and self.keep_end:
            return text
        changed = True
        while changed:
            changed = False
            for s in self.trailing:
                if text.endswith(s):
                    text, changed = text[:-len(s)], True
        return text

    def split(self, query: str, prompt: str | None, where: str) -> Spec:
        if self.chat is not None:
            return self._split_chat(query, prompt, where)
        if prompt is not None and prompt and query.startswith(prompt):
            p, r = self._clean_start(prompt), query[len(prompt):]
            return Spec(where=where, prompt=p, responses=[self._clean_end(r, self._chat_form(p))])
        text = self._clean_start(query)
        for marker in self.markers:
            cut = text.rfind(marker)
            if cut >= 0:
                end = cut + len(marker)
                p = text[:end]
                return Spec(where=where, prompt=p, responses=[self._clean_end(text[end:], self._chat_form(p))])
        return Spec(where=where, text=self._clean_end(text, False))

    def _split_chat(self, query: str, prompt: str | None, where: str) -> Spec:
        """A chat-trained model's text: (rendered prompt, the answer's content), never a guess."""
        chat = self.chat
        assert chat is not None
        if chat.problem:
            raise BadRequest(f"{where}: this model was trained on chat messages and {chat.problem}; "
                             "send chat messages to /score instead of rendered text")
        if prompt and query.startswith(prompt):
            p, rest = self._clean_start(prompt), query[len(prompt):]
            if chat.is_rendered(p):
                return Spec(where=where, prompt=p, responses=[chat.content(rest, after_header=True)])
            return Spec(where=where, prompt=p, responses=[rest])  # a plain prompt: one user message
        text = self._clean_start(query)
        cut = text.rfind(chat.header) if chat.header else -1
        if cut < 0:
            raise BadRequest(f"{where}: no assistant turn in the text: this model was trained on chat messages, "
                             f"whose answers start after {chat.header!r}; send the conversation rendered by its "
                             "chat template, its prompt in 'prompts', or chat messages to /score")
        end = cut + len(chat.header)
        return Spec(where=where, prompt=text[:end], responses=[chat.content(text[end:], after_header=True)])

    def _chat_form(self, prompt: str) -> bool:
        return bool(self.header) and prompt.endswith(self.header)


# ------------------------------------------------------------------------------------ encoding


def encode_specs(encoder: Encoder, specs: list[Spec]) -> list[Encoded]:
    """Token ids for every spec, exactly as training encodes (prompt, response) pairs."""
    out = []
    for spec in specs:
        try:
            if spec.text is not None:
                enc = encoder.encode_text(spec.text)
            else:
                enc = encoder.encode_texts(spec.prompt, spec.responses)
        except RenderError as e:
            raise BadRequest(f"{spec.where}: {e}") from None
        except Exception as e:  # noqa: BLE001 - e.g. a chat template rejecting a role order
            raise BadRequest(f"{spec.where}: cannot be encoded: {type(e).__name__}") from None
        if any(not row for row in enc.input_ids):
            raise BadRequest(f"{spec.where}: encodes to no tokens at all")
        out.append(enc)
    return out
