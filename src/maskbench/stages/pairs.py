"""The pairs stage: one protocol's manifest for one dataset, from its aligned shards.

A protocol with ``split: {strategy, part}`` is built on the images of that part only (the split
manifest of maskbench.protocols.splits gives each image's part): this is how a model trained on the
train part of an identity split is tested on people it never saw.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from maskbench.protocols.all_vs_all import prepare as prepare_all_vs_all
from maskbench.protocols.all_vs_all import write_all_vs_all
from maskbench.io.atomic import write_json, write_table
from maskbench.io.copies import find_copies
from maskbench.io.readers import load_acquired, read_aligned
from maskbench.protocols.pairs import (
    ProtocolError,
    all_identities_pairs,
    check_pairs,
    dicta_pairs,
    lfw_view2_pairs,
    pairs_report,
    pairs_table,
    restrict_to_split,
    with_copies_grouped,
)
from maskbench.protocols.variant_pools import build_pool_pairs, unaligned_real

log = logging.getLogger(__name__)

VERIFICATION_KINDS = ("all_identities", "dicta1000", "lfw_view2", "all_vs_all")


def read_groups(index_path: str | None) -> dict[str, str | None] | None:
    """image -> group (video, session) from the dataset's index, or None where it has none."""
    if not index_path:
        return None
    table = pq.read_table(index_path)
    if "group" not in table.column_names:
        return None
    groups = dict(zip(table["image_id"].to_pylist(), table["group"].to_pylist()))
    return groups if any(g is not None for g in groups.values()) else None


def _listed_pairs(protocol: dict[str, Any], acquired_json: str, usable: dict[str, str], every: list[str],
                  in_split: set[str] | None, keep_unaligned: bool = False):
    key = protocol.get("pairs_file", "pairs")
    entry = load_acquired(acquired_json).get(key)
    if entry is None:
        raise ProtocolError(f"{acquired_json} lists no pairs file {key!r}")
    return lfw_view2_pairs(usable, Path(entry["path"]).read_text(encoding="utf-8"), every, in_split, keep_unaligned)


def build_pairs(
    aligned_paths: list[str],
    protocol: dict[str, Any],
    comparisons: list[tuple[str, str]],
    seed: int,
    acquired_json: str,
    table_path: str,
    report_path: str,
    split_path: str | None = None,
    index_path: str | None = None,
    copies_path: str | None = None,
) -> dict:
    """Write one protocol's manifest and its report. ``index_path`` gives the images' groups
    (videos): genuine pairs never within a group unless the protocol sets ``same_group_genuine``.
    ``copies_path`` is the dataset's copies file (the copies stage); without it the copies are
    found here, from the chips."""
    aligned = read_aligned(aligned_paths)
    usable, every = aligned.usable, aligned.every
    images, in_split, split_entry = restrict_to_split(usable, protocol, split_path)
    kind = protocol["kind"]
    folds = protocol.get("folds", 1)
    groups = None if protocol.get("same_group_genuine") else read_groups(index_path)
    within_groups = groups is not None  # the protocol's own rule, whatever the copies add below
    copies = [] if kind == "lfw_view2" else find_copies(aligned_paths, images, copies_path)  # listed: as listed
    groups = with_copies_grouped(groups, copies)
    real = aligned.real_masked & set(images)
    # a real-masked photo the aligner could not use stays in its pool, unscored: a failure to enrol,
    # as a synthetic mask's face that is not found again (a mask that defeats the detector is part of
    # what it does, and leaving such photos out would keep the easy ones). A split manifest lists
    # usable images only: those of the part's people are added.
    unaligned = unaligned_real(aligned, set(images.values()))
    if real or unaligned:  # photos of real masks: each side of a comparison draws from its variant's pool
        listed, listed_dropped = None, Counter()
        if kind == "lfw_view2":
            listed, listed_dropped = _listed_pairs(protocol, acquired_json, usable, every, in_split)
        report = build_pool_pairs({**images, **unaligned}, real | set(unaligned), protocol, comparisons,
                                  seed, table_path, listed, listed_dropped, groups)
        report["real_photos_not_aligned"] = len(unaligned)
    elif kind == "all_vs_all":
        prepared = prepare_all_vs_all(images, seed, folds, protocol.get("max_impostors"), groups)
        report = write_all_vs_all(prepared, comparisons, table_path)
    else:
        dropped: Counter = Counter()
        if kind == "all_identities":
            pairs = all_identities_pairs(images, seed, folds, groups)
        elif kind == "dicta1000":
            pairs = dicta_pairs(images, seed, protocol.get("n_pairs", 1000), folds, groups)
        elif kind == "lfw_view2":
            # a listed pair whose photo was not aligned stays, unscored: a failure to enrol, as LFW
            # classifies every pair (a split part lists aligned photos only: there it is dropped)
            pairs, dropped = _listed_pairs(protocol, acquired_json, usable, every, in_split, keep_unaligned=True)
        else:
            raise ProtocolError(f"unknown verification protocol kind {kind!r}; known: {list(VERIFICATION_KINDS)}")
        not_aligned = {i for p in pairs for i in (p.ref_image, p.probe_image)} - set(images)
        check_pairs(pairs, {**images, **{i: aligned.identity.get(i) for i in not_aligned}})
        write_table(table_path, pairs_table(pairs, comparisons))
        report = pairs_report(pairs, comparisons, dropped)
        if kind == "lfw_view2":
            report["pairs_with_an_unaligned_image"] = sum(p.ref_image in not_aligned or p.probe_image in not_aligned
                                                          for p in pairs)
    if split_entry:
        report["split"] = split_entry
    if within_groups:
        report["genuine_pairs_within_a_group"] = False
    if copies:  # never a genuine pair of two copies of one picture
        report["copies_of_one_picture"] = {"groups": len(copies), "images": sum(len(c) for c in copies)}
    report["kind"] = kind
    write_json(report_path, report)
    log.info("%s: %d image pairs x %d comparisons; dropped %s", kind, report["image_pairs"],
             len(comparisons), report["dropped"])
    return report
