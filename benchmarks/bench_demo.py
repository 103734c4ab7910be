"""Measure the demo dataset: generation speed, identity separability and detectability.

Prints the time per image, the equal error rate of dlib's face ResNet on the demo faces
(genuine vs impostor Euclidean distances, chips cut from the provided landmarks) and how often
dlib's HOG frontal detector finds the drawn face. Optionally writes a contact sheet.

    python benchmarks/bench_demo.py --identities 20 --images 5 --sheet /tmp/demo_sheet.png
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from maskbench.data.demo import demo_image, generate_demo


def time_generation(n_identities: int, images: int, seed: int) -> float:
    """Milliseconds per image for the full job: drawing, PNG encoding and atomic writes."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate_demo(Path(tmp), n_identities, images, seed)
        return (time.perf_counter() - start) * 1000 / (n_identities * images)


def eer(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """Equal error rate for distances (smaller means same person)."""
    thresholds = np.unique(np.concatenate([genuine, impostor]))
    frr = np.array([(genuine > t).mean() for t in thresholds])
    far = np.array([(impostor <= t).mean() for t in thresholds])
    i = int(np.argmin(np.abs(frr - far)))
    return float((frr[i] + far[i]) / 2)


def descriptors(n_identities: int, images: int, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """dlib ResNet descriptors of every demo image, their labels, and the HOG detection rate."""
    import dlib

    from maskbench.io.model_files import model_path

    net = dlib.face_recognition_model_v1(str(model_path("face_recognition_resnet")))
    detector = dlib.get_frontal_face_detector()
    found, vectors, labels = 0, [], []
    for i in range(n_identities):
        for j in range(images):
            rgb, points = demo_image(seed, i, j)
            rect = dlib.rectangle(*(int(v) for v in (*points.min(0), *points.max(0))))
            parts = [dlib.point(int(round(x)), int(round(y))) for x, y in points]
            shape = dlib.full_object_detection(rect, parts)
            chip = dlib.get_face_chip(rgb, shape, size=150, padding=0.25)
            vectors.append(np.array(net.compute_face_descriptor(chip)))
            labels.append(i)
            found += len(detector(rgb, 1)) > 0
    return np.array(vectors), np.array(labels), found / (n_identities * images)


def separability(vectors: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    d = np.linalg.norm(vectors[:, None] - vectors[None], axis=2)
    iu = np.triu_indices(len(labels), 1)
    same = (labels[:, None] == labels[None])[iu]
    return eer(d[iu][same], d[iu][~same]), d[iu][same], d[iu][~same]


def contact_sheet(path: Path, n_identities: int, images: int, seed: int, landmarks: bool) -> None:
    rows = []
    for i in range(n_identities):
        row = []
        for j in range(images):
            rgb, points = demo_image(seed, i, j)
            rgb = rgb.copy()
            if landmarks:
                for x, y in points:
                    cv2.circle(rgb, (int(round(x)), int(round(y))), 1, (0, 255, 0), -1)
            row.append(rgb)
        rows.append(np.hstack(row))
    cv2.imwrite(str(path), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--identities", type=int, default=20)
    ap.add_argument("--images", type=int, default=5)
    ap.add_argument("--seed", type=int, default=2021)
    ap.add_argument("--sheet", type=Path, help="write a contact sheet of 6 identities here")
    ap.add_argument("--landmarks", action="store_true", help="draw the landmarks on the sheet")
    args = ap.parse_args()

    ms = time_generation(args.identities, args.images, args.seed)
    print(f"generation: {ms:.1f} ms per image (draw + PNG + write)")
    vectors, labels, hog_rate = descriptors(args.identities, args.images, args.seed)
    rate, genuine, impostor = separability(vectors, labels)
    print(f"dlib ResNet EER: {rate:.3f} over {args.identities} identities x {args.images} images")
    print(f"  genuine distance mean {genuine.mean():.3f}, impostor mean {impostor.mean():.3f}")
    print(f"HOG frontal detector found a face in {hog_rate:.0%} of images")
    if args.sheet:
        contact_sheet(args.sheet, min(6, args.identities), args.images, args.seed, args.landmarks)
        print(f"contact sheet: {args.sheet}")


if __name__ == "__main__":
    main()
