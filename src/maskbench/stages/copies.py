"""The copies stage: which of a dataset's images are one picture filed under two names.

Run once per dataset over its aligned shards, so the pairs and identification jobs of every
protocol read one small list instead of hashing every chip again (minutes per job at CelebA's
size).
"""

from __future__ import annotations

import logging

from maskbench.io.atomic import write_json
from maskbench.io.duplicates import duplicate_chips
from maskbench.io.readers import read_aligned

log = logging.getLogger(__name__)


def write_copies(shard_paths: list[str], out_path: str) -> dict:
    """Write every group of images whose aligned chips are identical (see duplicate_chips)."""
    groups = duplicate_chips(shard_paths, read_aligned(shard_paths).usable)
    report = {"groups": groups, "images": sum(len(g) for g in groups)}
    write_json(out_path, report)
    log.info("%d groups of copies of one picture (%d images)", len(groups), report["images"])
    return report
