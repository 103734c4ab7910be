"""One dataset's line of the coverage table, from its alignment and mask status summaries."""

from __future__ import annotations


def coverage_row(dataset: str, aligned: dict, masked: dict[str, dict]) -> dict:
    """Aligned images, then per mask type the masked share and what was not masked and why; for a
    set with real masks also its bare and real-masked photos apart (masks are painted on the bare
    ones only, so their share is of the aligned bare photos).

    Per mask type, ``failure_to_enrol`` counts masked photos where no face was found again
    (``paint_on: image``; a biometric outcome, counted in FNMR) and ``paint_errors`` the chips the
    painter failed on (a software fault, status ``error``): neither is scored, and both lower
    ``masked_rate``."""
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
        statuses = counts.get("statuses") or {}
        row[f"{mask}_masked_rate"] = round(counts["usable"] / base, 6) if base else 0.0
        row[f"{mask}_failure_to_enrol"] = int(statuses.get("no_face", 0))
        row[f"{mask}_paint_errors"] = int(statuses.get("error", 0))
    return row
