"""Synthetic face masks painted onto aligned chips from the chip's 68 landmarks.

Template-warping tools (MaskTheFace) bend one fixed picture through six points, so masks slide
off turned or unusual faces. Here the outline is built from the landmarks themselves: the
bottom follows the jaw, the top crosses the nose at a configured height, and both sides take
their width from the face's own jaw, so a turned head gets a turned mask. Nothing re-detects a
face: a chip and its landmarks are all that is needed.
"""

from __future__ import annotations

import functools
import re
import zlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np

SHAPES = ("surgical", "n95", "kn95", "cloth", "nist_wide", "nist_round", "dicta_polygon")
PATTERNS = ("plain", "pleats", "fabric", "image")
NOSE_LEVELS = ("low", "medium", "high")
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


# -- specification ---------------------------------------------------------------------------

@dataclass(frozen=True)
class MaskSpec:
    """How one mask type looks; validated on construction so bad configs fail before painting."""

    shape: str
    color: str
    pattern: str = "plain"
    pattern_image: str | None = None
    nose_coverage: str = "medium"
    opacity: float = 1.0
    shading: float = 0.5
    ear_loops: bool = False
    color_jitter: float = 0.0
    paint_on: str | None = None  # chip | image; None: the config's align.paint_on
    fit_jitter: float = 0.0  # how far fit varies per image: nose height, cheek width, misplacement
    match_blur: bool = False  # blur the mask as much as the photo is blurred
    match_noise: bool = False  # add the photo's sensor noise to the mask
    jpeg_quality: int | None = None  # re-encode the mask region as JPEG at this quality
    match_shading: float = 0.0  # light the mask as the skin around it is lit, with fabric folds
    fabric_variety: float = 0.0  # a procedural weave drawn per image (kind, scale, angle, contrast)
    rendering: str | None = None  # a named preset of the settings above (maskbench.faces.rendering_presets)

    def __post_init__(self) -> None:
        _check_choice("shape", self.shape, SHAPES)
        if not isinstance(self.color, str) or not _HEX.match(self.color):
            raise ValueError(f"mask key 'color': {self.color!r} is not a hex colour like '#1ca0f4'")
        _check_choice("pattern", self.pattern, PATTERNS)
        _check_choice("nose_coverage", self.nose_coverage, NOSE_LEVELS)
        for key in ("opacity", "shading", "color_jitter", "fit_jitter", "match_shading", "fabric_variety"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"mask key {key!r}: {value!r} must be a number between 0 and 1")
        for key in ("ear_loops", "match_blur", "match_noise"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"mask key {key!r}: {getattr(self, key)!r} must be true or false")
        if self.paint_on is not None:
            _check_choice("paint_on", self.paint_on, ("chip", "image"))
        if self.rendering is not None:
            from maskbench.faces.rendering_presets import RENDERING_PRESETS

            _check_choice("rendering", self.rendering, tuple(RENDERING_PRESETS))
        q = self.jpeg_quality
        if q is not None and (isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= 100):
            raise ValueError(f"mask key 'jpeg_quality': {q!r} must be an integer from 1 to 100 or null")
        if self.pattern_image is not None and not isinstance(self.pattern_image, str):
            raise ValueError(f"mask key 'pattern_image': {self.pattern_image!r} must be a file path")
        if self.pattern == "image" and not self.pattern_image:
            raise ValueError("mask key 'pattern_image' is required when pattern is 'image'")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MaskSpec":
        """Parse a config entry, naming the offending key on any error."""
        if not isinstance(d, dict):
            raise ValueError(f"a mask spec must be a mapping, not {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        for key in d:
            if key not in known:
                raise ValueError(f"unknown mask key {key!r}; known: {sorted(known)}")
        for key in ("shape", "color"):
            if key not in d:
                raise ValueError(f"mask key {key!r} is missing")
        from maskbench.faces.rendering_presets import apply_preset

        values = apply_preset(d)
        for key in ("opacity", "shading", "color_jitter", "fit_jitter", "match_shading", "fabric_variety"):
            if isinstance(values.get(key), int) and not isinstance(values.get(key), bool):
                values[key] = float(values[key])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"mask key {key!r}: unknown value {value!r}; known: {list(choices)}")


