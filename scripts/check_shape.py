#!/usr/bin/env python3
"""The package's shape: import cycles between rewardkit's modules, and functions longer than a screen.

    python scripts/check_shape.py               # rewardkit/, functions over 80 lines
    python scripts/check_shape.py --max-lines 60

Every import counts, at module level or inside a function: a deferred import still ties two modules
together. A cycle is a set of modules that reach each other (a strongly connected component of the
import graph). Exit 1 when there is a cycle or a long function, so CI (tests/test_shape.py) fails.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_files(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under ``package``."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its file."""
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = here[:len(here) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            targets.add(module)
            targets.update(f"{module}.{alias.name}" for alias in node.names)
    return {t for t in targets if t in known and t != name}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in order:
            continue
        work = [(root, iter(sorted(graph[root])))]
        order[root] = low[root] = len(order)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in order:
                    order[child] = low[child] = len(order)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], order[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == order[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def long_functions(files: dict[str, Path], max_lines: int) -> list[tuple[str, int]]:
    """("file:line name", length) of every function or method longer than ``max_lines``."""
    out = []
    for path in files.values():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > max_lines:
                    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                    out.append((f"{shown}:{node.lineno} {node.name}", length))
    return sorted(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("package", nargs="?", default=str(ROOT / "rewardkit"))
    ap.add_argument("--max-lines", type=int, default=80)
    args = ap.parse_args(argv)
    files = module_files(Path(args.package).resolve())
    graph = {name: imported(name, path, set(files)) for name, path in files.items()}
    cycles = import_cycles(graph)
    long = long_functions(files, args.max_lines)
    print(f"import cycles: {len(cycles)}")
    for cycle in cycles:
        print("  " + " <-> ".join(cycle))
    print(f"functions longer than {args.max_lines} lines: {len(long)}")
    for where, length in long:
        print(f"  {where} ({length} lines)")
    return 1 if cycles or long else 0


if __name__ == "__main__":
    sys.exit(main())
