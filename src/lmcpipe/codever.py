"""Code version of a stage: a hash of the lmcpipe modules it imports, transitively.

Snakemake's "code" rerun trigger sees only a rule's shell text. Passing this hash as a rule
parameter makes an edit of, say, ``train.py`` rerun the training jobs (and, through file times,
everything downstream) while an edit of ``figures/paper_a.py`` reruns only figures. The rules
hash the stage module they call (``lmcpipe.stages.<stage>``).

Modules that decide where and how visibly a job runs but never what it computes (``NEUTRAL``:
the GPU/CPU slot a job claims, its progress lines, its provenance record) are left out, with
what only they import: editing them must not rerun finished training.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
NEUTRAL = frozenset({"lmcpipe.slots", "lmcpipe.progress", "lmcpipe.provenance"})


def _module_file(name: str) -> Path | None:
    rel = name.removeprefix("lmcpipe").strip(".").replace(".", "/")
    for candidate in (PACKAGE / f"{rel}.py", PACKAGE / rel / "__init__.py"):
        if rel and candidate.is_file():
            return candidate
    return None


@cache
def _imports(path: Path) -> frozenset[str]:
    """lmcpipe modules imported by a file (absolute imports; ``from lmcpipe import x`` too).

    Cached: Snakemake asks for the version of every stage at parse time, and the stages share
    most of their files (parsing each file once per stage cost seconds per Snakemake start)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("lmcpipe")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lmcpipe"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return frozenset(found)


def closure(module: str) -> list[Path]:
    """Source files of ``lmcpipe.<module>`` and of every lmcpipe module it imports."""
    todo, seen = [f"lmcpipe.{module}"], set()
    files: set[Path] = set()
    while todo:
        name = todo.pop()
        if name in seen or name in NEUTRAL:
            continue
        seen.add(name)
        path = _module_file(name)
        if path is None:
            continue
        files.add(path)
        if path.name == "__init__.py" and name != "lmcpipe":
            # a package may load its modules by name on first use (lmcpipe.data and
            # lmcpipe.models do, PEP 562), which no import statement shows: count them all,
            # and what they import
            todo.extend(f"{name}.{p.stem}" for p in path.parent.glob("*.py")
                        if p.stem != "__init__")
        todo.extend(_imports(path))
    return sorted(files)


@cache
def version(module: str) -> str:
    """Short hash of the sources ``lmcpipe.<module>`` depends on."""
    h = hashlib.sha256()
    for path in closure(module):
        h.update(path.relative_to(PACKAGE).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]
