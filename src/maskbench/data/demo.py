"""Built-in demo dataset: procedurally drawn cartoon faces with identities and exact landmarks.

Real faces cannot ship with the project, so the default configuration runs on faces drawn here.
An identity is a set of face-shape, colour and hair parameters; each image adds pose, expression,
lighting, background and camera noise. The 68 landmarks (iBUG 300-W / dlib order) are the very
points the drawing is built from, so they sit on the drawn features by construction, and the
whole pipeline (alignment, masking, embedding, scoring) can run and be tested anywhere.

Randomness: identity ``i`` draws from ``SeedSequence(seed, spawn_key=(i,))`` and its image ``j``
from ``spawn_key=(i, j)``, so adding identities or images never changes the existing ones.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from maskbench.io.atomic import write_bytes, write_text

N_POINTS = 68
BASE_SIZE = 250
UNIT_PX = 56.0  # pixels per model unit in a 250 px frame (face half-width is about one unit)
FACE_CENTRE = np.array([0.0, 0.62, 0.1])  # model point near the mean of the 68 landmarks ...
FRAME_CENTRE = (0.5, 0.52)  # ... kept at this fraction of the frame, as LFW's crops centre faces
FOCAL = 9.0  # camera distance in model units: a little perspective for turned heads
PIVOT = np.array([0.0, 0.35, -0.9])  # the head turns about a point inside the skull
SHIFT = 4  # cv2 sub-pixel bits: coordinates are drawn with 1/16 px precision
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # fast; level 6 triples the time for 12% less

SKIN_TONES = np.array(
    [(236, 202, 178), (226, 184, 150), (204, 156, 118), (172, 120, 84), (128, 86, 56), (86, 58, 40)],
    dtype=np.float64,
)
HAIR_COLOURS = np.array(
    [(26, 22, 20), (56, 38, 28), (98, 66, 42), (146, 106, 64), (206, 172, 112), (138, 60, 32),
     (150, 146, 142), (214, 210, 204)],
    dtype=np.float64,
)
HAIR_WEIGHTS = np.array([0.26, 0.22, 0.16, 0.1, 0.1, 0.06, 0.06, 0.04])
EYE_COLOURS = np.array(
    [(58, 36, 24), (96, 62, 34), (118, 96, 50), (78, 116, 70), (66, 108, 160), (108, 118, 128)],
    dtype=np.float64,
)
HAIR_STYLES = ("short", "medium", "long", "curly", "receding")
BEARD_STYLES = ("none", "stubble", "full", "moustache", "goatee")


@dataclass(frozen=True)
class Identity:
    """Everything that stays the same across one person's images."""

    face_w: float  # half-width of the face at the cheeks
    chin_y: float  # chin depth below the eye line
    jaw_top: float  # height of landmarks 0 and 16
    jaw_n: float  # superellipse exponent: 2 is oval, larger is square
    jaw_taper: float  # narrowing of the lower face
    eye_dx: float
    eye_w: float
    eye_h: float
    eye_tilt: float
    brow_h: float
    brow_arch: float
    brow_thick: float
    brow_len: float
    nose_len: float
    nose_w: float
    nose_depth: float
    mouth_y: float
    mouth_w: float
    lip_up: float
    lip_lo: float
    ear_size: float
    smile_bias: float
    skin: np.ndarray
    lip: np.ndarray
    hair: np.ndarray
    brow: np.ndarray
    iris: np.ndarray
    hair_style: str
    hair_vol: float
    hairline: float
    hair_square: float
    recede: float
    peak: float
    part: float
    fringe: bool
    hair_len: float
    curl_phase: float
    strands: np.ndarray  # (k, 2): hairline position and sway of drawn strands
    beard: str
    beard_alpha: float
    glasses: bool
    glasses_colour: np.ndarray
    glasses_square: float


@dataclass(frozen=True)
class Shot:
    """Everything that changes from one image of a person to the next."""

    yaw: float  # radians
    pitch: float
    roll: float
    scale: float
    shift: tuple[float, float]  # translation in 250-px-frame pixels
    smile: float
    mouth_open: float
    brow_raise: float
    eye_open: float
    gaze: tuple[float, float]
    light: tuple[float, float, float]  # unit vector, image coordinates (x right, y down, z out)
    ambient: float
    grad: float  # strength of the frame-wide light gradient
    temperature: float  # -1 cool ... +1 warm
    exposure: float
    shirt: np.ndarray
    collar: float
    blur: float  # sigma in pixels
    noise: float  # sigma in grey levels
    seed: int  # background clutter and sensor noise


