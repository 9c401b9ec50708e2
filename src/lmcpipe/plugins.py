"""Code that lmcpipe does not ship: a network or a dataset named by import path or entry point.

A config names a user's object in one of two ways, for networks (group ``lmcpipe.models``) and
datasets (group ``lmcpipe.datasets``) alike:

- an import path, ``package.module:attribute`` (``mypkg.nets:SmallCNN``): the module is imported
  and the attribute taken from it, dots allowed in the attribute (``mod:Outer.Inner``);
- a name that an installed package registers under the group in its metadata
  (``[project.entry-points."lmcpipe.models"] small_cnn = "mypkg.nets:SmallCNN"``), found through
  ``importlib.metadata``, so installing the package is all it takes.

Every way of getting it wrong is a ``PluginError``: one line naming the name and the fix, which
the config check prefixes with the key. ``source_files`` lists the Python files the object's code
is read from, so ``lmcpipe.codever`` can make them part of the code version of the jobs that run
it: an edit of a user's model file reruns exactly the training that uses it.

Stdlib only: the config check and the Snakemake rules call it at every start.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import re
import sys
from functools import cache
from pathlib import Path

from lmcpipe.errors import StageError

# ``module:attribute`` with dotted Python identifiers on both sides
IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class PluginError(StageError):
    """A user's network or dataset cannot be found or is not what lmcpipe needs."""


def is_import_path(name: str) -> bool:
    return bool(IMPORT_PATH.match(name))


@cache
def entry_points(group: str) -> dict[str, str]:
    """{name: "module:attribute"} of every installed package's entry points in ``group``."""
    return {ep.name: ep.value for ep in importlib.metadata.entry_points(group=group)}


def target(name: str, group: str) -> str | None:
    """The import path ``name`` stands for: itself when it is one, else its entry point in
    ``group``; None when it is neither."""
    if is_import_path(name):
        return name
    return entry_points(group).get(name)


def load(name: str, group: str, what: str = "object") -> object:
    """The object ``name`` names (an import path or an entry point of ``group``).

    ``what`` words the messages ("network", "dataset"). Raises PluginError with one line: not a
    known name, a module that cannot be imported (and why), an attribute it lacks.
    """
    path = target(name, group)
    if path is None:
        known = ", ".join(sorted(entry_points(group))) or "none installed"
        raise PluginError(f"unknown {what} '{name}': not lmcpipe's, not an import path "
                          f"'package.module:Name', and no installed package registers it in "
                          f"the entry-point group {group} (registered: {known})")
    module_name, _, attribute = path.partition(":")
    via = f" (entry point '{name}' of {group})" if path != name else ""
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise PluginError(f"{what} '{path}'{via}: cannot import module '{module_name}' ({e}); "
                          "install its package (pip install -e <dir>) or add its folder to "
                          "PYTHONPATH") from None
    except Exception as e:  # the user's module failed while importing: say how, in one line
        raise PluginError(f"{what} '{path}'{via}: importing module '{module_name}' failed: "
                          f"{type(e).__name__}: {e}") from None
    obj: object = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise PluginError(f"{what} '{path}'{via}: module '{module_name}' has no attribute "
                              f"'{attribute}' (check the name after the colon)")
        obj = getattr(obj, part)
    return obj


def _module_root(module_name: str) -> Path | None:
    """The folder of the top-level package of ``module_name``, or its file when it is a plain
    module; None when it has no source file (a built-in or compiled module)."""
    top = module_name.split(".")[0]
    module = sys.modules.get(top)
    spec = getattr(module, "__spec__", None) if module else importlib.util.find_spec(top)
    if spec is None or spec.origin in (None, "built-in", "frozen"):
        return None
    origin = Path(spec.origin)
    return origin.parent if origin.name == "__init__.py" else origin


def source_files(name: str, group: str) -> list[Path]:
    """The Python files a user's object is read from: every ``.py`` file of the top-level
    package its module belongs to (a model file may import a sibling for its blocks), or the
    module's own file. Empty for lmcpipe's own names (``lmcpipe.codever`` hashes those)."""
    path = target(name, group)
    if path is None:
        return []
    root = _module_root(path.partition(":")[0])
    if root is None:
        return []
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
