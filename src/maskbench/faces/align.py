"""Detect once, fit 68 landmarks once, cut one aligned chip once.

The chip follows dlib's ``get_face_chip`` convention (150 px, padding 0.25), which is what dlib's
face ResNet was trained on; the landmarks are mapped into chip coordinates with the same
transform, so masking and every model downstream work on chips and never re-detect a face.
"""

from __future__ import annotations

from dataclasses import dataclass

import dlib
import numpy as np

from maskbench.io.model_files import model_path


@dataclass(frozen=True)
class AlignResult:
    status: str  # ok | fallback | provided | no_face | too_small ...
    reason: str | None
    detector_score: float | None
    n_faces: int
    landmarks: np.ndarray | None  # (68, 2) float32, chip coordinates
    chip: np.ndarray | None  # RGB uint8 chip_size x chip_size x 3
    transform: np.ndarray | None = None  # (2, 3) image -> chip affine, to map chip points back


def chip_transform(details: "dlib.chip_details") -> np.ndarray:
    """2x3 affine matrix mapping source-image points to chip points for a dlib chip.

    dlib cuts a chip by rotating ``details.rect`` by ``details.angle`` about its centre and
    mapping its top-left, top-right and bottom-right corners to the chip's corners.
    """
    rect = details.rect
    cx = (rect.left() + rect.right()) / 2.0
    cy = (rect.top() + rect.bottom()) / 2.0
    c, s = np.cos(details.angle), np.sin(details.angle)

    def rotated(x: float, y: float) -> tuple[float, float]:
        dx, dy = x - cx, y - cy
        return (c * dx - s * dy + cx, s * dx + c * dy + cy)

    src = np.array(
        [rotated(rect.left(), rect.top()), rotated(rect.right(), rect.top()),
         rotated(rect.right(), rect.bottom())],
        dtype=np.float64,
    )
    dst = np.array(
        [(0.0, 0.0), (details.cols - 1.0, 0.0), (details.cols - 1.0, details.rows - 1.0)],
        dtype=np.float64,
    )
    # Solve [x y 1] @ M.T = dst for the 2x3 matrix M.
    a = np.hstack([src, np.ones((3, 1))])
    return np.linalg.solve(a, dst).T


