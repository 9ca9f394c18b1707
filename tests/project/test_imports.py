"""The import graph of mmdemo and trainer: every module imports in a fresh interpreter, the modules' imports of
each other form no cycle, and the library (mmdemo) imports nothing from the trainer.

The graph is read from the source with `ast`, so an import inside a function counts too: a cycle that only a
deferred import closes still means two modules that cannot be read, tested or moved one without the other.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

PACKAGES = ("mmdemo", "trainer")


def package_modules(root: Path = REPO_ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> its file, for every module of `packages` (a package is its __init__.py)."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if "__pycache__" in parts or not all((root.joinpath(*parts[:i]) / "__init__.py").is_file()
                                                 for i in range(1, len(parts))):
                continue  # not importable as a module of the package (a stray script, a folder without __init__)
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def module_imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported module of `modules`, line) for each import in the file, relative ones resolved; imports under
    `if TYPE_CHECKING:` never run and are left out. `from pkg import name` is an edge to pkg.name where that is a
    module, else to pkg. An import of the module's own package from inside a function is left out too: the
    package has finished initialising by the time the function runs (`from . import get_model`)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking_only(child):
                for grandchild in child.orelse:
                    visit(ast.Module([grandchild], []), in_function)
                continue
            deferred = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            targets: list[str] = []
            if isinstance(child, ast.Import):
                targets = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[:len(base) - (child.level - 1)]
                    base = ".".join(base + ([child.module] if child.module else []))
                else:
                    base = child.module or ""
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in child.names]
            for target in targets:
                while target and target not in modules:  # `import a.b.c` of a non-module c: its module
                    target = target.rpartition(".")[0]
                own_package = name.startswith(target + ".")
                if target and target != name and not (own_package and deferred):
                    found.append((target, child.lineno))
            visit(child, deferred)

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


def import_graph(root: Path = REPO_ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, dict[str, int]]:
    """module -> {module it imports: the line of the first such import}."""
    modules = package_modules(root, packages)
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        graph[name] = {}
        for target, line in module_imports(name, path, modules):
            graph[name].setdefault(target, line)
    return graph


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str]:
    """One import cycle as [a, b, ..., a], or [] when the graph has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def dfs(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state and (cycle := dfs(start)):
            return cycle
    return []


def find_cycles(graph: dict[str, dict[str, int]], most: int = 20) -> list[list[str]]:
    """Cycles until none is left, each found after cutting the last edge of the one before (every cycle of the
    graph shares an edge with one of them)."""
    graph = {node: dict(targets) for node, targets in graph.items()}
    cycles = []
    while len(cycles) < most and (cycle := find_cycle(graph)):
        cycles.append(cycle)
        del graph[cycle[-2]][cycle[-1]]
    return cycles


def describe(cycles: list[list[str]], graph: dict[str, dict[str, int]], root: Path = REPO_ROOT) -> str:
    modules = package_modules(root)
    return "\n".join(" -> ".join(cycle) + "\n" + "\n".join(
        f"    {modules[a].relative_to(root)}:{graph[a][b]} imports {b}" for a, b in zip(cycle, cycle[1:]))
        for cycle in cycles)


def test_the_package_import_graph_has_no_cycle():
    graph = import_graph()
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + describe(cycles, graph)


def test_the_library_imports_nothing_from_the_trainer():
    graph = import_graph()
    wrong = {f"{m} -> {t}": line for m, targets in graph.items() if m.split(".")[0] == "mmdemo"
             for t, line in targets.items() if t.split(".")[0] == "trainer"}
    assert not wrong, f"mmdemo imports the trainer: {wrong}"


def test_the_graph_reader_sees_cycles_relative_and_deferred_imports(tmp_path):
    """The checks above can fail: a deferred relative import that closes a cycle is found and printed."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    for init in (pkg / "__init__.py", pkg / "sub" / "__init__.py"):
        init.write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import x\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n"
                              "def g():\n    from . import d\n")
    (pkg / "d.py").write_text("from . import c\n")
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg.a"] == {"pkg.sub.b": 1} and graph["pkg.sub.b"] == {"pkg.a": 2}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.a"]
    assert "pkg.a" not in graph["pkg.c"]  # TYPE_CHECKING only
    assert graph["pkg.c"] == {"pkg.d": 5} and graph["pkg.d"] == {"pkg.c": 1}  # a module, not the package: counted
    (pkg / "a.py").write_text("")
    assert find_cycle(import_graph(tmp_path, ("pkg",))) == ["pkg.c", "pkg.d", "pkg.c"]


@pytest.mark.slow
def test_every_module_imports_in_a_fresh_interpreter_and_the_library_alone_loads_no_trainer():
    library = sorted(m for m in package_modules() if m.split(".")[0] == "mmdemo")
    trainer = sorted(m for m in package_modules() if m.split(".")[0] == "trainer")
    code = (
        "import importlib, json, sys\n"
        "failed = {}\n"
        "def load(names):\n"
        "    for name in names:\n"
        "        try:\n"
        "            importlib.import_module(name)\n"
        "        except Exception as error:\n"
        "            failed[name] = f'{type(error).__name__}: {error}'\n"
        f"load({library!r})\n"
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] == 'trainer')\n"
        f"load({trainer!r})\n"
        "print(json.dumps({'failed': failed, 'leaked': leaked}))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert not result["failed"], result["failed"]
    assert not result["leaked"], f"importing mmdemo loaded {result['leaked']}"
