"""Multi-attribute rating tables: columns, missing/bad/out-of-range values, scaling, weights, pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rewardkit.data.attributes.options import parse_ranges, parse_weights, resolve_weights
from rewardkit.data.attributes.pairs import combine, pair_score_weights, pairs_from_records
from rewardkit.data.attributes.table import (
    AttributeOptions,
    RatedResponse,
    load_attribute_table,
    parse_columns,
    read_attribute_table,
    resolve_ranges,
    split_records,
)
from rewardkit.data.ratings import RatingOptions
from rewardkit.data.readers import iter_rows
from rewardkit.errors import DataError, UsageError
from rewardkit.model.attribute_head import Scaling, fit_scaling, target_matrix

# HelpSteer-shaped: header is line 1, so the row "b" below is line 3. Row 4 misses verbosity (empty
# cell), row 5 misses everything, row 6 re-rates row 2's answer.
CSV = """prompt,response,helpfulness,verbosity,source
p1,a,4,1,x
p1,b,1,3,y
p2,c,3,,x
p2,d,,,z
p1,a,2,1,x
"""


def opts(**kw: object) -> AttributeOptions:
    return AttributeOptions(**kw)  # type: ignore[arg-type]


@pytest.fixture
def table_csv(tmp_path: Path) -> Path:
    p = tmp_path / "ratings.csv"
    p.write_text(CSV)
    return p


# --------------------------------------------------------------------------------------- reading


def test_named_columns_missing_values_are_none_and_empty_rows_dropped(table_csv: Path) -> None:
    t = read_attribute_table(iter_rows(table_csv), opts(score_column="verbosity, helpfulness"), str(table_csv))
    assert t.attributes == ["verbosity", "helpfulness"]  # the order asked for
    assert [(r.prompt, r.response, r.values, r.where) for r in t.records] == [
        ("p1", "a", [1.0, 4.0], f"{table_csv}:2"),
        ("p1", "b", [3.0, 1.0], f"{table_csv}:3"),
        ("p2", "c", [None, 3.0], f"{table_csv}:4"),  # empty cell: masked, not 0
        ("p1", "a", [1.0, 2.0], f"{table_csv}:6")]
    assert [str(d) for d in t.dropped] == [f"{table_csv}:5: no value in any attribute column (verbosity, helpfulness)"]
    assert t.observed() == [3, 4] and t.rows == 5 and not t.problems
    assert "values per attribute: verbosity 3, helpfulness 4" in t.notes[0]


def test_auto_takes_numeric_columns_even_when_the_first_row_misses_one(tmp_path: Path) -> None:
    p = tmp_path / "r.jsonl"
    rows = [{"question": "q", "answer": "a", "tag": "x", "helpfulness": 3, "coherence": None},
            {"question": "q", "answer": "b", "tag": "7", "helpfulness": "2", "coherence": 4.5}]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    t = load_attribute_table(str(p), opts(attributes="auto"))
    # 'tag' starts with a non-number, so it is not an attribute; coherence's first value is on row 2
    assert t.attributes == ["helpfulness", "coherence"]
    assert [r.values for r in t.records] == [[3.0, None], [2.0, 4.5]]


def test_absent_key_in_jsonl_is_missing(tmp_path: Path) -> None:
    p = tmp_path / "r.jsonl"
    p.write_text('{"prompt": "q", "response": "a", "x": 1, "y": 2}\n{"prompt": "q", "response": "b", "x": 0}\n')
    t = load_attribute_table(str(p), opts(score_column="x,y"))
    assert [r.values for r in t.records] == [[1.0, 2.0], [0.0, None]]


def test_non_numeric_value_is_a_data_error_with_file_line(tmp_path: Path) -> None:
    p = tmp_path / "r.csv"
    p.write_text("prompt,response,h,v\nq,a,3,1\nq,b,great,1\nq,c,2,true\nq,d,nan,1\n")
    with pytest.raises(DataError) as e:
        load_attribute_table(str(p), opts(score_column="h,v"))
    msg = str(e.value)
    assert "3 invalid record(s)" in msg
    assert f"{p}:3: field 'h' must be a number, got 'great'" in msg
    assert f"{p}:4: field 'v' must be a number, got 'true'" in msg
    assert f"{p}:5: field 'h' must be a finite number, got 'nan'" in msg
    assert "--skip-invalid" in msg
    t = load_attribute_table(str(p), opts(score_column="h,v"), skip_invalid=True)
    assert [r.response for r in t.records] == ["a"] and len(t.problems) == 3


def test_bool_in_jsonl_is_not_a_number(tmp_path: Path) -> None:
    p = tmp_path / "r.jsonl"
    p.write_text('{"prompt": "q", "response": "a", "h": true}\n')
    with pytest.raises(DataError, match=r"r.jsonl:1: field 'h' must be a number, got bool True"):
        load_attribute_table(str(p), opts(score_column="h"))


def test_out_of_range_names_file_line_and_flag(tmp_path: Path) -> None:
    p = tmp_path / "r.csv"
    p.write_text("prompt,response,h,v\nq,a,4,2\nq,b,5,1\nq,c,0,3\n")
    with pytest.raises(DataError) as e:
        load_attribute_table(str(p), opts(score_column="h,v", score_range="0:4,v=0:2"))
    assert f"{p}:3: field 'h' = 5 is outside --score-range 0:4" in str(e.value)
    assert f"{p}:4: field 'v' = 3 is outside --score-range 0:2" in str(e.value)


def test_parquet_table(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    p = tmp_path / "r.parquet"
    pq.write_table(pa.table({"prompt": ["q", "q"], "response": ["a", "b"], "h": [1.0, None]}), p)
    t = load_attribute_table(str(p), opts(attributes="auto"))
    assert t.attributes == ["h"] and [r.values for r in t.records] == [[1.0]]
    assert [r.where for r in t.records] == [f"{p}:row 1"]  # row 2 has no value: dropped, not zero
    assert [d.where for d in t.dropped] == [f"{p}:row 2"]


def test_column_errors(table_csv: Path) -> None:
    with pytest.raises(DataError, match=r"--score-column 'correctness' not a column"):
        load_attribute_table(str(table_csv), opts(score_column="helpfulness,correctness"))
    with pytest.raises(UsageError, match="needs the attribute columns"):
        load_attribute_table(str(table_csv), opts())
    with pytest.raises(DataError, match="no such file"):
        load_attribute_table(str(table_csv) + ".missing", opts(attributes="auto"))
    with pytest.raises(UsageError, match="'prompt' is the prompt/response column"):
        load_attribute_table(str(table_csv), opts(score_column="prompt,helpfulness"))


def test_unreadable_rows_are_problems(tmp_path: Path) -> None:
    p = tmp_path / "r.jsonl"
    p.write_text('{"prompt": "q", "response": "a", "h": 1}\nnot json\n{"prompt": "", "response": "b", "h": 2}\n')
    t = load_attribute_table(str(p), opts(score_column="h"), skip_invalid=True)
    assert [str(x) for x in t.problems] == [f"{p}:2: not valid JSON (Expecting value at column 1)",
                                          f"{p}:3: field 'prompt' is empty"]


# --------------------------------------------------------------------------------------- flags


def test_parse_columns() -> None:
    assert parse_columns(" a, b ,c") == ["a", "b", "c"]
    for bad, why in (("a,,b", "expected NAME"), ("a,a", "listed twice"), ("", "expected NAME")):
        with pytest.raises(UsageError, match=f"--score-column: .*{why}"):
            parse_columns(bad)


def test_parse_and_resolve_ranges() -> None:
    assert parse_ranges("0:4,verbosity=-1:2.5") == {None: (0.0, 4.0), "verbosity": (-1.0, 2.5)}
    assert resolve_ranges("0:4,verbosity=0:2", ["helpfulness", "verbosity"]) == [(0, 4), (0, 2)]
    assert resolve_ranges("verbosity=0:2", ["helpfulness", "verbosity"]) == [None, (0, 2)]
    assert resolve_ranges(None, ["a"]) == [None]
    for bad, why in (("4:0", "LO must be below HI"), ("0-4", "expected LO:HI"), ("0:x", "'x' is not a number"),
                     ("0:4,1:5", "default range given twice"), ("=0:1", "missing attribute name")):
        with pytest.raises(UsageError, match=f"--score-range.*{why}"):
            parse_ranges(bad)
    with pytest.raises(UsageError, match=r"--score-range: no attribute 'colour'"):
        resolve_ranges("colour=0:1", ["helpfulness"])


def test_parse_and_resolve_weights() -> None:
    assert parse_weights("helpfulness=1, verbosity=-0.3") == {"helpfulness": 1.0, "verbosity": -0.3}
    assert resolve_weights("verbosity=-0.3,helpfulness=1", ["helpfulness", "correctness", "verbosity"]) == \
        [1.0, 0.0, -0.3]
    assert resolve_weights(None, ["a", "b", "c", "d"]) == [0.25] * 4  # default: mean of the attributes
    with pytest.raises(UsageError, match=r"--attribute-weights: no attribute 'helpfullness' \(attributes are "
                                         r"helpfulness, verbosity\)"):
        resolve_weights("helpfullness=1", ["helpfulness", "verbosity"])
    with pytest.raises(UsageError, match=r"--attribute-weights verbosity: 'lots' is not a number"):
        parse_weights("verbosity=lots")
    with pytest.raises(UsageError, match=r"--attribute-weights: expected NAME=WEIGHT, got 'verbosity'"):
        parse_weights("verbosity")
    with pytest.raises(UsageError, match="given twice"):
        parse_weights("a=1,a=2")
    with pytest.raises(UsageError, match="every weight is 0"):
        resolve_weights("a=0", ["a", "b"])


def test_options_validate() -> None:
    opts(score_column="a,b", score_range="0:4", attribute_weights="a=1").validate()
    for kw, why in (({"attributes": "all"}, "--attributes must be 'auto'"),
                    ({"attributes": "auto", "score_column": "a"}, "not both"),
                    ({"target_scaling": "minmax"}, "--target-scaling must be one of"),
                    ({"regression_loss": "l1"}, "--regression-loss must be one of"),
                    ({"huber_delta": 0.0}, "--huber-delta must be"),
                    ({"attribute_weights": "a=x"}, "--attribute-weights a: 'x' is not a number")):
        with pytest.raises(UsageError, match=why):
            opts(**kw).validate()


# --------------------------------------------------------------------------------------- scaling


def rr(values: list[float | None], prompt: str = "p", response: str = "r") -> RatedResponse:
    return RatedResponse(prompt, response, values, "f:1")


def test_range_scaling_maps_the_stated_range_to_unit_interval() -> None:
    s = fit_scaling("auto", [], [(0, 4), (-1, 1)], ["h", "v"])
    assert s.kind == "range" and s.offset == [0, -1] and s.scale == [4, 2]
    assert s.scale_values([2.0, None]) == [0.5, None]
    assert s.unscale([0.5, 1.0]) == [2.0, 1.0]
    assert Scaling.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_standardize_uses_observed_values_only() -> None:
    recs = [rr([1.0, 5.0]), rr([3.0, None]), rr([None, 5.0])]
    s = fit_scaling("auto", recs, [(0, 4), None], ["h", "v"])  # one range missing -> standardize
    assert s.kind == "standardize"
    assert s.offset == [2.0, 5.0]  # mean of 1, 3 and of 5, 5 (the missing ones are not zeros)
    assert s.scale == [1.0, 1.0]  # pstdev(1, 3) = 1; a constant attribute keeps scale 1
    targets, mask = target_matrix(recs, s)
    assert targets == [[-1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]
    assert mask == [[True, True], [True, False], [False, True]]


def test_range_scaling_needs_ranges_and_none_is_identity() -> None:
    with pytest.raises(UsageError, match="--target-scaling range needs --score-range for v"):
        fit_scaling("range", [], [(0, 4), None], ["h", "v"])
    s = fit_scaling("none", [], [None], ["h"])
    assert s.scale_values([3.0]) == [3.0] and s.unscale([3.0]) == [3.0]
    with pytest.raises(DataError, match="attribute 'v' has no value"):
        fit_scaling("standardize", [rr([1.0, None])], [None, None], ["h", "v"])


def test_combine_skips_zero_weights_and_refuses_missing_weighted_values() -> None:
    assert combine([4.0, 2.0, None], [1.0, -0.5, 0.0]) == 3.0
    assert combine([4.0, None], [1.0, -0.5]) is None


# --------------------------------------------------------------------------------------- pairs


def test_pairs_on_the_combined_score_through_the_ratings_converter() -> None:
    recs = [rr([4.0, 1.0], "p1", "a"), rr([1.0, 3.0], "p1", "b"), rr([3.0, 0.0], "p1", "c"),
            rr([2.0, None], "p2", "d"), rr([1.0, 1.0], "p2", "e"), rr([2.0, 2.0], "p3", "f")]
    for r, line in zip(recs, range(2, 8)):
        r.where = f"f:{line}"
    # combined = h - 0.5 v: a 3.5, b -0.5, c 3, d unscored, e 0.5, f 1
    out = pairs_from_records(recs, ["h", "v"], [1.0, -0.5], "combined", RatingOptions())
    assert [(c.prompt, c.chosen, c.rejected, c.margin) for c in out.comparisons] == [("p1", "a", "b", 4.0)]
    assert [str(d) for d in out.dropped] == [
        "f:6: prompt 'p2' (1 answer): only one answer, no pair",  # d lacks v, so e stands alone
        "f:7: prompt 'p3' (1 answer): only one answer, no pair"]
    assert "1 rows lack a value 'combined' needs" in out.notes[0]
    by_h = pairs_from_records(recs, ["h", "v"], [1.0, -0.5], "h", RatingOptions(ratings_mode="all-pairs"))
    assert [(c.chosen, c.rejected, c.margin) for c in by_h.comparisons] == [
        ("a", "c", 1.0), ("a", "b", 3.0), ("c", "b", 2.0), ("d", "e", 1.0)]


def test_pair_attribute_errors() -> None:
    assert pair_score_weights("v", ["h", "v"], [1.0, 1.0]) == [0.0, 1.0]
    with pytest.raises(UsageError, match=r"--pair-attribute: no attribute 'x'"):
        pair_score_weights("x", ["h", "v"], [1.0, 1.0])
    with pytest.raises(UsageError, match="--ratings-mode ranking does not apply"):
        pairs_from_records([], ["h"], [1.0], "combined", RatingOptions(ratings_mode="ranking"))


def test_split_is_prompt_disjoint_and_seeded() -> None:
    recs = [rr([float(i)], f"p{i % 7}", f"r{i}") for i in range(40)]
    train, held = split_records(recs, 0.3, seed=1)
    assert {r.prompt for r in train}.isdisjoint({r.prompt for r in held})
    assert len(train) + len(held) == 40 and held
    assert split_records(recs, 0.3, seed=1) == (train, held)


def test_uncentered_scaling_for_bias_less_heads() -> None:
    s = fit_scaling("range", [], [(1, 5)], ["h"], center=False)
    assert s.offset == [0.0] and s.scale == [4.0]
    s = fit_scaling("standardize", [rr([1.0]), rr([3.0])], [None], ["h"], center=False)
    assert s.offset == [0.0] and s.scale == [1.0]
    with pytest.raises(UsageError, match="--pairwise-weight must be"):
        opts(pairwise_weight=-1.0).validate()


def test_head_config_and_meta_round_trip() -> None:
    from rewardkit.model.attribute_head import RegressionMeta, head_config

    cfg = head_config(["helpfulness", "verbosity"])
    assert cfg == {"num_labels": 2, "problem_type": "regression", "id2label": {0: "helpfulness", 1: "verbosity"},
                   "label2id": {"helpfulness": 0, "verbosity": 1}}
    meta = RegressionMeta(["helpfulness", "verbosity"], [1.0, -0.3], Scaling("range", [0.0, 0.0], [4.0, 2.0]))
    stored = json.loads(json.dumps(meta.to_meta()))
    assert stored["attribute_weights"] == {"helpfulness": 1.0, "verbosity": -0.3}
    back = RegressionMeta.from_meta(stored, 2, "m/config.json")
    assert back == meta
    # outputs 0.5, 0.5 -> values 2, 1 -> reward 2 - 0.3
    assert back.as_dict([0.5, 0.5]) == {"helpfulness": 2.0, "verbosity": 1.0}
    assert abs(back.reward([0.5, 0.5]) - 1.7) < 1e-12
    folded = RegressionMeta.from_meta({**stored, "scaling": {**stored["scaling"], "folded": True}}, 2, "m")
    assert folded.as_dict([2.0, 1.0]) == {"helpfulness": 2.0, "verbosity": 1.0}  # logits already in units
    assert RegressionMeta.from_meta({"loss": "bt"}, 1, "m") is None  # a pairwise model
    with pytest.raises(UsageError, match="m/config.json: config.rewardkit names attributes"):
        RegressionMeta.from_meta(stored, 3, "m/config.json")