# --------------------------------------------------------------------------------------------
# Sampling


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _muted(rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """A colour pulled towards grey, as walls and rooms mostly are."""
    c = rng.uniform(lo, hi, 3)
    return c * 0.45 + c.mean() * 0.55


def _skin(rng: np.random.Generator) -> np.ndarray:
    """A skin colour interpolated along a light-to-dark range of real tones, slightly jittered."""
    t = rng.uniform(0, len(SKIN_TONES) - 1)
    i = min(int(t), len(SKIN_TONES) - 2)
    base = SKIN_TONES[i] + (SKIN_TONES[i + 1] - SKIN_TONES[i]) * (t - i)
    return np.clip(base + rng.normal(0, 5, 3), 0, 255)


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draw one person; every field is drawn every time so the stream stays aligned."""
    u = rng.uniform
    skin = _skin(rng)
    hair = np.clip(HAIR_COLOURS[rng.choice(len(HAIR_COLOURS), p=HAIR_WEIGHTS)] + rng.normal(0, 6, 3), 0, 255)
    lip = np.clip(skin * 0.55 + np.array([178, 82, 86]) * 0.45 + rng.normal(0, 6, 3), 0, 255) * u(0.8, 0.95)
    brow = hair * 0.75 if hair.mean() > 120 else hair * 0.9
    iris = np.clip(EYE_COLOURS[rng.integers(len(EYE_COLOURS))] + rng.normal(0, 6, 3), 0, 255)
    nose_len = u(0.48, 0.64)
    style = HAIR_STYLES[rng.choice(len(HAIR_STYLES), p=[0.3, 0.25, 0.2, 0.12, 0.13])]
    beard = BEARD_STYLES[rng.choice(len(BEARD_STYLES), p=[0.7, 0.1, 0.08, 0.06, 0.06])]
    beard = "none" if style == "long" else beard
    return Identity(
        face_w=u(0.9, 1.08), chin_y=u(1.38, 1.62), jaw_top=u(-0.02, 0.14), jaw_n=u(1.9, 3.4),
        jaw_taper=u(0.0, 0.16), eye_dx=u(0.38, 0.46), eye_w=u(0.15, 0.2), eye_h=u(0.065, 0.095),
        eye_tilt=u(-0.03, 0.04), brow_h=u(0.21, 0.32), brow_arch=u(0.0, 0.09),
        brow_thick=u(0.045, 0.1), brow_len=u(0.9, 1.15), nose_len=nose_len, nose_w=u(0.14, 0.22),
        nose_depth=u(0.35, 0.55), mouth_y=nose_len + u(0.3, 0.42), mouth_w=u(0.3, 0.41),
        lip_up=u(0.045, 0.09), lip_lo=u(0.07, 0.13), ear_size=u(0.88, 1.15), smile_bias=u(0, 0.5),
        skin=skin, lip=lip, hair=hair, brow=brow, iris=iris,
        hair_style=style, hair_vol=u(0.06, 0.3), hairline=u(-1.12, -0.86), hair_square=u(3.0, 7.0),
        recede=u(0.0, 0.15), peak=u(0.0, 0.08) * (rng.random() < 0.3), part=u(-1, 1),
        fringe=bool(rng.random() < 0.25), hair_len=u(1.7, 2.8), curl_phase=u(0, 2 * np.pi),
        strands=np.column_stack([rng.uniform(-0.9, 0.9, 9), rng.normal(0, 0.15, 9)]),
        beard=beard, beard_alpha=u(0.3, 0.45) if beard == "stubble" else u(0.85, 1.0),
        glasses=bool(rng.random() < 0.15), glasses_colour=rng.uniform(10, 120, 3),
        glasses_square=u(2.0, 5.0),
    )


def sample_shot(rng: np.random.Generator, identity: Identity) -> Shot:
    """Draw one image's pose, expression, light and camera."""
    n, u = rng.normal, rng.uniform
    azimuth, elevation = u(0, 2 * np.pi), np.radians(u(25, 70))
    light = (float(np.cos(elevation) * np.cos(azimuth)),
             float(np.cos(elevation) * np.sin(azimuth) * 0.6 - 0.3),  # mostly from above
             float(np.sin(elevation)))
    norm = float(np.linalg.norm(light))
    opened = rng.random() < 0.35
    return Shot(
        yaw=float(np.radians(np.clip(n(0, 11), -26, 26))),
        pitch=float(np.radians(np.clip(n(0, 6), -14, 14))),
        roll=float(np.radians(np.clip(n(0, 5), -12, 12))),
        scale=float(np.clip(n(1, 0.045), 0.88, 1.12)),
        shift=(float(n(0, 3)), float(n(0, 3))),
        smile=float(np.clip(identity.smile_bias + n(0, 0.3), 0, 1)),
        mouth_open=float(u(0.15, 0.8)) if opened else 0.0,
        brow_raise=float(np.clip(n(0, 0.035), -0.05, 0.08)),
        eye_open=float(u(0.8, 1.1)),
        gaze=(float(n(0, 0.25)), float(n(0, 0.15))),
        light=tuple(v / norm for v in light),
        ambient=float(u(0.42, 0.62)),
        grad=float(u(0.0, 0.25)),
        temperature=float(u(-1, 1)),
        exposure=float(u(0.85, 1.08)),
        shirt=_muted(rng, 20, 235),
        collar=float(u(0.15, 0.6)),
        blur=float(u(0.0, 0.9)),
        noise=float(u(0.5, 4.0)),
        seed=int(rng.integers(2**32)),
    )


# --------------------------------------------------------------------------------------------
# Geometry: the 68 landmarks in 3-D model units (x right, y down, z towards the camera)


def _jaw(p: Identity, drop: float) -> np.ndarray:
    """Points 0-16: a superellipse from the face's right (image left) under the chin to its left."""
    phi = np.pi * np.arange(17) / 16
    u, v = -np.cos(phi), np.sin(phi)
    e = 2.0 / p.jaw_n
    x = p.face_w * np.sign(u) * np.abs(u) ** e * (1 - p.jaw_taper * v**2)
    y = p.jaw_top + (p.chin_y + drop - p.jaw_top) * v**e
    z = -0.55 + 0.6 * v**2.5  # flat near the ears, so a turned head keeps a convex outline
    return np.column_stack([x, y, z])


def _brow(p: Identity, side: int, lift: float) -> np.ndarray:
    """Five points along the brow's upper part, from its outer end to its inner end."""
    t = np.linspace(0, 1, 5)
    x_out = p.eye_dx + p.eye_w * 1.35 * p.brow_len
    x_in = max(0.08, p.eye_dx - p.eye_w * 1.1)
    x = x_out + (x_in - x_out) * t
    y = -(p.brow_h + lift) - p.brow_arch * np.sin(np.pi * (0.1 + 0.9 * t**0.8)) + 0.06 * (1 - t) ** 2
    z = 0.08 - 0.25 * (1 - t)
    return np.column_stack([side * x, y, z])


def _eye(p: Identity, side: int, openness: float) -> np.ndarray:
    """Six points: outer corner, two upper-lid, inner corner, two lower-lid (dlib's cycle)."""
    cx, ew, eh, d = side * p.eye_dx, p.eye_w, p.eye_h * openness, side
    outer = (cx + d * ew, -p.eye_tilt, -0.12)
    up_out = (cx + d * ew / 3, -eh - p.eye_tilt / 3, 0.0)
    up_in = (cx - d * ew / 3, -eh * 1.05, 0.03)
    inner = (cx - d * ew, 0.01, 0.02)
    lo_in = (cx - d * ew / 3, eh * 0.8, 0.03)
    lo_out = (cx + d * ew / 3, eh * 0.8 - p.eye_tilt / 3, 0.0)
    if side < 0:
        return np.array([outer, up_out, up_in, inner, lo_in, lo_out])
    return np.array([inner, up_in, up_out, outer, lo_out, lo_in])


def _nose(p: Identity) -> np.ndarray:
    """Points 27-30 down the bridge to the tip, 31-35 along the nostril base."""
    t = np.linspace(0, 1, 4)
    bridge = np.column_stack([np.zeros(4), -0.02 + (p.nose_len + 0.02) * t, 0.1 + (p.nose_depth - 0.1) * t])
    yb, w = p.nose_len + 0.1, p.nose_w
    base = np.array([
        (-w, yb - 0.03, p.nose_depth * 0.4), (-w * 0.5, yb + 0.02, p.nose_depth * 0.55),
        (0.0, yb + 0.04, p.nose_depth * 0.65), (w * 0.5, yb + 0.02, p.nose_depth * 0.55),
        (w, yb - 0.03, p.nose_depth * 0.4),
    ])
    return np.vstack([bridge, base])


def _mouth(p: Identity, smile: float, gap: float) -> np.ndarray:
    """Points 48-59 around the outer lip and 60-67 around the inner lip."""
    mw, y, lu, ll = p.mouth_w * (1 + 0.12 * smile), p.mouth_y, p.lip_up, p.lip_lo
    up = 0.07 * smile
    ox = mw * np.array([-1, -0.62, -0.24, 0, 0.24, 0.62, 1, 0.62, 0.24, 0, -0.24, -0.62])
    oy = y + np.array([
        -up, -lu * 0.8 - up * 0.5, -lu * 1.1, -lu * 0.85, -lu * 1.1, -lu * 0.8 - up * 0.5, -up,
        gap + ll * 0.72 - up * 0.5, gap + ll * 1.0 - up * 0.12, gap + ll * 1.05,
        gap + ll * 1.0 - up * 0.12, gap + ll * 0.72 - up * 0.5,
    ])
    ix = mw * np.array([-0.86, -0.35, 0, 0.35, 0.86, 0.35, 0, -0.35])
    iy = y + np.array([-up * 0.85, -up * 0.3 - 0.004, -0.004, -up * 0.3 - 0.004, -up * 0.85,
                       gap - up * 0.3, gap, gap - up * 0.3])
    x = np.concatenate([ox, ix])
    yy = np.concatenate([oy, iy])
    z = 0.3 - 0.28 * (x / mw) ** 2
    return np.column_stack([x, yy, z])


def landmarks_3d(p: Identity, s: Shot) -> np.ndarray:
    """The 68 points of one face in model units, expression applied."""
    gap = 0.2 * s.mouth_open
    return np.vstack([
        _jaw(p, drop=gap * 0.8), _brow(p, -1, s.brow_raise), _brow(p, 1, s.brow_raise)[::-1],
        _nose(p), _eye(p, -1, s.eye_open), _eye(p, 1, s.eye_open), _mouth(p, s.smile, gap),
    ])


def _cranium(p: Identity, grow: float = 0.0, n: int = 25) -> np.ndarray:
    """The skull outline from the face's left temple (image right) over the top to its right."""
    a = np.linspace(0, np.pi, n)
    x = (p.face_w * (1 + 0.04 * np.sin(a)) + grow) * np.cos(a)
    y = p.jaw_top - (p.jaw_top + 1.55 + grow) * np.sin(a) ** 0.9
    z = -0.45 - 0.2 * np.sin(a)
    return np.column_stack([x, y, z])


def _hairline(p: Identity, n: int = 21) -> np.ndarray:
    """The front edge of the hair, from the face's right sideburn across the forehead to its left."""
    t = np.linspace(-1, 1, n)
    top = -0.52 if p.fringe else p.hairline
    side = p.jaw_top - 0.12
    square = 9.0 if p.fringe else p.hair_square
    y = top + (side - top) * np.abs(t) ** square
    recede = p.recede * (3.5 if p.hair_style == "receding" else 1.0)
    y -= recede * np.exp(-(((np.abs(t) - 0.55) / 0.2) ** 2))  # temples recede in an M
    y += p.peak * np.exp(-((t / 0.12) ** 2)) + 0.06 * p.part * t * (1 - np.abs(t))
    if p.fringe:
        y += 0.025 * np.sin(t * 37 + p.curl_phase)
    y = np.maximum(y, -1.38)
    x = t * p.face_w * 0.985
    z = 0.1 - 0.55 * t**2
    return np.column_stack([x, y, z])


# --------------------------------------------------------------------------------------------
# Camera


@dataclass(frozen=True)
class _Camera:
    rot: np.ndarray
    scale: float  # pixels per model unit
    origin: np.ndarray  # pixel position of the model origin (mid eye line)

    def project(self, pts: np.ndarray) -> np.ndarray:
        q = (np.asarray(pts, dtype=np.float64) - PIVOT) @ self.rot.T + PIVOT
        f = FOCAL / (FOCAL - q[:, 2])
        return self.origin + self.scale * q[:, :2] * f[:, None]


def _camera(s: Shot, size: int) -> _Camera:
    cy, sy = np.cos(s.yaw), np.sin(s.yaw)
    cp, sp = np.cos(s.pitch), np.sin(s.pitch)
    cr, sr = np.cos(s.roll), np.sin(s.roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    k = size / BASE_SIZE
    cam = _Camera(rot=rz @ rx @ ry, scale=UNIT_PX * k * s.scale, origin=np.zeros(2))
    target = np.array([size * FRAME_CENTRE[0] + s.shift[0] * k, size * FRAME_CENTRE[1] + s.shift[1] * k])
    return _Camera(rot=cam.rot, scale=cam.scale, origin=target - cam.project(FACE_CENTRE[None])[0])


# --------------------------------------------------------------------------------------------
# Drawing primitives


@functools.lru_cache(maxsize=8)
def _spline_basis(steps: int) -> np.ndarray:
    t = np.arange(steps) / steps
    return 0.5 * np.stack(
        [-t**3 + 2 * t**2 - t, 3 * t**3 - 5 * t**2 + 2, -3 * t**3 + 4 * t**2 + t, t**3 - t**2], axis=1
    )


def _spline(points: np.ndarray, closed: bool = False, steps: int = 6) -> np.ndarray:
    """Catmull-Rom curve through the points, so landmarks lie on the drawn outline."""
    p = np.asarray(points, dtype=np.float64)
    if closed:
        ext, nseg = np.vstack([p[-1:], p, p[:2]]), len(p)
    else:
        ext, nseg = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]]), len(p) - 1
    idx = np.arange(nseg)[:, None] + np.arange(4)[None, :]
    out = np.einsum("sk,nkd->nsd", _spline_basis(steps), ext[idx]).reshape(-1, 2)
    return out if closed else np.vstack([out, p[-1:]])


