"""The step layout (`rewardkit.encoding.steps`): every step's reward read at its separator; truncation keeps
the latest steps whole; a separator that is not one token is refused naming its flag."""

from __future__ import annotations

import pytest
from conftest import _bpe_tokenizer

from rewardkit.encoding.steps import StepEncoder
from rewardkit.errors import UsageError


@pytest.fixture(scope="module")
def tok():  # type: ignore[no-untyped-def]
    return _bpe_tokenizer()


def test_layout_reads_each_step_at_its_separator(tok) -> None:  # type: ignore[no-untyped-def]
    enc = StepEncoder(tok, 64, "</s>")
    e = enc.encode("Human: How do I bake bread?", ["Mix flour.", "Bake it."], [True, False])
    ids = e.input_ids[0]
    p = tok("Human: How do I bake bread?", add_special_tokens=False)["input_ids"]
    s1, s2 = (tok(s, add_special_tokens=False)["input_ids"] for s in ("Mix flour.", "Bake it."))
    assert ids == list(enc.head) + p + s1 + [enc.separator_id] + s2 + [enc.separator_id]
    assert [ids[i] for i in e.positions] == [enc.separator_id] * 2 and e.positions[-1] == len(ids) - 1
    assert e.labels == [True, False] and not e.truncated and e.dropped == 0


def test_truncation_drops_the_oldest_steps_whole(tok) -> None:  # type: ignore[no-untyped-def]
    steps = [f"Step {i}: mix the flour and the water again." for i in range(12)]
    enc = StepEncoder(tok, 64, "</s>")
    e = enc.encode("Human: How do I bake bread? " * 3, steps, [True] * 11 + [False])
    ids = e.input_ids[0]
    assert len(ids) <= 64 and e.truncated and e.dropped > 0
    assert len(e.positions) == len(e.labels) == 12 - e.dropped and e.labels[-1] is False
    kept = [tok(s, add_special_tokens=False)["input_ids"] + [enc.separator_id] for s in steps[e.dropped:]]
    assert ids[len(ids) - sum(map(len, kept)):] == [t for part in kept for t in part]  # kept steps are whole
    assert enc.encode("short", ["word " * 80]) is None  # a last step longer than the budget cannot be encoded


def test_a_separator_must_be_one_token(tok) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError, match="--step-separator 'xyzzy qq' is .* tokens .*not one"):
        StepEncoder(tok, 64, "xyzzy qq")
