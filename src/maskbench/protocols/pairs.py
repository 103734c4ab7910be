"""Verification pair protocols, written as Parquet manifests that anyone can read.

A protocol first chooses image pairs (reference image, probe image, genuine, fold) over the
usable aligned images, seeded; then every pair is listed once per variant comparison the config
asks for (e.g. unmasked reference vs surgical-masked probe). The invariants — no image compared
with itself or its own masked copy, impostors never share an identity, genuine pairs always do —
are checked on every manifest before it is written. The all_vs_all protocol, too large for lists
of pairs, is generated in blocks by maskbench.protocols.all_vs_all.

Folds go by identity (:func:`identity_folds`): with several folds a person's
impostor partner comes from a person of the same fold, and a pair of people of two folds (possible
only when a fold holds a single person) gets fold -1, in no fold. Given ``groups`` (image -> group,
e.g. the video of a YouTube Faces frame), a genuine partner never comes from the same group unless
``same_group_genuine``: near-duplicate frames would inflate accuracy.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow as pa

from maskbench.io.manifests import PAIRS_SCHEMA
from maskbench.io.readers import read_split
from maskbench.seeds import item_seed


@dataclass(frozen=True)
class ImagePair:
    ref_image: str
    probe_image: str
    genuine: bool
    fold: int


# The fold of an impostor pair whose two people are in different folds: in no fold.
BETWEEN_FOLDS = -1


class ProtocolError(ValueError):
    """A protocol cannot be built from the data (too few identities, unknown names...)."""


def group_by_identity(images: dict[str, str]) -> dict[str, list[str]]:
    """identity -> sorted image ids, for images with a known identity."""
    groups: dict[str, list[str]] = defaultdict(list)
    for image_id, identity in images.items():
        if identity is not None:
            groups[identity].append(image_id)
    return {k: sorted(v) for k, v in sorted(groups.items())}


def identity_folds(names: list[str], seed: int, folds: int) -> np.ndarray:
    """Fold per identity: a seeded shuffle of the (sorted) names dealt round robin, so every fold
    gets people, no person is in two folds and the deal does not follow name order."""
    order = np.random.default_rng(item_seed(seed, "identity_folds")).permutation(len(names))
    out = np.empty(len(names), dtype=np.int64)
    out[order] = np.arange(len(names)) % folds
    return out


def fold_of_people(names: list[str], seed: int, folds: int) -> dict[str, int]:
    """identity -> fold, by :func:`identity_folds` (one fold deal for every protocol)."""
    return dict(zip(names, identity_folds(names, seed, folds).tolist())) if names else {}


def _same_fold_others(names: list[str], fold_of: dict[str, int]) -> dict[str, list[str]]:
    """Per identity, the other identities of its fold (all others when it is alone in its fold)."""
    by_fold: dict[int, list[str]] = defaultdict(list)
    for n in names:
        by_fold[fold_of[n]].append(n)
    out = {}
    for n in names:
        mates = [m for m in by_fold[fold_of[n]] if m != n]
        out[n] = mates or [m for m in names if m != n]
    return out


def _pair_fold(a: str, b: str, fold_of: dict[str, int]) -> int:
    return fold_of[a] if fold_of[a] == fold_of[b] else -1


def with_copies_grouped(groups: dict[str, str | None] | None,
                        copies: list[list[str]]) -> dict[str, str | None] | None:
    """``groups`` (image -> video or session, or None) with each set of copies of one picture made
    one group, so that no genuine pair compares a photo with a copy of itself (a perfect score that
    says nothing of recognition). Copies in two videos join the two videos into one group, so no
    frame pairs with its own video through a copy."""
    if not copies:
        return groups
    out = dict(groups or {})
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def find(key: tuple[str, str]) -> tuple[str, str]:
        while parent.get(key, key) != key:
            key = parent[key]
        return key

    def node(image: str) -> tuple[str, str]:  # an image's group, or the image where it has none
        return ("group", out[image]) if out.get(image) is not None else ("copy", image)

    for members in copies:
        roots = sorted({find(node(i)) for i in members})
        for other in roots[1:]:
            parent[other] = roots[0]
    copied = {i for members in copies for i in members}
    nodes = {image: node(image) for image in {*out, *copied}}  # before any relabelling
    for image, own in nodes.items():
        root = find(own)
        if root != own or image in copied:  # a copy, or in a group a copy joined: all others stay as they were
            out[image] = root[1] if root[0] == "group" else f"copy:{root[1]}"
    return out


def _genuine_mates(image: str, members: list[str], groups: dict[str, str | None] | None) -> list[str]:
    """The person's other images, without those of the same group (video, session)."""
    g = groups.get(image) if groups else None
    return [i for i in members if i != image and (g is None or groups.get(i) != g)]


