"""The summary stage: counts of a stage's per-item statuses (what was processed, what was not and why)."""

from __future__ import annotations

from typing import Sequence

from maskbench.io.atomic import write_json
from maskbench.io.summaries import status_counts


def write_status_summary(shard_paths: Sequence[str], usable: Sequence[str], out_path: str) -> dict:
    counts = status_counts(list(shard_paths), list(usable))
    write_json(out_path, counts)
    return counts
