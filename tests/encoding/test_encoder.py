"""Rendering, layouts and response-preserving truncation."""

from __future__ import annotations

from pathlib import Path

import pytest

from rewardkit.data.formats import parse_record
from rewardkit.encoding.encoder import Encoder, render_plain
from rewardkit.model.backbone import load_backbone, make_encoder


@pytest.fixture(scope="module")
def bert_encoder(bert_dir: Path):
    model, tok = load_backbone(str(bert_dir))
    return make_encoder(model, tok, 32), tok


@pytest.fixture(scope="module")
def llama_encoder(llama_dir: Path):
    model, tok = load_backbone(str(llama_dir))
    return make_encoder(model, tok, 40), tok


def test_encoder_uses_sentence_pair_template(bert_encoder) -> None:
    enc, tok = bert_encoder
    e = enc.encode_texts("how are you", ["fine thanks", "go away"])
    cls, sep = tok.cls_token_id, tok.sep_token_id
    assert e.input_ids[0] == tok("how are you", "fine thanks")["input_ids"]
    assert e.token_type_ids[0] == tok("how are you", "fine thanks")["token_type_ids"]
    assert e.input_ids[0][0] == cls and e.input_ids[0][-1] == sep
    assert e.prompt_len == 1 + 3 + 1 and not e.truncated


def test_decoder_appends_eos(llama_encoder) -> None:
    enc, tok = llama_encoder
    e = enc.encode_texts("Human: hi Assistant:", [" hello", " bye"])
    assert all(s[-1] == tok.eos_token_id for s in e.input_ids)
    assert e.input_ids[0][:e.prompt_len] == e.input_ids[1][:e.prompt_len]
    assert e.token_type_ids is None


def test_long_prompt_loses_its_oldest_tokens_only(bert_encoder) -> None:
    enc, tok = bert_encoder
    prompt = " ".join(f"word{i}" for i in range(60))
    e = enc.encode_texts(prompt, ["the answer is yes", "no"])
    assert e.truncated and max(len(s) for s in e.input_ids) <= 32
    chosen = tok.decode(e.input_ids[0])
    assert chosen.endswith("[SEP] the answer is yes [SEP]")
    assert "word59" in chosen and "word0 " not in chosen  # newest prompt tokens kept
    # both responses see the same (jointly truncated) prompt
    assert e.input_ids[0][:e.prompt_len] == e.input_ids[1][:e.prompt_len]


def test_overlong_response_keeps_its_start_and_final_token(llama_encoder) -> None:
    enc, tok = llama_encoder
    response = " " + " ".join(["good"] * 80)
    e = enc.encode_texts("Human: q Assistant:", [response, " bad"])
    assert e.truncated
    for s in e.input_ids:
        assert len(s) <= 40 and s[-1] == tok.eos_token_id
    start = tok(response, add_special_tokens=False)["input_ids"][:5]
    assert e.input_ids[0][e.prompt_len:e.prompt_len + 5] == start


def test_short_pairs_are_not_truncated(bert_encoder) -> None:
    enc, _ = bert_encoder
    assert not enc.encode_texts("a", ["b", "c"]).truncated


def test_chat_template_rendering(qwen_dir: Path) -> None:
    model, tok = load_backbone(str(qwen_dir))
    enc = make_encoder(model, tok, 64)
    [c] = parse_record({"chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
                        "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "go"}]})
    assert enc.render(c.prompt, c.chosen) == ("<|user|>hi</s><|assistant|>", "hello</s>")


def test_plain_fallback_template_without_chat_template(bert_encoder) -> None:
    enc, _ = bert_encoder
    msgs = [{"role": "user", "content": "hi"}]
    assert enc.render(msgs, [{"role": "assistant", "content": "hello"}]) == ("\n\nHuman: hi\n\nAssistant:", " hello")
    assert render_plain(msgs) == "\n\nHuman: hi"


def test_max_length_must_leave_room(bert_dir: Path) -> None:
    _, tok = load_backbone(str(bert_dir))
    with pytest.raises(ValueError):
        Encoder(tok, 3, pair_template=True)


def test_long_texts_do_not_trigger_the_indexing_errors_warning(bert_dir: Path) -> None:
    """Texts longer than the model are normal input (truncation follows); transformers must not warn."""
    import logging

    from transformers import AutoTokenizer

    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)  # other tests may have quietened transformers
    try:
        tok = AutoTokenizer.from_pretrained(bert_dir)  # a fresh tokenizer: the warning is once per instance
        e = Encoder(tok, 64, pair_template=True).encode_texts("word " * 700, ["yes", "no"])
        assert e.truncated and max(len(s) for s in e.input_ids) <= 64
        assert not any("indexing errors" in m for m in records)
        tok("word " * 700)  # the plain call does warn: the check above can fail
        assert any("indexing errors" in m for m in records)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
