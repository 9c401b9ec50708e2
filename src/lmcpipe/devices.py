"""Which torch device a stage runs on (``--device`` of the training and interpolation stages).

Its own module so that the interpolation and curvature stages choose a device without importing
the training stack (and without their code version following ``train.py``).
"""

from __future__ import annotations

import torch


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when torch sees a device, else the CPU; ``cuda...`` fails without one, in
    one line naming the config key that asked for it (``resources.require_gpu``)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"lmcpipe: --device {name}: torch sees no CUDA device (the experiment's "
                         "resources.require_gpu is set; unset it to fall back to the CPU)")
    return torch.device(name)