def all_identities_pairs(images: dict[str, str], seed: int, folds: int = 1,
                         groups: dict[str, str | None] | None = None) -> list[ImagePair]:
    """Per identity with >= 2 images: one reference, one genuine probe, one impostor probe.

    Each identity draws from its own seeded generator, so adding an identity does not change
    the pairs of the others (with one fold).
    """
    by_identity = group_by_identity(images)
    names = list(by_identity)
    eligible = [n for n in names
                if any(_genuine_mates(i, by_identity[n], groups) for i in by_identity[n])]
    if len(eligible) < 2 or len(names) < 2:
        raise ProtocolError(f"all_identities needs >= 2 identities with >= 2 images; found {len(eligible)}")
    fold_of = fold_of_people(names, seed, folds)
    others = _same_fold_others(names, fold_of)
    pairs: list[ImagePair] = []
    for name in eligible:
        rng = np.random.default_rng(item_seed(seed, "all_identities", name))
        if groups is None:
            ref, genuine = rng.choice(by_identity[name], size=2, replace=False)
        else:
            refs = [i for i in by_identity[name] if _genuine_mates(i, by_identity[name], groups)]
            ref = refs[int(rng.integers(len(refs)))]
            mates = _genuine_mates(ref, by_identity[name], groups)
            genuine = mates[int(rng.integers(len(mates)))]
        impostor_identity = others[name][int(rng.integers(len(others[name])))]
        impostor = by_identity[impostor_identity][int(rng.integers(len(by_identity[impostor_identity])))]
        pairs.append(ImagePair(str(ref), str(genuine), True, fold_of[name]))
        pairs.append(ImagePair(str(ref), str(impostor), False, _pair_fold(name, impostor_identity, fold_of)))
    return pairs


def dicta_pairs(images: dict[str, str], seed: int, n_pairs: int = 1000, folds: int = 1,
                groups: dict[str, str | None] | None = None) -> list[ImagePair]:
    """The DICTA 2021 construction: per source image one genuine and one impostor partner, then a
    seeded sample of ``n_pairs`` balanced between genuine and impostor (not a file's first lines).

    Two photos make one pair whichever drew the other: where b drew a after a drew b, the second
    draw is dropped, so no comparison counts twice (a person with two photos gives one genuine
    pair, not two; on LFW-mini 111 of 500 genuine pairs were such repeats)."""
    by_identity = group_by_identity(images)
    names = list(by_identity)
    fold_of = fold_of_people(names, seed, folds)
    same_fold = _same_fold_others(names, fold_of) if len(names) > 1 else {n: [] for n in names}
    genuine: list[ImagePair] = []
    impostor: list[ImagePair] = []
    for name in names:
        others = same_fold[name]
        for image in by_identity[name]:
            rng = np.random.default_rng(item_seed(seed, "dicta1000", image))
            mates = _genuine_mates(image, by_identity[name], groups)
            if mates:
                genuine.append(ImagePair(image, mates[int(rng.integers(len(mates)))], True, fold_of[name]))
            if others:
                other = others[int(rng.integers(len(others)))]
                partner = by_identity[other][int(rng.integers(len(by_identity[other])))]
                impostor.append(ImagePair(image, partner, False, _pair_fold(name, other, fold_of)))
    genuine, impostor = _distinct(genuine), _distinct(impostor)
    half = n_pairs // 2
    if len(genuine) < half or len(impostor) < half:
        raise ProtocolError(
            f"dicta1000 needs {half} genuine and {half} impostor pairs; the data gives "
            f"{len(genuine)} and {len(impostor)} distinct ones: lower protocols.<name>.n_pairs"
        )
    rng = np.random.default_rng(item_seed(seed, "dicta1000", "sample"))
    chosen = [genuine[i] for i in sorted(rng.choice(len(genuine), half, replace=False))]
    chosen += [impostor[i] for i in sorted(rng.choice(len(impostor), half, replace=False))]
    return chosen


