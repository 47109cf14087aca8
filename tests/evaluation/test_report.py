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
from rewardkit.evaluation.report import PLOTS, write_report

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
    assert "subsets not in" in err and "c" in err  # a mapping typo is reported, not silently dropped
    page = tmp_path / "rep" / "report.html"
    assert f"report: {page}" in err
    assert len(check_report_offline(page)) == 3
    assert json.loads((tmp_path / "rep" / "metrics.json").read_text()) == metrics

    sections.write_text(json.dumps({"all": {"a": "heavy"}}))
    rc = main(["eval", str(bert_dir), str(data), "--json", "--sections", str(sections)])
    out, err = capfd.readouterr()
    assert rc == 2 and out == "" and "--sections" in err and "weight" in err and "Traceback" not in err
