"""Derived seeds: every source of randomness is a pure function of named integers.

Seeds are derived by hashing a tuple such as ``("order", 1, 2, epoch)``, so that a data-order
stream, an init or a random mask never depends on how many random numbers were drawn before it.
This is what makes a killed run resume bit for bit: the randomness of step t is fixed without
RNG state.
"""

from __future__ import annotations

import hashlib
import operator

import torch


def _canonical(part: object) -> int | str:
    """A seed part as a plain int or a name. Any integer type (``numpy.int64`` too) is its int,
    so ``3`` and ``np.int64(3)`` give one stream; a number spelled as a string, a bool or a
    float is refused rather than silently giving a stream of its own."""
    if isinstance(part, str):
        if part.lstrip("-").isdigit():
            raise ValueError(f"seed part {part!r} is a number written as a string; pass an int")
        return part
    if isinstance(part, bool) or not hasattr(part, "__index__"):
        raise TypeError(f"seed part {part!r} ({type(part).__name__}) must be an int or a name")
    return operator.index(part)


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from a tuple of names and integers (hashed in canonical form, so the
    seeds of plain ints and names are what they always were)."""
    digest = hashlib.sha256(repr(tuple(_canonical(p) for p in parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(*parts: object) -> torch.Generator:
    """A CPU generator seeded from ``derive_seed(*parts)``."""
    return torch.Generator().manual_seed(derive_seed(*parts))
