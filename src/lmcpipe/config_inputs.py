"""The config's network and dataset: normalised to the strings every stage gets, and checked.

A network or dataset lmcpipe does not ship (``lmcpipe.plugins``, ``lmcpipe.models.user``,
``lmcpipe.data``) is checked here, when the config is validated and before any job starts, so a
misspelt import path or a folder without classes is one line naming the key, not a failed job
an hour into a run. Split from ``lmcpipe.config``, which calls ``dataset`` and ``network`` from
its per-experiment check.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from lmcpipe import data, plugins
from lmcpipe.data.registry import DatasetInfo
from lmcpipe.errors import StageError
from lmcpipe.models import NAMES as MODELS
from lmcpipe.models import cifar_resnet
from lmcpipe.models.spec import GROUP, TORCHVISION, join_spec, split_spec

IMAGEFOLDER = "imagefolder:"  # an image folder of the user's, as a dataset name


class Refused(Exception):
    """A cross-field check of one experiment failed at ``key`` (dotted, inside it)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key, self.message = key, message


def dataset(exp: dict[str, Any], data_root: str) -> DatasetInfo:
    """Normalise the experiment's dataset to the one string every stage gets (an image folder
    given as ``{imagefolder: path, augment, image_size}`` becomes ``imagefolder:path`` and the
    train keys) and check it: the one-line DataError of a missing or malformed dataset."""
    spec, train = exp["dataset"], exp["train"]
    if isinstance(spec, dict):
        for key in ("augment", "image_size"):
            if key in spec:
                if train[key] not in (spec[key], _DEFAULTS[key]):
                    raise Refused(f"dataset.{key}", f"{spec[key]!r} differs from train.{key} = "
                                   f"{train[key]!r}; give it once")
                train[key] = spec[key]
        spec = exp["dataset"] = f"{IMAGEFOLDER}{spec['imagefolder']}"
    train["augment"] = "" if train["augment"] == "default" else train["augment"]
    try:
        return data.check(spec, data_root)
    except StageError as e:
        raise Refused("dataset", str(e)) from None


_DEFAULTS = {"augment": "default", "image_size": 0}


@functools.lru_cache(maxsize=64)
def _check_network(spec: str, shape: tuple[int, ...], classes: int) -> str:
    """``models.user.check`` of a network lmcpipe does not ship, once per network and input
    (Snakemake validates the config at every start; torch is imported only here)."""
    from lmcpipe.models import user

    name, args = split_spec(spec)
    return user.check(name, shape, classes, args)


def network(exp: dict[str, Any], dataset: DatasetInfo) -> None:
    """Check the experiment's network and fold its ``model_args`` into the name every stage
    gets (``models.user.join_spec``). A user's network is built on the meta device and its
    contract checked here, before any job: each breach is one line naming the fix."""
    name, args = exp["model"], exp.pop("model_args")
    try:
        family = cifar_resnet(name)
    except ValueError as e:
        raise Refused("model", str(e)) from None
    if name in MODELS or family:
        if args:
            raise Refused("model_args", f"{name} is one of lmcpipe's networks, which take no "
                           "arguments (model_args is for your own network; a CIFAR ResNet's "
                           "depth and width go in its name, cifar_resnet_<depth>_<width>)")
        return
    if not (name.startswith(TORCHVISION) or plugins.target(name, GROUP)):
        raise Refused("model", f"unknown network '{name}' (lmcpipe's: {', '.join(MODELS)}, "
                       "cifar_resnet_<depth>_<width>; or "
                       "an import path package.module:Class, a name registered in the "
                       "entry-point group lmcpipe.models, or torchvision:<name>)")
    spec = exp["model"] = join_spec(name, args)
    shape = dataset.input_shape
    if exp["train"]["image_size"]:
        shape = (shape[0], exp["train"]["image_size"], exp["train"]["image_size"])
    try:
        checked = _check_network(spec, tuple(shape), dataset.num_classes)
    except StageError as e:
        raise Refused("model", str(e)) from None
    _levels_fit(exp["prune"], checked.prunable, checked.frozen, name)


def _levels_fit(prune: dict[str, Any], prunable: int, frozen: int, name: str) -> None:
    """Refuse IMP levels the network cannot give: with ``counting: open_lth`` each level
    removes ``fraction`` of all conv/linear weights still there, the never-pruned output layer
    included, so a network whose output layer is a large share of its weights runs out of
    prunable ones (``masks.magnitude_prune`` would stop the job; this says so before any job)."""
    if prune["counting"] != "open_lth":
        return
    remaining = prunable
    for level in range(1, prune["levels"] + 1):
        n = math.ceil(prune["fraction"] * (remaining + frozen))
        if n >= remaining:
            raise Refused("prune.levels", f"level {level} would prune {n + 1:,} of the "
                          f"{remaining:,} prunable weights left of {name}: counting open_lth "
                          f"counts its {frozen:,} never-pruned weights too (lower "
                          "prune.fraction or prune.levels, or use prune.counting: prunable)")
        remaining -= n + 1