def _ints(pts: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(pts) * (1 << SHIFT)).astype(np.int32)


def _colour(c) -> tuple | float:
    if np.ndim(c):
        return tuple(min(255.0, max(0.0, float(v))) for v in c)
    return float(c)


def _fill(img: np.ndarray, pts: np.ndarray, colour) -> None:
    cv2.fillPoly(img, [_ints(pts)], _colour(colour), cv2.LINE_AA, SHIFT)


def _line(img: np.ndarray, pts: np.ndarray, colour, thickness: float, closed: bool = False) -> None:
    width = max(1, int(round(thickness)))
    cv2.polylines(img, [_ints(pts)], closed, _colour(colour), width, cv2.LINE_AA, SHIFT)


def _ellipse(img: np.ndarray, centre, axes, angle: float, colour, thickness: int = -1) -> None:
    c = tuple(int(v) for v in _ints(centre))
    a = tuple(max(1, int(v)) for v in _ints(axes))
    cv2.ellipse(img, c, a, float(angle), 0, 360, _colour(colour), thickness, cv2.LINE_AA, SHIFT)


def _blend_poly(img: np.ndarray, pts: np.ndarray, colour, alpha: float) -> None:
    """Fill a polygon with partial opacity, working only inside its bounding box."""
    x0, y0, x1, y1 = _bbox(pts, img.shape, pad=2)
    if x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    _fill(mask, pts - (x0, y0), 255)
    a = mask[..., None].astype(np.float32) * (alpha / 255.0)
    roi = img[y0:y1, x0:x1]
    roi[:] = (roi * (1 - a) + np.asarray(colour, np.float32) * a + 0.5).astype(np.uint8)


