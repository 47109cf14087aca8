"""The HTML evaluation report: files, offline-safety, images that decode, and (when Chromium is
installed) images that a real browser loads."""

from __future__ import annotations

import base64
import json
import random
import shutil
import struct
import subprocess
import sys
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from rewardkit.data.records import Comparison
from rewardkit.evaluation.metrics import pair_metrics, pairs_of
from rewardkit.evaluation.report import LOSS_PLOT, PLOTS, TrainingRun, read_losses, short_source, write_report

ROOT = Path(__file__).resolve().parents[2]
RENDER = ROOT / "scripts" / "render_report.py"
BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


def synthetic(n: int = 60, seed: int = 0) -> tuple[list[Comparison], list[list[float]]]:
    """Pairs whose rewards favour the chosen response, plus one ranking and one nasty prompt."""
    rng = random.Random(seed)
    comps, rewards = [], []
    for i in range(n):
        chosen = "good answer " * rng.randint(1, 20)
        rejected = "bad answer " * rng.randint(1, 20)
        comps.append(Comparison(prompt=f"question {i}", responses=[chosen, rejected], subset="ab"[i % 2],
                                source=f"data.jsonl:{i + 1}"))
        rewards.append([rng.gauss(1.0, 1.0), rng.gauss(0.0, 1.0)])
    comps.append(Comparison(prompt="<script>alert('x')</script> & rank", responses=["a", "bb", "ccc"]))
    rewards.append([-1.0, 0.0, 5.0])  # every pair of the ranking wrong, the worst mistake of the set
    return comps, rewards