def _distinct(pairs: list[ImagePair]) -> list[ImagePair]:
    """``pairs`` without a later pair of the same two photos, in either order."""
    seen: set[frozenset[str]] = set()
    out = []
    for pair in pairs:
        key = frozenset((pair.ref_image, pair.probe_image))
        if key not in seen:
            seen.add(key)
            out.append(pair)
    return out


_LFW_NAME = re.compile(r"^(?P<name>.+)_(?P<num>\d{4})\.[A-Za-z]+$")


def lfw_image_lookup(images: Iterable[str]) -> dict[tuple[str, int], str]:
    """(person, image number) -> image_id, from LFW's ``<Name>/<Name>_<NNNN>.jpg`` file names."""
    lookup = {}
    for image_id in images:
        m = _LFW_NAME.match(Path(image_id).name)
        if m:
            lookup[(m["name"], int(m["num"]))] = image_id
    return lookup


def parse_lfw_pairs(text: str) -> list[tuple[str, int, str, int, bool, int]]:
    """Parse LFW's View 2 ``pairs.txt``: a ``folds<TAB>n`` header, then per fold n matched lines
    (``name n1 n2``) and n mismatched lines (``name1 n1 name2 n2``)."""
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    headerless = bool(lines) and len(lines[0]) != 2 and all(len(p) in (3, 4) for p in lines)
    if headerless:  # a pair list without the header line (MFR2's pairs.txt): one fold of all its lines
        lines = [["1", "0"]] + lines
    if not lines or len(lines[0]) != 2:
        raise ProtocolError("pairs.txt: the first line must be '<folds>\\t<pairs per class per fold>'")
    n_folds, per_class = int(lines[0][0]), int(lines[0][1])
    body = lines[1:]
    if not headerless and len(body) != n_folds * 2 * per_class:
        raise ProtocolError(f"pairs.txt: expected {n_folds * 2 * per_class} pair lines, found {len(body)}")
    out = []
    for k, parts in enumerate(body):
        fold = 0 if headerless else k // (2 * per_class)
        if len(parts) == 3:
            out.append((parts[0], int(parts[1]), parts[0], int(parts[2]), True, fold))
        elif len(parts) == 4:
            out.append((parts[0], int(parts[1]), parts[2], int(parts[3]), False, fold))
        else:
            raise ProtocolError(f"pairs.txt line {k + 2}: expected 3 or 4 fields, got {len(parts)}")
    return out


def lfw_view2_pairs(images: dict[str, str], pairs_text: str, all_images: Iterable[str],
                    in_split: set[str] | None = None,
                    keep_unaligned: bool = False) -> tuple[list[ImagePair], Counter]:
    """The official pairs; a pair whose image is missing or (given ``in_split``, the images of one
    split part) lies outside the part is dropped and counted. A pair with an image the aligner
    could not use is dropped and counted too, unless ``keep_unaligned``: then it stays, with no
    embedding to score, so it counts as a failure to enrol (LFW's protocol classifies every pair)."""
    usable = lfw_image_lookup(images)
    known = lfw_image_lookup(all_images)
    pairs, dropped = [], Counter()
    for name1, n1, name2, n2, genuine, fold in parse_lfw_pairs(pairs_text):
        keys = [(name1, n1), (name2, n2)]
        if any(k not in known for k in keys):
            dropped["image_not_in_dataset"] += 1
        elif any(k not in usable for k in keys) and keep_unaligned and in_split is None:
            pairs.append(ImagePair(known[keys[0]], known[keys[1]], genuine, fold))
        elif any(k not in usable for k in keys):
            dropped["image_not_aligned"] += 1
        elif in_split is not None and any(usable[k] not in in_split for k in keys):
            dropped["image_not_in_split"] += 1
        else:
            pairs.append(ImagePair(usable[keys[0]], usable[keys[1]], genuine, fold))
    return pairs, dropped


