"""Alignment cost per image: HOG at ``upsample`` everywhere vs native size first (``upsample_on_miss``).

On LFW-mini (250 px, large centred faces) and rwmfd-mini (real masked photos, 100-300 px faces):
CPU milliseconds per image for detection + 68 landmarks + chip, faces found, how many images
needed the upsampled search, and how many kept the same face box in both modes. CPU time
(``time.process_time``) on one thread, so a loaded machine does not distort the numbers.

The points move a little where the face is kept (a box from another pyramid level), so a run
with ``upsample_on_miss`` is not byte-identical to one without.

Usage: python benchmarks/bench_align.py [--data ../shared/data] [--limit 300] [--upsample 1]
"""

from __future__ import annotations

import argparse
import io
import os
import tarfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from maskbench.faces.align import FaceAligner


def read_tar(path: Path, limit: int | None) -> list[np.ndarray]:
    out = []
    with tarfile.open(path) as tf:
        members = sorted((m for m in tf.getmembers() if m.isfile() and m.name.endswith(".jpg")),
                         key=lambda m: m.name)
        for m in members[:limit]:
            out.append(np.asarray(Image.open(io.BytesIO(tf.extractfile(m).read())).convert("RGB")))
    return out


def run(aligner: FaceAligner, photos: list[np.ndarray]):
    aligner.align(photos[0])  # warm up
    start = time.process_time()
    results = [aligner.align(p) for p in photos]
    return 1000 * (time.process_time() - start) / len(photos), results


def shift(a, b) -> float:
    """Mean distance (image pixels) between the 68 points two alignments found for one face."""
    from maskbench.faces.align import unmap_points

    pa, pb = unmap_points(a.transform, a.landmarks), unmap_points(b.transform, b.landmarks)
    return float(np.linalg.norm(pa - pb, axis=1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("MASKBENCH_SHARED_DATA", "../shared/data"))
    parser.add_argument("--limit", type=int, default=None, help="images per set (default: all)")
    parser.add_argument("--upsample", type=int, default=1)
    args = parser.parse_args()
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass
    data = Path(args.data)
    sets = {"lfw-mini": data / "lfw-mini" / "lfw-deepfunneled-mini.tgz",
            "rwmfd-mini": data / "rwmfd-mini" / "RWMFD-mini.tar.gz"}
    always = FaceAligner(upsample=args.upsample)
    first = FaceAligner(upsample=args.upsample, upsample_on_miss=True)
    print(f"HOG, upsample {args.upsample}; CPU ms per image (detect + 68 points + chip)")
    print(f"{'set':12s} {'images':>6s} {'always':>8s} {'on miss':>8s} {'speed-up':>8s} "
          f"{'found':>9s} {'found':>9s} {'upsampled':>9s} {'same pts':>9s} {'shift px':>9s} {'other':>9s}")
    print("(found: status ok, always / on miss; upsampled: images searched again enlarged; same pts: "
          "faces whose 68 points moved < 0.5 px; shift: median mean point shift; other: "
          "faces kept in both whose points moved > 10 px, i.e. another face or box)")
    for name, path in sets.items():
        photos = read_tar(path, args.limit)
        ms_a, res_a = run(always, photos)
        native = FaceAligner(upsample=0)
        n_native = sum(bool(native.detect(p)) for p in photos)
        ms_f, res_f = run(first, photos)
        found_a = sum(r.status == "ok" for r in res_a)
        found_f = sum(r.status == "ok" for r in res_f)
        shifts = [shift(a, f) for a, f in zip(res_a, res_f) if a.status == f.status == "ok"]
        same = sum(s < 0.5 for s in shifts)
        other = sum(s > 10 for s in shifts)
        print(f"{name:12s} {len(photos):6d} {ms_a:8.1f} {ms_f:8.1f} {ms_a / ms_f:7.2f}x "
              f"{found_a:9d} {found_f:9d} {len(photos) - n_native:9d} {same:9d} {np.median(shifts):9.2f} {other:9d}")


if __name__ == "__main__":
    main()