# HKUST colours for the surgical/N95/KN95/cloth types; NISTIR 8311 light blue and black with its
# wide and round shapes (flat fills, as in the report); the DICTA 2021 white polygon as published.
DEFAULT_MASKS: dict[str, dict[str, Any]] = {
    "surgical_green": {"shape": "surgical", "color": "#44b4a8", "pattern": "pleats",
                       "nose_coverage": "medium", "shading": 0.5, "ear_loops": True},
    "surgical_blue": {"shape": "surgical", "color": "#1ca0f4", "pattern": "pleats",
                      "nose_coverage": "medium", "shading": 0.5, "ear_loops": True},
    "n95_white": {"shape": "n95", "color": "#FFFFFF", "pattern": "plain",
                  "nose_coverage": "high", "shading": 0.5, "ear_loops": True},
    "kn95_white": {"shape": "kn95", "color": "#FFFFFF", "pattern": "plain",
                   "nose_coverage": "high", "shading": 0.5, "ear_loops": True},
    "cloth_black": {"shape": "cloth", "color": "#000000", "pattern": "fabric",
                    "nose_coverage": "medium", "shading": 0.5, "ear_loops": True},
    "nist_wide_lightblue": {"shape": "nist_wide", "color": "#9CC9EC", "pattern": "plain",
                            "nose_coverage": "medium", "shading": 0.0, "ear_loops": False},
    "nist_round_black": {"shape": "nist_round", "color": "#000000", "pattern": "plain",
                         "nose_coverage": "medium", "shading": 0.0, "ear_loops": False},
    "dicta_polygon": {"shape": "dicta_polygon", "color": "#FFFFFF", "pattern": "plain",
                      "nose_coverage": "medium", "shading": 0.0, "ear_loops": False},
}


# -- geometry --------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Geometry:
    """Per-shape outline parameters; lengths are fractions of the face height (27 to 8)."""

    side: float  # jaw index where the top edge meets the jaw on the image-left side
    margin: float  # how far the bottom edge sits outside the jaw line
    chin_drop: float  # extra drop under the chin
    chin_width: float  # jaw indices over which the chin drop fades out
    top: tuple[tuple[float, float], ...]  # (fraction from nose to corner, offset below the chord)
    smooth: int  # corner-cutting passes: 0 keeps corners, more gives a rounder outline
    lower_corner: float  # jaw index of the lower ear-loop anchor, relative to ``side``


_GEOMETRY: dict[str, _Geometry] = {
    # straight top with the nose wire tented over the bridge; wraps under the chin
    "surgical": _Geometry(1.2, 0.025, 0.05, 3.5, ((0.22, 0.035), (0.5, 0.02), (0.8, 0.008)), 1, 3.0),
    # rounded cup from the bridge to under the chin
    "n95": _Geometry(2.2, 0.02, 0.035, 3.0, ((0.3, -0.02), (0.65, -0.015)), 3, 2.5),
    # folded: a point at the nose, straight flanks, a point under the chin
    "kn95": _Geometry(1.8, 0.02, 0.06, 1.8, ((0.35, 0.0), (0.7, 0.0)), 0, 2.5),
    # soft rounded fabric mask
    "cloth": _Geometry(1.5, 0.03, 0.05, 3.5, ((0.35, 0.0), (0.7, 0.005)), 2, 3.0),
    # NIST wide: out to the jaw corners, straight top
    "nist_wide": _Geometry(0.8, 0.0, 0.0, 3.0, ((0.35, 0.0), (0.7, 0.0)), 0, 3.0),
}

# how the top edge moves with nose coverage: position on the nose line (0 = landmark 27,
# 1 = nose tip 30, 2 = nostril base 33) and a shift of the side corners along the jaw
_NOSE_T = {"high": 0.3, "medium": 0.55, "low": 1.5}
_SIDE_SHIFT = {"high": -0.3, "medium": 0.0, "low": 0.7}
_DICTA_NOSE = {"high": 28, "medium": 29, "low": 33}


@dataclass(frozen=True)
class _Frame:
    """Face-aligned coordinates: x along the eye line, y down the face, origin at landmark 27."""

    origin: np.ndarray
    ex: np.ndarray
    ey: np.ndarray
    height: float

    @classmethod
    def of(cls, lm: np.ndarray) -> "_Frame":
        ex = lm[42:48].mean(0) - lm[36:42].mean(0)
        norm = float(np.hypot(*ex))
        ex = ex / norm if norm > 1e-6 else np.array([1.0, 0.0])
        ey = np.array([-ex[1], ex[0]])
        height = max(float(abs((lm[8] - lm[27]) @ ey)), 1.0)
        return cls(lm[27].copy(), ex, ey, height)

    def to_face(self, pts: np.ndarray) -> np.ndarray:
        d = pts - self.origin
        return np.stack([d @ self.ex, d @ self.ey], axis=-1)

    def to_image(self, pts: np.ndarray) -> np.ndarray:
        return self.origin + pts[..., :1] * self.ex + pts[..., 1:2] * self.ey


