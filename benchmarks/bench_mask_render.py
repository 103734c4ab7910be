"""Mask rendering cost per mask type of a config, on real aligned chips, with an output digest.

    python benchmarks/bench_mask_render.py [--n 200] [--config config/lfw.yaml] [--profile]

Chips are aligned once from the LFW-mini fixture with the config's aligner (cached in
``--cache``, default /tmp) and every mask type of the config's ``masks:`` (with its ``rendering``
preset) is painted on each with the mask stage's per-item seed. Only ``paint_mask`` is timed:
process CPU time, one cv2 thread, best of ``--repeat`` passes. Chip PNG coding is not included.

Each mask type prints a sha256 of all its painted chips' pixels, so a change to the renderer can
be checked for identical output across commits (``--save`` keeps the chips for a pixel diff).
``--profile`` adds the CPU per chip of the rendering steps (cProfile, cumulative).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import os
import pstats
import sys
import tarfile
import time
from pathlib import Path

import cv2
import numpy as np
import yaml
from PIL import Image, ImageOps

from maskbench.faces.masks import MaskSpec, paint_mask
from maskbench.seeds import item_seed

REPO = Path(__file__).resolve().parents[1]
LFW_TARBALL = Path("lfw-mini") / "lfw-deepfunneled-mini.tgz"
# steps reported by --profile: (label, function name as cProfile names it)
STEPS = (
    ("outline", "_outline"),
    ("colour layer (pleats, fabric)", "_colour_layer"),
    ("lighting", "_lighting"),
    ("shade_layer", "shade_layer"),
    ("  folds", "folds"),
    ("  weave", "weave"),
    ("  illumination_field", "illumination_field"),
    ("    sample_region", "sample_region"),
    ("    fit_plane", "fit_plane"),
    ("  soft_highlights", "soft_highlights"),
    ("ear loops", "_ear_loops"),
    ("match_photo", "match_photo"),
    ("  estimate_blur", "estimate_blur"),
    ("  estimate_noise", "estimate_noise"),
)


def find_lfw() -> Path | None:
    roots = [REPO.parent / "shared" / "data", Path("/work/shared/data")]
    if os.environ.get("MASKBENCH_SHARED_DATA"):
        roots.insert(0, Path(os.environ["MASKBENCH_SHARED_DATA"]))
    return next((r / LFW_TARBALL for r in roots if (r / LFW_TARBALL).is_file()), None)


def aligned_chips(tarball: Path, n: int, align_cfg: dict, cache: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(image ids, chips (N, S, S, 3), landmarks (N, 68, 2) float32) of the first n faces found."""
    if cache.is_file():
        data = np.load(cache)
        if len(data["ids"]) >= n:
            return list(data["ids"][:n]), data["chips"][:n], data["landmarks"][:n]
    from maskbench.faces.align import FaceAligner

    aligner = FaceAligner(detector=align_cfg["detector"], upsample=align_cfg["upsample"],
                          chip_size=align_cfg["chip_size"], padding=align_cfg["padding"],
                          max_side=align_cfg.get("max_side", 1200),
                          face_choice=align_cfg.get("face_choice", "largest"),
                          upsample_on_miss=align_cfg.get("upsample_on_miss", False))
    ids, chips, lms = [], [], []
    with tarfile.open(tarball) as tar:
        members = sorted((m for m in tar if m.isfile() and m.name.lower().endswith((".jpg", ".jpeg"))),
                         key=lambda m: m.name)
        for m in members:
            if len(ids) >= n:
                break
            with Image.open(io.BytesIO(tar.extractfile(m).read())) as img:
                rgb = np.ascontiguousarray(np.asarray(ImageOps.exif_transpose(img).convert("RGB")))
            result = aligner.align(rgb)
            if result.chip is None:
                continue
            ids.append(Path(m.name).stem)
            chips.append(result.chip)
            # the mask stage reads landmarks back from the shard as float32
            lms.append(np.asarray(result.landmarks, np.float32).reshape(68, 2))
    np.savez(cache, ids=np.array(ids), chips=np.stack(chips), landmarks=np.stack(lms))
    return ids, np.stack(chips), np.stack(lms)


