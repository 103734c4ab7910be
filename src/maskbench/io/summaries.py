"""Per-status counts over shard manifests: what was processed, and what was not and why."""

from __future__ import annotations

from collections import Counter
from typing import Iterable

import pyarrow.parquet as pq

from maskbench.io.manifests import USABLE_STATUSES


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


def variant_status_counts(paths: Iterable[str], usable_statuses: Iterable[str] = USABLE_STATUSES) -> dict | None:
    """Alignment status counts of the bare (`unmasked`) and the real-masked (`real`) photos of a
    set that has real masks (how often a real masked face is found), else None."""
    usable_statuses = tuple(usable_statuses)
    statuses: dict[str, Counter] = {"unmasked": Counter(), "real": Counter()}
    for path in paths:
        if "real_mask" not in pq.read_schema(path).names:
            continue
        table = pq.read_table(path, columns=["status", "real_mask"])
        for status, real in zip(table["status"].to_pylist(), table["real_mask"].to_pylist()):
            statuses["real" if real else "unmasked"][status] += 1
    if not statuses["real"]:
        return None
    out = {}
    for variant, counts in statuses.items():
        total = sum(counts.values())
        usable = sum(counts[s] for s in usable_statuses)
        out[variant] = {"images": total, "usable": usable, "usable_rate": round(usable / total, 6) if total else 0.0,
                        "statuses": dict(sorted(counts.items()))}
    return out