class Page(HTMLParser):
    """Collects what the offline check needs: image sources, every URL-bearing attribute, tags."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.urls: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "action") and value is not None:
                self.urls.append(value)
            if tag == "img" and name == "src":
                self.images.append(value or "")


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG, after checking its signature and the IHDR chunk's CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    body = data[16:29]
    assert struct.unpack(">I", data[29:33])[0] == zlib.crc32(kind + body), "IHDR CRC mismatch"
    assert data.rstrip(b"\0")[-8:-4] == b"IEND", "PNG is truncated"
    return struct.unpack(">II", body[:8])


def check_report_offline(page: Path) -> list[tuple[int, int]]:
    """Every <img> is a relative file beside the page or a data URI, and a valid PNG; no external URL,
    no script. Returns the image sizes."""
    parser = Page()
    parser.feed(page.read_text(encoding="utf-8"))
    assert "script" not in parser.tags and "link" not in parser.tags
    for url in parser.urls:
        assert not url.startswith(("http:", "https:", "//", "/", "file:")), f"external or absolute URL {url!r}"
    sizes = []
    for src in parser.images:
        if src.startswith("data:"):
            header, _, payload = src.partition(",")
            assert header == "data:image/png;base64", header
            data = base64.b64decode(payload, validate=True)
        else:
            path = (page.parent / src).resolve()
            assert path.parent == page.parent.resolve() and path.is_file(), f"missing image {src}"
            data = path.read_bytes()
        sizes.append(png_size(data))
    return sizes


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    comps, rewards = synthetic()
    metrics = pair_metrics(pairs_of(comps, rewards), {"S": ["a", "b"]})
    return write_report(tmp_path_factory.mktemp("report") / "rep", comps, rewards, metrics,
                        details={"model": "tiny", "data": "synthetic"})


def test_report_files_and_images_without_a_browser(report: Path) -> None:
    assert report.name == "report.html"
    assert sorted(p.name for p in report.parent.iterdir()) == sorted([*PLOTS, "report.html", "metrics.json"])
    sizes = check_report_offline(report)
    assert len(sizes) == 3
    assert all(w >= 300 and h >= 200 for w, h in sizes)
    import matplotlib.image

    for name in PLOTS:  # decodes fully, and is not a blank canvas
        pixels = matplotlib.image.imread(report.parent / name)
        assert pixels.std() > 0.05


def test_report_shows_the_metrics_it_was_given(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    metrics = json.loads((report.parent / "metrics.json").read_text())
    assert metrics["pairs"] == 63  # 60 pairs + 3 from the ranking
    assert f"{metrics['accuracy']:.2%}" in text
    assert f"{metrics['ece']:.4g}" in text
    assert "Subsets" in text and "Sections" in text
    assert "prefers longer" in text and "chosen is longer" in text
    assert "<h2>Training</h2>" not in text and not (report.parent / LOSS_PLOT).exists()  # no run behind it


def test_report_shows_ranking_metrics_with_their_meaning(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    metrics = json.loads((report.parent / "metrics.json").read_text())
    # the one 3-way ranking gets rewards [-1, 0, 5]: best response lowest, order reversed
    assert metrics["rankings"] == 1 and metrics["top1_accuracy"] == 0.0 and metrics["kendall_tau"] == -1.0
    assert "top-1 accuracy (best of N)</th><td class=\"num\">0.00%<" in text
    assert "Kendall tau-b</th><td class=\"num\">-1<" in text
    assert "1/(number tied)" in text and "rankings (K &gt;= 3)" in text


def test_report_without_rankings_has_no_ranking_rows(tmp_path: Path) -> None:
    comps = [Comparison(prompt=f"p{i}", responses=["yes", "no"]) for i in range(4)]
    page = write_report(tmp_path, comps, [[1.0, 0.0], [0.0, 1.0], [2.0, 0.5], [1.0, 1.5]])
    text = page.read_text(encoding="utf-8")
    assert "top-1" not in text and "Kendall" not in text
    assert "top1_accuracy" not in json.loads((tmp_path / "metrics.json").read_text())


class Cells(HTMLParser):
    """Visible text and attributes of every <td> of the mistakes table."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[tuple[dict[str, str | None], str]] = []
        self.table_class: str | None = None
        self._in: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and dict(attrs).get("class") == "mistakes":
            self.table_class = "mistakes"
        if tag == "td" and self.table_class:
            self._in = dict(attrs)
            self.cells.append((self._in, ""))

    def handle_data(self, data: str) -> None:
        if self._in is not None:
            attrs, text = self.cells[-1]
            self.cells[-1] = (attrs, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in = None


def test_mistakes_table_shows_file_and_line_with_the_path_as_a_tooltip(tmp_path: Path) -> None:
    deep = "/home/someone/projects/preference-data/2024/cleaned/splits/validation/pairs.jsonl"
    comps = [Comparison(prompt=f"question {i}", responses=["better", "worse"], source=f"{deep}:{17 + i}")
             for i in range(3)]
    page = write_report(tmp_path, comps, [[0.0, 1.0], [0.0, 2.0], [1.0, 0.0]])
    text = page.read_text(encoding="utf-8")
    parser = Cells()
    parser.feed(text)
    sources = [(attrs, shown) for attrs, shown in parser.cells if attrs.get("class") == "source"]
    assert [shown for _, shown in sources] == ["pairs.jsonl:18", "pairs.jsonl:17"]  # worst mistake first
    assert [attrs["title"] for attrs, _ in sources] == [f"{deep}:18", f"{deep}:17"]
    assert all(deep not in shown for _, shown in parser.cells)  # the full path is never the visible text
    # a fixed layout: margin and source get narrow columns, the three texts share the rest
    assert "table.mistakes { table-layout: fixed; width: 100%; }" in text
    assert '<colgroup><col class="margin"><col><col><col><col class="source"></colgroup>' in text


@pytest.mark.parametrize("source, short", [
    ("/a/b/pairs.jsonl:17", "pairs.jsonl:17"), ("pairs.jsonl:3", "pairs.jsonl:3"),
    ("/data/x.parquet:row 5", "x.parquet:row 5"), ("org/name:train:row 2", "name:train:row 2"), ("", ""),
])
def test_short_source(source: str, short: str) -> None:
    assert short_source(source) == short


def metrics_log(path: Path, train: list[tuple[int, float]], held_out: list[tuple[int, float]]) -> Path:
    rows = [json.dumps({"split": "train", "step": s, "loss": v, "accuracy": 0.5, "lr": 1e-4}) for s, v in train]
    rows += [json.dumps({"split": "eval", "step": s, "loss": v, "accuracy": 0.7}) for s, v in held_out]
    path.write_text("\n".join(rows) + '\n{"split": "train", "step": 9, "lo')  # a line cut short by a kill
    return path


def test_read_losses_skips_broken_lines_and_other_rows(tmp_path: Path) -> None:
    log = metrics_log(tmp_path / "metrics.jsonl", [(2, 3.5), (4, 3.25)], [(4, 0.69)])
    with log.open("a") as f:
        f.write('\n{"split": "eval", "step": 6, "accuracy": 0.8}\n{"split": "train", "step": 8, "loss": NaN}\n42\n')
    assert read_losses(log) == ([(2, 3.5), (4, 3.25)], [(4, 0.69)])
    assert read_losses(tmp_path / "absent.jsonl") == ([], [])


@pytest.mark.parametrize("margin", [2.0, None])
def test_training_section_has_the_loss_curve_and_explains_margins(tmp_path: Path, margin: float | None) -> None:
    comps, rewards = synthetic(20)
    log = metrics_log(tmp_path / "metrics.jsonl", [(s, 4.0 - s / 10) for s in range(1, 31)], [(10, 0.7), (30, 0.6)])
    page = write_report(tmp_path / "rep", comps, rewards, training=TrainingRun(log, margin))
    text = page.read_text(encoding="utf-8")
    assert sorted(p.name for p in page.parent.iterdir()) == sorted([*PLOTS, LOSS_PLOT, "report.html", "metrics.json"])
    assert len(check_report_offline(page)) == 4
    import matplotlib.image

    assert matplotlib.image.imread(page.parent / LOSS_PLOT).std() > 0.05
    section = text[text.index("<h2>Training</h2>"):text.index("<h2>Plots</h2>")]
    assert "Last logged train loss <b>1</b> (step 30)" in section
    held_out = json.loads((page.parent / "metrics.json").read_text())["loss"]
    assert f"held-out Bradley-Terry loss <b>{held_out:.4g}</b>" in section
    explained = "Training used margins" in section and "not comparable" in section
    assert explained == (margin is not None)
    assert ("mean m = 2 over the training pairs" in section) == (margin is not None)
    assert ("no margin term, unlike the train loss" in text) == (margin is not None)  # the metrics table's loss row


def test_training_section_without_train_rows_has_no_curve(tmp_path: Path) -> None:
    comps, rewards = synthetic(10)
    log = metrics_log(tmp_path / "metrics.jsonl", [], [(3, 0.7)])
    page = write_report(tmp_path / "rep", comps, rewards, training=TrainingRun(log))
    text = page.read_text(encoding="utf-8")
    assert "<h2>Training</h2>" in text and "no loss curve" in text
    assert not (page.parent / LOSS_PLOT).exists() and len(check_report_offline(page)) == 3


def test_report_escapes_data_text_and_lists_the_worst_mistake_first(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    assert "<script>" not in text
    assert "&lt;script&gt;" in text
    mistakes = text[text.index("Most confident mistakes"):]
    assert mistakes.index("&lt;script&gt;") < mistakes.index("question")  # margin -6: the worst of all
    assert ">-6<" in mistakes


def test_offline_check_catches_a_missing_or_broken_image(report: Path, tmp_path: Path) -> None:
    broken = tmp_path / "rep"
    shutil.copytree(report.parent, broken)
    (broken / "rewards.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(AssertionError):
        check_report_offline(broken / "report.html")
    (broken / "rewards.png").unlink()
    with pytest.raises(AssertionError, match="missing image"):
        check_report_offline(broken / "report.html")


def test_report_handles_constant_rewards_and_equal_lengths(tmp_path: Path) -> None:
    comps = [Comparison(prompt="p", responses=["same", "size"]) for _ in range(3)]
    page = write_report(tmp_path, comps, [[0.5, 0.5]] * 3)
    assert len(check_report_offline(page)) == 3
    assert json.loads((tmp_path / "metrics.json").read_text())["accuracy"] == 0.0


@pytest.mark.skipif(BROWSER is None, reason="no Chromium on PATH (apt-get install chromium)")
def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    done = subprocess.run([sys.executable, str(RENDER), str(report), "-o", str(shot), "--height", "1200"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line.split()[1] for line in done.stdout.splitlines() if line.startswith("ok")] == list(PLOTS)
    assert png_size(shot.read_bytes()) == (1200, 1200)
    assert not list(report.parent.glob(".render-check-*"))  # the probe copy is cleaned up

    broken = tmp_path / "broken"
    shutil.copytree(report.parent, broken)
    (broken / "reliability.png").unlink()
    done = subprocess.run([sys.executable, str(RENDER), str(broken / "report.html"), "-o", str(tmp_path / "b.png")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "FAIL reliability.png" in done.stdout


def test_cli_eval_report_keeps_stdout_one_json_object(bert_dir: Path, tmp_path: Path,
                                                      capfd: pytest.CaptureFixture) -> None:
    from conftest import pairs_records, write_jsonl

    from rewardkit.cli import main

    data = write_jsonl(tmp_path / "pairs.jsonl", [dict(r, subset="ab"[i % 2]) for i, r in enumerate(pairs_records(12))])
    sections = tmp_path / "sections.json"
    sections.write_text(json.dumps({"all": ["a", "b"], "typo": {"c": 1}}))
    capfd.readouterr()
    rc = main(["eval", str(bert_dir), str(data), "--json", "--report", str(tmp_path / "rep"),
               "--sections", str(sections)])
    out, err = capfd.readouterr()
    assert rc == 0, err
    metrics = json.loads(out)
    assert out.count("\n") == 1 and metrics["pairs"] == 12 and set(metrics["sections"]) == {"all"}
    assert not {"top1_accuracy", "kendall_tau", "rankings"} & set(metrics)  # pairs only
    assert "subsets not in" in err and "c" in err  # a mapping typo is reported, not silently dropped
    page = tmp_path / "rep" / "report.html"
    assert f"report: {page}" in err
    assert len(check_report_offline(page)) == 3
    assert json.loads((tmp_path / "rep" / "metrics.json").read_text()) == metrics

    sections.write_text(json.dumps({"all": {"a": "heavy"}}))
    rc = main(["eval", str(bert_dir), str(data), "--json", "--sections", str(sections)])
    out, err = capfd.readouterr()
    assert rc == 2 and out == "" and "--sections" in err and "weight" in err and "Traceback" not in err


def test_cli_eval_json_has_ranking_metrics_for_ranking_data(bert_dir: Path, tmp_path: Path,
                                                            capfd: pytest.CaptureFixture) -> None:
    from conftest import pairs_records, write_jsonl

    from rewardkit.cli import main
    from rewardkit.evaluation.metrics import ranking_metrics
    from rewardkit.model.reward_model import RewardModel

    rankings = [{"prompt": f"Question {i}: which answer?", "ranking": [f"a careful answer {i}", f"an answer {i}",
                                                                       f"no {i}", f"go away {i}"][:3 + i % 2]}
                for i in range(5)]
    data = write_jsonl(tmp_path / "mixed.jsonl", pairs_records(4) + rankings)
    capfd.readouterr()
    rc = main(["eval", str(bert_dir), str(data), "--json", "--report", str(tmp_path / "rep")])
    out, err = capfd.readouterr()
    assert rc == 0, err
    metrics = json.loads(out)
    assert metrics["rankings"] == 5 and metrics["pairs"] == 4 + 3 * 3 + 2 * 6
    rm = RewardModel.from_pretrained(bert_dir, device="cpu")
    expected = ranking_metrics([[rm.score(r["prompt"], x) for x in r["ranking"]] for r in rankings])
    assert metrics["top1_accuracy"] == pytest.approx(expected["top1_accuracy"], abs=1e-6)
    assert metrics["kendall_tau"] == pytest.approx(expected["kendall_tau"], abs=1e-6)
    text = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    assert "top-1 accuracy (best of N)" in text and "Kendall tau-b" in text
