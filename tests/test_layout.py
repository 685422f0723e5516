"""The package's rooms and their arrows (DESIGN.md, docs/development.md): no import circle, no upward import.

Every import counts, at module level or inside a function (a lazy import is
still an arrow), under ``TYPE_CHECKING`` too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ltvcast"

#: Rooms from the top down: a module may import its own room and the rooms below it.
ROOMS: tuple[tuple[str, ...], ...] = (
    ("cli",),
    ("ui",),
    ("serve",),
    ("monitor",),
    ("actions",),
    ("explain",),
    ("registry",),
    ("evaluate",),
    ("models",),
    ("features",),
    ("engines",),
    ("data",),
    ("ingest",),
    ("store",),
    ("simulate",),
    ("schema", "errors", "timeutil", "metrics", "yamlfile"),
)
RANK = {room: len(ROOMS) - i for i, rooms in enumerate(ROOMS) for room in rooms}


def _modules(package: Path) -> dict[str, Path]:
    out = {}
    for path in package.rglob("*.py"):
        parts = ("ltvcast", *path.relative_to(package).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in modules else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in modules and m != name}


def _graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    modules = _modules(package)
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "ltvcast"


def test_every_module_is_in_a_room():
    rooms = {_room(m) for m in _graph()} - {"ltvcast"}
    assert rooms <= set(RANK), f"modules outside the rooms of ROOMS: {sorted(rooms - set(RANK))}"


def test_arrows_run_one_way():
    upward = [
        f"{m} -> {d}"
        for m, deps in _graph().items()
        for d in deps
        if _room(m) in RANK and _room(d) in RANK and _room(m) != _room(d) and RANK[_room(d)] > RANK[_room(m)]
    ]
    assert not upward, "imports up the room order:\n" + "\n".join(sorted(upward))


def test_no_import_circle():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_the_walker_sees_lazy_and_relative_imports(tmp_path):
    """A planted circle (one import inside a function, one relative) is in the graph both ways."""
    pkg = tmp_path / "ltvcast"
    (pkg / "store").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "store" / "__init__.py").write_text("def f():\n    from ltvcast.cli import app\n")
    (pkg / "store" / "reads.py").write_text("from . import writes\n")
    (pkg / "store" / "writes.py").write_text("")
    (pkg / "cli.py").write_text("from ltvcast.store import Store\n")
    graph = _graph(pkg)
    assert graph["ltvcast.store"] == {"ltvcast.cli"} and graph["ltvcast.cli"] == {"ltvcast.store"}
    assert graph["ltvcast.store.reads"] == {"ltvcast.store.writes"}
