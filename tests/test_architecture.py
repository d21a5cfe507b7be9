"""The dependency rule of docs/architecture.md, checked on the source: stages import only stages
below them (data → simulate/io → represent → models → train → export/evaluate → pipeline → cli),
and no module imports itself back through a chain of (function-level included) imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "darkshower"

#: stage -> rank; a module may import modules of a lower or equal rank, never of a higher one.
#: Stages of equal rank (siblings) must not import each other, except the listed allowances.
RANK = {
    "errors": 0, "config": 0, "versions": 0, "progress": 0, "execute": 0, "_callable": 0,
    "data": 1,
    "simulate": 2, "io": 2,
    "represent": 3,
    "models": 4,
    "train": 5,
    "export": 6, "evaluate": 6,
    "pipeline": 7, "serve": 7,
    "cli": 8,
}
#: sibling edges that are part of the design: importers that start from particles cluster jets
#: with the generator's FastJet wrapper
ALLOWED_SIBLING = {("io", "simulate.jets")}


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every darkshower module imported anywhere in ``path`` (function bodies included; blocks under
    ``if TYPE_CHECKING`` excluded), with the line number."""
    tree = ast.parse(path.read_text(), str(path))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    out: list[tuple[str, int]] = []

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for c in child.orelse:
                    visit(c)
                continue
            if isinstance(child, ast.Import):
                out.extend((a.name, child.lineno) for a in child.names if a.name.split(".")[0] == "darkshower")
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                if mod.split(".")[0] == "darkshower":
                    out.append((mod, child.lineno))
                    for a in child.names:  # `from darkshower.x import y` where y is a module
                        out.append((f"{mod}.{a.name}", child.lineno))
            visit(child)

    visit(tree)
    return out


def _graph() -> tuple[dict[str, set[str]], dict[tuple[str, str], str]]:
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    where: dict[tuple[str, str], str] = {}
    for mod, path in files.items():
        for target, line in _imports(path):
            if target not in files:  # `from darkshower.x import function`: the module is x
                target = target.rsplit(".", 1)[0]
            if target in files and target != mod:
                graph[mod].add(target)
                where.setdefault((mod, target), f"{path.relative_to(SRC.parent)}:{line}")
    return graph, where


def _stage(mod: str) -> str | None:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else None  # `darkshower` itself: the package API (lazy verbs)


def test_every_stage_has_a_rank():
    stages = {_stage(m) for m in _graph()[0]} - {None}
    assert stages <= set(RANK), f"stages without a rank in this test and docs/architecture.md: {stages - set(RANK)}"


def test_no_back_edges_between_stages():
    graph, where = _graph()
    bad = []
    for mod, targets in graph.items():
        src = _stage(mod)
        if src is None:
            continue
        for t in targets:
            dst = _stage(t)
            if dst is None:  # `from darkshower import __version__`
                continue
            if dst == src:
                continue
            rs, rd = RANK[src], RANK[dst]
            sub = ".".join(t.split(".")[1:3])
            if rd > rs or (rd == rs and rs > 0 and (src, sub) not in ALLOWED_SIBLING):
                bad.append(f"{where[(mod, t)]}: {src} imports {dst} ({t})")
    assert not bad, "imports against the dependency rule (docs/architecture.md):\n" + "\n".join(sorted(bad))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            strong(v)
    return out


def test_no_import_cycles_between_modules():
    graph, _ = _graph()
    # a package's __init__ may re-export its own submodules lazily; that is not a cycle of design
    pruned = {m: {t for t in ts if not (m.startswith(t + ".") or t.startswith(m + "."))} for m, ts in graph.items()}
    cycles = _cycles(pruned)
    assert not cycles, "import cycles (function-level imports included):\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("edge", [("models", "train"), ("represent", "models"), ("train", "evaluate")])
def test_the_check_catches_a_back_edge(tmp_path, monkeypatch, edge):
    """The rule check itself can fail: a synthetic back-edge is reported."""
    src, dst = edge
    fake = SRC / src / "_backedge_probe.py"
    monkeypatch.setattr(Path, "rglob", lambda self, pat: list(Path.glob(self, "**/" + pat)) + [fake])
    real_read = Path.read_text
    monkeypatch.setattr(Path, "read_text",
                        lambda self, *a, **k: f"from darkshower.{dst} import x\n" if self == fake else real_read(self, *a, **k))
    with pytest.raises(AssertionError, match=f"{src} imports {dst}"):
        test_no_back_edges_between_stages()


def test_the_cycle_finder_finds_cycles():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(g) == [["a", "b", "c"]]
