"""The import graph of `cdp_spark`, read from the source with `ast` (nothing is imported): no module imports itself
back through others, no package imports another package's private names, and no module of this package is
imported inside ``try: ... except ImportError``.

Every import counts, including those inside functions (they run too, only later); imports under
``if TYPE_CHECKING:`` do not. Importing ``a.b.c`` also runs ``a.b``'s ``__init__``, so that is an edge as well.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "cdp_spark"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str) -> str:
    """The top-level package (``cdp_spark.ingest``) or module (``cdp_spark.cli``) a module belongs to."""
    return ".".join(module.split(".")[:2])


class _Imports(ast.NodeVisitor):
    """(imported module, imported name or None, inside try/except ImportError) for each import of one module."""

    def __init__(self, module: str, is_package: bool, modules: set[str]):
        self.module, self.is_package, self.modules = module, is_package, modules
        self.found: list[tuple[str, str | None, bool]] = []
        self._guarded = 0

    def visit_If(self, node: ast.If) -> None:
        if "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Try(self, node: ast.Try) -> None:
        guarded = any(h.type is not None and "ImportError" in ast.unparse(h.type) for h in node.handlers)
        self._guarded += guarded
        for child in node.body:
            self.visit(child)
        self._guarded -= guarded
        for child in [*node.handlers, *node.orelse, *node.finalbody]:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append((alias.name, None, self._guarded > 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            here = self.module.split(".") if self.is_package else self.module.split(".")[:-1]
            base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            self.found.append((sub if sub in self.modules else base, alias.name, self._guarded > 0))


def read_imports(root: Path = ROOT) -> dict[str, list[tuple[str, str | None, bool]]]:
    paths = {module_name(p, root): p for p in root.rglob("*.py")}
    out = {}
    for module, path in paths.items():
        visitor = _Imports(module, path.name == "__init__.py", set(paths))
        visitor.visit(ast.parse(path.read_text(), str(path)))
        out[module] = visitor.found
    return out


def module_graph(imports: dict[str, list[tuple[str, str | None, bool]]]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, found in imports.items():
        for target, _name, _guarded in found:
            parts = target.split(".")
            for i in range(2, len(parts) + 1):  # the target and every parent package it initialises
                dep = ".".join(parts[:i])
                if dep in imports and dep != module and not module.startswith(dep + "."):
                    graph[module].add(dep)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def imports() -> dict[str, list[tuple[str, str | None, bool]]]:
    return read_imports()


def test_no_import_circles(imports):
    assert cycles(module_graph(imports)) == []


def test_no_package_imports_another_packages_private_names(imports):
    private = [f"{module} imports {target}.{name}" for module, found in imports.items()
               for target, name, _ in found
               if target.startswith("cdp_spark") and package_of(target) != package_of(module)
               and name is not None and name.startswith("_") and not name.startswith("__")]
    assert private == []


def test_no_module_of_this_package_is_imported_as_optional(imports):
    optional = [f"{module} imports {target}" for module, found in imports.items()
                for target, _name, guarded in found if guarded and target.startswith("cdp_spark")]
    assert optional == []


def test_the_checks_see_a_circle_a_private_import_and_an_optional_import(tmp_path):
    """The graph reader on a tiny package with each defect, so the checks above cannot pass by reading nothing."""
    pkg = tmp_path / "cdp_spark"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("")
    (pkg / "a" / "x.py").write_text("def f():\n    from cdp_spark.b import _helper\n")
    (pkg / "b.py").write_text("from cdp_spark.a.x import f\n_helper = 1\n"
                              "try:\n    from cdp_spark.a import x\nexcept ImportError:\n    x = None\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from cdp_spark.b import f\n")
    found = read_imports(pkg)
    assert cycles(module_graph(found)) == [["cdp_spark.a.x", "cdp_spark.b"]]
    assert ("cdp_spark.b", "_helper", False) in found["cdp_spark.a.x"]
    assert ("cdp_spark.a.x", "x", True) in found["cdp_spark.b"]
    assert found["cdp_spark.c"] == [("typing", "TYPE_CHECKING", False)]
