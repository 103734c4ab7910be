"""Face detectors on real masked photos, and synthetic masked photos against real ones.

Part 1, per detector: photos of rwmfd-mini (200 in-the-wild photos of people wearing real masks)
where a face was found, and milliseconds per photo on one core. Part 2: the statistics of
``maskbench.faces.mask_region_stats`` (landmark offset of jaw and mouth, colour, contrast, blur and noise of the
mask region against the upper face) as medians over real masked chips and over LFW-mini photos
masked on the photo (``paint_on: image``) and found again, per mask type; plus the share of
masked photos where the face was found again. ``--sheet`` writes real and synthetic chips side
by side (made from the real fixtures: keep it local, never commit it).

Part 3 (``--grid``): a small grid of rendering settings, each applied to the mask types of
``GRID_MASKS`` (pooled), scored by ``maskbench.faces.realism_score.realism_distance`` against the real
chips (sum of |log median ratio| of blur, noise, contrast and luminance relative to the upper
face, plus the gap in faces found); the lowest score is the ``realistic`` rendering preset.

Usage: python benchmarks/bench_detect.py [--data ../shared/data] [--cnn 20] [--lfw 80] [--sheet out.png]
       [--grid]
"""

from __future__ import annotations

import argparse
import io
import os
import tarfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from maskbench.faces.align import FaceAligner
from maskbench.faces.detect import mediapipe_available
from maskbench.faces.masks import DEFAULT_MASKS, MaskSpec
from maskbench.faces.photo_mask import mask_photo
from maskbench.faces.mask_region_stats import chip_stats, side_by_side_sheet, summarise

REALISTIC = {"fit_jitter": 0.5, "match_blur": True, "match_noise": True, "jpeg_quality": 75, "color_jitter": 0.3}
GRID_MASKS = ("surgical_blue", "n95_white", "cloth_black")  # the synthetic types of config/real_masks.yaml
CAMERA = {"match_blur": True, "match_noise": True, "jpeg_quality": 75}
GRID = {
    "match_shading": (0.0, 0.5, 1.0),
    "fabric_variety": (0.0, 0.5, 1.0),
    "camera": (False, True),  # blur and noise matched to the photo, mask re-encoded at JPEG 75
    "fit_jitter": (0.0, 0.5),
}


def read_tar(path: Path, limit: int | None = None) -> list[np.ndarray]:
    out = []
    with tarfile.open(path) as tf:
        members = sorted((m for m in tf.getmembers() if m.isfile() and m.name.endswith(".jpg")), key=lambda m: m.name)
        for m in members[:limit]:
            out.append(np.asarray(Image.open(io.BytesIO(tf.extractfile(m).read())).convert("RGB")))
    return out


def detection_table(photos: list[np.ndarray], detectors: dict[str, int | None]) -> None:
    print(f"{'detector':10s} {'found':>9s} {'detect':>8s} {'+68 pts':>8s}   "
          "(rwmfd-mini, ms/img on one core; +68 pts: detection, landmarks and chip)")
    for name, limit in detectors.items():
        aligner = FaceAligner(detector=name)
        subset = photos[:limit]
        aligner.detect(subset[0])  # load and warm up
        start = time.perf_counter()
        found = sum(bool(aligner.detect(p)) for p in subset)
        ms = 1000 * (time.perf_counter() - start) / len(subset)
        start = time.perf_counter()
        aligned = sum(aligner.align(p).chip is not None for p in subset)
        ms_align = 1000 * (time.perf_counter() - start) / len(subset)
        assert aligned == found
        print(f"{name:10s} {found:4d}/{len(subset):<4d} {ms:8.1f} {ms_align:8.1f}")


