"""Train/val/test splits of a dataset's usable images, written as Parquet manifests.

Four strategies:

- ``identity``: whole people go to one split, so no person is seen in training and tested on
  (an image without an identity counts as a person of its own);
- ``uniform``: stratified on task labels (jointly, e.g. sex x race x age group) so every split has
  the label distribution of the whole set; strata too small to split are merged into coarser ones;
- ``random``: a seeded plain random split of images;
- ``per_identity``: one image of every person with >= 3 images to val and one to test, the rest to
  train; a person with 2 images gives one to val or test, alternating; 1 image stays in train.

Every split is seeded and independent of input order (images are sorted first), and its
invariants (every image exactly once; identity splits disjoint) are checked before it is written.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from maskbench.seeds import item_seed
from maskbench.protocols.split_spec import IMAGE_LEVEL, SPLIT_NAMES, STRATEGIES, SplitError, check_ratios

SPLITS_SCHEMA = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("identity", pa.string()),
        pa.field("split", pa.string(), nullable=False),
    ]
)

@dataclass
class Split:
    """image_id -> split name, plus what the strategy did (for the report)."""

    strategy: str
    assignment: dict[str, str]
    notes: dict[str, Any] = field(default_factory=dict)


def _rng(seed: int, *keys: str) -> np.random.Generator:
    return np.random.default_rng(item_seed(seed, "splits", *keys))


def _sk_seed(seed: int, *keys: str) -> int:
    return item_seed(seed, "splits", *keys) % (2**32)


def _cut(items: Sequence[str], fraction: float, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """A seeded random (rest, part) cut of ``items`` with round(fraction * n) items in part."""
    order = rng.permutation(len(items))
    n_part = int(round(fraction * len(items)))
    part = sorted(items[i] for i in order[:n_part])
    rest = sorted(items[i] for i in order[n_part:])
    return rest, part


# ----------------------------------------------------------------------------------------------
# random


def random_split(image_ids: Sequence[str], ratios: dict[str, float], seed: int) -> Split:
    """Plain seeded random split of images, sizes rounded from the ratios."""
    ratios = check_ratios(ratios)
    ids = sorted(image_ids)
    rest, test = _cut(ids, ratios["test"], _rng(seed, "random", "test"))
    val_share = ratios["val"] / (ratios["train"] + ratios["val"])
    train, val = _cut(rest, val_share, _rng(seed, "random", "val"))
    return Split("random", _assign(train, val, test))


def _assign(train: Sequence[str], val: Sequence[str], test: Sequence[str]) -> dict[str, str]:
    out = {i: "train" for i in train}
    out.update({i: "val" for i in val})
    out.update({i: "test" for i in test})
    return out


# ----------------------------------------------------------------------------------------------
# uniform (stratified)


def merge_rare_strata(keys: Sequence[tuple[str, ...]], min_count: int) -> list[str]:
    """One stratum name per row: its joint key where that key has >= ``min_count`` rows, else the
    longest key prefix that does (counting only rows not yet placed), else a stratum of the rest;
    a rest still smaller than ``min_count`` joins the largest stratum. Never fails."""
    n = len(keys)
    if n == 0:
        return []
    depth = len(keys[0])
    names: list[str | None] = [None] * n
    for d in range(depth, -1, -1):
        open_rows = [i for i in range(n) if names[i] is None]
        counts = Counter(keys[i][:d] for i in open_rows)
        for i in open_rows:
            prefix = keys[i][:d]
            if counts[prefix] >= min_count:
                names[i] = "|".join(prefix) + "|*" * (depth - d) if d else "*"
    leftover = [i for i in range(n) if names[i] is None]
    if leftover:
        placed = Counter(name for name in names if name is not None)
        target = min(placed, key=lambda k: (-placed[k], k)) if placed else "*"
        for i in leftover:
            names[i] = target
    return [str(name) for name in names]


def _stratified_cut(ids: list[str], keys: list[tuple[str, ...]], fraction: float,
                    seed: int) -> tuple[list[str], list[str], dict[str, Any]]:
    """(rest, part) with ``fraction`` of ``ids`` in part, stratified on ``keys``.

    Strata need at least ceil(1 / min(fraction, 1 - fraction)) + 1 rows so that sklearn can put
    one of each in both parts; if sklearn still refuses (tiny sets), the key is shortened and in
    the end the cut is plain random. The notes say what was used.
    """
    from sklearn.model_selection import train_test_split  # only where a split is made

    if fraction <= 0 or not ids:
        return list(ids), [], {"stratified_on": 0, "strata": 0}
    smaller = min(fraction, 1.0 - fraction)
    min_count = max(2, math.ceil(1.0 / smaller) + 1) if smaller > 0 else 2
    for depth in range(len(keys[0]) if keys else 0, 0, -1):
        strata = merge_rare_strata([k[:depth] for k in keys], min_count)
        n_strata = len(set(strata))
        if n_strata < 2:
            continue
        try:
            rest, part = train_test_split(ids, test_size=fraction, stratify=strata,
                                          random_state=seed, shuffle=True)
        except ValueError:
            continue
        return sorted(rest), sorted(part), {"stratified_on": depth, "strata": n_strata, "min_count": min_count}
    rest, part = _cut(ids, fraction, np.random.default_rng(seed))
    return rest, part, {"stratified_on": 0, "strata": 1, "min_count": min_count}


def uniform_split(labels: pd.DataFrame, stratify: Sequence[str], ratios: dict[str, float], seed: int) -> Split:
    """Stratified split on the joint distribution of the ``stratify`` columns of ``labels``
    (index: image_id). A missing label is a value of its own (``<na>``)."""
    ratios = check_ratios(ratios)
    missing = [c for c in stratify if c not in labels.columns]
    if missing:
        raise SplitError(f"uniform split: no label column {missing}; known: {sorted(labels.columns)}")
    frame = labels.sort_index()
    ids = [str(i) for i in frame.index]
    key_of = {
        i: tuple("<na>" if pd.isna(v) else str(v) for v in row)
        for i, row in zip(ids, frame[list(stratify)].itertuples(index=False, name=None))
    }
    rest, test, test_notes = _stratified_cut(ids, [key_of[i] for i in ids], ratios["test"],
                                             _sk_seed(seed, "uniform", "test"))
    val_share = ratios["val"] / (ratios["train"] + ratios["val"])
    train, val, val_notes = _stratified_cut(rest, [key_of[i] for i in rest], val_share,
                                            _sk_seed(seed, "uniform", "val"))
    notes = {"stratify": list(stratify), "test_cut": test_notes, "val_cut": val_notes}
    return Split("uniform", _assign(train, val, test), notes)


# ----------------------------------------------------------------------------------------------
# by identity


def _people(identities: dict[str, str | None]) -> dict[str, list[str]]:
    """person -> sorted image ids; an image without identity is a person of its own."""
    groups: dict[str, list[str]] = defaultdict(list)
    for image_id, identity in identities.items():
        groups[f"id:{identity}" if identity is not None else f"image:{image_id}"].append(image_id)
    return {k: sorted(v) for k, v in sorted(groups.items())}


def identity_split(identities: dict[str, str | None], ratios: dict[str, float], seed: int) -> Split:
    """Whole people to one split, in seeded order, each to the split whose share of the images its
    images' midpoint falls in (image counts follow the ratios up to one person's size). A dataset
    without any identity label (UTKFace) is refused: it would be a per-image split by another name."""
    if identities and not any(v is not None for v in identities.values()):
        raise SplitError("identity needs identity labels; this dataset has none (use random or uniform)")
    ratios = check_ratios(ratios)
    people = _people(identities)
    names = list(people)
    order = _rng(seed, "identity").permutation(len(names))
    total = sum(len(v) for v in people.values())
    bounds = np.cumsum([ratios[s] for s in SPLIT_NAMES]) * total
    out: dict[str, str] = {}
    done = 0
    for k in order:
        images = people[names[k]]
        mid = done + len(images) / 2.0
        split = SPLIT_NAMES[min(int(np.searchsorted(bounds, mid, side="right")), len(SPLIT_NAMES) - 1)]
        out.update({i: split for i in images})
        done += len(images)
    return Split("identity", out, {"people": len(people)})


def per_identity_split(identities: dict[str, str | None], seed: int) -> Split:
    """The CS230 rule: per person with >= 3 images one (seeded) image to val, one to test, the rest
    to train; people with 2 images give one image to val and test in turn (sorted by name); people
    with one image, and images without identity, stay in train."""
    if not any(v is not None for v in identities.values()):
        raise SplitError("per_identity needs identity labels; this dataset has none (use random or uniform)")
    groups: dict[str, list[str]] = defaultdict(list)
    out: dict[str, str] = {}
    for image_id, identity in identities.items():
        if identity is None:
            out[image_id] = "train"
        else:
            groups[identity].append(image_id)
    pairs_seen = 0
    for identity in sorted(groups):
        images = sorted(groups[identity])
        order = [images[i] for i in _rng(seed, "per_identity", identity).permutation(len(images))]
        if len(images) >= 3:
            out[order[0]], out[order[1]] = "val", "test"
            out.update({i: "train" for i in order[2:]})
        elif len(images) == 2:
            out[order[0]] = "train"
            out[order[1]] = "val" if pairs_seen % 2 == 0 else "test"
            pairs_seen += 1
        else:
            out[images[0]] = "train"
    return Split("per_identity", out, {"people": len(groups), "people_with_two_images": pairs_seen})


# ----------------------------------------------------------------------------------------------
# invariants, table, report


def check_split(split: Split, identities: dict[str, str | None]) -> None:
    """Every usable image exactly once with a known split name; an identity split disjoint."""
    assigned, usable = set(split.assignment), set(identities)
    if assigned != usable:
        extra, missing = sorted(assigned - usable), sorted(usable - assigned)
        raise SplitError(f"{split.strategy} split: images not usable {extra[:3]}, images left out {missing[:3]}")
    bad = sorted({s for s in split.assignment.values() if s not in SPLIT_NAMES})
    if bad:
        raise SplitError(f"{split.strategy} split: unknown split names {bad}")
    if split.strategy == "identity":
        where: dict[str, set[str]] = defaultdict(set)
        for image_id, name in split.assignment.items():
            if identities[image_id] is not None:
                where[identities[image_id]].add(name)
        leaked = sorted(p for p, names in where.items() if len(names) > 1)
        if leaked:
            raise SplitError(f"identity split: people in more than one split, e.g. {leaked[:3]}")


def split_table(split: Split, identities: dict[str, str | None]) -> pa.Table:
    """SPLITS_SCHEMA rows sorted by image_id."""
    ids = sorted(split.assignment)
    return pa.Table.from_pydict(
        {"image_id": ids, "identity": [identities[i] for i in ids], "split": [split.assignment[i] for i in ids]},
        schema=SPLITS_SCHEMA,
    )


def shared_identities(split: Split, identities: dict[str, str | None]) -> int:
    """People with images in more than one split (zero for `identity`; leakage elsewhere)."""
    where: dict[str, set[str]] = defaultdict(set)
    for image_id, name in split.assignment.items():
        if identities.get(image_id) is not None:
            where[identities[image_id]].add(name)
    return sum(len(v) > 1 for v in where.values())


def split_report(split: Split, identities: dict[str, str | None], labels: pd.DataFrame,
                 seed: int, ratios: dict[str, float] | None, unusable: int) -> dict[str, Any]:
    """Sizes, people and label distributions (counts) per split, and what the strategy did."""
    by_split: dict[str, list[str]] = {s: [] for s in SPLIT_NAMES}
    for image_id in sorted(split.assignment):
        by_split[split.assignment[image_id]].append(image_id)
    report: dict[str, Any] = {
        "strategy": split.strategy,
        "seed": seed,
        "ratios": ratios,
        "images": len(split.assignment),
        "unusable_images_left_out": unusable,
        "sizes": {s: len(v) for s, v in by_split.items()},
        "people_in_more_than_one_split": shared_identities(split, identities),
        "notes": split.notes,
        "labels": {},
    }
    for s, ids in by_split.items():
        people = {identities[i] for i in ids if identities[i] is not None}
        report.setdefault("people", {})[s] = len(people)
        per_label = {}
        for column in labels.columns:
            values = labels.loc[ids, column] if ids else pd.Series([], dtype=object)
            counts = Counter("<na>" if pd.isna(v) else str(v) for v in values)
            per_label[column] = dict(sorted(counts.items()))
        report["labels"][s] = per_label
    return report


def keep_duplicates_together(split: Split, duplicates: Sequence[Sequence[str]]) -> Split:
    """Each group of copies of one picture goes to the part of its first image by name: a
    picture in train and in test would be scored on what the model learnt."""
    assignment, moved = dict(split.assignment), 0
    for group in duplicates:
        unknown = sorted(set(group) - set(assignment))
        if unknown:
            raise SplitError(f"copies {sorted(group)}: {unknown} not among the split's images")
        first, *others = sorted(group)
        for image_id in others:
            if assignment[image_id] != assignment[first]:
                assignment[image_id] = assignment[first]
                moved += 1
    notes = {**split.notes, "duplicate_groups": len(duplicates), "duplicates_moved": moved}
    return Split(split.strategy, assignment, notes)


def make_split(strategy: str, identities: dict[str, str | None], labels: pd.DataFrame,
               ratios: dict[str, float], stratify: Sequence[str], seed: int,
               duplicates: Sequence[Sequence[str]] = ()) -> Split:
    """Run one strategy over the usable images and check its invariants. ``duplicates`` (groups
    of copies of one picture) stay in one part under the image-level strategies; per_identity
    (one image of a person to val, one to test) counts the groups it parts."""
    if strategy == "random":
        split = random_split(list(identities), ratios, seed)
    elif strategy == "uniform":
        split = uniform_split(labels.loc[sorted(identities)], stratify, ratios, seed)
    elif strategy == "identity":
        split = identity_split(identities, ratios, seed)
    elif strategy == "per_identity":
        split = per_identity_split(identities, seed)
    else:
        raise SplitError(f"unknown split strategy {strategy!r}; known: {list(STRATEGIES)}")
    if strategy in IMAGE_LEVEL:
        split = keep_duplicates_together(split, duplicates)
    elif duplicates:
        parted = sum(len({split.assignment[i] for i in group}) > 1 for group in duplicates)
        split.notes.update(duplicate_groups=len(duplicates), duplicate_groups_across_parts=parted)
    check_split(split, identities)
    if strategy != "per_identity":
        filled = set(split.assignment.values())
        empty = [p for p in SPLIT_NAMES if check_ratios(ratios)[p] > 0 and p not in filled]
        if empty:  # too few people (or images) for the ratios: a protocol on that part says so
            split.notes["empty_parts"] = empty
    return split
