"""Every input shape loads into the same Comparison records; bad records name file and line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import pairs_records, write_jsonl

from rewardkit.data.formats import parse_record
from rewardkit.data.loading import load_comparisons, split_by_prompt
from rewardkit.errors import DataError

HH = {"chosen": "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: How do I cook rice?\n\nAssistant: Rinse it, then simmer.",
      "rejected": "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: How do I cook rice?\n\nAssistant: I don't know."}


def test_explicit_record() -> None:
    [c] = parse_record({"prompt": "p", "chosen": "a", "rejected": "b", "margin": 1.5, "subset": "chat"})
    assert (c.prompt, c.responses, c.margin, c.subset) == ("p", ["a", "b"], 1.5, "chat")


def test_implicit_prompt_is_shared_prefix_up_to_last_assistant_turn() -> None:
    [c] = parse_record(HH)
    assert c.prompt == "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: How do I cook rice?\n\nAssistant:"
    assert c.responses == [" Rinse it, then simmer.", " I don't know."]


def test_implicit_prompt_when_responses_share_their_first_words() -> None:
    [c] = parse_record({"chosen": "\n\nHuman: q\n\nAssistant: I think yes", "rejected": "\n\nHuman: q\n\nAssistant: I think no"})
    assert c.prompt.endswith("Assistant:") and c.responses == [" I think yes", " I think no"]


def test_implicit_empty_final_turn_is_a_real_answer() -> None:
    [c] = parse_record({"chosen": "\n\nHuman: steal a puppy?\n\nAssistant: ",
                        "rejected": "\n\nHuman: steal a puppy?\n\nAssistant: Sure, here is how."})
    assert c.responses[0] == " "


def test_conversational_implicit_and_explicit_prompt() -> None:
    user = {"role": "user", "content": "What is 2+2?"}
    good, bad = {"role": "assistant", "content": "4"}, {"role": "assistant", "content": "5"}
    [c] = parse_record({"chosen": [user, good], "rejected": [user, bad]})
    assert c.prompt == [user] and c.responses == [[good], [bad]]
    [c2] = parse_record({"prompt": [user], "chosen": [good], "rejected": [bad]})
    assert c2.prompt == [user] and c2.responses == [[good], [bad]]
    [c3] = parse_record({"prompt": [user], "chosen": "4", "rejected": "5"})
    assert c3.responses == [[good], [bad]]


def test_lmflow_and_aliases(tmp_path: Path) -> None:
    doc = {"type": "text_to_textlist", "instances": [
        {"prompt": "p1", "positive": "good", "negative": "bad"},
        {"question": "p2", "response_j": "yes", "response_k": "no"}]}
    path = tmp_path / "lmflow.json"
    path.write_text(json.dumps(doc, indent=2))
    loaded = load_comparisons(str(path))
    assert [(c.prompt, c.responses) for c in loaded.comparisons] == [("p1", ["good", "bad"]), ("p2", ["yes", "no"])]


@pytest.mark.parametrize("name", ["d.jsonl", "d.jsonl.gz", "d.json", "d.csv", "d.parquet", "d.csv.gz"])
def test_file_types(tmp_path: Path, name: str) -> None:
    import gzip

    import pandas as pd

    recs = pairs_records(5)
    path = tmp_path / name
    if name.startswith("d.jsonl"):
        write_jsonl(path, recs, gz=name.endswith(".gz"))
    elif name == "d.json":
        path.write_text(json.dumps(recs))
    elif name == "d.csv":
        pd.DataFrame(recs).to_csv(path, index=False)
    elif name == "d.csv.gz":
        with gzip.open(path, "wt") as f:
            pd.DataFrame(recs).to_csv(f, index=False)
    else:
        pd.DataFrame(recs).to_parquet(path)
    loaded = load_comparisons(str(path))
    assert [c.responses[0] for c in loaded.comparisons] == [r["chosen"] for r in recs]


BAD = [
    ('{"prompt": "p", "chosen": "a", "rejected": "b"', "not valid JSON"),
    ({"prompt": "p", "chosen": "a"}, "missing field 'rejected'"),
    ({"prompt": "p", "chosen": "", "rejected": "b"}, "field 'chosen' is empty"),
    ({"prompt": "p", "chosen": "same", "rejected": "same"}, "chosen and rejected are identical"),
    ({"prompt": "p", "chosen": 3, "rejected": "b"}, "field 'chosen' must be a string"),
    ({"prompt": "p", "chosen": "a", "rejected": "b", "margin": "big"}, "field 'margin' must be a number"),
    ({"chosen": "no markers a", "rejected": "no markers b"}, "no 'prompt' field"),
    ([1, 2], "expected a JSON object"),
]


@pytest.mark.parametrize("bad,reason", BAD)
def test_invalid_record_reports_file_line_reason(tmp_path: Path, bad: object, reason: str) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", pairs_records(2) + [bad] + pairs_records(1))
    with pytest.raises(DataError) as e:
        load_comparisons(str(path))
    assert f"{path}:3: " in str(e.value) and reason in str(e.value)


def test_skip_invalid_counts_and_keeps_the_rest(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", pairs_records(4) + ["{oops", {"prompt": "p", "chosen": "x"}])
    loaded = load_comparisons(str(path), skip_invalid=True)
    assert len(loaded.comparisons) == 4 and len(loaded.problems) == 2 and loaded.records == 6
    assert [p.where for p in loaded.problems] == [f"{path}:5", f"{path}:6"]


def test_csv_with_wrong_columns(tmp_path: Path) -> None:
    path = tmp_path / "wrong.csv"
    path.write_text("question,answer\nq,a\n")
    with pytest.raises(DataError, match=r"wrong.csv:1: CSV columns \['question', 'answer'\]"):
        load_comparisons(str(path))


def test_csv_line_numbers_count_the_header(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("prompt,chosen,rejected\np,a,b\np2,,b\n")
    with pytest.raises(DataError, match=r"d.csv:3: field 'chosen' is empty"):
        load_comparisons(str(path))


def test_json_array_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text('[\n  {"prompt": "p", "chosen": "a", "rejected": "b"},\n  {"prompt": "p", "chosen": "a"}\n]\n')
    with pytest.raises(DataError, match=r"d.json:3: missing field 'rejected'"):
        load_comparisons(str(path))


def test_missing_file_and_unknown_type(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_comparisons(str(tmp_path / "nope.jsonl"))
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        load_comparisons(str(tmp_path / "d.txt"))


def test_split_is_prompt_disjoint_and_seeded() -> None:
    comps = []
    for i in range(40):
        for j in range(1 + i % 3):  # prompts with 1-3 comparisons each
            [c] = parse_record({"prompt": f"p{i}", "chosen": f"a{j}", "rejected": f"b{j}"})
            comps.append(c)
    train, held = split_by_prompt(comps, 0.25, seed=1)
    assert len(train) + len(held) == len(comps)
    assert not {c.prompt for c in train} & {c.prompt for c in held}
    assert abs(len(held) - 0.25 * len(comps)) <= 3
    again, _ = split_by_prompt(comps, 0.25, seed=1)
    other, _ = split_by_prompt(comps, 0.25, seed=2)
    assert [c.prompt for c in again] == [c.prompt for c in train]
    assert [c.prompt for c in other] != [c.prompt for c in train]


def test_real_hh_rlhf_file_loads_every_pair(shared_hh: Path) -> None:
    loaded = load_comparisons(str(shared_hh))
    assert len(loaded.comparisons) == 1849 and not loaded.problems


def test_bundled_sample_ships_with_its_licence() -> None:
    """The quickstart's data: 600 hh-rlhf pairs inside the package, the MIT licence beside them."""
    from pathlib import Path

    from rewardkit.data.loading import bundled_sample, load_comparisons

    path = Path(bundled_sample())
    assert path.is_file() and (path.parent / "LICENSE.hh-rlhf").is_file()
    loaded = load_comparisons(str(path))
    assert len(loaded.comparisons) == 600 and not loaded.problems


