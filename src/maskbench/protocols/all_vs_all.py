"""The all-vs-all verification protocol, generated and written in blocks.

Every unordered pair of distinct usable images with an identity is compared once per variant
comparison: genuine when both images have the same identity, impostor otherwise. Which image of a
pair is the reference and which the probe (the masked copy, in an [unmasked, masked] comparison) is
a seeded coin flip per pair, the same in every comparison, so which people serve as masked probes
does not depend on how their names sort. An image is never paired with itself, hence never with its
own masked copy. Images without an identity are left out (nothing says whether two of them show the
same person) and counted. Two images of one group (the video of a YouTube Faces frame) never form a
genuine pair, as near-duplicates would inflate accuracy (counted as ``same_group_genuine`` under
``dropped``); a protocol's ``same_group_genuine: true`` allows them.

Folds go by identity: each person is dealt to one fold (a seeded shuffle of the identities, then
round robin), so a genuine pair has its person's fold and an impostor pair of two people of one fold
has that fold. An impostor pair across two folds gets fold -1 (:data:`BETWEEN_FOLDS`): it counts in
every pooled metric but in no fold, so a threshold chosen on the other folds and the k-fold accuracy
never see a person of the fold they are applied to.

n images give n (n - 1) / 2 pairs, so pairs are never held as Python objects: one block of
reference rows at a time becomes numpy index arrays, then one Parquet row group. The optional
``max_impostors`` keeps each impostor pair with probability max_impostors / impostors, decided by
a hash of the two images' seeded keys: the sample is the same whatever the block size or the
order of work, and the same on every run with the same seed; its size is binomial around
max_impostors (the report gives the exact count). Genuine pairs are always all kept.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from maskbench.io.atomic import atomic_path
from maskbench.io.manifests import PAIRS_SCHEMA
from maskbench.protocols.pairs import BETWEEN_FOLDS, ProtocolError, identity_folds
from maskbench.seeds import item_seed

# Rows per block, hence per Parquet row group: a quarter of pyarrow's default, to bound memory.
BLOCK_ROWS = 1 << 18


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SWAP = np.uint64(0xD6E8FEB86659FD93)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@dataclass
class AllVsAll:
    """The sorted images of the protocol, their identity codes and per-image hash keys."""

    image_ids: list[str]
    codes: np.ndarray  # identity code per image (int64), images sorted by id
    keys: np.ndarray  # seeded 64-bit key per image (uint64), for impostor sampling
    keep_impostor: float  # probability of keeping an impostor pair
    folds: int
    dropped: Counter = field(default_factory=Counter)
    identity_fold: np.ndarray | None = None  # fold per identity code (int64)
    groups: np.ndarray | None = None  # group code per image (int64, -1: none), or None

    def __post_init__(self) -> None:
        if self.identity_fold is None:
            self.identity_fold = np.zeros(int(self.codes.max(initial=-1)) + 1, dtype=np.int64)

    @property
    def n(self) -> int:
        return len(self.image_ids)


def prepare(images: dict[str, str | None], seed: int, folds: int = 1,
            max_impostors: int | None = None, groups: dict[str, str | None] | None = None,
            same_group_genuine: bool = False) -> AllVsAll:
    """Sort the images, code their identities, deal identities to folds and fix the impostor
    keep probability. ``groups`` (image -> group or None) keeps genuine pairs across groups only,
    unless ``same_group_genuine``."""
    if folds < 1:
        raise ProtocolError(f"all_vs_all: folds must be >= 1, got {folds}")
    dropped = Counter(no_identity=sum(v is None for v in images.values()))
    ids = sorted(k for k, v in images.items() if v is not None)
    names, codes = np.unique(np.array([images[i] for i in ids], dtype=object), return_inverse=True)
    sizes = np.bincount(codes, minlength=len(names)) if ids else np.zeros(0, dtype=np.int64)
    group_codes = None
    if groups is not None and not same_group_genuine:
        labels = [groups.get(i) for i in ids]
        if any(g is not None for g in labels):
            known = sorted({g for g in labels if g is not None})
            lookup = {g: k for k, g in enumerate(known)}
            group_codes = np.array([lookup[g] if g is not None else -1 for g in labels], dtype=np.int64)
    genuine = int((sizes * (sizes - 1) // 2).sum())
    if group_codes is not None:
        dropped["same_group_genuine"] = _same_group_genuine(codes, group_codes)
        genuine -= dropped["same_group_genuine"]
    if len(names) < 2 or genuine == 0:
        raise ProtocolError(
            f"all_vs_all needs >= 2 identities and one with >= 2 images; found {len(names)} "
            f"identities and {genuine} genuine pairs among {len(ids)} images with an identity"
        )
    impostors = len(ids) * (len(ids) - 1) // 2 - int((sizes * (sizes - 1) // 2).sum())
    if max_impostors is not None and max_impostors < 1:
        raise ProtocolError(f"all_vs_all: max_impostors must be >= 1, got {max_impostors}")
    keep = 1.0 if max_impostors is None or impostors == 0 else min(1.0, max_impostors / impostors)
    keys = np.array([item_seed(seed, "all_vs_all", i) for i in ids], dtype=np.uint64)
    return AllVsAll(ids, codes.astype(np.int64), keys, keep, folds, dropped,
                    identity_folds(list(names), seed, folds), group_codes)


def _same_group_genuine(codes: np.ndarray, group_codes: np.ndarray) -> int:
    """Genuine pairs (same identity) whose two images share a group."""
    known = group_codes >= 0
    if not known.any():
        return 0
    _, counts = np.unique(np.stack([codes[known], group_codes[known]]), axis=1, return_counts=True)
    return int((counts * (counts - 1) // 2).sum())


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a well-spread 64-bit hash of each uint64 (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def pair_uniform(keys: np.ndarray, ref: np.ndarray, probe: np.ndarray) -> np.ndarray:
    """A uniform number in [0, 1) per (ref, probe) index pair, fixed by the two images' keys."""
    h = _mix(keys[ref] ^ _mix(keys[probe] + _GOLDEN))
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def reference_blocks(n: int, block_rows: int = BLOCK_ROWS) -> Iterator[tuple[int, int]]:
    """[start, stop) ranges of reference rows giving about ``block_rows`` pairs each (reference i
    pairs with the n - 1 - i images sorted after it); a range holds at least one row."""
    ends = np.cumsum(np.arange(n - 1, -1, -1, dtype=np.int64))
    start = 0
    while start < n:
        base = int(ends[start - 1]) if start else 0
        stop = int(np.searchsorted(ends, base + block_rows, side="right"))
        stop = min(max(stop, start + 1), n)
        yield start, stop
        start = stop


