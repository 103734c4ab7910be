"""Per-status counts over shard manifests: what was processed, and what was not and why."""

from __future__ import annotations

from collections import Counter
from typing import Iterable

import pyarrow.parquet as pq

from maskbench.manifests import USABLE_STATUSES


def status_counts(paths: Iterable[str]) -> dict:
    """Counts of every status and reason over shard files, and the usable rate."""
    statuses: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for path in paths:
        table = pq.read_table(path, columns=["status", "reason"])
        for status, reason in zip(table["status"].to_pylist(), table["reason"].to_pylist()):
            statuses[status] += 1
            if status not in USABLE_STATUSES:
                reasons[f"{status}: {reason}"] += 1
    total = sum(statuses.values())
    usable = sum(statuses[s] for s in USABLE_STATUSES)
    return {
        "images": total,
        "usable": usable,
        "usable_rate": round(usable / total, 6) if total else 0.0,
        "statuses": dict(sorted(statuses.items())),
        "reasons": dict(sorted(reasons.items())),
    }