def _check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks must have shape (68, 2), not {lm.shape}")
    if not np.isfinite(lm).all():
        raise ValueError("landmarks contain NaN or infinite values")
    return lm


def _along(points: np.ndarray, s: np.ndarray | float) -> np.ndarray:
    """Points at fractional indices along a polyline (linear between landmarks)."""
    s = np.clip(np.asarray(s, dtype=np.float64), 0, len(points) - 1)
    i = np.minimum(np.floor(s).astype(int), len(points) - 2)
    f = (s - i)[..., None]
    return points[i] * (1 - f) + points[i + 1] * f


def _nose_point(face: np.ndarray, t: float) -> np.ndarray:
    """Point on the nose line 27-28-29-30-33 at position t (0 = bridge top, 1 = tip, 2 = base)."""
    line = face[[27, 28, 29, 30, 33]]
    return _along(line, t * 3 if t <= 1 else 3 + (t - 1))


def _side_widths(face: np.ndarray) -> tuple[float, float]:
    """Widths of the face left and right of the nose line; they differ when the head is turned."""
    nose_x = face[[30, 33]][:, 0].mean()
    left = float(np.mean(nose_x - face[1:6, 0]))
    right = float(np.mean(face[11:16, 0] - nose_x))
    return max(left, 1.0), max(right, 1.0)


def _eye_floor(face: np.ndarray, height: float) -> float:
    """Lowest y the top edge may reach: just below the lower eyelids."""
    return float(face[36:48, 1].max() + 0.035 * height)


def _chaikin(poly: np.ndarray, passes: int) -> np.ndarray:
    """Corner cutting on a closed outline: a cheap way to round a mask."""
    for _ in range(passes):
        nxt = np.roll(poly, -1, axis=0)
        poly = np.stack([0.75 * poly + 0.25 * nxt, 0.25 * poly + 0.75 * nxt], axis=1).reshape(-1, 2)
    return poly


def _outward_normals(pts: np.ndarray, centre: np.ndarray) -> np.ndarray:
    tangent = np.gradient(pts, axis=0)
    normal = np.stack([tangent[:, 1], -tangent[:, 0]], axis=1)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-9)
    flip = np.sum(normal * (pts - centre), axis=1) < 0
    normal[flip] *= -1
    return normal


def _cover_profile(poly: np.ndarray, face: np.ndarray, top: np.ndarray, height: float) -> np.ndarray:
    """Push the sides out past the nose and mouth, whose profile can stick out on a turned head.

    dlib sometimes puts the far-side jaw points inside the silhouette of the nose and lips; a
    real mask still covers them, so each side stays at least a margin outside that profile.
    """
    margin = 0.04 * height
    out = poly.copy()
    for chain, sign in (([30, 31, 48, 59, 58, 8], -1.0), ([30, 35, 54, 55, 56, 8], 1.0)):
        pts = face[chain]
        pts = np.vstack([top, pts[pts[:, 1] > top[1]]])
        ys = np.maximum.accumulate(pts[:, 1])
        limit = np.interp(out[:, 1], ys, pts[:, 0] + sign * margin)
        # a point of this side lies beyond the nose and beyond the chin: on a turned head the jaw
        # points between the two would otherwise be pushed across the face (a hole over the lips)
        band = ((out[:, 1] > top[1]) & (out[:, 1] < ys[-1]) & (sign * (out[:, 0] - top[0]) > 0)
                & (sign * (out[:, 0] - face[8, 0]) > 0))
        out[:, 0] = np.where(band & (sign * (out[:, 0] - limit) < 0), limit, out[:, 0])
    return out


@dataclass(frozen=True)
class _Outline:
    """A mask outline in face coordinates plus the anchors the painter needs."""

    poly: np.ndarray  # (K, 2)
    top: np.ndarray  # top centre on the nose
    bottom: np.ndarray  # bottom centre under the chin
    corners: np.ndarray  # (2, 2, 2): [left, right] x [upper, lower] ear-loop anchors
    side_ratio: tuple[float, float]  # left and right width relative to their mean


@functools.lru_cache(maxsize=64)
def _jaw_samples(side: float) -> np.ndarray:
    """41 fractional jaw indices from ``side`` to its mirror (fixed per mask type)."""
    s = np.linspace(side, 16 - side, 41)
    s.setflags(write=False)
    return s


