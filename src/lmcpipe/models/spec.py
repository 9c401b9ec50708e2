"""A network's name as stages get it: lmcpipe's own, or another's with its arguments.

Torch-free, as ``lmcpipe.models`` is: the config check and the Snakemake rules use it at every
start. ``TrainHParams.model`` holds the name and, for a network lmcpipe does not ship, its
``model_args`` as canonical JSON (``mypkg.nets:SmallCNN{"width":32}``), so that every cache keyed
by the model's name (memory traces, cost tables, calibrations) tells two widths apart, and each
run's ``model.pt`` record and the report page say which network and arguments trained it.
"""

from __future__ import annotations

import json
from typing import Any

from lmcpipe.models import is_own

TORCHVISION = "torchvision:"  # torchvision's classification networks by name
GROUP = "lmcpipe.models"  # the entry-point group a package registers its networks in


def split_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``("mypkg.nets:SmallCNN", {"width": 32})`` of ``mypkg.nets:SmallCNN{"width":32}``."""
    name, brace, rest = spec.partition("{")
    return name, json.loads(brace + rest) if brace else {}


def join_spec(name: str, args: dict[str, Any]) -> str:
    """The inverse of ``split_spec``: the name, and its arguments when there are any."""
    if not args:
        return name
    return name + json.dumps(args, sort_keys=True, separators=(",", ":"))


def is_user(name: str) -> bool:
    """Whether a (split) model name is not one of lmcpipe's own networks (``models.is_own``)."""
    return not is_own(name)
