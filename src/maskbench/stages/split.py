"""The split stage: one strategy's split of a dataset's usable aligned images, with its report.

Kept apart from the attribute study, so that its code (whose every edit re-runs the splits, hence the
training of every model on them) is only what a split needs.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from maskbench.attributes.labels import read_labels
from maskbench.io.atomic import write_json, write_table
from maskbench.io.copies import find_copies
from maskbench.io.readers import read_aligned
from maskbench.protocols.split_spec import WATCHES_COPIES
from maskbench.protocols.splits import make_split, split_report, split_table

log = logging.getLogger(__name__)

REPORT_LABELS = ("sex", "race", "age_group")  # label distributions in a split's report


def build_split(index_path: str, aligned_paths: Sequence[str], strategy: str, ratios: dict[str, float],
                stratify: Sequence[str], age_groups: Sequence[int], seed: int, table_path: str,
                report_path: str, copies_path: str | None = None) -> dict[str, Any]:
    """One strategy's split of the usable aligned images, with its report; an image-level split
    keeps copies of one picture (identical chips: the dataset's copies file, else found from the
    chips) in one part; per_identity counts those it parts."""
    aligned = read_aligned(aligned_paths)
    identities, unusable = aligned.usable, aligned.unusable
    labels = read_labels(index_path, age_groups).reindex(sorted(identities))
    duplicates = find_copies(aligned_paths, identities, copies_path) if strategy in WATCHES_COPIES else []
    split = make_split(strategy, identities, labels, ratios, stratify, seed, duplicates)
    report = split_report(split, identities, labels[list(REPORT_LABELS)], seed,
                          ratios if strategy != "per_identity" else None, unusable)
    write_table(table_path, split_table(split, identities))
    write_json(report_path, report)
    log.info("%s split: %s", strategy, report["sizes"])
    return report
