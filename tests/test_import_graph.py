"""The import graph of the three packages, read from their source (every import, also inside functions): no
cycles, and dependencies point one way (analyzer <- reporters <- probes <- the CLI). Imports under
``if TYPE_CHECKING:`` are for annotations only and do not count."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("analyzer", "reporters", "probes")
#: Composition points that may call the packages above them (only inside functions, loaded on demand): the CLI,
#: and the hand-over from a live finding to `steadytrain probe`.
MAY_IMPORT_UPWARD = {"analyzer.cli", "analyzer.cli.reports", "analyzer.live.probe_handover"}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return lines


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
            found.update(subs if len(subs) == len(node.names) else [base, *subs])
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
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

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_there_is_no_import_cycle_even_inside_functions():
    assert _cycles(_graph()) == []


def test_dependencies_point_one_way():
    upward = {"analyzer": ("reporters", "probes"), "reporters": ("probes",), "probes": ()}
    bad = {name: sorted(d for d in deps if d.startswith(upward[name.split(".")[0]]))
           for name, deps in _graph().items() if name not in MAY_IMPORT_UPWARD}
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_graph_sees_imports_inside_functions():
    """The other side: an import inside a function is an edge (a cycle hidden there is still found)."""
    graph = _graph()
    assert "analyzer.live.probe_handover" in graph["analyzer.live.finding"]
    assert "probes.spec" in graph["analyzer.live.probe_handover"]
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


def test_the_command_does_not_load_what_most_runs_never_use():
    # pandas (~0.25 s), torch, matplotlib and wandb are loaded where they are used: every `steadytrain inspect`
    # would otherwise pay their import, whatever it reads
    import subprocess
    import sys

    code = ("import sys, analyzer.cli, analyzer.ingest.load, analyzer.pipeline; "
            "print(' '.join(m for m in ('pandas', 'torch', 'matplotlib', 'wandb') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""