def _bbox(pts: np.ndarray, shape, pad: int) -> tuple[int, int, int, int]:
    x0 = max(0, int(np.floor(pts[:, 0].min())) - pad)
    y0 = max(0, int(np.floor(pts[:, 1].min())) - pad)
    x1 = min(shape[1], int(np.ceil(pts[:, 0].max())) + pad + 1)
    y1 = min(shape[0], int(np.ceil(pts[:, 1].max())) + pad + 1)
    return x0, y0, x1, y1


def _level(factor: float) -> float:
    """Shade-map value for a brightness factor: 128 leaves a pixel alone, lower darkens."""
    return min(255.0, max(0.0, 128.0 * factor))


# --------------------------------------------------------------------------------------------
# Scene parts


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """An out-of-focus room: a two-colour gradient with a few blurred blocks and blobs."""
    small = 40
    c0, c1 = _muted(rng, 30, 220), _muted(rng, 30, 220)
    a = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:small, 0:small] / (small - 1) - 0.5
    t = np.clip(0.5 + xx * np.cos(a) + yy * np.sin(a), 0, 1)[..., None]
    canvas = (c0 * (1 - t) + c1 * t).astype(np.uint8)
    for _ in range(int(rng.integers(2, 8))):
        colour = _muted(rng, 20, 240)
        x, y = rng.uniform(-5, small + 5, 2)
        w, h = rng.uniform(3, 18, 2)
        if rng.random() < 0.5:
            corners = np.array([(x, y), (x + w, y), (x + w, y + h), (x, y + h)])
            _fill(canvas, corners, colour)
        else:
            _ellipse(canvas, (x, y), (w / 2, h / 2), 0, colour)
    canvas = cv2.GaussianBlur(canvas, (0, 0), sigmaX=1.3)
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_CUBIC)


def _draw_back_hair(img, mask, p: Identity, cam: _Camera) -> None:
    """Long hair falls behind the neck to the shoulders."""
    if p.hair_style != "long":
        return
    top = _cranium(p, grow=p.hair_vol + 0.05)
    w = p.face_w + p.hair_vol + 0.25
    sides = np.array([(-w, p.hair_len, -0.9), (-w * 0.6, p.hair_len + 0.15, -0.9),
                      (w * 0.6, p.hair_len + 0.15, -0.9), (w, p.hair_len, -0.9)])
    pts = cam.project(np.vstack([top, sides]))
    _fill(img, pts, p.hair * 0.85)
    _fill(mask, pts, 255)


def _draw_body(img, mask, p: Identity, s: Shot, cam: _Camera) -> None:
    """Neck, then shoulders in a shirt with a collar opening."""
    nw = p.face_w * 0.6
    neck3 = np.array([(-nw, 0.4, -0.7), (nw, 0.4, -0.7), (nw * 1.1, p.chin_y + 1.2, -0.7),
                      (-nw * 1.1, p.chin_y + 1.2, -0.7)])
    neck = cam.project(neck3)
    _fill(img, neck, p.skin * 0.8)
    _fill(mask, neck, 255)
    k = cam.scale / s.scale
    bx, by = cam.project(np.array([(0.0, p.chin_y + 0.45, -0.7)]))[0]
    dip = s.collar * k
    shirt = np.array([
        (bx - 0.75 * k, by), (bx - 0.45 * k, by + dip * 0.7), (bx, by + dip),
        (bx + 0.45 * k, by + dip * 0.7), (bx + 0.75 * k, by), (bx + 1.7 * k, by + 0.3 * k),
        (bx + 2.5 * k, by + 0.9 * k), (bx + 2.8 * k, by + 2.5 * k), (bx - 2.8 * k, by + 2.5 * k),
        (bx - 2.5 * k, by + 0.9 * k), (bx - 1.7 * k, by + 0.3 * k),
    ])
    outline = _spline(shirt, closed=True, steps=5)
    _fill(img, outline, s.shirt)
    _fill(mask, outline, 0)


