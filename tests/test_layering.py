"""The import layering: every internal import, at the top of a module or inside a function, runs
one way (files -> table -> vocab + split -> model -> training -> using it -> command and service).

The graph is built from the source with `ast`, so an import hidden inside a function counts as
much as one at the top. Three rules:

(a) no cycle between modules (an import under `if TYPE_CHECKING:` never runs and is left out
    of this rule, so a type-only back-reference such as a callback naming its Learner is fine);
(b) an internal import inside a function says why on its line or the line above, as
    `# lazy: <why it is deferred>` (a slow or rarely needed module) or
    `# cycle-free: <why it cannot sit at the top>`; a run of consecutive imports shares one comment;
(c) layer order (type-only imports included: a type pointing up is still an arrow up):
    base (errors, atomic, checksum, jsonable, display) < data/ and evaluate.py < models/ <
    the rest of the library (train/, recommend/, workflows, persist, ...) < service/, cli/,
    __main__ < the package's own `__init__` (nothing inside collabkit imports the facade).
    A module imports only from its own layer or below.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "collabkit"

BASE = {
    "collabkit.errors",
    "collabkit.atomic",
    "collabkit.checksum",
    "collabkit.jsonable",
    "collabkit.display",
    "collabkit.defaults",
    "collabkit.version",
}
LAYER_NAMES = ["base", "data and metrics", "models", "library", "command and service", "package facade"]
REASON = re.compile(r"#\s*(lazy|cycle-free)\s*:\s*\S")
COMMENT_LINE = re.compile(r"^\s*#")


@dataclass(frozen=True)
class Edge:
    source: str  # importing module
    target: str  # imported module
    file: str  # path relative to src/
    line: int
    in_function: bool
    type_only: bool  # under `if TYPE_CHECKING:`
    has_reason: bool  # only meaningful for in_function

    def where(self) -> str:
        return f"{self.file}:{self.line} {self.source} -> {self.target}"


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def layer(module: str) -> int:
    """The layer of a module: 0 lowest; a module may import only from its layer or below."""
    if module in BASE:
        return 0
    if module == "collabkit":
        return 5
    if module == "collabkit.evaluate" or module == "collabkit.data" or module.startswith("collabkit.data."):
        return 1
    if module == "collabkit.models" or module.startswith("collabkit.models."):
        return 2
    top = ("collabkit.service", "collabkit.cli", "collabkit.__main__")
    if any(module == t or module.startswith(t + ".") for t in top):
        return 4
    return 3


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module `name` names, or its nearest enclosing package; None outside collabkit."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _targets(
    node: ast.Import | ast.ImportFrom, module: str, is_pkg: bool, modules: dict[str, Path]
) -> list[str]:
    names: list[str] = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".") if is_pkg else module.split(".")[:-1]
            base = base[: len(base) - node.level + 1]
            stem = ".".join(base + ([node.module] if node.module else []))
        else:
            stem = node.module or ""
        # `from pkg import sub` imports the submodule; `from mod import name` the module
        names = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in modules else stem for a in node.names]
    found = [_resolve(n, modules) for n in names if n == "collabkit" or n.startswith("collabkit.")]
    return list(dict.fromkeys(t for t in found if t is not None))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _reasoned(node: ast.stmt, lines: list[str]) -> bool:
    """A `# lazy: ...` / `# cycle-free: ...` comment on the statement's lines or the line above."""
    end = node.end_lineno or node.lineno
    own = any(REASON.search(lines[i - 1]) for i in range(node.lineno, end + 1))
    above = node.lineno >= 2 and COMMENT_LINE.match(lines[node.lineno - 2]) is not None
    return own or (above and REASON.search(lines[node.lineno - 2]) is not None)


def file_edges(module: str, path: Path, modules: dict[str, Path]) -> list[Edge]:
    """The internal imports of one module, each marked: inside a function, type-only, with a reason."""
    edges: list[Edge] = []
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    tree = ast.parse(text, filename=str(path))
    rel = str(path.relative_to(SRC))
    is_pkg = path.name == "__init__.py"

    def visit(body: list[ast.stmt], in_function: bool, type_only: bool) -> None:
        covered = False  # the previous statement was an import with (or sharing) a reason
        prev_end = -1
        for stmt in body:
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                reason = _reasoned(stmt, lines) or (covered and stmt.lineno == prev_end + 1)
                covered, prev_end = reason, stmt.end_lineno or stmt.lineno
                for target in _targets(stmt, module, is_pkg, modules):
                    if target != module:
                        edges.append(Edge(module, target, rel, stmt.lineno, in_function, type_only, reason))
                continue
            covered = False
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(stmt.body, True, type_only)
            elif isinstance(stmt, ast.If):
                visit(stmt.body, in_function, type_only or _is_type_checking(stmt.test))
                visit(stmt.orelse, in_function, type_only)
            else:  # class bodies, with, for, while, try (and its handlers), match
                for field in ("body", "orelse", "finalbody"):
                    visit(getattr(stmt, field, None) or [], in_function, type_only)
                for sub in getattr(stmt, "handlers", None) or getattr(stmt, "cases", None) or []:
                    visit(sub.body, in_function, type_only)

    visit(tree.body, False, False)
    return edges