def pair_swapped(keys: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A seeded coin per unordered image pair (a < b): True where b is the reference."""
    h = _mix((keys[a] * _SWAP) ^ _mix(keys[b] ^ _SWAP))
    return (h >> np.uint64(63)).astype(bool)


def block_pairs(protocol: AllVsAll, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ref index, probe index, genuine) of the kept pairs whose lower-sorted image is in
    [start, stop); within a pair, which image is the reference is a seeded coin flip."""
    n = protocol.n
    refs = np.arange(start, stop, dtype=np.int64)
    counts = n - 1 - refs
    total = int(counts.sum())
    ref = np.repeat(refs, counts)
    first = np.cumsum(counts) - counts
    probe = np.arange(total, dtype=np.int64) - np.repeat(first, counts) + np.repeat(refs + 1, counts)
    genuine = protocol.codes[ref] == protocol.codes[probe]
    if protocol.groups is not None:
        g = protocol.groups
        near = genuine & (g[ref] >= 0) & (g[ref] == g[probe])
        ref, probe, genuine = ref[~near], probe[~near], genuine[~near]
    if protocol.keep_impostor < 1.0:
        keep = genuine | (pair_uniform(protocol.keys, ref, probe) < protocol.keep_impostor)
        ref, probe, genuine = ref[keep], probe[keep], genuine[keep]
    swap = pair_swapped(protocol.keys, ref, probe)
    return np.where(swap, probe, ref), np.where(swap, ref, probe), genuine


def pair_folds(protocol: AllVsAll, ref: np.ndarray, probe: np.ndarray) -> np.ndarray:
    """The fold of each pair: its people's fold, or BETWEEN_FOLDS for people of two folds."""
    fr = protocol.identity_fold[protocol.codes[ref]]
    fp = protocol.identity_fold[protocol.codes[probe]]
    return np.where(fr == fp, fr, BETWEEN_FOLDS)


def check_block(protocol: AllVsAll, ref: np.ndarray, probe: np.ndarray, genuine: np.ndarray) -> None:
    """The manifest invariants on index arrays: distinct images, labels that match identities."""
    if ref.size and (ref == probe).any():
        i = int(np.flatnonzero(ref == probe)[0])
        raise ProtocolError(f"all_vs_all pair {protocol.image_ids[ref[i]]!r} / "
                            f"{protocol.image_ids[probe[i]]!r} is not a distinct image pair")
    same = protocol.codes[ref] == protocol.codes[probe]
    if (same != genuine).any():
        i = int(np.flatnonzero(same != genuine)[0])
        raise ProtocolError(f"all_vs_all pair {protocol.image_ids[ref[i]]!r} / "
                            f"{protocol.image_ids[probe[i]]!r} has a genuine flag that contradicts identities")


def write_all_vs_all(protocol: AllVsAll, comparisons: list[tuple[str, str]], table_path: str | os.PathLike,
                     block_rows: int = BLOCK_ROWS) -> dict:
    """Write the PAIRS_SCHEMA manifest row group by row group (atomically); return the report.

    Rows are ordered by comparison, then the pair's lower-sorted image, then its other image;
    pair_id counts rows. A pair's fold comes from its people (:func:`pair_folds`).
    """
    if not comparisons:
        raise ProtocolError("all_vs_all: the protocol lists no comparisons")
    ids = pa.array(protocol.image_ids, pa.string())
    per_fold = np.zeros((protocol.folds + 1, 2), dtype=np.int64)  # [fold (last: between), genuine?]
    pair_id = 0
    with atomic_path(table_path) as tmp:
        with pq.ParquetWriter(tmp, PAIRS_SCHEMA, compression="zstd", write_statistics=True) as writer:
            for c, (ref_variant, probe_variant) in enumerate(comparisons):
                for start, stop in reference_blocks(protocol.n, block_rows):
                    ref, probe, genuine = block_pairs(protocol, start, stop)
                    if ref.size == 0:
                        continue
                    check_block(protocol, ref, probe, genuine)
                    fold = pair_folds(protocol, ref, probe)
                    if c == 0:
                        cell = np.where(fold < 0, protocol.folds, fold) * 2 + genuine
                        per_fold += np.bincount(cell, minlength=2 * (protocol.folds + 1)).reshape(-1, 2)
                    fold = fold.astype(np.int16)
                    m = ref.size
                    table = pa.Table.from_arrays(
                        [
                            pa.array(np.arange(pair_id, pair_id + m, dtype=np.int64)),
                            ids.take(pa.array(ref)),
                            pa.repeat(ref_variant, m),
                            ids.take(pa.array(probe)),
                            pa.repeat(probe_variant, m),
                            pa.array(genuine),
                            pa.array(fold),
                        ],
                        schema=PAIRS_SCHEMA,
                    )
                    writer.write_table(table, row_group_size=m)
                    pair_id += m
    return all_vs_all_report(protocol, comparisons, per_fold)


def all_vs_all_report(protocol: AllVsAll, comparisons: list[tuple[str, str]], per_fold: np.ndarray) -> dict:
    """The counts of pairs_report, plus what sampling kept (every comparison has the same pairs)."""
    genuine, impostor = int(per_fold[:, 1].sum()), int(per_fold[:, 0].sum())
    names = [f"{r}-vs-{p}" for r, p in comparisons]
    sizes = np.bincount(protocol.codes)
    all_genuine = int((sizes * (sizes - 1) // 2).sum())
    return {
        "images": protocol.n,
        "identities": int(sizes.size),
        "image_pairs": genuine + impostor,
        "genuine": genuine,
        "impostor": impostor,
        "per_fold": {str(f if f < protocol.folds else BETWEEN_FOLDS):
                     {"genuine": int(per_fold[f, 1]), "impostor": int(per_fold[f, 0])}
                     for f in range(protocol.folds + 1) if per_fold[f].sum()},
        "per_comparison": {name: {"genuine": genuine, "impostor": impostor} for name in names},
        "comparisons": names,
        "rows": (genuine + impostor) * len(comparisons),
        "impostor_keep_probability": protocol.keep_impostor,
        "impostors_before_sampling": protocol.n * (protocol.n - 1) // 2 - all_genuine,
        "dropped": dict(sorted((k, v) for k, v in protocol.dropped.items() if v)),
    }