def render(ids, chips, lms, name: str, spec: MaskSpec, seed: int) -> list[np.ndarray]:
    return [paint_mask(chip, lm, spec, seed=item_seed(seed, name, image_id))
            for image_id, chip, lm in zip(ids, chips, lms)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="aligned chips (default 200)")
    parser.add_argument("--config", type=Path, default=REPO / "config" / "lfw.yaml")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes, best kept (default 3)")
    parser.add_argument("--tarball", type=Path, default=None, help="LFW tarball (default: the shared fixture)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/bench_mask_render_chips.npz"),
                        help="aligned chips are kept here between runs")
    parser.add_argument("--save", type=Path, default=None, help="write the painted chips to this .npz")
    parser.add_argument("--profile", action="store_true", help="CPU per chip of the rendering steps")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    tarball = args.tarball or find_lfw()
    if tarball is None or not Path(tarball).is_file():
        sys.exit("the LFW fixture is missing: pass --tarball or set MASKBENCH_SHARED_DATA")
    config = yaml.safe_load(args.config.read_text())
    seed = int(config.get("seed", 0))
    specs = {name: MaskSpec.from_dict(d) for name, d in config["masks"].items()}
    ids, chips, lms = aligned_chips(Path(tarball), args.n, config["align"], args.cache)
    n = len(ids)
    print(f"{n} aligned {chips.shape[1]} px chips from {Path(tarball).name}; {args.config.name}, seed {seed}; "
          f"process CPU ms per chip, best of {args.repeat}, cv2 threads 1")
    print(f"{'mask type':16s} {'rendering':10s} {'ms/chip':>8s}  sha256 of the painted pixels")
    saved = {}
    total = 0.0
    for name, spec in specs.items():
        render(ids[:2], chips[:2], lms[:2], name, spec, seed)  # warm caches
        best = float("inf")
        for _ in range(args.repeat):
            start = time.process_time()
            out = render(ids, chips, lms, name, spec, seed)
            best = min(best, time.process_time() - start)
        digest = hashlib.sha256(b"".join(np.ascontiguousarray(c).tobytes() for c in out)).hexdigest()
        total += best
        print(f"{name:16s} {spec.rendering or '-':10s} {1000 * best / n:8.2f}  {digest}")
        if args.save:
            saved[name] = np.stack(out)
    print(f"{'all types':27s} {1000 * total / n:8.2f}  (sum per chip)")
    if args.save:
        np.savez_compressed(args.save, **saved)
    if args.profile:
        profile_steps(ids, chips, lms, specs, seed)


def profile_steps(ids, chips, lms, specs: dict[str, MaskSpec], seed: int) -> None:
    """Cumulative CPU per chip of each rendering step (cProfile adds its own overhead)."""
    n = len(ids)
    print(f"\nsteps, cProfile cumulative ms per chip (profiler overhead included)")
    print(f"{'step':32s} " + " ".join(f"{name[:13]:>13s}" for name in specs))
    rows = {label: [] for label, _ in STEPS}
    totals = []
    for name, spec in specs.items():
        prof = cProfile.Profile(time.process_time)
        prof.enable()
        render(ids, chips, lms, name, spec, seed)
        prof.disable()
        stats = pstats.Stats(prof).stats
        totals.append(sum(v[2] for v in stats.values()))
        for label, func in STEPS:
            cum = sum(v[3] for (path, _, fn), v in stats.items() if fn == func and "maskbench" in path)
            rows[label].append(cum)
    for label, values in rows.items():
        print(f"{label:32s} " + " ".join(f"{1000 * v / n:13.2f}" for v in values))
    print(f"{'paint_mask (profiled)':32s} " + " ".join(f"{1000 * v / n:13.2f}" for v in totals))


if __name__ == "__main__":
    main()