def row(name: str, stats: dict[str, float], extra: str = "") -> None:
    cells = " ".join(f"{stats.get(k, float('nan')):9.3f}" for k in
                     ("landmark_offset", "mask_l", "mask_chroma", "contrast", "blur_ratio", "noise_ratio",
                      "rel_luminance"))
    print(f"{name:30s} {cells} {extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("MASKBENCH_SHARED_DATA", "../shared/data"))
    parser.add_argument("--cnn", type=int, default=0, help="also time dlib's CNN on this many photos (slow)")
    parser.add_argument("--lfw", type=int, default=80, help="LFW-mini photos to mask per mask type")
    parser.add_argument("--detector", default="mediapipe", help="detector for part 2")
    parser.add_argument("--sheet", help="write a contact sheet of real and synthetic masked chips here")
    parser.add_argument("--grid", action="store_true", help="score a grid of rendering settings (part 3) only")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    data = Path(args.data)
    real = read_tar(data / "rwmfd-mini" / "RWMFD-mini.tar.gz")

    detectors: dict[str, int | None] = {"hog": None}
    if args.cnn:
        detectors["cnn"] = args.cnn
    if mediapipe_available():
        detectors["mediapipe"] = None
    else:
        print("mediapipe not installed: skipped (see README, 'Detectors')")
    detection_table(real, detectors)
    if args.detector not in detectors:
        return

    aligner = FaceAligner(detector=args.detector, face_choice="centre")
    print(f"\nmask-region statistics, medians; chips aligned by {args.detector} "
          f"(offset px; L*, chroma; ratios to the upper face)")
    print(f"{'source':30s} {'lm_off':>9s} {'L*':>9s} {'chroma':>9s} {'contrast':>9s} {'blur':>9s} {'noise':>9s} "
          f"{'rel_lum':>9s}")
    real_chips, real_stats = [], []
    for photo in real:
        result = aligner.align(photo)
        if result.chip is not None:
            real_chips.append(result.chip)
            real_stats.append(chip_stats(result.chip, result.landmarks))
    row("real masks (rwmfd-mini)", summarise(real_stats), f"found {len(real_chips)}/{len(real)}")

    bare = read_tar(data / "lfw-mini" / "lfw-deepfunneled-mini.tgz", args.lfw)
    aligned = [(p, aligner.align(p)) for p in bare]
    aligned = [(p, r) for p, r in aligned if r.chip is not None]
    if args.grid:
        grid(summarise(real_stats), len(real_chips) / len(real), aligned, aligner)
        return
    row("no mask (lfw-mini)", summarise([chip_stats(r.chip, r.landmarks) for _, r in aligned]))
    sheet_rows = {"real (rwmfd-mini)": real_chips}
    for name, spec_dict in DEFAULT_MASKS.items():
        for label, extra in (("", {}), ("+real", REALISTIC)):
            spec = MaskSpec.from_dict({**spec_dict, **extra})
            chips, stats = [], []
            for k, (photo, r) in enumerate(aligned):
                res = mask_photo(photo, r.landmarks, r.transform, spec, k, aligner)
                if res.chip is not None:
                    chips.append(res.chip)
                    stats.append(chip_stats(res.chip, res.landmarks))
            row(name + label, summarise(stats), f"found {len(chips)}/{len(aligned)}")
            if label:
                sheet_rows[name + label] = chips
    if args.sheet:
        sheet = side_by_side_sheet(sheet_rows)
        cv2.imwrite(args.sheet, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        print(f"contact sheet: {args.sheet}")


def masked_stats(aligned, aligner, settings: dict) -> tuple[list, int]:
    """Statistics of the grid's mask types with ``settings``, painted on the photos and found again."""
    stats, found = [], 0
    for name in GRID_MASKS:
        spec = MaskSpec.from_dict({**DEFAULT_MASKS[name], **settings})
        for k, (photo, r) in enumerate(aligned):
            res = mask_photo(photo, r.landmarks, r.transform, spec, k, aligner)
            if res.chip is not None:
                found += 1
                stats.append(chip_stats(res.chip, res.landmarks))
    return stats, found


def grid(real: dict[str, float], real_found: float, aligned, aligner) -> None:
    import itertools

    from maskbench.faces.realism_score import SCORED, realism_distance

    print(f"\nrendering grid: {', '.join(GRID_MASKS)} pooled, {len(aligned)} LFW-mini photos each; score = "
          "sum |log(synthetic/real median)| over " + ", ".join(SCORED) + " + |found gap|")
    head = " ".join(f"{k[:9]:>9s}" for k in (*SCORED, "found_gap", "score"))
    print(f"{'shading':>7s} {'variety':>7s} {'camera':>6s} {'fit':>4s} {head} "
          + " ".join(f"{k[:9]:>9s}" for k in SCORED))
    print(f"{'real':>28s} {'':>49s} {'':>9s} " + " ".join(f"{real[k]:9.3f}" for k in SCORED)
          + f"  found {real_found:.3f}")
    results = []
    for shading, variety, camera, fit in itertools.product(*GRID.values()):
        settings = {"match_shading": shading, "fabric_variety": variety, "fit_jitter": fit,
                    **(CAMERA if camera else {})}
        stats, found = masked_stats(aligned, aligner, settings)
        synthetic = summarise(stats)
        d = realism_distance(real, synthetic, real_found, found / (len(GRID_MASKS) * len(aligned)))
        results.append((d["score"], settings))
        print(f"{shading:7.1f} {variety:7.1f} {str(camera):>6s} {fit:4.1f} "
              + " ".join(f"{d[k]:9.3f}" for k in (*SCORED, "found_gap", "score")) + " "
              + " ".join(f"{synthetic[k]:9.3f}" for k in SCORED), flush=True)
    best = min(results, key=lambda r: r[0])
    print(f"best: score {best[0]:.3f} with {best[1]}")


if __name__ == "__main__":
    main()
