"""The package's shape, checked in CI: no import cycle, no function longer than 80 lines (scripts/check_shape.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import check_shape  # noqa: E402


def test_no_import_cycle_and_no_long_function(capsys) -> None:
    assert check_shape.main([]) == 0, capsys.readouterr().out


def test_the_checker_finds_a_cycle_and_a_long_function(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg import b\n")
    (pkg / "b.py").write_text("def f():\n    from pkg.a import x\n" + "    y = 1\n" * 81)
    (pkg / "c.py").write_text("import pkg.a\n")
    files = check_shape.module_files(pkg)
    graph = {n: check_shape.imported(n, p, set(files)) for n, p in files.items()}
    assert check_shape.import_cycles(graph) == [["pkg.a", "pkg.b"]]
    assert [length for _, length in check_shape.long_functions(files, 80)] == [83]
