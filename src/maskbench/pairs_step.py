"""The pairs stage: one protocol's manifest for one dataset, from its aligned shards."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from maskbench.atomic import write_json, write_table
from maskbench.index_step import load_acquired
from maskbench.manifests import USABLE_STATUSES
from maskbench.pairs import (
    ProtocolError,
    all_identities_pairs,
    check_pairs,
    dicta_pairs,
    lfw_view2_pairs,
    pairs_report,
    pairs_table,
)

log = logging.getLogger(__name__)


def read_aligned_identities(paths: list[str]) -> tuple[dict[str, str], list[str]]:
    """(usable image -> identity, every image id) over a dataset's aligned shards."""
    usable: dict[str, str] = {}
    every: list[str] = []
    for path in paths:
        table = pq.read_table(path, columns=["image_id", "identity", "status"])
        for image_id, identity, status in zip(*(table[c].to_pylist() for c in ("image_id", "identity", "status"))):
            every.append(image_id)
            if status in USABLE_STATUSES:
                usable[image_id] = identity
    return usable, every


def build_pairs(
    aligned_paths: list[str],
    protocol: dict[str, Any],
    comparisons: list[tuple[str, str]],
    seed: int,
    acquired_json: str,
    table_path: str,
    report_path: str,
) -> dict:
    usable, every = read_aligned_identities(aligned_paths)
    kind = protocol["kind"]
    folds = protocol.get("folds", 1)
    dropped: Counter = Counter()
    if kind == "all_identities":
        pairs = all_identities_pairs(usable, seed, folds)
    elif kind == "dicta1000":
        pairs = dicta_pairs(usable, seed, protocol.get("n_pairs", 1000), folds)
    elif kind == "lfw_view2":
        entry = load_acquired(acquired_json).get(protocol.get("pairs_file", "pairs"))
        if entry is None:
            raise ProtocolError(f"{acquired_json} lists no pairs file {protocol.get('pairs_file', 'pairs')!r}")
        pairs, dropped = lfw_view2_pairs(usable, Path(entry["path"]).read_text(encoding="utf-8"), every)
    else:
        raise ProtocolError(f"unknown protocol kind {kind!r}")
    check_pairs(pairs, usable)
    table = pairs_table(pairs, comparisons)
    report = pairs_report(pairs, comparisons, dropped)
    write_table(table_path, table)
    write_json(report_path, report)
    log.info("%s: %d image pairs x %d comparisons; dropped %s", kind, len(pairs), len(comparisons), dict(dropped))
    return report
