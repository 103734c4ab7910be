"""Embeddings for the mask-aware tests on real faces, cached in pytest's cache folder (never in
the project), keyed by the fixture archives' bytes and the library code that makes them.

LFW-mini: dlib's ResNet on the full chip and on the upper face (the same pretrained network with
everything below the nose bridge blanked, the line placed from the chips' landmarks), unmasked and
under four mask types. rwmfd-mini: dlib's ResNet on the largest face of each real masked photo,
found by MediaPipe where installed, else by dlib's HOG detector.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lfw_mini_faces import LFW_TARBALL, aligned_and_masked, cache_key, cached_npz
from maskbench.code_closure import closure

RWMFD_TARBALL = Path("rwmfd-mini") / "RWMFD-mini.tar.gz"
MASK_NAMES = ("surgical_blue", "n95_white", "kn95_white", "cloth_black")
SRC = Path(__file__).resolve().parents[1] / "src" / "maskbench"
CODE = closure(Path(__file__))  # the library files the builders below run besides aligned_and_masked's


def lfw_masks() -> dict[str, dict]:
    import yaml

    config = yaml.safe_load((SRC.parents[1] / "config" / "lfw.yaml").read_text())
    return {m: config["masks"][m] for m in MASK_NAMES}


def _build_lfw(tarball: Path) -> dict[str, np.ndarray]:
    from maskbench.models.backbones import build_backbone
    from maskbench.models.dlib_resnet import embed_chips
    from maskbench.models.embed import BackboneEmbedder
    from maskbench.models.upper_face import cut_fraction, with_region

    ids, people, landmarks, chips = aligned_and_masked(tarball, lfw_masks())
    cut = cut_fraction(landmarks, 150)
    upper = BackboneEmbedder(with_region(build_backbone({"arch": "dlib_resnet"}), "upper", cut))
    out = {"image_id": np.array(ids), "identity": np.array(people), "cut": np.array(cut)}
    for variant, stack in chips.items():
        stack = np.stack(stack)
        out[f"full/{variant}"] = embed_chips(stack, device="cpu").astype(np.float32)
        out[f"upper/{variant}"] = np.asarray(upper.embed(stack), dtype=np.float32)
    return out


def lfw_full_and_upper(shared_data: Path, cache_dir: Path) -> dict[str, np.ndarray]:
    """image_id, identity, and ``full/<variant>`` / ``upper/<variant>`` embeddings (rows: the
    images the detector found, in name order)."""
    tarball = shared_data / LFW_TARBALL
    key = cache_key(tarball.read_bytes(), repr(sorted(lfw_masks().items())).encode(), code=CODE)
    return cached_npz(cache_dir / f"lfw-mini-full-upper-{key}.npz", lambda: _build_lfw(tarball))


def detector_name() -> str:
    from maskbench.faces.detect import mediapipe_available

    return "mediapipe" if mediapipe_available() else "hog"


def _build_rwmfd(tarball: Path, detector: str) -> dict[str, np.ndarray]:
    from maskbench.faces.align import FaceAligner
    from maskbench.models.dlib_resnet import embed_chips
    from maskbench.io.images import iter_tar_images

    aligner = FaceAligner(detector=detector, upsample=1)
    ids, chips, photos = [], [], 0
    for name, rgb in iter_tar_images(tarball):
        photos += 1
        result = aligner.align(rgb)
        if result.chip is not None:
            ids.append(name)
            chips.append(result.chip)
    embeddings = embed_chips(np.stack(chips), device="cpu").astype(np.float32) if chips else np.zeros((0, 128), np.float32)
    return {"image_id": np.array(ids), "embedding": embeddings, "photos": np.array(photos),
            "detector": np.array(detector)}


def rwmfd_embeddings(shared_data: Path, cache_dir: Path) -> dict[str, np.ndarray]:
    """dlib embeddings of the real masked faces found, the number of photos and the detector."""
    tarball = shared_data / RWMFD_TARBALL
    detector = detector_name()
    key = cache_key(tarball.read_bytes(), detector.encode(), code=CODE)
    return cached_npz(cache_dir / f"rwmfd-mini-dlib-{key}.npz", lambda: _build_rwmfd(tarball, detector))
