"""The identification protocol: which images are enrolled in the gallery and which are searched.

Per identity with at least ``gallery_size + 1`` usable images (2 by default), ``gallery_size``
seeded images are enrolled, unmasked, and the identity's other images are probes (searched in
the probe variant, e.g. a mask type). An image is never both enrolled and searched, so a masked
probe is never matched against its own unmasked copy. Each identity draws from its own seeded
generator, so adding an identity does not change the choices of the others.

Open set: with ``unknown_fraction`` > 0 that share of the eligible identities (seeded, at least
one) is left out of the gallery; every image of theirs is a non-mated search (none is set aside
for a gallery they are not in), the others' probes are mated.
A gallery of another pool (real-masked photos) names the bare gallery's unknown people instead,
so the two galleries leave out the same people and their results compare.

People with no more than ``gallery_size`` images cannot be enrolled with a photo left to search.
By default they are left out; with ``too_few_images: unknown`` every photo of theirs is a
non-mated search instead, as in the open-set protocol of BLUFR (Liao et al. 2014), where LFW's
people with one photo are the impostor searches. The people enrolled and every mated search are
the same either way: only the non-mated searches (and so FPIR and FNIR at an FPIR) change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from maskbench.protocols.pairs import ProtocolError, group_by_identity
from maskbench.seeds import item_seed

# what becomes of people with too few images to enrol one and search another
TOO_FEW_IMAGES = ("left_out", "unknown")

GALLERY_SCHEMA = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("identity", pa.string(), nullable=False),
    ]
)

# mated: the probe's identity is enrolled (a closed-set search); not mated: an open-set unknown.
PROBES_SCHEMA = pa.schema(
    [
        pa.field("probe_id", pa.int64(), nullable=False),
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("identity", pa.string(), nullable=False),
        pa.field("mated", pa.bool_(), nullable=False),
    ]
)


@dataclass(frozen=True)
class IdentificationSet:
    gallery: list[tuple[str, str]]  # (image_id, identity), sorted by identity then image
    probes: list[tuple[str, str, bool]]  # (image_id, identity, mated), same order
    notes: dict[str, Any]


def choose_identification(images: dict[str, str | None], seed: int, gallery_size: int = 1,
                          unknown_fraction: float = 0.0, unknown: set[str] | None = None,
                          too_few_images: str = "left_out") -> IdentificationSet:
    """Gallery and probes over usable images (image -> identity; None = no identity, left out).

    ``unknown``, when given, names the people left out of the gallery (those of them that are
    eligible here) in place of a seeded draw of ``unknown_fraction`` of them; with
    ``too_few_images`` ``unknown`` it also names which of the people with too few images are
    searched (all of them when not given)."""
    if gallery_size < 1:
        raise ProtocolError(f"identification: gallery_size must be >= 1, got {gallery_size}")
    if not 0.0 <= unknown_fraction < 1.0:
        raise ProtocolError(f"identification: unknown_fraction must be in [0, 1), got {unknown_fraction}")
    if too_few_images not in TOO_FEW_IMAGES:
        raise ProtocolError(f"identification: too_few_images must be one of {list(TOO_FEW_IMAGES)}, "
                            f"got {too_few_images!r}")
    groups = group_by_identity(images)
    eligible = [name for name, ids in groups.items() if len(ids) > gallery_size]
    searched_few = ([name for name, ids in groups.items()
                     if len(ids) <= gallery_size and (unknown is None or name in unknown)]
                    if too_few_images == "unknown" else [])
    n_unknown = int(math.floor(unknown_fraction * len(eligible) + 0.5))
    if unknown_fraction > 0:
        n_unknown = max(1, n_unknown)
    if unknown is not None:
        n_unknown = len(set(eligible) & set(unknown))
    if len(eligible) - n_unknown < 2:
        raise ProtocolError(
            f"identification needs >= 2 enrolled identities with >= {gallery_size + 1} images each; "
            f"{len(eligible)} identities qualify and {n_unknown} of them would be unknown "
            "(lower gallery_size or unknown_fraction, or use a larger split part)"
        )
    order = np.random.default_rng(item_seed(seed, "identification", "unknown")).permutation(len(eligible))
    if unknown is None:
        unknown = {eligible[i] for i in order[:n_unknown]}
    gallery: list[tuple[str, str]] = []
    probes: list[tuple[str, str, bool]] = []
    for name in eligible:
        rng = np.random.default_rng(item_seed(seed, "identification", name))
        enrolled = {str(i) for i in rng.choice(groups[name], size=gallery_size, replace=False)}
        mated = name not in unknown
        if mated:
            gallery.extend((i, name) for i in groups[name] if i in enrolled)
        probes.extend((i, name, mated) for i in groups[name] if i not in enrolled or not mated)
    if searched_few:
        probes.extend((i, name, False) for name in searched_few for i in groups[name])
        probes.sort(key=lambda p: (p[1], p[0]))  # by identity then image, as without them
    notes = {
        "gallery_size": gallery_size,
        "unknown_fraction": unknown_fraction,
        "identities": len(groups),
        "identities_with_too_few_images": len(groups) - len(eligible),
        "images_without_identity": sum(v is None for v in images.values()),
        "enrolled_identities": len(eligible) - n_unknown,
        "unknown_identities": n_unknown,
    }
    if too_few_images == "unknown":
        notes |= {"too_few_images": too_few_images, "too_few_images_searched_as_unknown": len(searched_few)}
    return IdentificationSet(gallery, probes, notes)


def without_copies_of_enrolled(chosen: IdentificationSet, copies: list[list[str]]) -> IdentificationSet:
    """The set without the probes that are copies of an image enrolled for their own person (one
    picture filed under two names: identical chips), which would find themselves; how many left is
    in the notes. A copy under another person is a labelling matter, not this one: it stays."""
    enrolled = dict(chosen.gallery)
    group_of = {i: k for k, group in enumerate(copies) for i in group}
    own = {(group_of[i], n) for i, n in enrolled.items() if i in group_of}
    kept = [p for p in chosen.probes if p[0] in enrolled or (group_of.get(p[0]), p[1]) not in own]
    notes = {**chosen.notes, "probes_copies_of_enrolled_images": len(chosen.probes) - len(kept)}
    return IdentificationSet(chosen.gallery, kept, notes)


def check_identification(chosen: IdentificationSet, images: dict[str, str | None]) -> None:
    """Raise ProtocolError at the first broken invariant: every image usable and listed once, none
    both enrolled and searched, identities as in the data, ``mated`` exactly when enrolled."""
    enrolled_ids = [i for i, _ in chosen.gallery]
    probe_ids = [i for i, _, _ in chosen.probes]
    for image, identity in [*chosen.gallery, *((i, n) for i, n, _ in chosen.probes)]:
        if image not in images:
            raise ProtocolError(f"identification uses {image!r}, which is not a usable aligned image")
        if images[image] != identity:
            raise ProtocolError(f"identification lists {image!r} as {identity!r}, the data says {images[image]!r}")
    if len(set(enrolled_ids)) != len(enrolled_ids) or len(set(probe_ids)) != len(probe_ids):
        raise ProtocolError("identification lists an image twice in the gallery or in the probes")
    both = set(enrolled_ids) & set(probe_ids)
    if both:
        raise ProtocolError(f"{sorted(both)[0]!r} is both enrolled and searched (it would find its own copy)")
    enrolled = {n for _, n in chosen.gallery}
    for image, identity, mated in chosen.probes:
        if mated != (identity in enrolled):
            raise ProtocolError(f"probe {image!r}: mated={mated} but its identity is "
                                f"{'' if identity in enrolled else 'not '}enrolled")


def gallery_table(chosen: IdentificationSet) -> pa.Table:
    return pa.Table.from_pydict(
        {"image_id": [i for i, _ in chosen.gallery], "identity": [n for _, n in chosen.gallery]},
        schema=GALLERY_SCHEMA,
    )


def probes_table(chosen: IdentificationSet) -> pa.Table:
    return pa.Table.from_pydict(
        {
            "probe_id": list(range(len(chosen.probes))),
            "image_id": [i for i, _, _ in chosen.probes],
            "identity": [n for _, n, _ in chosen.probes],
            "mated": [m for _, _, m in chosen.probes],
        },
        schema=PROBES_SCHEMA,
    )


def identification_report(chosen: IdentificationSet) -> dict[str, Any]:
    mated = sum(m for _, _, m in chosen.probes)
    return {
        **chosen.notes,
        "gallery_images": len(chosen.gallery),
        "probes": len(chosen.probes),
        "mated_probes": mated,
        "non_mated_probes": len(chosen.probes) - mated,
    }