def map_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def unmap_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Chip points back in image coordinates (the inverse of ``map_points``)."""
    a = np.asarray(matrix, dtype=np.float64).reshape(2, 3)
    return (np.asarray(points, dtype=np.float64) - a[:, 2]) @ np.linalg.inv(a[:, :2]).T


def shape_to_array(shape: "dlib.full_object_detection") -> np.ndarray:
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def array_to_shape(points: np.ndarray) -> "dlib.full_object_detection":
    pts = [dlib.point(int(round(x)), int(round(y))) for x, y in points]
    xs, ys = points[:, 0], points[:, 1]
    rect = dlib.rectangle(int(xs.min()), int(ys.min()), int(np.ceil(xs.max())), int(np.ceil(ys.max())))
    return dlib.full_object_detection(rect, pts)


class FaceAligner:
    """dlib detector + 68-point shape predictor + chip extraction, loaded once per process."""

    def __init__(
        self,
        detector: str = "hog",
        upsample: int = 1,
        chip_size: int = 150,
        padding: float = 0.25,
        max_side: int = 1200,
        min_face: int = 20,
        face_choice: str = "largest",
        upsample_on_miss: bool = False,
    ) -> None:
        """``upsample_on_miss``: search the image at native size first and the ``upsample``-times
        enlarged one only where nothing was found (dlib detectors; a 250 px LFW photo's face is
        found at native size, at a quarter of the cost)."""
        from maskbench.faces.detect import FACE_CHOICES, make_detector

        if face_choice not in FACE_CHOICES:
            raise ValueError(f"align.face_choice must be one of {list(FACE_CHOICES)}, not {face_choice!r}")
        self.face_choice = face_choice
        self.detector_name = detector
        self.upsample = upsample
        self.chip_size = chip_size
        self.padding = padding
        self.max_side = max_side
        self.min_face = min_face
        self.upsample_on_miss = bool(upsample_on_miss) and detector in ("hog", "cnn") and upsample > 0
        self._detector = make_detector(detector, upsample)
        self._predictor = dlib.shape_predictor(str(model_path("shape_predictor_68")))

    # -- detection -------------------------------------------------------------------------
    def detect(self, rgb: np.ndarray) -> list[tuple["dlib.rectangle", float]]:
        """All faces as (rectangle in full-resolution coordinates, detector score)."""
        scale = 1.0
        work = rgb
        if max(rgb.shape[:2]) > self.max_side:
            import cv2

            scale = self.max_side / max(rgb.shape[:2])
            work = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        found = self._detector(work, 0) if self.upsample_on_miss else []
        if not found:
            found = self._detector(work)
        faces: list[tuple[dlib.rectangle, float]] = []
        for rect, score in found:
            r = dlib.rectangle(
                int(round(rect.left() / scale)), int(round(rect.top() / scale)),
                int(round(rect.right() / scale)), int(round(rect.bottom() / scale)),
            )
            faces.append((r, float(score)))
        return faces

    def landmarks(self, rgb: np.ndarray, rect: "dlib.rectangle") -> np.ndarray:
        return shape_to_array(self._predictor(rgb, rect))

    # -- chips -----------------------------------------------------------------------------
    def cut_chip(self, rgb: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Aligned chip and the landmarks in chip coordinates, from source-image landmarks."""
        chip, chip_points, _ = self.cut_chip_with_transform(rgb, points)
        return chip, chip_points

    def cut_chip_with_transform(self, rgb: np.ndarray, points: np.ndarray):
        """(chip, chip landmarks, 2x3 image -> chip affine)."""
        shape = array_to_shape(points)
        details = dlib.get_face_chip_details(shape, self.chip_size, self.padding)
        chip = np.asarray(dlib.extract_image_chip(rgb, details), dtype=np.uint8)
        matrix = chip_transform(details)
        return chip, map_points(matrix, points).astype(np.float32), matrix

    def align(
        self,
        rgb: np.ndarray,
        provided_landmarks: np.ndarray | None = None,
        fallback_box: tuple[float, float, float, float] | None = None,
        provided_box: tuple[float, float, float, float] | None = None,
    ) -> AlignResult:
        """Align the chosen face; use given landmarks or a given box (pixels: left, top, right,
        bottom) instead of detecting, or a known face box where detection fails."""
        if provided_box is not None:
            l, t, r, b = (int(round(v)) for v in provided_box)
            if r <= l or b <= t:
                raise ValueError(f"given face box {tuple(provided_box)} is empty")
            points = self.landmarks(rgb, dlib.rectangle(l, t, r, b))
            chip, pts, m = self.cut_chip_with_transform(rgb, points)
            return AlignResult("provided", "face box given", None, 0, pts, chip, m)
        if provided_landmarks is not None:
            chip, pts, m = self.cut_chip_with_transform(rgb, np.asarray(provided_landmarks, dtype=np.float64))
            return AlignResult("provided", None, None, 0, pts, chip, m)
        faces = self.detect(rgb)
        faces = [f for f in faces if min(f[0].width(), f[0].height()) >= self.min_face] or faces
        if faces:
            from maskbench.faces.detect import Face, choose_face

            chosen = choose_face([Face(r, s) for r, s in faces], rgb.shape, self.face_choice)
            rect, score = chosen.rect, chosen.score
            points = self.landmarks(rgb, rect)
            chip, pts, m = self.cut_chip_with_transform(rgb, points)
            return AlignResult("ok", None, score, len(faces), pts, chip, m)
        if fallback_box is not None:
            h, w = rgb.shape[:2]
            l, t, r, b = (int(round(v * s)) for v, s in zip(fallback_box, (w, h, w, h)))
            points = self.landmarks(rgb, dlib.rectangle(l, t, r, b))
            chip, pts, m = self.cut_chip_with_transform(rgb, points)
            return AlignResult("fallback", "no face detected; used the dataset's known face box",
                               None, 0, pts, chip, m)
        return AlignResult("no_face", "the detector found no face", None, 0, None, None)
