"""Verification pairs on a dataset with photos of real masks: each side of a comparison draws
from its own pool of photos.

In such a set `unmasked` holds only the bare photos (and every synthetic mask is painted on
them), `real` only the real-masked ones. A comparison's reference and probe images therefore come
from the pool of its variant: ``[unmasked, surgical]`` pairs bare photos with bare photos,
``[unmasked, real]`` bare references with real-masked probes, ``[real, real]`` real with real.
Only people with both kinds of photo (two bare ones or more: a bare-vs-bare genuine pair needs
two) take part, so every comparison is on the same people; and
``[unmasked, real]`` keeps the reference each person has in ``[unmasked, *]`` (all_identities
draws it with the same seeded generator), so the real and the synthetic probes are judged
against the same reference images. The protocols' own rules hold in every pool: no image is
compared with itself, genuine pairs share an identity and impostor pairs do not.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from maskbench.protocols.all_vs_all import BLOCK_ROWS, pair_uniform
from maskbench.protocols.all_vs_all import prepare as prepare_all_vs_all
from maskbench.protocols.all_vs_all import write_all_vs_all
from maskbench.io.atomic import atomic_path
from maskbench.io.manifests import PAIRS_SCHEMA, REAL_VARIANT, UNMASKED_VARIANT
from maskbench.protocols.pairs import (
    BETWEEN_FOLDS,
    ImagePair,
    ProtocolError,
    all_identities_pairs,
    check_pairs,
    dicta_pairs,
    fold_of_people,
    group_by_identity,
    pairs_table,
)
from maskbench.seeds import item_seed

BARE, REAL = UNMASKED_VARIANT, REAL_VARIANT  # the two pools, named after the variant that uses them as is


def pool_of(variant: str) -> str:
    """The photos a variant is made from: the real-masked ones for `real`, else the bare ones."""
    return REAL if variant == REAL_VARIANT else BARE


def unaligned_real(aligned: Any, people: set[str]) -> dict[str, str]:
    """image -> person of the real-masked photos the aligner could not use (``aligned``:
    :class:`maskbench.io.readers.AlignedImages`) of ``people``: they take part as failures to enrol."""
    return {i: aligned.identity[i] for i in sorted(aligned.real_unaligned) if aligned.identity.get(i) in people}


def split_pools(images: dict[str, str], real: set[str]) -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
    """({pool: image -> identity}, notes), keeping only people with two or more bare photos and a
    real-masked one: ``[unmasked, <mask>]`` pairs two bare photos of a person, so only such people
    have genuine pairs there, and ``[unmasked, real]`` must be judged on the same people."""
    bare_photos = Counter(v for k, v in images.items() if k not in real and v is not None)
    real_people = {v for k, v in images.items() if k in real and v is not None}
    both = {v for v in real_people if bare_photos[v] >= 2}
    one_bare = {v for v in real_people if bare_photos[v] == 1}
    kept = {k: v for k, v in images.items() if v in both}
    pools = {BARE: {k: v for k, v in kept.items() if k not in real},
             REAL: {k: v for k, v in kept.items() if k in real}}
    with_one_bare = sum(v in one_bare for v in images.values())
    notes = {"people_with_bare_and_real_photos": len(both),
             "unmasked_images": len(pools[BARE]), "real_images": len(pools[REAL]),
             "images_of_people_without_both": len(images) - len(kept) - with_one_bare,
             "images_of_people_with_one_bare_photo": with_one_bare}
    return pools, notes


def comparison_groups(comparisons: list[tuple[str, str]]) -> list[tuple[tuple[str, str], list[tuple[str, str]]]]:
    """Comparisons grouped by (reference pool, probe pool), in order of first appearance."""
    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for ref, probe in comparisons:
        groups.setdefault((pool_of(ref), pool_of(probe)), []).append((ref, probe))
    return list(groups.items())


# --- pairs across two pools ------------------------------------------------------------------


def person_folds(refs: dict[str, str], seed: int, folds: int) -> dict[str, int]:
    """Fold per person, dealt over the reference pool's people exactly as the one-pool protocols
    deal them (maskbench.protocols.pairs.identity_folds), so a person is in one fold in every comparison."""
    return fold_of_people(sorted({v for v in refs.values() if v is not None}), seed, folds)


def _mates_across_groups(ref: str, mates: list[str], groups: dict[str, str | None] | None) -> list[str]:
    """Probe photos of the reference's person outside the reference's group (video, session)."""
    g = groups.get(ref) if groups else None
    return [m for m in mates if g is None or groups.get(m) != g]


def cross_all_identities(refs: dict[str, str], probes: dict[str, str], seed: int, folds: int = 1,
                         groups: dict[str, str | None] | None = None) -> list[ImagePair]:
    """all_identities with references from one pool and probes from another.

    The reference of a person is the one all_identities draws from the reference pool (same seeded
    generator, same people: those with >= 2 reference images), so ``[unmasked, real]`` shares its
    references and folds with ``[unmasked, <mask>]``; the genuine and impostor probes come from
    the probe pool, from a generator of their own. Folds go by person, and an impostor comes from
    a person of the same fold where the fold has one (else the pair is in no fold), as in
    maskbench.protocols.pairs; a genuine probe never shares the reference's group.
    """
    ref_groups, probe_groups = group_by_identity(refs), group_by_identity(probes)
    eligible = [n for n in ref_groups if len(ref_groups[n]) >= 2 and n in probe_groups]
    probe_names = list(probe_groups)
    if len(eligible) < 2 or len(probe_names) < 2:
        raise ProtocolError(f"all_identities across pools needs >= 2 people with >= 2 reference photos and a "
                            f"probe photo; found {len(eligible)}")
    fold_of = person_folds(refs, seed, folds)
    pairs: list[ImagePair] = []
    for name in eligible:
        rng = np.random.default_rng(item_seed(seed, "all_identities", name))
        ref = str(rng.choice(ref_groups[name], size=2, replace=False)[0])
        draw = np.random.default_rng(item_seed(seed, "all_identities", "real_probe", name))
        mates = _mates_across_groups(ref, probe_groups[name], groups)
        if not mates:
            continue
        genuine = mates[int(draw.integers(len(mates)))]
        others = [n for n in probe_names if n != name]
        same_fold = [n for n in others if fold_of.get(n) == fold_of[name]]
        other = (same_fold or others)[int(draw.integers(len(same_fold or others)))]
        impostor = probe_groups[other][int(draw.integers(len(probe_groups[other])))]
        pairs.append(ImagePair(ref, genuine, True, fold_of[name]))
        pairs.append(ImagePair(ref, impostor, False,
                               fold_of[name] if fold_of.get(other) == fold_of[name] else BETWEEN_FOLDS))
    return pairs


def cross_dicta_pairs(refs: dict[str, str], probes: dict[str, str], seed: int, n_pairs: int = 1000,
                      folds: int = 1, groups: dict[str, str | None] | None = None) -> list[ImagePair]:
    """dicta1000 with source images from the reference pool and partners from the probe pool
    (folds by person, impostors from the same fold where it has another person)."""
    ref_groups, probe_groups = group_by_identity(refs), group_by_identity(probes)
    names = list(probe_groups)
    fold_of = person_folds(refs, seed, folds)
    genuine: list[ImagePair] = []
    impostor: list[ImagePair] = []
    for name, images in ref_groups.items():
        others = [n for n in names if n != name]
        same_fold = [n for n in others if fold_of.get(n) == fold_of[name]]
        others = same_fold or others
        for image in images:
            rng = np.random.default_rng(item_seed(seed, "dicta1000", "cross", image))
            mates = _mates_across_groups(image, probe_groups.get(name, []), groups)
            if mates:
                genuine.append(ImagePair(image, mates[int(rng.integers(len(mates)))], True, fold_of[name]))
            if others:
                other = others[int(rng.integers(len(others)))]
                fold = fold_of[name] if fold_of.get(other) == fold_of[name] else BETWEEN_FOLDS
                impostor.append(ImagePair(image, probe_groups[other][int(rng.integers(len(probe_groups[other])))],
                                          False, fold))
    half = n_pairs // 2
    if len(genuine) < half or len(impostor) < half:
        raise ProtocolError(f"dicta1000 across pools needs {half} genuine and {half} impostor pairs; the data "
                            f"gives {len(genuine)} and {len(impostor)}: lower protocols.<name>.n_pairs")
    rng = np.random.default_rng(item_seed(seed, "dicta1000", "cross", "sample"))
    chosen = [genuine[i] for i in sorted(rng.choice(len(genuine), half, replace=False))]
    chosen += [impostor[i] for i in sorted(rng.choice(len(impostor), half, replace=False))]
    return chosen


def listed_pairs_in_pools(pairs: list[ImagePair], ref_pool: dict[str, str],
                          probe_pool: dict[str, str]) -> tuple[list[ImagePair], int]:
    """A fixed pair list's pairs with one image in each pool (turned round where needed), and how
    many it has that do not fit."""
    kept, dropped = [], 0
    for p in pairs:
        if p.ref_image in ref_pool and p.probe_image in probe_pool:
            kept.append(p)
        elif p.probe_image in ref_pool and p.ref_image in probe_pool:
            kept.append(ImagePair(p.probe_image, p.ref_image, p.genuine, p.fold))
        else:
            dropped += 1
    return kept, dropped


def check_pools(pairs: list[ImagePair], ref_pool: dict[str, str], probe_pool: dict[str, str], group: str) -> None:
    """Every reference in the reference pool and every probe in the probe pool (``real`` never
    holds a bare photo, and no synthetic mask is asked of a real-masked one)."""
    for p in pairs:
        if p.ref_image not in ref_pool or p.probe_image not in probe_pool:
            raise ProtocolError(f"{group}: pair {p.ref_image!r} / {p.probe_image!r} takes an image from the wrong "
                                "pool (bare vs real-masked photos)")


# --- all_vs_all across two pools ---------------------------------------------------------------


def _codes(ids: list[str], images: dict[str, str], names: dict[str, int]) -> np.ndarray:
    return np.array([names[images[i]] for i in ids], dtype=np.int64)


def write_cross_all_vs_all(refs: dict[str, str], probes: dict[str, str], seed: int, folds: int,
                           max_impostors: int | None, comparisons: list[tuple[str, str]],
                           writer: pq.ParquetWriter, first_id: int,
                           groups: dict[str, str | None] | None = None) -> dict:
    """Every (reference, probe) pair of two disjoint pools, once per comparison, written in blocks.

    Impostors are sampled as in maskbench.protocols.all_vs_all (a hash of the two images' seeded keys). A
    pair's fold is its people's fold (by person, as in maskbench.protocols.all_vs_all), or BETWEEN_FOLDS for
    people of two folds; a genuine pair never joins two photos of one group. Returns the counts.
    """
    ref_ids, probe_ids = sorted(refs), sorted(probes)
    names = {n: k for k, n in enumerate(sorted(set(refs.values()) | set(probes.values())))}
    ref_codes, probe_codes = _codes(ref_ids, refs, names), _codes(probe_ids, probes, names)
    fold_of = person_folds(refs, seed, folds)
    code_fold = np.array([fold_of.get(n, BETWEEN_FOLDS) for n in sorted(names, key=names.get)], dtype=np.int64)
    group_ids = sorted({g for g in (groups or {}).values() if g is not None})
    group_code = {g: k for k, g in enumerate(group_ids)}
    ref_group = np.array([group_code.get((groups or {}).get(i), -1) for i in ref_ids], dtype=np.int64)
    probe_group = np.array([group_code.get((groups or {}).get(i), -1) for i in probe_ids], dtype=np.int64)
    n_ref, n_probe = len(ref_ids), len(probe_ids)
    genuine_total = int(np.bincount(ref_codes, minlength=len(names)) @ np.bincount(probe_codes, minlength=len(names)))
    impostors = n_ref * n_probe - genuine_total
    if genuine_total == 0 or impostors == 0:
        raise ProtocolError(f"all_vs_all across pools needs genuine and impostor pairs; found {genuine_total} "
                            f"and {impostors} among {n_ref} references and {n_probe} probes")
    keep_p = 1.0 if max_impostors is None else min(1.0, max_impostors / impostors)
    keys = np.array([item_seed(seed, "all_vs_all", i) for i in ref_ids + probe_ids], dtype=np.uint64)
    ids = pa.array(ref_ids + probe_ids, pa.string())
    per_fold = np.zeros((folds + 1, 2), dtype=np.int64)  # last row: pairs between two folds
    step = max(1, BLOCK_ROWS // max(n_probe, 1))
    pair_id = first_id
    for c, (ref_variant, probe_variant) in enumerate(comparisons):
        for start in range(0, n_ref, step):
            ref = np.repeat(np.arange(start, min(start + step, n_ref), dtype=np.int64), n_probe)
            probe = np.tile(np.arange(n_probe, dtype=np.int64), min(start + step, n_ref) - start)
            genuine = ref_codes[ref] == probe_codes[probe]
            near = genuine & (ref_group[ref] >= 0) & (ref_group[ref] == probe_group[probe])
            if near.any():
                ref, probe, genuine = ref[~near], probe[~near], genuine[~near]
            if keep_p < 1.0:
                keep = genuine | (pair_uniform(keys, ref, probe + n_ref) < keep_p)
                ref, probe, genuine = ref[keep], probe[keep], genuine[keep]
            if ref.size == 0:
                continue
            fr, fp = code_fold[ref_codes[ref]], code_fold[probe_codes[probe]]
            fold = np.where(fr == fp, fr, BETWEEN_FOLDS).astype(np.int16)
            if c == 0:
                slot = np.where(fold >= 0, fold, folds).astype(np.int64)
                per_fold += np.bincount(slot * 2 + genuine, minlength=2 * (folds + 1)).reshape(-1, 2)
            m = ref.size
            writer.write_table(pa.Table.from_arrays(
                [pa.array(np.arange(pair_id, pair_id + m, dtype=np.int64)), ids.take(pa.array(ref)),
                 pa.repeat(ref_variant, m), ids.take(pa.array(probe + n_ref)), pa.repeat(probe_variant, m),
                 pa.array(genuine), pa.array(fold)], schema=PAIRS_SCHEMA), row_group_size=m)
            pair_id += m
    genuine, impostor = int(per_fold[:, 1].sum()), int(per_fold[:, 0].sum())
    return {"image_pairs": genuine + impostor, "genuine": genuine, "impostor": impostor,
            "per_fold": {str(f if f < folds else BETWEEN_FOLDS): {"genuine": int(per_fold[f, 1]),
                                                                  "impostor": int(per_fold[f, 0])}
                         for f in range(folds + 1) if per_fold[f].sum()},
            "rows": pair_id - first_id, "impostor_keep_probability": keep_p}


def _shift_ids(table: pa.Table, offset: int) -> pa.Table:
    return table.set_column(0, PAIRS_SCHEMA.field("pair_id"), pc.add(table["pair_id"], pa.scalar(offset, pa.int64())))


def _copy_shifted(path: str, writer: pq.ParquetWriter, offset: int) -> int:
    """Append a manifest's row groups to ``writer`` with pair ids shifted by ``offset``; rows copied."""
    pf = pq.ParquetFile(path)
    rows = 0
    for k in range(pf.num_row_groups):
        table = pf.read_row_group(k)
        table = _shift_ids(table, offset)
        writer.write_table(table, row_group_size=table.num_rows)
        rows += table.num_rows
    return rows


# --- the manifest ------------------------------------------------------------------------------


def _merge_reports(parts: list[dict], comparisons: list[tuple[str, str]], notes: dict, dropped: Counter) -> dict:
    per_fold: dict[str, dict[str, int]] = defaultdict(lambda: {"genuine": 0, "impostor": 0})
    per_comparison = {}
    for part in parts:
        for fold, counts in part["per_fold"].items():
            for k in ("genuine", "impostor"):
                per_fold[fold][k] += counts[k]
        for name in part["comparisons"]:
            per_comparison[name] = {"genuine": part["genuine"], "impostor": part["impostor"]}
    names = [f"{r}-vs-{p}" for r, p in comparisons]
    return {
        "image_pairs": sum(p["image_pairs"] for p in parts),
        "genuine": sum(p["genuine"] for p in parts),
        "impostor": sum(p["impostor"] for p in parts),
        "per_fold": dict(sorted(per_fold.items())),
        "per_comparison": {n: per_comparison[n] for n in names},
        "comparisons": names,
        "rows": sum(p["rows"] for p in parts),
        "dropped": dict(sorted((k, v) for k, v in dropped.items() if v)),
        "pools": notes,
        "pairs_per_pool": {"{}-vs-{}".format(*part["pools"]): {k: part[k] for k in ("image_pairs", "genuine", "impostor")}
                           for part in parts},
    }


def build_pool_pairs(images: dict[str, str], real: set[str], protocol: dict[str, Any],
                     comparisons: list[tuple[str, str]], seed: int, table_path: str | os.PathLike,
                     listed: list[ImagePair] | None = None, listed_dropped: Counter | None = None,
                     groups: dict[str, str | None] | None = None) -> dict:
    """Write a protocol's manifest on a dataset with real masks; return its report.

    ``listed`` is the pair list of a fixed-list protocol (lfw_view2) over the usable images.
    Rows are grouped by (reference pool, probe pool); pair ids count rows over the whole file.
    """
    kind = protocol["kind"]
    folds = protocol.get("folds", 1)
    pools, notes = split_pools(images, real)
    dropped = Counter(listed_dropped or {})
    dropped["image_of_person_without_bare_and_real_photos"] += notes["images_of_people_without_both"]
    dropped["image_of_person_with_one_bare_photo"] += notes["images_of_people_with_one_bare_photo"]
    parts: list[dict] = []
    pair_id = 0
    with atomic_path(table_path) as tmp:
        with pq.ParquetWriter(tmp, PAIRS_SCHEMA, compression="zstd", write_statistics=True) as writer:
            for (ref_pool, probe_pool), group in comparison_groups(comparisons):
                refs, probes = pools[ref_pool], pools[probe_pool]
                label = f"{ref_pool}-vs-{probe_pool} photos"
                if kind == "all_vs_all" and ref_pool == probe_pool:
                    part_path = f"{tmp}.{ref_pool}.parquet"
                    try:
                        part = write_all_vs_all(prepare_all_vs_all(refs, seed, folds, protocol.get("max_impostors"), groups),
                                                group, part_path)
                        rows = _copy_shifted(part_path, writer, pair_id)
                    finally:
                        if os.path.exists(part_path):
                            os.remove(part_path)
                    part = {k: part[k] for k in ("image_pairs", "genuine", "impostor", "per_fold")} | {"rows": rows}
                elif kind == "all_vs_all":
                    part = write_cross_all_vs_all(refs, probes, seed, folds, protocol.get("max_impostors"), group,
                                                  writer, pair_id, groups)
                else:
                    pairs = _list_pairs(kind, protocol, refs, probes, ref_pool == probe_pool, seed, folds, listed,
                                        dropped, label, groups)
                    check_pairs(pairs, images)
                    check_pools(pairs, refs, probes, label)
                    table = pairs_table(pairs, group)
                    table = _shift_ids(table, pair_id)
                    writer.write_table(table)
                    genuine = sum(p.genuine for p in pairs)
                    folds_seen: dict[str, dict[str, int]] = defaultdict(lambda: {"genuine": 0, "impostor": 0})
                    for p in pairs:
                        folds_seen[str(p.fold)]["genuine" if p.genuine else "impostor"] += 1
                    part = {"image_pairs": len(pairs), "genuine": genuine, "impostor": len(pairs) - genuine,
                            "per_fold": dict(folds_seen), "rows": table.num_rows}
                part["comparisons"] = [f"{r}-vs-{p}" for r, p in group]
                part["pools"] = (ref_pool, probe_pool)
                parts.append(part)
                pair_id += part["rows"]
    return _merge_reports(parts, comparisons, notes, dropped)


def _list_pairs(kind: str, protocol: dict[str, Any], refs: dict[str, str], probes: dict[str, str], same: bool,
                seed: int, folds: int, listed: list[ImagePair] | None, dropped: Counter, label: str,
                groups: dict[str, str | None] | None = None) -> list[ImagePair]:
    if kind == "all_identities":
        if same:
            return all_identities_pairs(refs, seed, folds, groups)
        return cross_all_identities(refs, probes, seed, folds, groups)
    if kind == "dicta1000":
        n = protocol.get("n_pairs", 1000)
        return dicta_pairs(refs, seed, n, folds, groups) if same else cross_dicta_pairs(refs, probes, seed, n, folds,
                                                                                        groups)
    if kind == "lfw_view2":
        kept, n_out = listed_pairs_in_pools(listed or [], refs, probes)
        dropped[f"listed_pair_not_{label.replace(' ', '_')}"] += n_out
        if not kept:
            raise ProtocolError(f"the pair list has no pair of {label}")
        return kept
    raise ProtocolError(f"unknown verification protocol kind {kind!r}")
