"""README.md's snippets run as written, and every relative link in the README and docs/ resolves.

The snippet test makes a folder holding the small files the README names (`prefs.jsonl`,
`heldout.jsonl`, `requests.jsonl`, `feedback.csv`), trains a short model into `rewardkit-out` there
(what the quickstart leaves behind, on 24 pairs instead of 540), then runs every ```bash and ```python
block of README.md in order in that folder: bash blocks with `bash -e`, python blocks with
`python -c`, each in its own subprocess with PYTHONPATH at this checkout and `rewardkit` running this
checkout's code. The first ```bash block (the setup line and the test command) is left out: `.ci/run`
runs it. Port 8000 becomes a free port, and every process group a snippet started (the server) is
stopped at the end.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import pairs_records, rated_rows, write_csv, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))

FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
SNIPPET_TIMEOUT = 300


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block, in order."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]


def readme_snippets() -> list[tuple[str, str]]:
    """The ```bash and ```python blocks the test runs: all of them but the first ```bash block."""
    blocks = [(lang, body) for lang, body in fenced_blocks(README.read_text()) if lang in ("bash", "python")]
    first_bash = next(i for i, (lang, _) in enumerate(blocks) if lang == "bash")
    return blocks[:first_bash] + blocks[first_bash + 1:]


def test_first_bash_block_is_what_ci_runs() -> None:
    """`.ci/run` runs lines 1 and 2 of the first ```bash block: the setup line and the test command."""
    first = next(body for lang, body in fenced_blocks(README.read_text()) if lang == "bash")
    lines = first.splitlines()
    assert lines[0].startswith("pip install torch==") and "rewardkit train" in lines[0]
    assert lines[1].split("#")[0].strip() == "pytest"


def test_readme_has_no_untested_shell_or_python() -> None:
    """Every code block of README.md is a ```bash or ```python block (run below) or data (json, yaml)."""
    langs = {lang for lang, _ in fenced_blocks(README.read_text())}
    assert langs <= {"bash", "python", "json", "yaml"}, f"README.md code blocks the test does not run: {langs}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(work: Path) -> dict[str, str]:
    """The input files the README's snippets name, a `rewardkit` on PATH running this checkout, and the
    environment the snippets run in."""
    write_jsonl(work / "prefs.jsonl", pairs_records(24))
    write_jsonl(work / "heldout.jsonl", pairs_records(32)[24:])
    write_jsonl(work / "requests.jsonl", [
        {"prompt": "How do I boil an egg?", "response": "Simmer it for 8 minutes."},
        {"prompt": "How do I boil an egg?", "response": "Eggs come from hens."},
        {"prompt": "What is the capital of France?", "chosen": "Paris.", "rejected": "Lyon."},
    ])
    write_csv(work / "feedback.csv", rated_rows(n_prompts=16, answers=3))
    bin_dir = work / ".bin"
    bin_dir.mkdir()
    shim = bin_dir / "rewardkit"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m rewardkit "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDKIT_")}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
               PATH=os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
               REWARDKIT_CACHE=str(work / ".cache"), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               TRANSFORMERS_VERBOSITY="error", PYTHONUNBUFFERED="1")
    return env


def run_logged(cmd: list[str], work: Path, env: dict[str, str], log: Path, groups: list[int]) -> int:
    """Run ``cmd`` in ``work`` in a new process group (remembered in ``groups``), output to ``log``.

    A file, not a pipe: a server a snippet leaves running in the background must not hold the
    test's pipe open."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        groups.append(proc.pid)
        try:
            return proc.wait(timeout=SNIPPET_TIMEOUT)
        except subprocess.TimeoutExpired:
            return -1


def stop_groups(groups: list[int]) -> None:
    """SIGTERM every process group a snippet started (the server drains and exits), SIGKILL leftovers."""
    def alive(pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    for pgid in groups:
        if alive(pgid):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.time() + 15
    while time.time() < deadline and any(alive(g) for g in groups):
        time.sleep(0.2)
    for pgid in groups:
        if alive(pgid):
            os.killpg(pgid, signal.SIGKILL)


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").replace("\r", "\n").splitlines()[-lines:])


@pytest.mark.slow
def test_readme_snippets_run(tmp_path: Path) -> None:
    missing = [tool for tool in ("bash", "curl", "openssl") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"the README's snippets use {', '.join(missing)}, not installed here")
    work = tmp_path / "readme"
    work.mkdir()
    env = prepare(work)
    port = str(free_port())
    groups: list[int] = []
    try:
        log = work / "00-quickstart.log"
        rc = run_logged(["rewardkit", "train", "--train-data", "prefs.jsonl", "--eval-split", "0.25",
                         "--output-dir", "rewardkit-out", "--epochs", "1", "--max-length", "128"],
                        work, env, log, groups)
        assert rc == 0, f"training rewardkit-out failed (exit {rc}):\n{tail(log)}"
        snippets = readme_snippets()
        assert len(snippets) >= 10, "README.md lost its snippets"
        for i, (lang, body) in enumerate(snippets, 1):
            body = re.sub(r"\b8000\b", port, body)
            cmd = ["bash", "-e", "-c", body] if lang == "bash" else [sys.executable, "-c", body]
            log = work / f"{i:02d}-{lang}.log"
            rc = run_logged(cmd, work, env, log, groups)
            assert rc == 0, (f"README snippet {i} ({lang}) failed (exit {rc}"
                             f"{', timed out' if rc == -1 else ''}):\n{body}\n--- output ---\n{tail(log)}")
    finally:
        stop_groups(groups)


def headings(text: str) -> set[str]:
    """GitHub's anchors for the headings of a Markdown text (code blocks left out)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for line in FENCE.sub("", text).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


@pytest.mark.parametrize("page", [README] + DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    """Every relative link points to an existing file; an anchor into README.md or docs/ to a heading."""
    text = page.read_text()
    broken = []
    for target in LINK.findall(FENCE.sub("", text)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and (dest == README or dest.parent == ROOT / "docs"):
            if anchor not in headings(dest.read_text()):
                broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_docs_linked_from_readme() -> None:
    """Every page in docs/ is reachable from the README."""
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in LINK.findall(FENCE.sub("", README.read_text()))}
    assert not [p.name for p in DOCS if p.resolve() not in linked]
