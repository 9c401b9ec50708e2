"""Derived seeds: every source of randomness is a pure function of named integers.

Seeds are derived by hashing a tuple such as ``("order", 1, 2, epoch)``, so that a data-order
stream, an init or a random mask never depends on how many random numbers were drawn before it.
This is what makes a killed run resume bit for bit: the randomness of step t is fixed without
RNG state.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from a tuple of names and integers."""
    digest = hashlib.sha256(repr(tuple(parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(*parts: object) -> torch.Generator:
    """A CPU generator seeded from ``derive_seed(*parts)``."""
    return torch.Generator().manual_seed(derive_seed(*parts))
