"""Masking throughput on real faces: our path against a MaskTheFace-style baseline, same run.

    python benchmarks/bench_mask_path.py [--n 100] [--threads 1] [--no-all-types]

Measured on the same LFW images, decoded in memory from the shared tarball (never extracted):

1. painting aligned 150 px chips with ``paint_mask`` for every type in ``DEFAULT_MASKS`` (chips
   and chip landmarks prepared once with ``FaceAligner.align``; only the painting is timed);
2. our whole path for the mask types of ``config/config.yaml``: decode, detect once, 68 landmarks
   once, cut the chip once, paint every type on the chip;
3. a MaskTheFace-style baseline for the same types: for each type separately decode, detect and
   fit 68 landmarks again, derive six anchors as MaskTheFace's ``get_six_points`` does, warp a
   fixed RGBA template onto the full image (``cv2.findHomography`` + ``cv2.warpPerspective``),
   match its brightness/saturation to the lower face and alpha-blend it.

Rates are given per wall second and per process-CPU second ("per core"); the CPU figure is the
robust one when the machine is shared. An image counts once, with all of its mask types done.
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
import dlib
import numpy as np
import yaml
from PIL import Image, ImageOps

from maskbench.faces.align import FaceAligner
from maskbench.faces.masks import DEFAULT_MASKS, MaskSpec, paint_mask

REPO = Path(__file__).resolve().parents[1]
LFW_TARBALL = Path("lfw-mini") / "lfw-deepfunneled-mini.tgz"
PAINT_TARGET = 200.0  # chips/s per core
SPEEDUP_TARGET = 5.0  # whole path vs baseline

# -- input -----------------------------------------------------------------------------------


def find_lfw() -> Path | None:
    """The shared LFW fixture beside the repo, else under $MASKBENCH_SHARED_DATA."""
    roots = [REPO.parent / "shared" / "data"]
    if os.environ.get("MASKBENCH_SHARED_DATA"):
        roots.append(Path(os.environ["MASKBENCH_SHARED_DATA"]))
    return next((r / LFW_TARBALL for r in roots if (r / LFW_TARBALL).is_file()), None)


def read_jpegs(tarball: Path, n: int) -> list[bytes]:
    """The first n JPEG members (by name) as encoded bytes, read in memory."""
    with tarfile.open(tarball) as tar:
        members = sorted((m for m in tar if m.isfile() and m.name.lower().endswith((".jpg", ".jpeg"))),
                         key=lambda m: m.name)[:n]
        return [tar.extractfile(m).read() for m in members]


def decode(jpeg: bytes) -> np.ndarray:
    """JPEG bytes to RGB uint8, as the pipeline reads images (PIL, EXIF orientation)."""
    with Image.open(io.BytesIO(jpeg)) as img:
        return np.ascontiguousarray(np.asarray(ImageOps.exif_transpose(img).convert("RGB")))


def largest_face(aligner: FaceAligner, faces: list) -> "dlib.rectangle | None":
    """The face ``FaceAligner.align`` would pick."""
    faces = [f for f in faces if min(f[0].width(), f[0].height()) >= aligner.min_face] or faces
    return max(faces, key=lambda f: (f[0].area(), f[1]))[0] if faces else None


class Clock:
    """Wall and process-CPU seconds accumulated per stage."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._w = self._c = 0.0

    def start(self) -> None:
        self._w, self._c = time.perf_counter(), time.process_time()

    def lap(self, stage: str) -> None:
        w, c = time.perf_counter(), time.process_time()
        self.wall[stage] = self.wall.get(stage, 0.0) + w - self._w
        self.cpu[stage] = self.cpu.get(stage, 0.0) + c - self._c
        self._w, self._c = w, c


