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


def coverage_row(dataset: str, aligned: dict, masked: dict[str, dict]) -> dict:
    """One dataset's line of the coverage table: aligned images, then masked share per mask type;
    for a set with real masks also its bare and real-masked photos apart (masks are painted on
    the bare ones only, so their share is of the aligned bare photos)."""
    row = {"dataset": dataset, "images": aligned["images"], "aligned": aligned["usable"],
           "aligned_rate": aligned["usable_rate"]}
    base = aligned["usable"]
    for variant, counts in (aligned.get("per_variant") or {}).items():
        row[f"{variant}_images"] = counts["images"]
        row[f"{variant}_aligned_rate"] = counts["usable_rate"]
        # found by the detector itself (a fallback box or provided landmarks do not count)
        found = counts["statuses"].get("ok", 0)
        row[f"{variant}_detected_rate"] = round(found / counts["images"], 6) if counts["images"] else 0.0
        if variant == "unmasked":
            base = counts["usable"]
    for mask, counts in masked.items():
        row[f"{mask}_masked_rate"] = round(counts["usable"] / base, 6) if base else 0.0
        # paint_on: image: masked photos where no face was found again (failures to enrol)
        row[f"{mask}_failure_to_enrol"] = int((counts.get("statuses") or {}).get("no_face", 0))
    return row
