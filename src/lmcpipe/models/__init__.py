"""Networks: one module per architecture, a registry by config name, and the seeded init.

This package's namespace is torch-free: ``NAMES`` and ``BIAS_INITS`` are plain facts that the
config check (``lmcpipe.config``) and the Snakemake rules read at parse time, and importing torch
there would cost every Snakemake start seconds. ``REGISTRY``, ``build``, ``build_initialised``,
``initialise`` and ``PrunableModel`` come from ``lmcpipe.models.registry``, imported on first use
(PEP 562 module ``__getattr__``), so ``models.build(...)`` reads as before.
"""

from __future__ import annotations

import importlib
import re

NAMES = ("lenet_300_100", "resnet20", "vgg16", "vgg16_nobias", "resnet50", "inceptionv3")
BIAS_INITS = ("uniform", "zero")
# how a network's weights are first drawn: lmcpipe's seeded init, or the network's own (seeded)
MODEL_INITS = ("lmcpipe", "own")
_FROM_REGISTRY = ("REGISTRY", "PrunableModel", "build", "build_initialised", "initialise",
                  "input_shape")
# open_lth's names of its CIFAR ResNet family: cifar_resnet_<depth>[_<width>], depth = 6n + 2,
# width 16 by default (cifar_resnet_20 is resnet20; cifar_resnet_20_8 has widths 8/16/32)
CIFAR_RESNET = re.compile(r"cifar_resnet_(\d+)(?:_(\d+))?")


def cifar_resnet(name: str) -> tuple[int, int] | None:
    """(depth, width) of an open_lth CIFAR ResNet name, or None for any other name. A name of
    the family's form with an impossible depth or width raises ValueError naming it."""
    match = CIFAR_RESNET.fullmatch(name)
    if match is None:
        return None
    depth, width = int(match[1]), int(match[2] or 16)
    if depth < 8 or (depth - 2) % 6 or width < 1:
        raise ValueError(f"'{name}': a CIFAR ResNet has depth 6n + 2 >= 8 and width >= 1 "
                         "(open_lth's cifar_resnet_<depth>[_<width>], e.g. cifar_resnet_20_8)")
    return depth, width


def is_own(name: str) -> bool:
    """Whether a (split) model name is one of lmcpipe's networks: a registry name or a member
    of the CIFAR ResNet family by open_lth's name."""
    return name in NAMES or CIFAR_RESNET.fullmatch(name) is not None


def __getattr__(name: str) -> object:
    if name in _FROM_REGISTRY:
        return getattr(importlib.import_module("lmcpipe.models.registry"), name)
    raise AttributeError(f"module 'lmcpipe.models' has no attribute '{name}'")


__all__ = ["BIAS_INITS", "CIFAR_RESNET", "MODEL_INITS", "NAMES", "cifar_resnet", "is_own",
           *_FROM_REGISTRY]
