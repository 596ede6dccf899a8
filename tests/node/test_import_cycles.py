"""No import cycle under node/: every import, at module level or inside a function, counts.

A cycle hidden behind a function-level import still ties the modules together (and breaks
when someone moves the import up); the stage contract (`node.job.handover`) and
`node.job.errors` exist so that the stages need none.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

NODE = REPO / "node"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def node_modules() -> dict[str, Path]:
    return {module_name(p): p for p in NODE.rglob("*.py") if "migrations" not in p.parts}


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The node modules ``path`` imports (``from pkg import mod`` counts as importing ``pkg.mod``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for item in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(item, ast.Import):
            found |= {a.name for a in item.names}
        elif isinstance(item, ast.ImportFrom):
            base = item.module or ""
            if item.level:
                anchor = package.split(".")[: len(package.split(".")) - item.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in item.names}
    return {m for m in found if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    mods = node_modules()
    return {name: imports_of(path, name, set(mods)) for name, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_walk_sees_the_stage_imports() -> None:
    graph = import_graph()
    assert "node.job.errors" in graph["node.infer.segment"]
    assert "node.job.handover" in graph["node.deliver.stage"]
    assert "node.infer.segment" in graph["node.job.stages"]


def test_a_cycle_is_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_under_node() -> None:
    assert cycles(import_graph()) == []


def test_encode_does_not_import_deliver() -> None:
    graph = import_graph()
    encode = {m for m in graph if m.startswith("node.encode")}
    assert not {d for m in encode for d in graph[m] if d.startswith("node.deliver")}
