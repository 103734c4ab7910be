"""The upper-face model's input: the aligned chip cut at the nose bridge, below which masks sit.

Masks drawn high on the nose (``nose_coverage: high``) can show their top edge a few rows above
the line on some chips; a line above every mask's top would cut through the lower eyelids, which
carry more of the identity than the mask's edge hides (README, model kinds).

Everything below a horizontal line at the nose bridge is replaced by the network's mean colour
(zero after normalisation), so a masked and an unmasked chip of one face look alike and the
network keeps the frame and scale its pretrained weights were made for (FaceX-Zoo's upper-half
model does the same with a crop). The line is placed from the landmarks: the median height of
the nose-bridge point over the training chips. Aligned chips put the landmarks at dlib's template
positions up to small residuals, so one line per model serves every chip and embedding needs no
landmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch

from maskbench.models.backbones import Backbone
from maskbench.training.specs import REGIONS

__all__ = ["NOSE_BRIDGE", "REGIONS", "cut_fraction", "blank_below", "UpperFaceBackbone", "with_region"]

NOSE_BRIDGE = 28  # 68-point scheme, 0-based: 27 top of the nose bridge ... 30 nose tip


def cut_fraction(landmarks: Iterable[np.ndarray], chip_size: int) -> float:
    """The cut line as a fraction of the chip height: the median y of the nose-bridge landmark."""
    ys = [float(np.asarray(lm, dtype=np.float64).reshape(68, 2)[NOSE_BRIDGE, 1]) for lm in landmarks if lm is not None]
    if not ys:
        raise ValueError("an upper-face model needs the chips' landmarks (aligned manifests' `landmarks` column); "
                         "none were given")
    fraction = float(np.median(ys)) / float(chip_size)
    if not 0.2 <= fraction <= 0.9:
        raise ValueError(f"nose bridge at {fraction:.2f} of the chip height: these are not aligned face chips")
    return round(fraction, 6)


def blank_below(chips: np.ndarray, fraction: float, fill: tuple[float, float, float]) -> np.ndarray:
    """A copy of uint8 chips N x H x W x 3 with rows from ``fraction * H`` down set to ``fill``."""
    out = np.array(chips, dtype=np.uint8, copy=True)
    if out.ndim == 3:
        out = out[None]
    row = int(round(fraction * out.shape[1]))
    out[:, row:] = np.clip(np.round(np.asarray(fill, dtype=np.float64)), 0, 255).astype(np.uint8)
    return out


@dataclass
class UpperFaceBackbone(Backbone):
    """A backbone that sees only the part of each chip above ``cut`` (a fraction of its height)."""

    cut: float = 0.5

    def preprocess(self, chips: np.ndarray, flip: np.ndarray | None = None) -> torch.Tensor:
        return super().preprocess(blank_below(chips, self.cut, self.mean), flip)


def with_region(backbone: Backbone, region: str, cut: float | None) -> Backbone:
    """``backbone`` itself for the full face, else an :class:`UpperFaceBackbone` sharing its module."""
    if region not in REGIONS:
        raise ValueError(f"region {region!r}: use one of {list(REGIONS)}")
    if region == "full":
        return backbone
    if cut is None:
        raise ValueError("an upper-face backbone needs its cut line")
    return UpperFaceBackbone(backbone.module, backbone.input_size, backbone.mean, backbone.std, backbone.dim,
                             backbone.arch, cut=float(cut))
