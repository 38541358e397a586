"""Imports run one way: attnres -> probes -> figures -> report -> app, and inside attnres the loader
sits above the importers, which sit above the checkpoint primitives. Read from the source with ast,
so a cycle hidden by an import inside a function is found too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["attnres", "probes", "figures", "report", "app"]  # each may import only those before it
LAZY = {"attnres._triton_kernels"}  # needs triton, which CPU installs lack


class _Imports(ast.NodeVisitor):
    """Collects (absolute module name, inside a function) for every import statement."""

    def __init__(self, package: list[str]):
        self.package, self.depth, self.found = package, 0, []

    def visit_FunctionDef(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Import(self, node):
        self.found += [(alias.name, self.depth > 0) for alias in node.names]

    def visit_ImportFrom(self, node):
        base = self.package[: len(self.package) - node.level + 1] if node.level else []
        if node.module:
            self.found.append((".".join([*base, node.module]), self.depth > 0))
        else:  # from . import x
            self.found += [(".".join([*base, alias.name]), self.depth > 0) for alias in node.names]


def imports(path: Path) -> list[tuple[str, bool]]:
    """(absolute module name, inside a function) for every import statement of a file."""
    visitor = _Imports(list(path.relative_to(ROOT).parts[:-1]))  # the package the file is in
    visitor.visit(ast.parse(path.read_text()))
    return visitor.found


SOURCES = sorted(p for top in ORDER if (ROOT / top).is_dir() for p in (ROOT / top).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_upward_import(path):
    layer = ORDER.index(path.relative_to(ROOT).parts[0])
    if path.relative_to(ROOT) == Path("probes/report.py"):
        layer = ORDER.index("report")  # the alias of ``python -m report`` kept for old command lines
    for name, _ in imports(path):
        top = name.split(".")[0]
        if top in ORDER:
            assert ORDER.index(top) <= layer, f"{path.relative_to(ROOT)} imports {name} from a layer above"
        if layer < ORDER.index("app"):
            assert top != "streamlit", f"{path.relative_to(ROOT)} imports streamlit below app/"


@pytest.mark.parametrize("path", sorted((ROOT / "attnres").rglob("*.py")), ids=lambda p: p.name)
def test_attnres_imports_at_module_level(path):
    """No attnres module is imported inside a function (the way a cycle is hidden)."""
    nested = [n for n, inside in imports(path) if inside and n.startswith("attnres") and n not in LAZY]
    assert not nested, f"{path.relative_to(ROOT)} imports {nested} inside a function"


def test_loader_is_above_importers_above_primitives():
    below_loader = [ROOT / "attnres" / "checkpoint.py", *(ROOT / "attnres" / "importers").glob("*.py")]
    for path in below_loader:
        assert not any(name == "attnres.loader" for name, _ in imports(path)), path
    assert not any(
        name.startswith("attnres.importers") for name, _ in imports(ROOT / "attnres/checkpoint.py")
    )
