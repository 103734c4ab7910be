"""Per-status counts over shard manifests: what was processed, and what was not and why."""

from __future__ import annotations

from collections import Counter
from typing import Iterable

import pyarrow.parquet as pq

from maskbench.manifests import USABLE_STATUSES


def status_counts(paths: Iterable[str], usable_statuses: Iterable[str] = USABLE_STATUSES) -> dict:
    """Counts of every status and reason over shard files, and the usable rate."""
    usable_statuses = tuple(usable_statuses)
    statuses: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for path in paths:
        table = pq.read_table(path, columns=["status", "reason"])
        for status, reason in zip(table["status"].to_pylist(), table["reason"].to_pylist()):
            statuses[status] += 1
            if status not in usable_statuses:
                reasons[f"{status}: {reason}"] += 1
    total = sum(statuses.values())
    usable = sum(statuses[s] for s in usable_statuses)
    return {
        "images": total,
        "usable": usable,
        "usable_rate": round(usable / total, 6) if total else 0.0,
        "statuses": dict(sorted(statuses.items())),
        "reasons": dict(sorted(reasons.items())),
    }


def coverage_row(dataset: str, aligned: dict, masked: dict[str, dict]) -> dict:
    """One dataset's line of the coverage table: aligned images, then masked share per mask type."""
    row = {"dataset": dataset, "images": aligned["images"], "aligned": aligned["usable"],
           "aligned_rate": aligned["usable_rate"]}
    for mask, counts in masked.items():
        row[f"{mask}_masked_rate"] = round(counts["usable"] / aligned["usable"], 6) if aligned["usable"] else 0.0
        # paint_on: image: masked photos where no face was found again (failures to enrol)
        row[f"{mask}_failure_to_enrol"] = int(counts["statuses"].get("no_face", 0))
    return row
