"""A preview sheet of mask types on synthetic demo faces (no real faces ship with the project)."""

from __future__ import annotations

import numpy as np


def preview_sheet(masks: dict, n_faces: int = 4, seed: int = 2021, chip_size: int = 150) -> np.ndarray:
    """Rows: demo faces (aligned chips); columns: unmasked, then each mask type."""
    from maskbench.faces.align import FaceAligner
    from maskbench.data.demo import demo_image
    from maskbench.faces.masks import contact_sheet

    aligner = FaceAligner(chip_size=chip_size)
    chips, points = [], []
    for k in range(n_faces):
        rgb, landmarks = demo_image(seed, identity=k, image=k % 3)
        chip, chip_points = aligner.cut_chip(rgb, landmarks)
        chips.append(chip)
        points.append(chip_points)
    return contact_sheet(chips, points, masks, seed=seed)
