"""Throughput of the mask painter per default mask type, on one core.

Runs on a synthetic chip (no image data needed): the painter's cost depends on the chip size
and the mask's area, not on the picture. Usage: python benchmarks/bench_masks.py [--n 400]
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from maskbench.faces.landmarks import FRONTAL_CHIP_68 as FRONTAL
from maskbench.faces.masks import DEFAULT_MASKS, MaskSpec, paint_mask



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=400, help="chips per mask type")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    chip = cv2.GaussianBlur(rng.integers(0, 256, (150, 150, 3), dtype=np.uint8), (0, 0), 3)
    for name, d in DEFAULT_MASKS.items():
        spec = MaskSpec.from_dict(d)
        paint_mask(chip, FRONTAL, spec, seed=0)  # warm caches
        start = time.perf_counter()
        for i in range(args.n):
            paint_mask(chip, FRONTAL, spec, seed=i)
        rate = args.n / (time.perf_counter() - start)
        print(f"{name:22s} {rate:8.0f} chips/s")


if __name__ == "__main__":
    main()
