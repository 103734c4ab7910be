"""dlib ResNet embeddings of the LFW-mini fixture, unmasked and under two mask types, cached.

Aligning, masking and embedding 602 real faces takes a minute or two on a CPU; the arrays are
kept in pytest's cache folder (never in the project), keyed by the archive's bytes and the
library code that makes them, so later runs read them in a second.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from maskbench.code_closure import closure

LFW_TARBALL = Path("lfw-mini") / "lfw-deepfunneled-mini.tgz"
MASKS = {
    "surgical_blue": {"shape": "surgical", "color": "#1ca0f4", "pattern": "pleats", "nose_coverage": "medium",
                      "ear_loops": True},
    "kn95_white": {"shape": "kn95", "color": "#FFFFFF", "pattern": "plain", "nose_coverage": "high",
                   "ear_loops": True},
}
CODE = closure(Path(__file__))  # the library files the builders below run


def _key(tarball: Path) -> str:
    digest = hashlib.sha256(tarball.read_bytes())
    for path in CODE:
        digest.update(path.read_bytes())
    digest.update(repr(sorted(MASKS.items())).encode())
    return digest.hexdigest()[:16]


def build(tarball: Path) -> dict[str, np.ndarray]:
    """image_id, identity, landmarks-aligned embeddings: ``unmasked`` and one array per mask type
    (rows of images the detector found, in name order)."""
    from maskbench.faces.align import FaceAligner
    from maskbench.models.dlib_resnet import embed_chips
    from maskbench.io.images import iter_tar_images
    from maskbench.faces.masks import MaskSpec, paint_mask
    from maskbench.seeds import item_seed

    aligner = FaceAligner(upsample=1)
    specs = {m: MaskSpec.from_dict(d) for m, d in MASKS.items()}
    ids, people, chips = [], [], {"unmasked": []} | {m: [] for m in specs}
    for name, rgb in iter_tar_images(tarball):
        result = aligner.align(rgb)
        if result.status != "ok":
            continue
        ids.append(name)
        people.append(Path(name).parent.name)
        chips["unmasked"].append(result.chip)
        for mask, spec in specs.items():
            chips[mask].append(paint_mask(result.chip, result.landmarks, spec, seed=item_seed(2021, mask, name)))
    out = {"image_id": np.array(ids), "identity": np.array(people)}
    for variant, stack in chips.items():
        out[variant] = embed_chips(np.stack(stack), device="cpu").astype(np.float32)
    return out


def lfw_mini_embeddings(shared_data: Path, cache_dir: Path) -> dict[str, np.ndarray]:
    tarball = shared_data / LFW_TARBALL
    path = cache_dir / f"lfw-mini-dlib-{_key(tarball)}.npz"
    if path.is_file():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    data = build(tarball)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **data)
    tmp.replace(path)
    return data