def collect_edges() -> list[Edge]:
    modules = module_files()
    return [e for module, path in modules.items() for e in file_edges(module, path, modules)]


EDGES = collect_edges()


def find_cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected groups of two or more modules (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return groups


def test_the_graph_sees_imports_inside_functions() -> None:
    """The parser finds the known shape of the package: many edges, some of them in functions."""
    assert len(module_files()) > 40
    assert len(EDGES) > 150
    assert any(e.in_function for e in EDGES)
    assert any(e.type_only for e in EDGES)
    assert any(e.source == "collabkit" and e.target == "collabkit.collab" for e in EDGES)


def test_the_checker_catches_what_it_should(tmp_path: Path) -> None:
    """Each rule fails on a made-up case: a cycle, a bare function import, an upward arrow."""
    made = [
        Edge("a", "b", "a.py", 1, False, False, True),
        Edge("b", "c", "b.py", 1, True, False, True),
        Edge("c", "a", "c.py", 1, True, False, True),
    ]
    assert find_cycles(made) == [["a", "b", "c"]]
    assert find_cycles(made[:2]) == []
    assert (
        shortest_cycles(made) == [["a", "b", "c", "a"], ["b", "c", "a", "b"], ["c", "a", "b", "c"]][:1]
        or len(shortest_cycles(made)) == 1
    )
    code = (
        "def f():\n    # lazy: slow\n    import json\n    import os\n\n    import sys\n"
        "    x = 1  # lazy: no\n"
    )
    lines = code.splitlines()
    body = ast.parse(code).body[0].body  # type: ignore[attr-defined]
    assert _reasoned(body[0], lines) and not _reasoned(body[1], lines) and not _reasoned(body[2], lines)
    assert not _reasoned(ast.parse("import os  # type: ignore").body[0], ["import os  # type: ignore"])
    assert layer("collabkit.data.loaders") < layer("collabkit.train.recorder")
    assert layer("collabkit.evaluate") < layer("collabkit.models.base")
    assert layer("collabkit.display") == 0 and layer("collabkit.cli.app") == layer("collabkit.service.app")
    assert layer("collabkit") > layer("collabkit.cli.app")


def _report(title: str, rows: list[str]) -> str:
    return f"{title} ({len(rows)}):\n  " + "\n  ".join(rows)


def shortest_cycles(edges: list[Edge]) -> list[list[str]]:
    """For every module on a cycle, the shortest cycle through it (breadth-first), each once."""
    graph: dict[str, list[str]] = {}
    for e in edges:
        graph.setdefault(e.source, []).append(e.target)
    found: dict[frozenset[tuple[str, str]], list[str]] = {}
    for group in find_cycles(edges):
        for start in group:
            parent: dict[str, str] = {}
            queue, seen = [start], {start}
            while queue:
                v = queue.pop(0)
                if start in graph.get(v, []):
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    cycle = [start, *reversed(path[:-1]), start] if v != start else [start, start]
                    key = frozenset(zip(cycle, cycle[1:], strict=False))
                    found.setdefault(key, cycle)
                    break
                for w in sorted(set(graph.get(v, []))):
                    if w not in seen:
                        seen.add(w)
                        parent[w] = v
                        queue.append(w)
    return sorted(found.values())


def test_no_import_cycle() -> None:
    runtime = [e for e in EDGES if not e.type_only]
    rows = []
    for cycle in shortest_cycles(runtime):
        rows.append(" -> ".join(cycle))
        for a, b in zip(cycle, cycle[1:], strict=False):
            rows += [f"    {e.where()}" for e in runtime if e.source == a and e.target == b][:1]
    assert not rows, _report("import cycles (each, then the imports that close it)", rows)


def test_imports_inside_functions_say_why() -> None:
    bare = [e.where() for e in EDGES if e.in_function and not e.has_reason]
    assert not bare, _report(
        "internal imports inside a function without a `# lazy: ...` or `# cycle-free: ...` comment", bare
    )


def test_layer_order() -> None:
    upward = [
        f"{e.where()} (layer '{LAYER_NAMES[layer(e.source)]}' imports '{LAYER_NAMES[layer(e.target)]}')"
        for e in EDGES
        if layer(e.target) > layer(e.source)
    ]
    assert not upward, _report("imports that run up the layers", upward)
