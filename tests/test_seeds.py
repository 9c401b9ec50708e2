"""Derived seeds: one stream per (names, integers), whatever integer type carries them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmcpipe.seeds import derive_seed, generator


def test_integer_types_give_one_stream_and_plain_seeds_are_unchanged():
    assert derive_seed("order", 3, 1) == derive_seed("order", np.int64(3), torch.tensor(1))
    # the canonical form of plain ints and names is what was always hashed
    import hashlib

    old = int.from_bytes(hashlib.sha256(repr(("order", 3, 1)).encode()).digest()[:8], "little")
    assert derive_seed("order", 3, 1) == old & ((1 << 63) - 1)
    assert derive_seed("order", 3, 1) != derive_seed("order", 1, 3)
    a = torch.rand(3, generator=generator("x", 2))
    assert torch.equal(a, torch.rand(3, generator=generator("x", np.int32(2))))


@pytest.mark.parametrize("part", ["3", "-1", 2.0, True, None, (1, 2)])
def test_ambiguous_seed_parts_are_refused(part):
    with pytest.raises((TypeError, ValueError), match="seed part"):
        derive_seed("init", part)