def timed(fn) -> tuple[float, float]:
    """(wall, CPU) seconds of one call."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


# -- our path --------------------------------------------------------------------------------


def ours_one(jpeg: bytes, aligner: FaceAligner, specs: list[MaskSpec], seed: int, clock: Clock) -> int:
    """Decode, detect once, 68 landmarks once, one chip, then paint every mask type on it."""
    clock.start()
    rgb = decode(jpeg)
    clock.lap("decode")
    rect = largest_face(aligner, aligner.detect(rgb))
    clock.lap("detect")
    if rect is None:
        return 0
    points = aligner.landmarks(rgb, rect)
    clock.lap("landmarks")
    chip, chip_points = aligner.cut_chip(rgb, points)
    clock.lap("cut chip")
    for spec in specs:
        paint_mask(chip, chip_points, spec, seed=seed)
    clock.lap("paint")
    return len(specs)


# -- MaskTheFace-style baseline ----------------------------------------------------------------

# Template anchors in MaskTheFace's order a, b, c, f, e, d: upper-left, nose bridge, upper-right,
# lower-right, chin, lower-left; its surgical_blue.cfg points scaled from 620x480 to 300x200.
TEMPLATE_W, TEMPLATE_H = 300, 200
TEMPLATE_SIX = np.float32([[10, 40], [150, 9], [290, 40], [288, 134], [150, 196], [12, 134]])


def _through(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, n: int = 32) -> np.ndarray:
    """Quadratic curve from p0 to p2 passing through p1 at its middle."""
    ctrl = 2 * p1 - (p0 + p2) / 2
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * ctrl + t ** 2 * p2


def build_template(spec: MaskSpec) -> tuple[np.ndarray, float, float]:
    """An RGBA surgical-mask picture in the type's colour, with its mean saturation and value."""
    a, b, c, f, e, d = TEMPLATE_SIX.astype(np.float64)
    outline = np.vstack([_through(a, b, c), _through(f, e, d)])
    alpha = np.zeros((TEMPLATE_H, TEMPLATE_W), np.uint8)
    cv2.fillPoly(alpha, [np.round(outline * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    y, x = np.mgrid[0:TEMPLATE_H, 0:TEMPLATE_W].astype(np.float32)
    shade = 0.8 + 0.2 * np.cos((x - TEMPLATE_W / 2) / TEMPLATE_W * np.pi)  # darker towards the sides
    if spec.pattern == "pleats":
        shade *= 1 - 0.15 * ((np.abs((y - 55) % 38 - 19) < 2) & (y > 50) & (y < 170))
    elif spec.pattern == "fabric":
        noise = np.random.default_rng(0).normal(0, 1, (TEMPLATE_H, TEMPLATE_W)).astype(np.float32)
        shade *= 1 + 0.08 * cv2.GaussianBlur(noise, (0, 0), 1.0)
    colour = np.array([int(spec.color[i:i + 2], 16) for i in (1, 3, 5)], np.float32)
    lift = 40.0 * (1 - colour.mean() / 255)  # dark masks still show their folds
    rgb = np.clip(colour * shade[..., None] + lift * (shade[..., None] - 1) + 0.5, 0, 255).astype(np.uint8)
    rgba = np.dstack([rgb, alpha])
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[alpha > 127]
    return rgba, float(hsv[:, 1].mean()), float(hsv[:, 2].mean())


def _crossings(jaw: np.ndarray, point: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Where the line through ``point`` along ``direction`` crosses the jaw polyline, in jaw order."""
    side = direction[0] * (jaw[:, 1] - point[1]) - direction[1] * (jaw[:, 0] - point[0])
    i = np.nonzero(side[:-1] * side[1:] <= 0)[0]
    i = i[side[i] != side[i + 1]]
    t = side[i] / (side[i] - side[i + 1])
    return jaw[i] + t[:, None] * (jaw[i + 1] - jaw[i])


def six_points(lm: np.ndarray) -> np.ndarray:
    """MaskTheFace's six face anchors (a, b, c, f, e, d) from 68 landmarks.

    b is the middle of the nose bridge (27-30); a and c are where the eye line, moved down by the
    nose length, crosses the jaw (0-16); d and f where it crosses at the bottom of the lower lip;
    e where the line from the bridge top (27) perpendicular to the eye line meets the chin.
    Missing crossings fall back to jaw landmarks 2/14, 5/11 and 8.
    """
    jaw = lm[:17]
    left_eye, right_eye = lm[36:42].mean(0), lm[42:48].mean(0)
    eye_mid = (left_eye + right_eye) / 2
    u = right_eye - left_eye
    u = u / max(float(np.hypot(*u)), 1e-6)
    down = np.array([0.0, lm[30, 1] - lm[27, 1]])
    b = (lm[27] + lm[30]) / 2
    ac = _crossings(jaw, eye_mid + down, u)
    a, c = (ac[0], ac[-1]) if len(ac) >= 2 else (lm[2], lm[14])
    lip = np.array([0.0, lm[[48, 54, 55, 56, 57, 58, 59, 60, 64, 65, 66, 67], 1].max() - eye_mid[1]])
    df = _crossings(jaw, eye_mid + lip, u)
    d, f = (df[0], df[-1]) if len(df) >= 2 else (lm[5], lm[11])
    chin = _crossings(jaw, lm[27], np.array([-u[1], u[0]]))
    e = chin[len(chin) // 2] if len(chin) else lm[8]
    return np.float32([a, b, c, f, e, d])


def warp_blend(rgb: np.ndarray, rect: "dlib.rectangle", six: np.ndarray,
               template: tuple[np.ndarray, float, float]) -> np.ndarray:
    """MaskTheFace's ``mask_face``: homography warp, colour matched to the lower face, blend."""
    rgba, tmpl_s, tmpl_v = template
    h, w = rgb.shape[:2]
    homography, _ = cv2.findHomography(TEMPLATE_SIX, six)
    if homography is None:
        return rgb.copy()
    warped = cv2.warpPerspective(rgba, homography, (w, h))
    top, bottom = max(rect.top(), 0), min(rect.bottom(), h)
    left, right = max(rect.left(), 0), min(rect.right(), w)
    face = rgb[top + (bottom - top) // 2:bottom, left:right]
    face_hsv = cv2.cvtColor(face if face.size else rgb, cv2.COLOR_RGB2HSV)
    hsv = cv2.cvtColor(np.ascontiguousarray(warped[..., :3]), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 2] *= 1 + (float(face_hsv[..., 2].mean()) - tmpl_v) / 255
    hsv[..., 1] *= 1 - (float(face_hsv[..., 1].mean()) - tmpl_s) / 255
    colour = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)
    alpha = warped[..., 3:4].astype(np.float32) / 255
    return np.clip(rgb * (1 - alpha) + colour * alpha + 0.5, 0, 255).astype(np.uint8)


def baseline_one(jpeg: bytes, aligner: FaceAligner, templates: list, clock: Clock) -> int:
    """For each mask type on its own: decode, detect, fit 68 landmarks, six points, warp, blend."""
    done = 0
    for template in templates:
        clock.start()
        rgb = decode(jpeg)
        clock.lap("decode")
        rect = largest_face(aligner, aligner.detect(rgb))
        clock.lap("detect")
        if rect is None:
            continue
        points = aligner.landmarks(rgb, rect)
        clock.lap("landmarks")
        six = six_points(points)
        clock.lap("six points")
        warp_blend(rgb, rect, six, template)
        clock.lap("warp + blend")
        done += 1
    return done


# -- report ----------------------------------------------------------------------------------


def paint_table(aligned: list, specs: dict[str, MaskSpec]) -> float:
    """Part 1: chips/s per mask type, painting only. Returns the slowest per-core rate."""
    n = len(aligned)
    print(f"\n(1) painting aligned {aligned[0].chip.shape[0]} px chips, paint_mask only, {n} chips per type")
    print(f"    {'mask type':22s} {'chips/s wall':>12s} {'chips/s/core':>13s} {'CPU ms/chip':>12s}  "
          f"target >= {PAINT_TARGET:.0f}/core")
    slowest = float("inf")
    for name, spec in specs.items():
        paint_mask(aligned[0].chip, aligned[0].landmarks, spec, seed=0)  # warm-up
        wall, cpu = timed(lambda: [paint_mask(a.chip, a.landmarks, spec, seed=i)
                                   for i, a in enumerate(aligned)])
        per_core = n / max(cpu, 1e-9)
        slowest = min(slowest, per_core)
        print(f"    {name:22s} {n / wall:12.0f} {per_core:13.0f} {1000 * cpu / n:12.2f}  "
              f"{'ok' if per_core >= PAINT_TARGET else 'BELOW'}")
    return slowest


def stage_line(clock: Clock, n: int) -> str:
    total = sum(clock.cpu.values())
    return "  ".join(f"{k} {1000 * v / n:.2f} ms ({100 * v / max(total, 1e-9):.0f}%)" for k, v in clock.cpu.items())


def compare(jpegs: list[bytes], aligner: FaceAligner, specs: dict[str, MaskSpec], label: str) -> float:
    """Parts 2 and 3 for one set of mask types; returns the per-core speed-up."""
    spec_list = list(specs.values())
    templates = [build_template(s) for s in spec_list]
    ours_one(jpegs[0], aligner, spec_list, 0, Clock())  # warm-up
    baseline_one(jpegs[0], aligner, templates, Clock())
    n, k = len(jpegs), len(spec_list)
    ours_clock, base_clock = Clock(), Clock()
    counts: list[int] = []
    ours_wall, ours_cpu = timed(lambda: counts.append(
        sum(ours_one(j, aligner, spec_list, i, ours_clock) for i, j in enumerate(jpegs))))
    base_wall, base_cpu = timed(lambda: counts.append(
        sum(baseline_one(j, aligner, templates, base_clock) for j in jpegs)))
    print(f"\n{label}: {k} mask types ({', '.join(specs)}); images/s, an image counted once with all {k} done")
    print(f"    {'path':46s} {'img/s wall':>10s} {'img/s/core':>11s} {'wall s':>7s} {'CPU s':>7s} {'masked':>7s}")
    print(f"    {'(2) ours: detect+68 lm+chip once, paint ' + str(k):46s} {n / ours_wall:10.2f} "
          f"{n / ours_cpu:11.2f} {ours_wall:7.2f} {ours_cpu:7.2f} {counts[0]:7d}")
    print(f"    {'(3) MaskTheFace-style: per type re-detect+warp':46s} {n / base_wall:10.2f} "
          f"{n / base_cpu:11.2f} {base_wall:7.2f} {base_cpu:7.2f} {counts[1]:7d}")
    speedup = base_cpu / ours_cpu
    print(f"    speed-up (2)/(3): {base_wall / ours_wall:.2f}x wall, {speedup:.2f}x per core  "
          f"(target >= {SPEEDUP_TARGET:.0f}x: {'ok' if speedup >= SPEEDUP_TARGET else 'BELOW'})")
    print(f"    CPU per image  ours:     {stage_line(ours_clock, n)}")
    print(f"                   baseline: {stage_line(base_clock, n)}")
    return speedup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="number of LFW images (default 100)")
    parser.add_argument("--threads", type=int, default=1, help="cv2.setNumThreads (dlib is single-threaded)")
    parser.add_argument("--tarball", type=Path, default=None, help="LFW tarball (default: the shared fixture)")
    parser.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml",
                        help="config whose `masks:` are the default workflow's mask types")
    parser.add_argument("--no-all-types", action="store_true",
                        help="skip the extra whole-path comparison over all DEFAULT_MASKS types")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    tarball = args.tarball or find_lfw()
    if tarball is None or not Path(tarball).is_file():
        sys.exit("the LFW fixture is missing: pass --tarball or set MASKBENCH_SHARED_DATA")
    jpegs = read_jpegs(Path(tarball), args.n)
    config = yaml.safe_load(args.config.read_text())
    config_specs = {name: MaskSpec.from_dict(d) for name, d in config["masks"].items()}
    all_specs = {name: MaskSpec.from_dict(d) for name, d in DEFAULT_MASKS.items()}
    aligner = FaceAligner(**{k: v for k, v in config.get("align", {}).items()
                             if k in ("detector", "upsample", "chip_size", "padding", "max_side")})

    aligned = [aligner.align(decode(j)) for j in jpegs]
    aligned = [a for a in aligned if a.chip is not None]
    size = decode(jpegs[0]).shape
    print(f"{len(jpegs)} LFW images ({size[1]}x{size[0]}) from {Path(tarball).name}, {len(aligned)} with a face; "
          f"detector {aligner.detector_name} upsample {aligner.upsample}; cv2 threads {args.threads}")
    slowest = paint_table(aligned, all_specs)
    speedup = compare(jpegs, aligner, config_specs, f"whole path, {args.config.name} mask types")
    if not args.no_all_types:
        compare(jpegs, aligner, all_specs, "whole path, all DEFAULT_MASKS types")
    print(f"\nsummary: slowest painting {slowest:.0f} chips/s/core (target {PAINT_TARGET:.0f}); "
          f"whole path {speedup:.2f}x the baseline per core for the config's {len(config_specs)} types "
          f"(target {SPEEDUP_TARGET:.0f}x). With detection dominating, the speed-up is at most about the "
          f"number of mask types, since the baseline repeats decode+detect+landmarks per type.")


if __name__ == "__main__":
    main()