def _jaw_outline(face: np.ndarray, height: float, spec: MaskSpec) -> _Outline:
    """Bottom along the jaw (offset outward), top from corner to corner across the nose."""
    g = _GEOMETRY[spec.shape]
    jaw = face[0:17]
    side = g.side + _SIDE_SHIFT[spec.nose_coverage]
    s = _jaw_samples(side)
    pts = _along(jaw, s)
    left, right = _side_widths(face)
    ratio = (2 * left / (left + right), 2 * right / (left + right))
    centre = np.array([face[[30, 33]][:, 0].mean(), (face[30, 1] + face[8, 1]) / 2])
    scale = np.interp(s, [0, 16], ratio)[:, None]
    bump = np.exp(-(((s - 8) / g.chin_width) ** 2))[:, None]
    normals = _outward_normals(pts, centre)
    bottom = pts + normals * g.margin * height * scale
    bottom = bottom + np.array([0.0, 1.0]) * g.chin_drop * height * bump

    floor = _eye_floor(face, height)
    top = _nose_point(face, _NOSE_T[spec.nose_coverage])
    top = np.array([top[0], max(top[1], floor)])
    lc, rc = bottom[0], bottom[-1]
    right_edge = [top + u * (rc - top) + np.array([0.0, dv * height]) for u, dv in g.top]
    left_edge = [top + u * (lc - top) + np.array([0.0, dv * height]) for u, dv in g.top]
    upper = np.array([*right_edge[::-1], top, *left_edge]).reshape(-1, 2)
    upper[:, 1] = np.maximum(upper[:, 1], floor)
    poly = _cover_profile(np.vstack([bottom, upper]), face, top, height)
    poly = _chaikin(poly, g.smooth)

    low_s = np.array([side + g.lower_corner, 16 - side - g.lower_corner])
    lower = _along(jaw, low_s) + normals[[0, -1]] * g.margin * height
    corners = np.array([[lc, lower[0]], [rc, lower[1]]])
    return _Outline(poly, top, bottom[len(s) // 2], corners, ratio)


def _round_outline(face: np.ndarray, height: float, spec: MaskSpec) -> _Outline:
    """NIST round: an oval over nose and mouth whose left and right halves follow the jaw."""
    floor = _eye_floor(face, height)
    top = _nose_point(face, _NOSE_T[spec.nose_coverage])
    top = np.array([top[0], max(top[1], floor)])
    bottom = face[57] + 0.55 * (face[8] - face[57])
    cy = (top[1] + bottom[1]) / 2
    cx = float(np.interp(cy, [top[1], bottom[1]], [top[0], bottom[0]]))
    b = (bottom[1] - top[1]) / 2
    left, right = _side_widths(face)
    jaw_left = np.interp(cy, np.maximum.accumulate(face[0:9, 1]), face[0:9, 0])
    jaw_right = np.interp(cy, np.maximum.accumulate(face[16:7:-1, 1]), face[16:7:-1, 0])
    a_left = 0.8 * max(cx - jaw_left, 1.0)
    a_right = 0.8 * max(jaw_right - cx, 1.0)
    theta = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    c, s = np.cos(theta), np.sin(theta)
    a = np.where(c >= 0, a_right, a_left)
    # a slightly squarer-than-elliptic oval, as cut from a flat sheet
    k = 2 / 2.4
    poly = np.stack([cx + a * np.sign(c) * np.abs(c) ** k, cy + b * np.sign(s) * np.abs(s) ** k], 1)
    ratio = (2 * left / (left + right), 2 * right / (left + right))
    mid = np.array([[cx - a_left, cy], [cx + a_right, cy]])
    corners = np.stack([mid, mid + [0.0, 0.3 * b]], axis=1)
    return _Outline(poly, top, bottom, corners, ratio)


def _dicta_outline(face: np.ndarray, spec: MaskSpec) -> _Outline:
    """DICTA 2021: jaw landmarks 2..14 closed through one nose landmark, nothing else."""
    nose = face[_DICTA_NOSE[spec.nose_coverage]]
    poly = np.vstack([face[2:15], nose])
    corners = np.array([[face[2], face[4]], [face[14], face[12]]])
    return _Outline(poly, nose, face[8], corners, (1.0, 1.0))


def fit_draw(spec: MaskSpec, seed: int | None) -> np.ndarray | None:
    """Per-image fit (seeded, from its own stream so other draws stay as they were): top edge
    shift, cheek width scale, sideways and vertical misplacement, as fractions of face height."""
    if not spec.fit_jitter or seed is None:
        return None
    u = np.random.default_rng([seed, 2]).uniform(-1.0, 1.0, 4)
    return spec.fit_jitter * u * np.array([0.08, 0.10, 0.03, 0.03])


def _refit(outline: _Outline, height: float, fit: np.ndarray, floor: float) -> _Outline:
    """Move the nose edge up or down, widen or narrow over the cheeks, shift the whole mask; a
    point is never moved above ``floor`` (just below the eyes: a worn mask does not cover them),
    and one already above it (DICTA's nose landmark) is not moved higher."""
    top_y, centre_x = float(outline.top[1]), float(outline.top[0])
    bottom_y = float(outline.bottom[1])

    def move(pts: np.ndarray) -> np.ndarray:
        pts = np.array(pts, dtype=np.float64)
        limit = np.minimum(pts[..., 1], floor)  # the least y (highest point) it may reach
        # the top edge moves by fit[0] and the move fades out toward the bottom edge
        w = np.clip((bottom_y - pts[..., 1]) / max(bottom_y - top_y, 1.0), 0.0, 1.0)
        pts[..., 1] += fit[0] * height * w
        pts[..., 0] = centre_x + (pts[..., 0] - centre_x) * (1.0 + fit[1])
        pts = pts + np.array([fit[2], fit[3]]) * height
        pts[..., 1] = np.maximum(pts[..., 1], limit)
        return pts

    return _Outline(move(outline.poly), move(outline.top), move(outline.bottom), move(outline.corners),
                    outline.side_ratio)


def _outline(lm: np.ndarray, spec: MaskSpec, fit: np.ndarray | None = None) -> tuple[_Frame, _Outline]:
    frame = _Frame.of(lm)
    face = frame.to_face(lm)
    if spec.shape == "dicta_polygon":
        outline = _dicta_outline(face, spec)
    elif spec.shape == "nist_round":
        outline = _round_outline(face, frame.height, spec)
    else:
        outline = _jaw_outline(face, frame.height, spec)
    if fit is not None:
        outline = _refit(outline, frame.height, fit, _eye_floor(face, frame.height))
    return frame, outline


def _clip(pts: np.ndarray, shape: tuple[int, int] | None) -> np.ndarray:
    if shape is None:
        return pts
    h, w = shape[:2]
    return np.clip(pts, [0.0, 0.0], [w - 1.0, h - 1.0])


def mask_polygon(landmarks: np.ndarray, spec: MaskSpec,
                 shape: tuple[int, int] | None = (150, 150), seed: int | None = None) -> np.ndarray:
    """Mask outline (K, 2) in chip coordinates, clipped to a chip of ``shape`` (None: unclipped);
    ``seed`` applies the per-image fit of a mask type with ``fit_jitter``, as ``paint_mask`` does."""
    lm = _check_landmarks(landmarks)
    frame, outline = _outline(lm, spec, fit_draw(spec, seed))
    return _clip(frame.to_image(outline.poly), shape)


_SHIFT = 4  # sub-pixel bits for cv2.fillPoly


def _fixed(pts: np.ndarray) -> np.ndarray:
    return np.round(pts * (1 << _SHIFT)).astype(np.int32)


def mask_coverage(landmarks: np.ndarray, spec: MaskSpec,
                  shape: tuple[int, int] = (150, 150), seed: int | None = None) -> np.ndarray:
    """Boolean (H, W) raster of the mask region, as painted (without anti-aliasing)."""
    poly = mask_polygon(landmarks, spec, shape, seed)
    raster = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(raster, [_fixed(poly)], 255, cv2.LINE_8, _SHIFT)
    return raster > 0


# -- painting --------------------------------------------------------------------------------

def _hex_rgb(color: str) -> np.ndarray:
    return np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)], np.float32)


