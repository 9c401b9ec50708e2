"""Code version of a stage: a hash of the lmcpipe modules it imports, transitively.

Snakemake's "code" rerun trigger sees only a rule's shell text. Passing this hash as a rule
parameter makes an edit of, say, ``train.py`` rerun the training jobs (and, through file times,
everything downstream) while an edit of ``figures/paper_a.py`` reruns only figures. The rules
hash the stage module they call (``lmcpipe.stages.<stage>``).

Modules that decide where and how visibly a job runs but never what it computes (``NEUTRAL``:
the GPU/CPU slot a job claims, its progress lines, its provenance record) are left out, with
what only they import: editing them must not rerun finished training.

A network or dataset lmcpipe does not ship is code too (``user_version``): the jobs of a stage
that builds the network or loads the data get a hash of the user's source files (and the
torchvision version, for torchvision's networks and datasets) added to their code version, so
an edit of the user's model file reruns exactly the training (and interpolation) of the
experiments that use it, and nothing else.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import re
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


def closure(module: str, neutral: frozenset[str] = NEUTRAL) -> list[Path]:
    """Source files of ``lmcpipe.<module>`` and of every lmcpipe module it imports (less the
    ``neutral`` ones and what only they import)."""
    todo, seen = [f"lmcpipe.{module}"], set()
    files: set[Path] = set()
    while todo:
        name = todo.pop()
        if name in seen or name in neutral:
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


# calls that build a network or load a dataset: a stage whose sources make them runs the user's
# code. Their definitions (in models/ and data/) are not uses.
_BUILDS = re.compile(r"\bmodels\.build(_initialised)?\(")
_LOADS = re.compile(r"\bdata\.load\(")
_DEFINING = ("models", "data")
# builds a network on the meta device only to size a job's resource request (the cost table's
# entry for a network it lacks), never to compute a result: the config check reaches it from
# every stage that reads the config, report pages included
_SIZING = frozenset({"lmcpipe.costs_traced"})


@cache
def uses(module: str) -> tuple[bool, bool]:
    """Whether ``lmcpipe.<module>`` (with what it imports) builds a network, and loads data."""
    files = [p for p in closure(module, NEUTRAL | _SIZING)
             if p.relative_to(PACKAGE).parts[0] not in _DEFINING]
    texts = [p.read_text() for p in files]
    return any(_BUILDS.search(t) for t in texts), any(_LOADS.search(t) for t in texts)


def _tag(package: str) -> str:
    try:
        return f"{package} {importlib.metadata.version(package)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{package} (not installed)"


@cache
def user_version(module: str, model: str, dataset: str) -> str:
    """"" for a stage that runs only lmcpipe's code; else ``"+"`` and a short hash of the user's
    network and dataset sources this stage runs (``lmcpipe.plugins.source_files``,
    ``lmcpipe.data.code_files``) and of the torchvision version behind a ``torchvision:`` name.
    Appended to ``version(module)`` for one experiment's jobs (``workflow/rules/common.smk``)."""
    from lmcpipe import data, plugins
    from lmcpipe.models.spec import GROUP, TORCHVISION, is_user, split_spec

    builds, loads = uses(module)
    name = split_spec(model)[0]
    parts: list[tuple[str, bytes]] = []
    if builds and is_user(name):
        if name.startswith(TORCHVISION):
            parts.append(("network", _tag("torchvision").encode()))
        else:
            parts += [(str(p), p.read_bytes()) for p in plugins.source_files(name, GROUP)]
    if loads:
        parts += [(str(p), p.read_bytes()) for p in data.code_files(dataset)]
        tag = data.code_tag(dataset)
        parts += [("dataset", tag.encode())] if tag else []
    if not parts:
        return ""
    h = hashlib.sha256()
    for where, content in parts:
        h.update(where.encode() + b"\0" + content)
    return "+" + h.hexdigest()[:12]
