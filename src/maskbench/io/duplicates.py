"""Copies of one picture among a dataset's images, found by their aligned chips.

A face set may file one picture under two names (UTKFace does); an image-level split must keep
the copies in one part, or a picture is trained on and tested.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

from maskbench.io.readers import read_shard


def duplicate_chips(paths: Iterable[str], images: Iterable[str]) -> list[list[str]]:
    """Groups (sorted, of two or more) of ``images`` whose aligned chips are byte for byte the
    same: one picture filed under two names (UTKFace has such copies). The aligner is
    deterministic, so identical files give identical chips; re-encoded copies are not found."""
    wanted, by_digest = set(images), {}
    for path in paths:
        table = read_shard(path, ["image_id"], optional=["chip"])
        if "chip" not in table.column_names:  # a manifest of image ids only (no chips to compare)
            continue
        for image_id, chip in zip(table["image_id"].to_pylist(), table["chip"].to_pylist()):
            if image_id in wanted and chip:
                by_digest.setdefault(hashlib.blake2b(chip, digest_size=16).digest(), []).append(image_id)
    return sorted(sorted(ids) for ids in by_digest.values() if len(ids) > 1)
