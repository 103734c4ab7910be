"""Throughput of masking: our path (detect once, paint every mask type on the aligned chip)
against a MaskTheFace-style baseline (for every mask type: decode, detect, fit landmarks again and
warp a fixed template through six landmark points), on the same real images in the same run.

    python benchmarks/bench_mask_path.py [--n 100]

Prints chips/s per mask type for painting alone, images/s for both whole paths (an image counts
once with all of the default config's mask types done) and the speed-up. Times are wall clock and
process CPU time, so other load on the machine shows up as the gap between the two.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tarfile
import time
from pathlib import Path

import cv2
import numpy as np
import yaml
from PIL import Image

from maskbench.align import FaceAligner
from maskbench.masks import DEFAULT_MASKS, MaskSpec, paint_mask

REPO = Path(__file__).resolve().parents[1]
LFW_TARBALL = Path("lfw-mini") / "lfw-deepfunneled-mini.tgz"

# The baseline's template: a mask outline in its own 300 x 200 frame and the six anchors that
# MaskTheFace-style tools tie to landmarks (nose bridge, chin, two upper and two lower jaw points).
TEMPLATE_ANCHORS = np.float32([[150, 8], [150, 192], [8, 40], [292, 40], [40, 160], [260, 160]])
LANDMARK_ANCHORS = [28, 8, 1, 15, 4, 12]


def find_lfw() -> Path:
    for root in (REPO.parent / "shared" / "data", Path(os.environ.get("MASKBENCH_SHARED_DATA", "/nonexistent"))):
        if (root / LFW_TARBALL).is_file():
            return root / LFW_TARBALL
    sys.exit("the LFW fixture is missing: set MASKBENCH_SHARED_DATA or place it at ../shared/data")


def read_jpegs(tarball: Path, n: int) -> list[bytes]:
    with tarfile.open(tarball) as tar:
        members = sorted((m for m in tar if m.name.endswith(".jpg")), key=lambda m: m.name)[:n]
        return [tar.extractfile(m).read() for m in members]


def decode(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


def template(color: str) -> np.ndarray:
    """An RGBA mask image: the outline through the six anchors, filled with the type's colour."""
    rgba = np.zeros((200, 300, 4), np.uint8)
    outline = TEMPLATE_ANCHORS[[2, 0, 3, 5, 1, 4]].astype(np.int32)
    rgb = tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))
    cv2.fillPoly(rgba, [outline], (*rgb, 255), cv2.LINE_AA)
    return rgba


def baseline_one(jpeg: bytes, aligner: FaceAligner, rgba: np.ndarray) -> np.ndarray | None:
    """MaskTheFace-style: decode, detect and fit landmarks again, warp the template, blend."""
    rgb = decode(jpeg)
    faces = aligner.detect(rgb)
    if not faces:
        return None
    points = aligner.landmarks(rgb, max(faces, key=lambda f: f[0].area())[0])
    homography, _ = cv2.findHomography(TEMPLATE_ANCHORS, points[LANDMARK_ANCHORS].astype(np.float32))
    warped = cv2.warpPerspective(rgba, homography, (rgb.shape[1], rgb.shape[0]))
    alpha = warped[..., 3:4].astype(np.float32) / 255.0
    return (rgb * (1 - alpha) + warped[..., :3] * alpha).astype(np.uint8)


def ours_one(jpeg: bytes, aligner: FaceAligner, specs: dict[str, MaskSpec]) -> list[np.ndarray]:
    """Our path: decode, detect, fit and cut the chip once, then paint every mask type."""
    result = aligner.align(decode(jpeg))
    if result.chip is None:
        return []
    return [paint_mask(result.chip, result.landmarks, spec, seed=k) for k, spec in enumerate(specs.values())]


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="number of images")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    jpegs = read_jpegs(find_lfw(), args.n)
    aligner = FaceAligner()
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    workflow_specs = {name: MaskSpec.from_dict(spec) for name, spec in config["masks"].items()}

    # 1. painting aligned chips, per mask type
    aligned = [aligner.align(decode(j)) for j in jpegs]
    aligned = [a for a in aligned if a.chip is not None]
    print(f"{len(jpegs)} LFW images, {len(aligned)} aligned; one thread")
    print("painting aligned chips (chips/s, wall / per CPU second):")
    for name, spec in DEFAULT_MASKS.items():
        mask_spec = MaskSpec.from_dict(spec)
        paint_mask(aligned[0].chip, aligned[0].landmarks, mask_spec)  # warm-up
        wall, cpu = timed(lambda: [paint_mask(a.chip, a.landmarks, mask_spec, seed=1) for a in aligned])
        print(f"  {name:22s} {len(aligned) / wall:8.0f} {len(aligned) / max(cpu, 1e-9):8.0f}")

    # 2. and 3. whole paths, for the default config's mask types and for every default type
    default_specs = {name: MaskSpec.from_dict(spec) for name, spec in DEFAULT_MASKS.items()}
    for label, specs in (("the default config's", workflow_specs), ("all default", default_specs)):
        compare_paths(jpegs, aligner, specs, label)


def compare_paths(jpegs: list[bytes], aligner: FaceAligner, specs: dict[str, MaskSpec], label: str) -> None:
    """Our whole path against the baseline for one set of mask types, on the same images."""
    templates = [template(spec.color) for spec in specs.values()]
    ours_one(jpegs[0], aligner, specs)  # warm-up
    baseline_one(jpegs[0], aligner, templates[0])
    ours_wall, ours_cpu = timed(lambda: [ours_one(j, aligner, specs) for j in jpegs])
    base_wall, base_cpu = timed(lambda: [baseline_one(j, aligner, t) for j in jpegs for t in templates])
    n = len(jpegs)
    print(f"whole path, {label} {len(specs)} mask types, images/s (wall / per CPU second):")
    print(f"  ours (detect once, paint chips)     {n / ours_wall:8.2f} {n / ours_cpu:8.2f}")
    print(f"  MaskTheFace-style (re-detect, warp) {n / base_wall:8.2f} {n / base_cpu:8.2f}")
    print(f"  speed-up: {base_wall / ours_wall:.2f}x wall, {base_cpu / ours_cpu:.2f}x CPU")

if __name__ == "__main__":
    main()
