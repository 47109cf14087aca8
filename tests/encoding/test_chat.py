"""Chat-trained models: strings map back to the messages training saw (`rewardkit.encoding.chat`).

Tiny tokenizers with hand-written templates, so each rule is pinned in milliseconds; the real
SmolLM2 template is exercised end to end in tests/test_real_model.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import _bpe_tokenizer

from rewardkit.encoding.chat import ChatFormat, RenderError
from rewardkit.encoding.encoder import Encoder
from rewardkit.serving.inputs import BadRequest, TextSplitter

# ChatML as SmolLM2 has it: the BOS is the template's first token, turns end "<|im_end|>\n"
CHATML = ("{% for m in messages %}{{ '<s>' + m['role'] + '\n' + m['content'] + '</s>' + '\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<s>assistant\n' }}{% endif %}")
# answers rendered differently after the first user turn: rendered texts cannot be mapped back
IRREGULAR = ("{% for m in messages %}{% if m['role'] == 'assistant' and loop.index > 2 %}[late]{% endif %}"
             "<{{ m['role'] }}>{{ m['content'] }}</s>{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}")
USER = [{"role": "user", "content": "How do I bake bread?"}]
ANSWER = [{"role": "assistant", "content": "Mix flour and water."}]


def encoder(template: str | None, chat: bool = True) -> Encoder:
    tok = _bpe_tokenizer(template)
    tok.add_special_tokens({"pad_token": "<|pad|>"})
    return Encoder(tok, 64, pair_template=False, chat=chat)


def ids(enc: Encoder, prompt: Any, response: Any) -> list[int]:
    return enc.encode_texts(prompt, [response]).input_ids[0]


def test_the_turn_is_learned_from_the_template() -> None:
    fmt = ChatFormat.of(encoder(CHATML).tokenizer)
    assert (fmt.header, fmt.lead, fmt.suffix, fmt.problem) == ("<s>assistant\n", "", "</s>\n", "")
    assert set(fmt.ends) == {"</s>\n", "</s>", "<|pad|>"}
    assert fmt.content("Mix.</s>") == fmt.content("Mix.</s>\n") == fmt.content("Mix.</s><|pad|><|pad|>") == "Mix."
    assert fmt.content("Mix.\n") == "Mix.\n"  # the content's own whitespace is kept
    plain = ChatFormat.of(encoder(None).tokenizer)  # no template: rewardkit's hh-style one
    assert (plain.header, plain.lead, plain.suffix) == ("\n\nAssistant:", " ", "")
    assert plain.content(" Mix.</s>", after_header=True) == "Mix."
    assert "differently depending on the conversation" in ChatFormat.of(encoder(IRREGULAR).tokenizer).problem


@pytest.mark.parametrize("template", [CHATML, None])
def test_strings_score_as_the_messages_trained_on(template: str | None) -> None:
    enc = encoder(template)
    want = ids(enc, USER, ANSWER)
    text = ANSWER[0]["content"]
    assert ids(enc, USER[0]["content"], text) == want  # a plain prompt is one user message
    assert ids(enc, USER, text + enc.tokenizer.eos_token) == want  # a generated ending is cut back
    rendered = enc.render(USER, ANSWER)[0]
    assert ids(enc, rendered, text) == want  # a prompt already rendered by the template
    # a model trained on plain text keeps strings as they are
    assert ids(encoder(template, chat=False), USER[0]["content"], text) != want


def test_an_irregular_template_refuses_rendered_prompts() -> None:
    enc = encoder(IRREGULAR)
    assert ids(enc, USER[0]["content"], "Mix.") == ids(enc, USER, [{"role": "assistant", "content": "Mix."}])
    with pytest.raises(RenderError, match="send the conversation as chat messages"):
        enc.encode_texts("<user>How?</s><assistant>", ["Mix."])


def test_splitter_maps_every_text_form_back() -> None:
    enc = encoder(CHATML)
    tok = enc.tokenizer
    want = ids(enc, USER, ANSWER)
    ptext = tok.apply_chat_template(USER, tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(USER + ANSWER, tokenize=False)
    text = ANSWER[0]["content"]
    splitter = TextSplitter(enc)
    for query, prompt in [(ptext + text + "</s>", None), (ptext + text + "</s>", ptext), (full, None),
                          (full[len("<s>"):], None), (ptext + text + "</s><|pad|>", None), (ptext + text, None),
                          ("<|pad|>" + full, None)]:
        spec = splitter.split(query, prompt, "query[0]")
        assert ids(enc, spec.prompt, spec.responses[0]) == want, query
    with pytest.raises(BadRequest, match=r"query\[0\]: no assistant turn"):
        splitter.split("How do I bake bread? Mix flour and water.", None, "query[0]")
    with pytest.raises(BadRequest, match="send chat messages"):
        TextSplitter(encoder(IRREGULAR)).split("<user>How?</s><assistant>Mix.</s>", None, "input")
