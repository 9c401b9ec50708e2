"""Print the import cycles among lmcpipe's modules; exit 1 if there is one.

Every ``import lmcpipe...`` and ``from lmcpipe... import ...`` counts, including imports inside
functions: a cycle hidden in a function still ties two modules into one unit (neither can be
read, tested or moved without the other). ``from lmcpipe.pkg import name`` counts as an import of
``lmcpipe.pkg.name`` when that is a module, else of ``lmcpipe.pkg``. Only written imports count:
importing ``lmcpipe.pkg.mod`` also runs ``lmcpipe/pkg/__init__.py``, but that is not an edge to
``lmcpipe.pkg`` (so a package may import its submodules; a submodule that imports a name from
its own package's ``__init__`` closes a cycle).

Usage: ``python scripts/import_cycles.py [src/lmcpipe]``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file of every module under the package directory ``root``."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports (relative imports resolved)."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + is_package]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        for t in targets:
            hit = _resolve(t, known)
            if hit and hit != name:
                out.add(hit)
    return out


def graph(root: Path) -> dict[str, set[str]]:
    known = modules(root)
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(found)


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else Path(__file__).resolve().parents[1] / "src" / "lmcpipe")
    edges = graph(root)
    found = cycles(edges)
    n_edges = sum(len(e) for e in edges.values())
    print(f"{len(edges)} modules, {n_edges} import edges, {len(found)} import cycles")
    for component in found:
        inner = sorted(f"{a} -> {b}" for a in component for b in edges[a] if b in component)
        print(f"cycle of {len(component)}: " + ", ".join(component))
        for edge in inner:
            print(f"    {edge}")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