def _draw_ears(img, mask, shade, p: Identity, cam: _Camera) -> None:
    """Ears as tilted disks beside the face, drawn before the head so the head hides their root."""
    a = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    for side in (-1, 1):
        centre = np.array([side * (p.face_w + 0.04), p.jaw_top + 0.18, -0.75])
        out = np.array([side * 0.82, 0.0, -0.57])
        ring = centre + np.outer(0.14 * p.ear_size * np.cos(a), out) + np.outer(
            0.3 * p.ear_size * np.sin(a), [0, 1, 0])
        pts = cam.project(ring)
        _fill(img, pts, p.skin * 0.9)
        _fill(mask, pts, 255)
        inner = cam.project(centre + 0.55 * (ring - centre) + np.array([side * 0.02, 0.02, 0]))
        _fill(shade, inner, _level(0.8))


def _draw_head(img, mask, p: Identity, cam: _Camera, lm: np.ndarray) -> None:
    """Face and skull in one outline through the jaw landmarks."""
    jaw = _spline(lm[:17], steps=4)
    skull = cam.project(_cranium(p))
    outline = np.vstack([jaw, skull[1:-1]])
    _fill(img, outline, p.skin)
    _fill(mask, outline, 255)


def _draw_face_shading(shade, p: Identity, s: Shot, lm: np.ndarray, cam: _Camera) -> None:
    """Soft shadows and highlights that give the flat drawing relief."""
    k = cam.scale
    for eye, brow in ((lm[36:42], lm[17:22]), (lm[42:48], lm[22:27])):
        c = (eye.mean(0) * 0.6 + brow.mean(0) * 0.4)
        _ellipse(shade, c, (np.ptp(eye[:, 0]) * 0.7, k * 0.15), _roll_deg(cam), _level(0.84))
    lx = s.light[0]
    for side, idx in ((-1, 31), (1, 35)):
        depth = 0.78 if side * lx < 0 else 0.9
        pts = np.array([lm[27] + (lm[idx] - lm[27]) * f for f in (0.15, 0.55, 0.85)])
        pts[:, 0] += side * k * np.array([0.07, 0.05, 0.02])
        _line(shade, pts, _level(depth), k * 0.07)
    under = np.vstack([lm[31:36], lm[35:30:-1] + (0, k * 0.07)])
    _fill(shade, under, _level(0.8))
    _ellipse(shade, lm[30] - (0, k * 0.02), (k * 0.06, k * 0.05), 0, _level(1.18))
    _ellipse(shade, lm[57] + (0, k * 0.08), (k * 0.18, k * 0.05), _roll_deg(cam), _level(0.82))
    forehead = (lm[19] + lm[24]) / 2 - (0, k * 0.4)
    _ellipse(shade, forehead, (k * 0.3, k * 0.14), _roll_deg(cam), _level(1.06))
    if s.smile > 0.25:
        for a, b in ((31, 48), (35, 54)):
            fold = np.array([lm[a] + (lm[a] - lm[33]) * 0.3, lm[b] + (lm[b] - lm[51]) * 0.25 + (0, k * 0.04)])
            fold = np.vstack([fold[0], (fold[0] + fold[1]) / 2 + (lm[b] - lm[51]) * 0.12, fold[1]])
            _line(shade, _spline(fold, steps=4), _level(1 - 0.22 * s.smile), k * 0.04)


def _roll_deg(cam: _Camera) -> float:
    return float(np.degrees(np.arctan2(cam.rot[1, 0], cam.rot[0, 0])))


