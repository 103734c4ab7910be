"""Per-item seeds derived from the config seed, so random choices do not depend on order."""

from __future__ import annotations

import hashlib


def item_seed(seed: int, *keys: str) -> int:
    """A 63-bit seed for one item (e.g. one image under one mask type)."""
    h = hashlib.blake2b(digest_size=8)
    h.update(str(seed).encode())
    for key in keys:
        h.update(b"\x00" + key.encode("utf-8", "surrogateescape"))
    return int.from_bytes(h.digest(), "little") >> 1
