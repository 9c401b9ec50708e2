"""Networks: one module per architecture, a registry by config name, and the seeded init.

This package's namespace is torch-free: ``NAMES`` and ``BIAS_INITS`` are plain facts that the
config check (``lmcpipe.config``) and the Snakemake rules read at parse time, and importing torch
there would cost every Snakemake start seconds. ``REGISTRY``, ``build``, ``build_initialised``,
``initialise`` and ``PrunableModel`` come from ``lmcpipe.models.registry``, imported on first use
(PEP 562 module ``__getattr__``), so ``models.build(...)`` reads as before.
"""

from __future__ import annotations

import importlib

NAMES = ("lenet_300_100", "resnet20", "vgg16", "vgg16_nobias", "resnet50", "inceptionv3")
BIAS_INITS = ("uniform", "zero")
# how a network's weights are first drawn: lmcpipe's seeded init, or the network's own (seeded)
MODEL_INITS = ("lmcpipe", "own")
_FROM_REGISTRY = ("REGISTRY", "PrunableModel", "build", "build_initialised", "initialise",
                  "input_shape")


def __getattr__(name: str) -> object:
    if name in _FROM_REGISTRY:
        return getattr(importlib.import_module("lmcpipe.models.registry"), name)
    raise AttributeError(f"module 'lmcpipe.models' has no attribute '{name}'")


__all__ = ["BIAS_INITS", "MODEL_INITS", "NAMES", *_FROM_REGISTRY]
