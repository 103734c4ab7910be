"""How much a masked chip looks like a real masked face: statistics to compare synthetic masks with
real masked photos (rwmfd-mini), and a contact sheet that shows them side by side.

Real masked photos have no ground-truth landmarks, so the mask region is taken as a
surgical-mask outline on the chip's own (fitted) landmarks, the same on real and synthetic chips.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from maskbench.faces.landmarks import FRONTAL_CHIP_68

_LOWER = list(range(0, 17)) + list(range(48, 68))  # jaw and mouth: where a mask makes a guess


@dataclass(frozen=True)
class ChipStats:
    landmark_offset: float  # mean distance (px) of jaw and mouth points from the frontal layout
    mask_l: float  # mean CIE L* of the mask region
    mask_chroma: float  # mean CIE chroma of the mask region
    contrast: float  # luminance std in the mask region over that of the uncovered upper face
    blur_ratio: float  # blur estimate in the mask region over that of the upper face
    noise_ratio: float  # noise estimate in the mask region over that of the upper face
    rel_luminance: float = float("nan")  # median luminance of the mask region over the upper face's

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def mask_region(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from maskbench.faces.masks import DEFAULT_MASKS, MaskSpec, mask_coverage

    spec = MaskSpec.from_dict(DEFAULT_MASKS["surgical_blue"])
    inner = mask_coverage(landmarks, spec, shape[:2]).astype(np.uint8)
    return cv2.erode(inner, np.ones((5, 5), np.uint8)) > 0  # keep clear of the edge


def chip_stats(chip: np.ndarray, landmarks: np.ndarray) -> ChipStats:
    """Statistics of one aligned chip (150 px, dlib's convention) and its fitted landmarks."""
    from maskbench.faces.mask_render import estimate_blur, estimate_noise, reference_region

    lm = np.asarray(landmarks, dtype=np.float64).reshape(68, 2)
    region = mask_region(lm, chip.shape)
    upper = reference_region(chip.shape, lm, region)
    lab = cv2.cvtColor(chip, cv2.COLOR_RGB2LAB).astype(np.float32)
    lum = cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY).astype(np.float32)
    l_star = lab[..., 0] * 100 / 255
    chroma = np.hypot(lab[..., 1] - 128, lab[..., 2] - 128)

    def ratio(a: float, b: float) -> float:
        return float(a / b) if b > 1e-6 else float("nan")

    return ChipStats(
        landmark_offset=float(np.linalg.norm(lm[_LOWER] - FRONTAL_CHIP_68[_LOWER], axis=1).mean()),
        mask_l=float(l_star[region].mean()) if region.any() else float("nan"),
        mask_chroma=float(chroma[region].mean()) if region.any() else float("nan"),
        contrast=ratio(float(lum[region].std()), float(lum[upper].std())) if region.any() else float("nan"),
        blur_ratio=ratio(estimate_blur(lum, region), estimate_blur(lum, upper)),
        noise_ratio=ratio(estimate_noise(lum, region), estimate_noise(lum, upper)),
        rel_luminance=ratio(float(np.median(lum[region])), float(np.median(lum[upper])))
        if region.any() and upper.any() else float("nan"),
    )


def summarise(stats: list[ChipStats]) -> dict[str, float]:
    """Median of each statistic over chips (NaN-aware)."""
    if not stats:
        return {}
    keys = list(stats[0].as_dict())
    values = np.array([[s.as_dict()[k] for k in keys] for s in stats], dtype=np.float64)
    return {k: float(np.nanmedian(values[:, i])) for i, k in enumerate(keys)}


def side_by_side_sheet(rows: dict[str, list[np.ndarray]], per_row: int = 8, cell: int = 96) -> np.ndarray:
    """One labelled row of chips per source (real masked photos first, then each synthetic type)."""
    label_w = 150
    sheet = np.full((cell * len(rows), label_w + cell * per_row, 3), 255, np.uint8)
    for r, (name, chips) in enumerate(rows.items()):
        y = r * cell
        cv2.putText(sheet, name[:20], (4, y + cell // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        for c, chip in enumerate(chips[:per_row]):
            x = label_w + c * cell
            sheet[y:y + cell, x:x + cell] = cv2.resize(chip, (cell, cell), interpolation=cv2.INTER_AREA)
    return sheet
