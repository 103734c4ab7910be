"""Masks in the order the world applies them: painted on the photo, then found and aligned again.

Painting on the aligned chip hands the recognizer landmarks that were fitted on the bare face,
which no deployed system ever gets from a masked photo. The ``image`` path paints the mask on the
original photo (the bare face's landmarks mapped back from the chip), then detects the face,
fits landmarks and cuts the chip on the masked photo. A masked photo where no face is found is a
failure to enrol (status ``no_face``), counted in coverage and in FNMR, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

PAINT_ON = ("chip", "image")
FAILURE_TO_ENROL = "no_face"


def paint_on(spec: dict[str, Any], align_cfg: dict[str, Any] | None) -> str:
    """Where a mask type is painted: its own ``paint_on``, else ``align.paint_on``, else the chip."""
    value = spec.get("paint_on") or (align_cfg or {}).get("paint_on") or "chip"
    if value not in PAINT_ON:
        raise ValueError(f"paint_on must be one of {list(PAINT_ON)}, not {value!r}")
    return value


@dataclass(frozen=True)
class PhotoMaskResult:
    status: str  # masked | no_face | error
    reason: str | None
    chip: np.ndarray | None
    photo: np.ndarray | None  # the masked photo (for previews and contact sheets)
    landmarks: np.ndarray | None = None  # landmarks fitted on the masked photo, chip coordinates


def mask_photo(photo: np.ndarray, chip_landmarks: np.ndarray, transform: np.ndarray, spec,
               seed: int, aligner) -> PhotoMaskResult:
    """Paint ``spec`` on the photo at the bare face's landmarks, then re-detect and re-align."""
    from maskbench.faces.align import unmap_points
    from maskbench.faces.masks import paint_mask

    points = unmap_points(transform, np.asarray(chip_landmarks, dtype=np.float64).reshape(68, 2))
    masked = paint_mask(photo, points, spec, seed=seed)
    result = aligner.align(masked)  # no provided landmarks, no known box: as deployed
    if result.chip is None:
        return PhotoMaskResult(FAILURE_TO_ENROL, "failure to enrol: no face found on the masked photo",
                               None, masked)
    if result.transform is not None and not same_face(points, unmap_points(result.transform, result.landmarks)):
        # the masked face was missed and another one (a bystander's, unmasked) found instead
        return PhotoMaskResult(FAILURE_TO_ENROL, "failure to enrol: the face found on the masked photo is "
                               "another one, not the masked face", None, masked)
    return PhotoMaskResult("masked", None, result.chip, masked, result.landmarks)


SAME_FACE_TOLERANCE = 0.3  # of the face's height (eyes to chin)


def same_face(painted: np.ndarray, found: np.ndarray) -> bool:
    """Whether landmarks found on the masked photo are of the face that was painted: their eye
    centres and nose bridge (above the mask) within SAME_FACE_TOLERANCE of the face's height."""
    def anchors(lm: np.ndarray) -> np.ndarray:
        lm = np.asarray(lm, dtype=np.float64).reshape(68, 2)
        return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[27]])

    a, b = anchors(painted), anchors(found)
    height = float(np.linalg.norm(a[:2].mean(0) - np.asarray(painted, dtype=np.float64).reshape(68, 2)[8]))
    return float(np.linalg.norm(a - b, axis=1).mean()) <= SAME_FACE_TOLERANCE * max(height, 1.0)