@pytest.mark.parametrize("source", ["data/prefs.jsonl", "prefs.csv", "./prefs", "runs/a/b", "~/x.parquet.gz",
                                    "data/prefs.jsonl:train"])
def test_a_path_looking_source_is_never_sent_to_the_hub(source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mistyped local path says "no such file" at once (it once waited 35 s on Hub retries)."""
    import huggingface_hub

    def no_hub(*_a, **_k):
        raise AssertionError("a local path was sent to the Hub")

    monkeypatch.setattr(huggingface_hub, "dataset_info", no_hub)
    with pytest.raises(DataError, match=f"^{re.escape(source)}: no such file$"):
        load_comparisons(source)


def test_an_unreachable_hub_fails_fast_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets
    import huggingface_hub

    def unreachable(*_a, **_k):
        raise ConnectionError("[Errno -2] Name or service not known")

    def no_load(*_a, **_k):
        raise AssertionError("datasets must not start (and retry) when the hub is unreachable")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "dataset_info", unreachable)
    monkeypatch.setattr(datasets, "load_dataset", no_load)
    with pytest.raises(DataError) as e:
        load_comparisons("Anthropic/hh-rlhf:test")
    message = str(e.value)
    assert "\n" not in message and "Hugging Face Hub is unreachable" in message and "HF_HUB_OFFLINE=1" in message
