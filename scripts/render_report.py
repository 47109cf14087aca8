#!/usr/bin/env python3
"""Open an evaluation report in headless Chromium: screenshot it and check every image loads.

    python scripts/render_report.py OUT/report/report.html -o report.png

Prints one line per <img> (src, loaded or not, natural size) and exits 0 when every image on
the page loaded and there are at least --expect-images of them, 1 otherwise, 2 when no
Chromium is found. Chromium on Debian/Ubuntu: `apt-get install chromium`.

How the check works: a copy of the page with a small script added is written next to the
original (so relative image paths resolve the same way), loaded with ``--dump-dom``, and the
script's verdict read back from the DOM. The copy is deleted afterwards; the report itself
contains no scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PROBE = """<script>
window.addEventListener("load", function () {
  var rows = Array.prototype.map.call(document.images, function (img) {
    return {src: img.getAttribute("src"), loaded: img.complete && img.naturalWidth > 0,
            width: img.naturalWidth, height: img.naturalHeight};
  });
  var out = document.createElement("pre");
  out.id = "rewardkit-image-check";
  out.textContent = JSON.stringify(rows);
  document.body.appendChild(out);
});
</script>
"""
RESULT = re.compile(r'<pre id="rewardkit-image-check">(.*?)</pre>', re.S)


def find_browser(explicit: str | None = None) -> str | None:
    if explicit:
        return explicit if shutil.which(explicit) else None
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


def _chromium(browser: str, profile: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    # --no-sandbox: Chromium refuses to start as root (containers, CI) with its sandbox on; the
    # page is a local file we wrote, not untrusted content.
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           "--disable-extensions", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def check_images(browser: str, page: Path, profile: str) -> list[dict]:
    """Load a probe copy of ``page`` and return, per <img>, whether the browser decoded it."""
    text = page.read_text(encoding="utf-8")
    probe_text = text.replace("</body>", PROBE + "</body>") if "</body>" in text else text + PROBE
    fd, name = tempfile.mkstemp(prefix=".render-check-", suffix=".html", dir=page.parent)
    probe = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(probe_text)
        done = _chromium(browser, profile, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    finally:
        probe.unlink(missing_ok=True)
    found = RESULT.search(done.stdout)
    if not found:
        raise RuntimeError(f"no image check in the browser's DOM output (exit {done.returncode}):\n"
                           f"{done.stderr[-2000:]}")
    import html

    return json.loads(html.unescape(found.group(1)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", type=Path, help="report.html written by `rewardkit eval --report`")
    ap.add_argument("-o", "--output", type=Path,
                    help="screenshot PNG (default: report.screenshot.png beside the report)")
    ap.add_argument("--width", type=int, default=1200)
    ap.add_argument("--height", type=int, default=3000, help="viewport height; the screenshot covers this much")
    ap.add_argument("--expect-images", type=int, default=3)
    ap.add_argument("--chromium", help="browser executable (default: the first of %s on PATH)" % ", ".join(BROWSERS))
    args = ap.parse_args(argv)

    if not args.report.is_file():
        print(f"render_report: no such file: {args.report}", file=sys.stderr)
        return 2
    browser = find_browser(args.chromium)
    if browser is None:
        print("render_report: no Chromium found (apt-get install chromium)", file=sys.stderr)
        return 2
    page = args.report.resolve()
    shot = (args.output or page.with_suffix(".screenshot.png")).resolve()
    with tempfile.TemporaryDirectory(prefix="rewardkit-chromium-") as profile:
        images = check_images(browser, page, profile)
        done = _chromium(browser, profile, f"--window-size={args.width},{args.height}",
                         f"--screenshot={shot}", page.as_uri())
    ok = all(i["loaded"] for i in images) and len(images) >= args.expect_images
    for i in images:
        print(f"{'ok  ' if i['loaded'] else 'FAIL'} {i['src']} ({i['width']}x{i['height']})")
    if done.returncode != 0 or not shot.is_file():
        print(f"render_report: screenshot failed (exit {done.returncode}): {done.stderr[-1000:]}", file=sys.stderr)
        return 1
    print(f"{len(images)} images, {'all loaded' if ok else 'NOT all loaded'}; screenshot: {shot}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
