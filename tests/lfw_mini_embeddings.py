"""dlib ResNet embeddings of the LFW-mini fixture, unmasked and under two mask types, cached
(see lfw_mini_faces)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lfw_mini_faces import LFW_TARBALL, aligned_and_masked, cache_key, cached_npz
from maskbench.code_closure import closure

MASKS = {
    "surgical_blue": {"shape": "surgical", "color": "#1ca0f4", "pattern": "pleats", "nose_coverage": "medium",
                      "ear_loops": True},
    "kn95_white": {"shape": "kn95", "color": "#FFFFFF", "pattern": "plain", "nose_coverage": "high",
                   "ear_loops": True},
}
CODE = closure(Path(__file__))  # the library files build runs besides aligned_and_masked's


def build(tarball: Path) -> dict[str, np.ndarray]:
    """image_id, identity, landmarks-aligned embeddings: ``unmasked`` and one array per mask type
    (rows of images the detector found, in name order)."""
    from maskbench.models.dlib_resnet import embed_chips

    ids, people, _, chips = aligned_and_masked(tarball, MASKS)
    out = {"image_id": np.array(ids), "identity": np.array(people)}
    for variant, stack in chips.items():
        out[variant] = embed_chips(np.stack(stack), device="cpu").astype(np.float32)
    return out


def lfw_mini_embeddings(shared_data: Path, cache_dir: Path) -> dict[str, np.ndarray]:
    tarball = shared_data / LFW_TARBALL
    key = cache_key(tarball.read_bytes(), repr(sorted(MASKS.items())).encode(), code=CODE)
    return cached_npz(cache_dir / f"lfw-mini-dlib-{key}.npz", lambda: build(tarball))