def check_pairs(pairs: list[ImagePair], images: dict[str, str]) -> None:
    """Enforce the manifest invariants; raise ProtocolError naming the first violation."""
    for p in pairs:
        for image in (p.ref_image, p.probe_image):
            if image not in images:
                raise ProtocolError(f"pair uses {image!r}, which is not a usable aligned image")
        if p.ref_image == p.probe_image:
            raise ProtocolError(f"pair compares {p.ref_image!r} with itself (or its own masked copy)")
        same = images[p.ref_image] == images[p.probe_image] and images[p.ref_image] is not None
        if p.genuine and not same:
            raise ProtocolError(f"genuine pair {p.ref_image!r} / {p.probe_image!r} has two identities")
        if not p.genuine and same:
            raise ProtocolError(f"impostor pair {p.ref_image!r} / {p.probe_image!r} shares an identity")


def pairs_table(pairs: list[ImagePair], comparisons: list[tuple[str, str]]) -> pa.Table:
    """One row per (image pair, variant comparison), ordered by comparison then pair."""
    rows = {name: [] for name in PAIRS_SCHEMA.names}
    pair_id = 0
    for ref_variant, probe_variant in comparisons:
        for p in pairs:
            rows["pair_id"].append(pair_id)
            rows["ref_image"].append(p.ref_image)
            rows["ref_variant"].append(ref_variant)
            rows["probe_image"].append(p.probe_image)
            rows["probe_variant"].append(probe_variant)
            rows["genuine"].append(p.genuine)
            rows["fold"].append(p.fold)
            pair_id += 1
    return pa.Table.from_pydict(rows, schema=PAIRS_SCHEMA)


def pairs_report(pairs: list[ImagePair], comparisons: list[tuple[str, str]], dropped: Counter) -> dict:
    """Counts per class, fold and comparison (every comparison lists the same image pairs)."""
    per_fold: dict[str, dict[str, int]] = defaultdict(lambda: {"genuine": 0, "impostor": 0})
    for p in pairs:
        per_fold[str(p.fold)]["genuine" if p.genuine else "impostor"] += 1
    genuine = sum(p.genuine for p in pairs)
    names = [f"{r}-vs-{p}" for r, p in comparisons]
    return {
        "image_pairs": len(pairs),
        "genuine": genuine,
        "impostor": len(pairs) - genuine,
        "per_fold": dict(sorted(per_fold.items())),
        "per_comparison": {name: {"genuine": genuine, "impostor": len(pairs) - genuine} for name in names},
        "comparisons": names,
        "rows": len(pairs) * len(comparisons),
        "dropped": dict(sorted(dropped.items())),
    }


def restrict_to_split(usable: dict[str, str], protocol: dict[str, Any],
                      split_path: str | None) -> tuple[dict[str, str], set[str] | None, dict]:
    """(usable images of the protocol's split part, that part's image set or None, report entry).

    A protocol without ``split`` keeps every usable image; one with it needs the manifest."""
    spec = protocol.get("split")
    if not spec:
        if split_path:
            raise ProtocolError(f"a split manifest ({split_path}) was given, but the protocol has no "
                                "`split: {strategy, part}`")
        return usable, None, {}
    if not split_path:
        raise ProtocolError(
            f"the protocol is restricted to split {spec['strategy']}/{spec['part']}: pass its manifest "
            f"(results/<dataset>/splits/{spec['strategy']}.parquet)"
        )
    part = {i for i, (p, _) in read_split(split_path).items() if p == spec["part"]}
    if not part:
        raise ProtocolError(f"{split_path}: part {spec['part']!r} of the split is empty (too few people or "
                            "images for the split's ratios; its .json lists notes.empty_parts)")
    kept = {k: v for k, v in usable.items() if k in part}
    if not kept:
        raise ProtocolError(f"{split_path}: no usable image is in part {spec['part']!r}; "
                            "was the split made from this dataset's aligned images?")
    entry = {"strategy": spec["strategy"], "part": spec["part"], "usable_images_in_part": len(kept),
             "usable_images_left_out": len(usable) - len(kept)}
    return kept, part, entry
