"""Throughput of the mask painter per default mask type, on one core.

Runs on a synthetic chip (no image data needed): the painter's cost depends on the chip size
and the mask's area, not on the picture. Usage: python benchmarks/bench_masks.py [--n 400]
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from maskbench.masks import DEFAULT_MASKS, MaskSpec, paint_mask

# a frontal 68-point layout in a 150 px dlib chip (mean of frontal LFW chips)
FRONTAL = np.array([
    [12.6, 47.6], [13.5, 63.9], [15.3, 80.1], [17.7, 96.3], [22.8, 111.5], [31.7, 125.0],
    [43.6, 136.3], [57.6, 145.3], [73.6, 147.9], [89.7, 145.3], [103.3, 136.3], [115.1, 125.0],
    [123.7, 111.5], [128.9, 96.2], [131.4, 80.1], [133.2, 64.2], [134.1, 47.9], [24.4, 37.1],
    [31.6, 30.0], [42.2, 27.7], [53.0, 29.2], [63.3, 33.3], [83.8, 33.0], [94.0, 29.3],
    [104.9, 28.0], [115.3, 30.3], [122.4, 37.2], [73.6, 44.3], [73.6, 54.9], [73.5, 65.4],
    [73.8, 76.2], [61.2, 82.8], [67.2, 85.1], [73.5, 87.0], [79.8, 85.1], [85.6, 82.8],
    [36.8, 46.4], [43.2, 43.0], [50.9, 43.2], [57.3, 47.6], [50.5, 48.8], [43.1, 48.8],
    [89.5, 47.6], [96.2, 43.0], [103.6, 43.1], [109.8, 46.7], [104.1, 48.8], [96.7, 48.8],
    [48.8, 102.8], [57.7, 99.0], [66.7, 97.5], [73.4, 98.7], [80.4, 97.5], [89.5, 99.0],
    [98.2, 102.7], [89.9, 111.7], [81.1, 115.6], [73.4, 116.4], [66.3, 115.7], [57.3, 111.9],
    [52.4, 103.4], [66.6, 101.9], [73.4, 102.6], [80.6, 101.9], [94.5, 103.3], [80.8, 108.5],
    [73.4, 109.5], [66.4, 108.7],
])


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