def _eye_outline(lm: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower lid curves of one eye, corner to corner, left to right in the image."""
    e = lm[start:start + 6]
    upper = _spline(e[[0, 1, 2, 3]], steps=5)
    lower = _spline(e[[3, 4, 5, 0]], steps=5)
    return upper, lower


def _draw_eye(img, shade, p: Identity, s: Shot, lm: np.ndarray, start: int, cam: _Camera) -> None:
    """White, iris clipped by the lids, pupil, catch-light, lash line and crease."""
    upper, lower = _eye_outline(lm, start)
    outline = np.vstack([upper, lower[1:-1]])
    _fill(img, outline, np.array([236, 230, 224]) * 0.93)
    e = lm[start:start + 6]
    half_w = np.linalg.norm(e[3] - e[0]) / 2
    r = 0.55 * p.eye_w * cam.scale
    centre = e.mean(0) + (s.gaze[0] * half_w * 0.3, s.gaze[1] * r * 0.3)
    x0, y0, x1, y1 = _bbox(outline, img.shape, pad=2)
    if x1 > x0 and y1 > y0:
        roi = img[y0:y1, x0:x1]
        layer = roi.copy()
        off = np.array([x0, y0])
        squash = half_w / (p.eye_w * cam.scale)  # a turned eye shows a narrower iris
        _ellipse(layer, centre - off, (r * squash, r), 0, p.iris)
        _ellipse(layer, centre - off, (r * 0.98 * squash, r * 0.98), 0, p.iris * 0.55, 1)
        _ellipse(layer, centre - off, (r * 0.42, r * 0.42), 0, (12, 10, 10))
        _ellipse(layer, centre - off + (-r * 0.3, -r * 0.35), (r * 0.17, r * 0.17), 0, (250, 250, 250))
        clip = np.zeros(roi.shape[:2], np.uint8)
        _fill(clip, outline - off, 255)
        a = clip[..., None].astype(np.float32) / 255.0
        roi[:] = (roi * (1 - a) + layer * a + 0.5).astype(np.uint8)
    k = cam.scale
    _line(img, upper, (34, 26, 24), k * 0.04)
    _line(img, lower, p.skin * 0.6, k * 0.02)
    crease = upper + (0, -k * 0.05)
    _line(shade, crease[2:-2], _level(0.72), k * 0.03)


def _draw_brows(img, p: Identity, lm: np.ndarray, cam: _Camera) -> None:
    """Thick bands whose upper third runs through the brow landmarks, tapering outwards."""
    k = cam.scale
    for idx, inner_last in ((slice(17, 22), True), (slice(22, 27), False)):
        line = _spline(lm[idx], steps=4)
        n = len(line)
        t = np.linspace(0, 1, n) if inner_last else np.linspace(1, 0, n)
        thick = k * p.brow_thick * (0.45 + 0.75 * t)
        d = np.gradient(line, axis=0)
        normal = np.column_stack([-d[:, 1], d[:, 0]]) / (np.linalg.norm(d, axis=1, keepdims=True) + 1e-9)
        normal *= np.sign(normal[:, 1:2] + 1e-9)  # point down the face
        top = line - normal * thick[:, None] * 0.35
        bottom = line + normal * thick[:, None] * 0.65
        _fill(img, np.vstack([top, bottom[::-1]]), p.brow)


def _draw_nose(img, p: Identity, lm: np.ndarray, cam: _Camera) -> None:
    """Nostrils and nose wings; the bridge itself is drawn only by shading."""
    k = cam.scale
    for a, b, side in ((31, 32, -1), (35, 34, 1)):
        c = lm[a] * 0.45 + lm[b] * 0.55 - (0, k * 0.025)
        _ellipse(img, c, (k * p.nose_w * 0.28, k * 0.03), _roll_deg(cam) - side * 15, p.skin * 0.3)
        wing = np.array([lm[a] + (side * k * 0.01, -k * 0.12), lm[a] + (side * k * 0.04, -k * 0.03),
                         lm[a] + (0, k * 0.01), lm[b]])
        _line(img, _spline(wing, steps=4), p.skin * 0.62, k * 0.025)


def _draw_mouth(img, p: Identity, s: Shot, lm: np.ndarray, cam: _Camera) -> None:
    """Lips from the outer and inner lip landmarks; an open mouth shows a dark inside and teeth."""
    k = cam.scale
    up_out = _spline(lm[48:55], steps=4)
    lo_out = _spline(lm[[54, 55, 56, 57, 58, 59, 48]], steps=4)
    up_in = _spline(lm[60:65], steps=6)
    lo_in = _spline(lm[[60, 67, 66, 65, 64]], steps=6)
    _fill(img, np.vstack([lo_out, lm[48:49], lo_in, lm[54:55]]), p.lip)
    _fill(img, np.vstack([up_out, lm[64:65], up_in[::-1], lm[48:49]]), p.lip * 0.82)
    if s.mouth_open > 0.05:
        _fill(img, np.vstack([up_in, lo_in[::-1]]), (58, 22, 26))
        teeth = up_in + (lo_in - up_in) * 0.42
        _fill(img, np.vstack([up_in, teeth[::-1]]), (232, 226, 212))
        _line(img, up_in, p.lip * 0.55, k * 0.015)
    else:
        _line(img, np.vstack([lm[48:49], up_in, lm[54:55]]), p.lip * 0.45, k * 0.025)


def _draw_beard(img, p: Identity, lm: np.ndarray, cam: _Camera) -> None:
    """Facial hair shapes tied to the jaw, nose and mouth landmarks; drawn before the lips."""
    if p.beard == "none":
        return
    k = cam.scale
    colour = p.hair * 0.9
    above = (lm[51] - lm[33]) * 0.35
    moustache = np.vstack([lm[48] + (-k * 0.04, k * 0.02), lm[31] + above * 1.1,
                           lm[33] + above, lm[35] + above * 1.1, lm[54] + (k * 0.04, k * 0.02),
                           lm[53] + (0, -k * 0.01), lm[51] + (0, -k * 0.01), lm[49] + (0, -k * 0.01)])
    if p.beard in ("full", "stubble"):
        cheeks = np.vstack([lm[3:14], lm[13] + (lm[35] - lm[13]) * 0.35 - (0, k * 0.05),
                            moustache[4], moustache[3], moustache[2], moustache[1], moustache[0],
                            lm[3] + (lm[31] - lm[3]) * 0.35 - (0, k * 0.05)])
        _blend_poly(img, _spline(cheeks, closed=True, steps=3), colour, p.beard_alpha)
    elif p.beard == "goatee":
        chin = np.vstack([lm[59] + (-k * 0.03, k * 0.01), lm[57] + (0, k * 0.02), lm[55] + (k * 0.03, k * 0.01),
                          lm[9] + (lm[57] - lm[9]) * 0.3, lm[8] + (lm[57] - lm[8]) * 0.1,
                          lm[7] + (lm[57] - lm[7]) * 0.3])
        _blend_poly(img, _spline(chin, closed=True, steps=4), colour, p.beard_alpha)
        _blend_poly(img, moustache, colour, p.beard_alpha)
    else:
        _blend_poly(img, moustache, colour, p.beard_alpha)


def _draw_hair(img, mask, p: Identity, cam: _Camera) -> None:
    """The hair cap over the skull down to a hairline on the forehead, with a few strands."""
    curly = p.hair_style == "curly"
    vol = p.hair_vol + (0.12 if curly else 0.0)
    vol = min(vol, 0.08) if p.hair_style in ("short", "receding") else vol
    outer = _cranium(p, grow=vol, n=33)
    outer[[0, -1], 1] = p.jaw_top - 0.05
    line = _hairline(p)
    pts = cam.project(np.vstack([outer, line]))
    _fill(img, pts, p.hair)
    _fill(mask, pts, 255)
    if curly:
        _draw_curls(img, mask, p, cam, outer)
    else:
        _draw_strands(img, p, cam, line, outer)


def _draw_curls(img, mask, p: Identity, cam: _Camera, outer: np.ndarray) -> None:
    """Round curls along the edge of the hair and a few inside it."""
    i = np.arange(1, len(outer) - 1)
    wobble = np.sin(i * 2.3 + p.curl_phase)
    for layer, (shrink, tone) in enumerate(((1.0, 1.0), (0.9, 0.85), (0.8, 1.1))):
        pts = outer[i] * (shrink, 0.5 + 0.5 * shrink, 1.0) + (0, 0, 0.05 * layer)
        pts[:, 0] += 0.03 * np.cos(i * 1.7 + layer)
        centres = cam.project(pts)
        chosen = centres if layer == 0 else centres[layer % 2::2]  # inner layers: every other curl
        for j, c in enumerate(chosen):
            rad = (0.085 + 0.03 * wobble[j % len(wobble)]) * cam.scale
            _ellipse(img, c, (rad, rad), 0, p.hair * (tone + 0.1 * wobble[j % len(wobble)]))
            _ellipse(img, c, (rad, rad), 0, p.hair * 0.6, 1)
            if layer == 0:
                _ellipse(mask, c, (rad, rad), 0, 255)


def _draw_strands(img, p: Identity, cam: _Camera, line: np.ndarray, outer: np.ndarray) -> None:
    """Darker and lighter strokes from the hairline back over the skull for texture."""
    for i, (t, sway) in enumerate(p.strands):
        j = int(round((t + 1) / 2 * (len(line) - 1)))
        a = np.clip(np.pi * (1 - (t + 1) / 2) + sway, 0.15, np.pi - 0.15)
        k = int(round(a / np.pi * (len(outer) - 1)))
        start = line[j] + (0, -0.04, 0)
        end = start + (outer[k] - start) * 0.75
        mid = (start + end) / 2 + (sway * 0.1, -0.03, 0)
        pts = cam.project(np.array([start, mid, end]))
        colour = p.hair * (0.7 if i % 2 else 1.25) + (0 if i % 2 else 12)
        _line(img, _spline(pts, steps=4), colour, cam.scale * 0.025)


def _draw_glasses(img, p: Identity, cam: _Camera, l3: np.ndarray) -> None:
    """Frames as rings in front of the eyes plus bridge and temple arms, projected in 3-D."""
    if not p.glasses:
        return
    a = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    e = 2.0 / p.glasses_square
    ring = np.column_stack([np.sign(np.cos(a)) * np.abs(np.cos(a)) ** e * (p.eye_w + 0.1),
                            np.sign(np.sin(a)) * np.abs(np.sin(a)) ** e * (p.eye_h + 0.11), np.zeros_like(a)])
    k = cam.scale * 0.035
    for side, start in ((-1, 36), (1, 42)):
        c = l3[start:start + 6].mean(0) + (0, 0.01, 0.18)  # lenses sit just in front of the eyes
        _line(img, cam.project(c + ring), p.glasses_colour, k, closed=True)
        ear = (side * p.face_w * 0.98, p.jaw_top - 0.1, -0.35)
        arm = np.array([c + (side * (p.eye_w + 0.1), -0.04, 0), ear])
        _line(img, cam.project(arm), p.glasses_colour, k)
    inner = p.eye_dx - p.eye_w - 0.1
    bridge = np.array([(-inner, -0.03, 0.2), (0, -0.07, 0.24), (inner, -0.03, 0.2)])
    _line(img, _spline(cam.project(bridge), steps=4), p.glasses_colour, k)


@functools.lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    yy.flags.writeable = False
    xx.flags.writeable = False
    return xx, yy


def _lighting(p: Identity, s: Shot, cam: _Camera, mask: np.ndarray, size: int) -> np.ndarray:
    """Per-pixel light: an ellipsoid head lit from ``s.light`` on the person, a gradient elsewhere.

    Both fields are smooth, so they are computed at half resolution and scaled up.
    """
    half = max(16, size // 2)
    xx, yy = _grid(half)
    f = size / half
    c = cam.project(np.array([(0.0, 0.2, -0.2)]))[0] / f
    rx, ry = cam.scale * p.face_w * 1.12 / f, cam.scale * (p.chin_y + 1.7) / 2 * 1.05 / f
    u = (xx - c[0]) / rx
    v = (yy - (c[1] - cam.scale * 0.3 / f)) / ry
    r2 = u * u + v * v
    k = np.where(r2 > 1, 1 / np.sqrt(np.maximum(r2, 1e-6)), 1).astype(np.float32)
    un, vn = u * k, v * k
    wn = np.sqrt(np.maximum(0, 1 - un * un - vn * vn))
    lx, ly, lz = s.light
    lam = np.maximum(0, (un * lx + vn * ly + wn * lz + 0.35) / 1.35)
    head = (s.ambient + (1 - s.ambient) * lam) / (s.ambient + (1 - s.ambient) * 0.8)
    g = 1 + s.grad * ((xx / half - 0.5) * lx + (yy / half - 0.5) * ly) * 2
    g_full = cv2.resize(g, (size, size), interpolation=cv2.INTER_LINEAR)
    person = cv2.resize(g * (head - 1), (size, size), interpolation=cv2.INTER_LINEAR)
    return g_full + mask.astype(np.float32) * (1 / 255.0) * person


def _finish(img, shade, mask, p: Identity, s: Shot, cam: _Camera, rng: np.random.Generator) -> np.ndarray:
    """Light, colour temperature, exposure, lens blur and sensor noise."""
    size = img.shape[0]
    soft = cv2.GaussianBlur(shade, (0, 0), sigmaX=max(0.5, cam.scale * 0.035))
    light = _lighting(p, s, cam, mask, size) * (soft.astype(np.float32) / 128.0)
    gains = np.array([1 + 0.07 * s.temperature, 1.0, 1 - 0.07 * s.temperature], np.float32) * s.exposure
    if s.blur > 0.3:  # the light field is smooth, so blurring before lighting looks the same
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=s.blur * size / BASE_SIZE)
    planes = img.transpose(2, 0, 1).astype(np.float32)  # channel-first: cheap broadcasting
    planes *= light[None] * gains[:, None, None]
    planes += _grain(rng, size, s.noise)
    planes += 0.5
    np.clip(planes, 0, 255, out=planes)
    return np.ascontiguousarray(planes.astype(np.uint8).transpose(1, 2, 0))


def _grain(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Grey sensor noise with standard deviation ``sigma``: a triangular sum of two uniforms,
    close to Gaussian and several times cheaper to draw."""
    a = rng.random((size, size), dtype=np.float32)
    a += rng.random((size, size), dtype=np.float32)
    a -= 1.0
    a *= sigma * np.float32(np.sqrt(6.0))
    return a


def render_face(p: Identity, s: Shot, size: int = BASE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """One RGB image (size x size) and its 68 landmarks as a (68, 2) float array in pixels."""
    rng = np.random.default_rng(s.seed)
    cam = _camera(s, size)
    l3 = landmarks_3d(p, s)
    lm = cam.project(l3)
    img = _background(size, rng)
    shade = np.full((size, size), 128, np.uint8)
    mask = np.zeros((size, size), np.uint8)
    _draw_back_hair(img, mask, p, cam)
    _draw_body(img, mask, p, s, cam)
    _draw_ears(img, mask, shade, p, cam)
    _draw_head(img, mask, p, cam, lm)
    _draw_face_shading(shade, p, s, lm, cam)
    _draw_eye(img, shade, p, s, lm, 36, cam)
    _draw_eye(img, shade, p, s, lm, 42, cam)
    _draw_brows(img, p, lm, cam)
    _draw_nose(img, p, lm, cam)
    _draw_beard(img, p, lm, cam)
    _draw_mouth(img, p, s, lm, cam)
    _draw_hair(img, mask, p, cam)
    _draw_glasses(img, p, cam, l3)
    return _finish(img, shade, mask, p, s, cam, rng), lm


# --------------------------------------------------------------------------------------------
# Dataset


def identity_name(i: int) -> str:
    return f"person_{i:03d}"


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes with fixed parameters, so equal images give equal files."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), PNG_PARAMS)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def landmark_header() -> str:
    return "image_id," + ",".join(f"x{i},y{i}" for i in range(N_POINTS))


def _landmark_row(image_id: str, points: np.ndarray) -> str:
    return image_id + "," + ",".join(f"{v:.3f}" for v in points.reshape(-1))


def demo_image(seed: int, identity: int, image: int, size: int = BASE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Image ``image`` (0-based) of identity ``identity``, independent of how many others exist."""
    person = sample_identity(_rng(seed, identity))
    shot = sample_shot(_rng(seed, identity, image), person)
    return render_face(person, shot, size)


# The "real" masks of the demo: worn as drawn into the photo, and unlike every synthetic type of
# the default config (a different shape, colour, pattern and fit), as a real mask would be.
DEMO_REAL_MASKS = (
    {"shape": "cloth", "color": "#6b7f3a", "pattern": "fabric", "nose_coverage": "high",
     "shading": 0.7, "color_jitter": 0.15},
    {"shape": "kn95", "color": "#d8d2c4", "pattern": "plain", "nose_coverage": "low",
     "shading": 0.6, "color_jitter": 0.1, "ear_loops": True},
)


def _wear_mask(rgb: np.ndarray, points: np.ndarray, seed: int, identity: int, image: int) -> np.ndarray:
    """The photo with one of the demo's real masks drawn on (the identity's own, as people keep one)."""
    from maskbench.faces.masks import MaskSpec, paint_mask
    from maskbench.seeds import item_seed

    spec = MaskSpec.from_dict(DEMO_REAL_MASKS[identity % len(DEMO_REAL_MASKS)])
    return paint_mask(rgb, points, spec, seed=item_seed(seed, "demo_real_mask", str(identity), str(image)))


def generate_demo(out_dir: Path, n_identities: int, images_per_identity: int, seed: int,
                  size: int = BASE_SIZE, real_masks: int = 0) -> dict:
    """Write the demo dataset (LFW-style folders of PNGs plus ``landmarks.csv``); return a summary.

    With ``real_masks`` = k, the last k photos of each person are drawn wearing a mask and written
    under ``<identity>/real_mask/`` (the index marks them ``real_mask``): a stand-in for a set of
    real masked photos, so the `real` variant can be run and tested without real faces.
    """
    if n_identities < 1 or images_per_identity < 1:
        raise ValueError("the demo needs at least one identity and one image per identity")
    if not 0 <= real_masks < images_per_identity:
        raise ValueError(f"generate.real_masks must be between 0 and images_per_identity - 1 "
                         f"({images_per_identity - 1}), not {real_masks}")
    if size < 64:
        raise ValueError(f"demo images must be at least 64 px, not {size}")
    out_dir = Path(out_dir)
    rows = [landmark_header()]
    for i in range(n_identities):
        name = identity_name(i)
        person = sample_identity(_rng(seed, i))
        for j in range(images_per_identity):
            rgb, points = render_face(person, sample_shot(_rng(seed, i, j), person), size)
            image_id = f"{name}/{name}_{j + 1:04d}.png"
            if j >= images_per_identity - real_masks:
                rgb = _wear_mask(rgb, points, seed, i, j)
                image_id = f"{name}/real_mask/{name}_{j + 1:04d}.png"
            write_bytes(out_dir / image_id, encode_png(rgb))
            rows.append(_landmark_row(image_id, points))
    write_text(out_dir / "landmarks.csv", "\n".join(rows) + "\n")
    return {
        "identities": n_identities,
        "images_per_identity": images_per_identity,
        "images": n_identities * images_per_identity,
        "seed": seed,
        "size": size,
        **({"real_masks_per_identity": real_masks} if real_masks else {}),
        "landmarks": "landmarks.csv",
    }
