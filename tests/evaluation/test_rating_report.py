"""Per-attribute scatter PNGs and the HTML fragment for the evaluation page."""

from __future__ import annotations

import random
import struct
from html.parser import HTMLParser
from pathlib import Path

from rewardkit.evaluation.rating_metrics import regression_metrics
from rewardkit.evaluation.rating_report import _jitter, attribute_html, plot_file_name, write_attribute_plots


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def sample(n: int = 80) -> tuple[list[list[float]], list[list[float | None]]]:
    rng = random.Random(0)
    true: list[list[float | None]] = []
    pred = []
    for i in range(n):
        h = float(rng.randint(0, 4))
        v = None if i % 5 == 0 else rng.uniform(-1, 1)
        true.append([h, v, None])  # the third attribute is never rated here
        pred.append([h + rng.gauss(0, 0.5), (v or 0.0) + rng.gauss(0, 0.1), 0.0])
    return pred, true


def test_plots_and_fragment(tmp_path: Path) -> None:
    pred, true = sample()
    names = ["helpfulness", "a/b <c>", "never rated"]
    metrics = regression_metrics(pred, true, names, pair_rewards=[(1.0, 0.0)] * 3 + [(0.0, 1.0)])
    plots = write_attribute_plots(tmp_path, pred, true, names, metrics["attributes"])
    assert plots == [("scatter-00-helpfulness.png", "helpfulness"), ("scatter-01-a-b-c.png", "a/b <c>")]
    for fname, _ in plots:
        w, h = png_size(tmp_path / fname)
        assert (w, h) == (528, 484)
    page = attribute_html(metrics, plots)
    assert "&lt;c&gt;" in page and "<c>" not in page  # names are escaped
    assert "75.00%</b> of 4 pairs" in page
    assert "never rated</td><td class=\"num\">0</td>" in page and "n/a" in page

    class Images(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.srcs: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "img":
                self.srcs.append(dict(attrs)["src"] or "")

    parser = Images()
    parser.feed(page)
    assert parser.srcs == [f for f, _ in plots] and all((tmp_path / s).is_file() for s in parser.srcs)


def test_jitter_only_for_few_levels_and_seeded() -> None:
    few = [0.0, 1.0, 2.0, 2.0, 4.0]
    j = _jitter(few)
    assert j != few and j == _jitter(few)
    assert all(abs(a - b) <= 0.15 for a, b in zip(j, few))  # smallest gap 1 -> at most 0.15
    many = [i / 10 for i in range(30)]
    assert _jitter(many) == many


def test_file_names_are_safe_and_unique() -> None:
    assert plot_file_name("../../etc", 3) == "scatter-03-etc.png"
    assert plot_file_name("???", 0) == "scatter-00-attribute.png"
    assert plot_file_name("x", 1) != plot_file_name("x", 2)


def test_attribute_report_of_a_training_run_has_the_loss_curve(tmp_path: Path) -> None:
    import json

    from rewardkit.evaluation.rating_report import write_attribute_report
    from rewardkit.evaluation.report import LOSS_PLOT, TrainingRun

    pred, true = sample(40)
    names = ["helpfulness", "verbosity", "never rated"]
    metrics = regression_metrics(pred, true, names)
    log = tmp_path / "metrics.jsonl"
    log.write_text("".join(json.dumps({"split": "train", "step": s, "loss": 2.0 / s}) + "\n" for s in range(1, 9)))
    page = write_attribute_report(tmp_path / "rep", metrics, pred, true, names, details={"training data": "t.csv"},
                                  training=TrainingRun(log))
    text = page.read_text()
    assert (tmp_path / "rep" / LOSS_PLOT).is_file() and png_size(tmp_path / "rep" / LOSS_PLOT) == (704, 484)
    assert "<h2>Training</h2>" in text and f'src="{LOSS_PLOT}"' in text and "training data: t.csv" in text
    assert "Last logged train loss <b>0.25</b> (step 8)" in text and "Training used margins" not in text

    plain = write_attribute_report(tmp_path / "eval", metrics, pred, true, names)  # `rewardkit eval --report`
    assert "<h2>Training</h2>" not in plain.read_text() and not (tmp_path / "eval" / LOSS_PLOT).exists()