def _jittered_colour(spec: MaskSpec, rng: np.random.Generator) -> np.ndarray:
    """Base colour with a per-image shift of hue balance and brightness."""
    per_channel = rng.uniform(-1.0, 1.0, 3).astype(np.float32)
    brightness = np.float32(rng.uniform(-1.0, 1.0))
    j = np.float32(spec.color_jitter)
    return np.clip(_hex_rgb(spec.color) + j * (35.0 * per_channel + 45.0 * brightness), 0, 255)


@functools.lru_cache(maxsize=8)
def _fabric_texture(h: int, w: int) -> np.ndarray:
    """Luminance modulation (mean 1) twice the chip size; images take seeded crops of it."""
    rng = np.random.default_rng(zlib.crc32(b"maskbench-fabric"))
    th, tw = 2 * h, 2 * w
    coarse = cv2.resize(rng.normal(0, 1, (th // 6, tw // 6)).astype(np.float32), (tw, th),
                        interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.normal(0, 1, (th, tw)).astype(np.float32), (0, 0), 0.6)
    yy, xx = np.mgrid[0:th, 0:tw].astype(np.float32)
    twill = np.sin(2 * np.pi * (xx + yy) / 3.0)
    tex = 1.0 + 0.05 * coarse + 0.07 * fine + 0.03 * twill
    tex.setflags(write=False)
    return tex


@functools.lru_cache(maxsize=8)
def _image_texture(path: str) -> np.ndarray:
    bgr = cv2.imread(path, cv2.IMREAD_COLOR) if Path(path).is_file() else None
    if bgr is None:
        raise FileNotFoundError(f"mask pattern_image {path!r} is missing or not an image")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32)
    rgb.setflags(write=False)
    return rgb


def _smooth_1d(values: np.ndarray) -> np.ndarray:
    kernel = np.array([1, 2, 3, 2, 1], np.float32) / 9
    first, last = values[:1], values[-1:]
    padded = np.concatenate([first, first, values, last, last])  # np.pad(edge), without its overhead
    return np.convolve(padded, kernel, mode="valid")


def _pleat_factor(inside: np.ndarray, top_line: np.ndarray) -> np.ndarray:
    """Three folds between the corner-to-corner line and the bottom edge, converging at the sides.

    ``top_line`` is the straight line between the two upper corners (per column), so the folds
    stay straight across the middle instead of copying the bump over the nose.
    """
    h = inside.shape[0]
    any_col = inside.any(axis=0)
    first = np.argmax(inside, axis=0).astype(np.float32)
    bottom = _smooth_1d((h - 1 - np.argmax(inside[::-1], axis=0)).astype(np.float32))
    top = np.maximum(top_line, first)
    span = np.where(any_col, np.maximum(bottom - top, 1.0), 1.0)
    v = (np.arange(h, dtype=np.float32)[:, None] - top) / span
    factor = np.ones_like(v)
    width = np.float32(0.02)
    d, t = np.empty_like(v), np.empty_like(v)
    for fold in (0.22, 0.42, 0.62):
        np.subtract(v, fold, out=d)
        # factor -= 0.2 exp(-(d / w)^2), in place, the same float32 steps
        np.divide(d, width, out=t)
        np.square(t, out=t)
        np.negative(t, out=t)
        np.exp(t, out=t)
        t *= 0.2
        factor -= t
        # factor += 0.1 exp(-((d - 2.5 w) / 2 w)^2)
        np.subtract(d, 2.5 * width, out=t)
        t /= 2 * width
        np.square(t, out=t)
        np.negative(t, out=t)
        np.exp(t, out=t)
        t *= 0.1
        factor += t
        # each fold's underside faces down: factor -= 0.05 clip(1 + d / 0.12, 0, 1) (d < 0)
        np.divide(d, 0.12, out=t)
        np.add(1, t, out=t)
        np.clip(t, 0, 1, out=t)
        np.multiply(0.05, t, out=t)
        t *= d < 0
        factor -= t
    return factor


def _lighting(region: np.ndarray, inside: np.ndarray, dist: np.ndarray, height: float,
              shading: float, absolute: bool = True) -> np.ndarray:
    """Multiplicative lighting taken from the face under the mask (blurred) and a rounded rim."""
    lum = cv2.cvtColor(region, cv2.COLOR_RGB2GRAY).astype(np.float32)
    h, w = lum.shape
    small = cv2.resize(lum, (max(w // 4, 1), max(h // 4, 1)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), max(0.1 * height / 4, 0.8))
    light = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    ref = float(light[inside].mean()) if inside.any() else 128.0
    ref = max(ref, 1.0)
    # the face's overall brightness; left to match_shading's field when that is on
    overall = float(np.clip((ref / 130.0) ** 0.4, 0.7, 1.2)) if absolute else 1.0
    rim = 1.0 - 0.2 * (1.0 - np.clip(dist / (0.1 * height), 0.0, 1.0)) ** 2
    factor = np.clip(light / ref, 0.6, 1.3) * overall * rim
    return np.clip(1.0 + shading * (factor - 1.0), 0.3, 1.8)


def _seam_lines(size: tuple[int, int], points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A fold line (dark) with a lit edge beside it, as float maps in 0..1."""
    h, w = size
    dark = np.zeros((h, w), np.uint8)
    cv2.polylines(dark, [_fixed(points)], False, 255, 1, cv2.LINE_AA, _SHIFT)
    lit = np.zeros((h, w), np.uint8)
    cv2.polylines(lit, [_fixed(points + [1.0, 0.0])], False, 255, 1, cv2.LINE_AA, _SHIFT)
    return dark.astype(np.float32) / 255, lit.astype(np.float32) / 255


def _kn95_seam(frame: _Frame, face: np.ndarray, outline: _Outline) -> np.ndarray:
    """Centre fold of a KN95 in chip coordinates: from the nose point down to the chin point."""
    mouth = face[[62, 66]].mean(0)
    pts = np.array([outline.top, face[30], mouth, outline.bottom])
    t = np.linspace(0, 3, 16)
    return frame.to_image(_along(pts, t))


# the quadratic Bezier weights of an ear loop's 10 points: (1 - t)^2, 2 (1 - t) t, t^2
_LOOP_T = np.linspace(0, 1, 10)[:, None]
_LOOP_FROM, _LOOP_BEND, _LOOP_TO = (1 - _LOOP_T) ** 2, 2 * (1 - _LOOP_T) * _LOOP_T, _LOOP_T ** 2


def _ear_loops(out: np.ndarray, frame: _Frame, face: np.ndarray, outline: _Outline,
               colour: np.ndarray, opacity: float) -> np.ndarray:
    """Thin elastic loops from each side's corners back toward the ear; hidden on a far side.

    Opaque loops are drawn into ``out`` itself (the painter's own copy of the chip)."""
    layer = out if opacity >= 1.0 else out.copy()
    loop = tuple(float(c) for c in np.clip(0.7 * colour + 0.3 * 235.0, 0, 255))
    for side, jaw_idx, ratio in ((0, (0, 1), outline.side_ratio[0]), (1, (16, 15), outline.side_ratio[1])):
        if ratio < 0.55:
            continue
        ear = face[list(jaw_idx)].mean(0) + [(-1 if side == 0 else 1) * 0.08 * frame.height, 0.0]
        for corner in outline.corners[side]:
            bend = (corner + ear) / 2 + np.array([0.0, -0.03 * frame.height])
            curve = _LOOP_FROM * corner + _LOOP_BEND * bend + _LOOP_TO * ear
            cv2.polylines(layer, [_fixed(frame.to_image(curve))], False, loop, 1, cv2.LINE_AA, _SHIFT)
    if opacity >= 1.0:
        return layer
    blended = out.astype(np.float32) + opacity * (layer.astype(np.float32) - out)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def _bbox(poly: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    h, w = shape
    x0, y0 = np.floor(poly.min(0)).astype(int) - 2
    x1, y1 = np.ceil(poly.max(0)).astype(int) + 3
    return max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)


def _colour_layer(spec: MaskSpec, colour: np.ndarray, rng: np.random.Generator,
                  box: tuple[int, int, int, int], chip_shape: tuple[int, int],
                  inside: np.ndarray, top_line: np.ndarray) -> np.ndarray:
    """Mask colour with its pattern, before lighting: (h, w, 3) float32."""
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    if spec.pattern == "image":
        tex = cv2.resize(_image_texture(spec.pattern_image), (w, h), interpolation=cv2.INTER_AREA)
        return tex + (colour - _hex_rgb(spec.color))  # the colour jitter shifts the texture
    layer = np.broadcast_to(colour, (h, w, 3)).astype(np.float32)
    if spec.pattern == "pleats":
        layer = layer * _pleat_factor(inside, top_line)[..., None]
    elif spec.pattern == "fabric":
        tex = _fabric_texture(*chip_shape)
        oy, ox = rng.integers(0, chip_shape[0]), rng.integers(0, chip_shape[1])
        layer = layer * tex[oy + y0:oy + y1, ox + x0:ox + x1, None]
        # dark cloth shows its weave as lighter fibres rather than as darker shadows
        layer += (tex[oy + y0:oy + y1, ox + x0:ox + x1, None] - 1.0) * 90.0 * (1 - colour.mean() / 255)
    return layer


def paint_mask(chip: np.ndarray, landmarks: np.ndarray, spec: MaskSpec, seed: int = 0) -> np.ndarray:
    """A new RGB uint8 chip with the mask painted on; deterministic in (inputs, seed)."""
    chip = np.asarray(chip)
    if chip.ndim != 3 or chip.shape[2] != 3 or chip.dtype != np.uint8:
        raise ValueError(f"chip must be an RGB uint8 array (H, W, 3), not {chip.dtype} {chip.shape}")
    lm = _check_landmarks(landmarks)
    rng = np.random.default_rng(seed)
    colour = _jittered_colour(spec, rng)
    frame, outline = _outline(lm, spec, fit_draw(spec, seed))
    face = frame.to_face(lm)
    size = chip.shape[:2]
    poly = _clip(frame.to_image(outline.poly), size)
    out = chip.copy()
    box = _bbox(poly, size)
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return out
    local = poly - [x0, y0]
    alpha8 = np.zeros((y1 - y0, x1 - x0), np.uint8)
    hard = spec.shape == "dicta_polygon"  # the paper's polygon is a plain hard-edged fill
    cv2.fillPoly(alpha8, [_fixed(local)], 255, cv2.LINE_8 if hard else cv2.LINE_AA, _SHIFT)
    inside = alpha8 > 127
    region = chip[y0:y1, x0:x1]

    corners = frame.to_image(outline.corners[:, 0]) - [x0, y0]
    corners = corners[np.argsort(corners[:, 0])]
    top_line = np.interp(np.arange(x1 - x0, dtype=np.float32), corners[:, 0], corners[:, 1])
    layer = _colour_layer(spec, colour, rng, box, size, inside, top_line.astype(np.float32))
    if spec.shading > 0:  # shading 0 is a flat fill, as the NIST and DICTA masks are
        dist = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 3)
        light = _lighting(region, inside, dist, frame.height, spec.shading, absolute=not spec.match_shading)
        if spec.shape in ("surgical", "n95"):  # bound edge / moulded rim
            light = light * np.where(dist < 2.0, np.float32(0.92), np.float32(1.0))
        if spec.shape == "kn95":
            dark, lit = _seam_lines(alpha8.shape, _kn95_seam(frame, face, outline) - [x0, y0])
            light = light * (1 - 0.3 * dark) * (1 + 0.1 * lit)
        lift = 70.0 * (1.0 - float(colour.mean()) / 255.0) * spec.shading
        # light colours keep some headroom so highlights do not clip to a flat sticker
        headroom = 1.0 - 0.12 * spec.shading * float(colour.max()) / 255.0
        layer = layer * (light[..., None] * headroom) + lift * (light[..., None] - 1.0)
    if spec.match_shading or spec.fabric_variety:
        from maskbench.faces.mask_shading import shade_layer

        footprint = np.zeros(size, bool)
        footprint[y0:y1, x0:x1] = inside
        layer = shade_layer(layer, colour, chip, lm, footprint, box, frame.height, spec.match_shading,
                            spec.fabric_variety, seed, reach=alpha8 > 0)  # alpha 0: the layer is unseen
    alpha = (alpha8.astype(np.float32) * np.float32(spec.opacity / 255.0))[..., None]
    painted = region.astype(np.float32)
    painted *= 1 - alpha
    cover = np.clip(layer, 0, 255)
    cover *= alpha
    painted += cover
    painted += np.float32(0.5)
    out[y0:y1, x0:x1] = np.clip(painted, 0, 255, out=painted).astype(np.uint8)
    if spec.ear_loops:
        out = _ear_loops(out, frame, face, outline, colour, spec.opacity)
    if spec.match_blur or spec.match_noise or spec.jpeg_quality:
        from maskbench.faces.mask_render import match_photo

        covered = np.zeros(size, bool)
        covered[y0:y1, x0:x1] = alpha8 > 0
        out = match_photo(chip, out, covered, lm, spec.match_blur, spec.match_noise, spec.jpeg_quality,
                          np.random.default_rng([seed, 1]))
    return out


# -- contact sheet ---------------------------------------------------------------------------

def contact_sheet(chips: list[np.ndarray], landmarks: list[np.ndarray], specs: dict[str, MaskSpec],
                  seed: int = 0) -> np.ndarray:
    """Grid of faces (rows) by mask types (columns, first the unmasked chip) with labels."""
    if len(chips) != len(landmarks):
        raise ValueError(f"{len(chips)} chips but {len(landmarks)} landmark sets")
    if not chips:
        raise ValueError("contact_sheet needs at least one chip")
    h, w = chips[0].shape[:2]
    names = ["unmasked", *specs]
    label_h = 18
    sheet = np.full((label_h + h * len(chips), w * len(names), 3), 255, np.uint8)
    for col, name in enumerate(names):
        scale = min(0.4, 0.95 * w / max(cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 1)[0][0], 1))
        cv2.putText(sheet, name, (col * w + 2, label_h - 5), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (0, 0, 0), 1, cv2.LINE_AA)
    for row, (chip, lm) in enumerate(zip(chips, landmarks)):
        cells = [chip] + [paint_mask(chip, lm, specs[name], seed=seed + row) for name in names[1:]]
        y = label_h + row * h
        for col, cell in enumerate(cells):
            if cell.shape[:2] != (h, w):
                cell = cv2.resize(cell, (w, h), interpolation=cv2.INTER_AREA)
            sheet[y:y + h, col * w:(col + 1) * w] = cell
    return sheet
