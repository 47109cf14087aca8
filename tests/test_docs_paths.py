"""The documents cannot drift from the code: every path of the repository and every rewardkit module or
name that a Markdown file mentions exists."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKDOWN = sorted([*ROOT.glob("*.md"), *ROOT.glob("docs/*.md")])
LAYERS = ("data", "encoding", "model", "evaluation", "card", "serving", "training", "integrations")
PATH = re.compile(r"(?<![\w./-])((?:rewardkit|scripts|benchmarks|tests|examples|docs)/[\w./-]*\w)")
DOTTED = re.compile(r"`((?:rewardkit\.|(?:%s)\.)[\w.]+)" % "|".join(LAYERS))
FILE_NAMES = (".json", ".jsonl", ".safetensors", ".yaml", ".py", ".md", ".txt", ".gz", ".csv", ".html", ".png")


def resolves(dotted: str) -> bool:
    """A module, or a module's attribute (a class, a function, a method), of rewardkit."""
    name = dotted if dotted.startswith("rewardkit.") else f"rewardkit.{dotted}"
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


@pytest.mark.parametrize("doc", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_path_and_module_a_document_names_exists(doc: Path) -> None:
    text = doc.read_text()
    paths = {m.rstrip(".") for m in PATH.findall(text)}
    missing = sorted(p for p in paths if not (ROOT / p).exists() and not list(ROOT.glob(p)))
    names = {m.rstrip(".") for m in DOTTED.findall(text) if not m.endswith(FILE_NAMES)}  # not model.safetensors
    unknown = sorted(n for n in names if not resolves(n))
    assert not missing and not unknown, f"{doc.name}: paths {missing}, names {unknown}"


def test_the_checker_catches_a_stale_name() -> None:
    assert resolves("rewardkit.training.loop.train_step") and resolves("model.backbone.load_backbone")
    assert not resolves("rewardkit.regression_train") and not resolves("training.loop.backward_passes")
