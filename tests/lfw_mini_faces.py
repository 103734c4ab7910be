"""LFW-mini faces for the tests that need real embeddings: aligned, masked, and a cache for what
is built from them.

Aligning, masking and embedding 602 real faces takes a minute or two on a CPU, so the arrays built
from them are kept in pytest's cache folder (never in the project) as .npz files, keyed by the
fixture's bytes, the settings and the library code that builds them (the maskbench import closure
of this module and of the module that embeds), so later runs read them in a second.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from maskbench.code_closure import closure

LFW_TARBALL = Path("lfw-mini") / "lfw-deepfunneled-mini.tgz"
SEED = 2021
CODE = closure(Path(__file__))  # the library files aligned_and_masked runs


def cache_key(*parts: bytes, code: Iterable[Path] = ()) -> str:
    """A short hash of ``parts`` and of every library file in CODE and ``code``."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    for path in sorted(set(CODE) | set(code)):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cached_npz(path: Path, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays stored at ``path``; built and stored (atomically) when there are none."""
    if path.is_file():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    data = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **data)
    tmp.replace(path)
    return data


def aligned_and_masked(tarball: Path, masks: dict[str, dict]) -> tuple[list[str], list[str], list[np.ndarray],
                                                                      dict[str, list[np.ndarray]]]:
    """(image ids, identities, 68-point landmarks, {"unmasked" or mask name: chips}) of the images
    dlib's detector finds, in name order; each mask painted with its per-image seed."""
    from maskbench.faces.align import FaceAligner
    from maskbench.faces.masks import MaskSpec, paint_mask
    from maskbench.io.images import iter_tar_images
    from maskbench.seeds import item_seed

    aligner = FaceAligner(upsample=1)
    specs = {m: MaskSpec.from_dict(d) for m, d in masks.items()}
    ids, people, landmarks, chips = [], [], [], {"unmasked": []} | {m: [] for m in specs}
    for name, rgb in iter_tar_images(tarball):
        result = aligner.align(rgb)
        if result.status != "ok":
            continue
        ids.append(name)
        people.append(Path(name).parent.name)
        landmarks.append(result.landmarks)
        chips["unmasked"].append(result.chip)
        for mask, spec in specs.items():
            chips[mask].append(paint_mask(result.chip, result.landmarks, spec, seed=item_seed(SEED, mask, name)))
    return ids, people, landmarks, chips
