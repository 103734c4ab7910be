"""A test image with ten faces: ten synthetic demo faces of different sizes in a 5 x 2 grid.

Each face keeps its drawn landmarks (moved into the group picture), so a test can check any
face's mouth and eyes without trusting the detector under test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from maskbench.data.demo import demo_image

CELL = 220  # the grid stays under the aligner's 1200 px max_side: faces are found at full resolution
SIZES = [120 + 10 * k for k in range(10)]  # face k is drawn in a SIZES[k] px square
ORDER = [3, 7, 0, 9, 5, 1, 8, 2, 6, 4]  # face at each grid position, so the largest is not first


@dataclass(frozen=True)
class Face:
    size: int
    box: tuple[int, int, int, int]  # left, top, right, bottom of the face's square in the picture
    landmarks: np.ndarray  # (68, 2) drawn landmarks in picture coordinates


def ten_faces(seed: int = 11) -> tuple[np.ndarray, list[Face]]:
    """The group picture (RGB uint8, 440 x 1100) and its faces, largest last."""
    canvas = np.full((2 * CELL, 5 * CELL, 3), 128, np.uint8)
    faces = []
    for position, k in enumerate(ORDER):
        size = SIZES[k]
        rgb, landmarks = demo_image(seed, k, 0, size)
        row, col = divmod(position, 5)
        top, left = row * CELL + (CELL - size) // 2, col * CELL + (CELL - size) // 2
        canvas[top:top + size, left:left + size] = rgb
        faces.append(Face(size, (left, top, left + size, top + size), landmarks + (left, top)))
    return canvas, sorted(faces, key=lambda f: f.size)


def region(points: np.ndarray, pad: int = 2) -> tuple[slice, slice]:
    """Rows and columns of the box around some landmarks."""
    lo = np.floor(points.min(axis=0)).astype(int) - pad
    hi = np.ceil(points.max(axis=0)).astype(int) + pad
    return slice(lo[1], hi[1]), slice(lo[0], hi[0])
