"""Light a painted mask as the face it sits on is lit, and give its fabric folds and a weave.

A mask colour taken straight from the config is as bright in a dim photo as in a bright one and
as even under side light as under front light, and a light mask is a flat sticker. Real masks
take the light of the face: here a smooth field (a plane: level and gradient) is fitted to the
luminance of the skin the mask covers and of the cheeks around it, and the mask's luminance is
scaled by it (``match_shading``), with soft seeded folds that give the fabric back its local
contrast. ``fabric_variety`` adds a procedural weave whose kind, scale, angle and contrast are
drawn per image (seeded; no texture files needed).
"""

from __future__ import annotations

import cv2
import numpy as np

from maskbench.faces.grey_stats import grey_percentile, grey_percentiles

SKIN_REF = 150.0  # grey level of evenly lit skin: a face this bright leaves the mask colour as set
_FIELD_CLIP = (0.25, 1.6)  # the field never darkens or brightens a mask beyond these factors
_FOLD_AMPLITUDE = 0.14  # relative luminance swing of the folds at match_shading 1
_WEAVES = ("plain", "twill", "rib", "heather")


def sample_region(shape: tuple[int, int], landmarks: np.ndarray, footprint: np.ndarray,
                  height: float) -> np.ndarray:
    """Skin the field is fitted on: the face hull within reach of the mask, minus the open mouth.

    ``footprint`` is the mask region (bool, image-sized). The band around it reaches the cheeks
    and the nose bridge, where the mask's light comes from but where it paints nothing.
    """
    h, w = shape[:2]
    hull = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.round(landmarks).astype(np.int32)), 1)
    reach = max(int(round(0.15 * height)), 1)
    near = cv2.dilate(footprint.astype(np.uint8), np.ones((2 * reach + 1,) * 2, np.uint8))
    mouth = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mouth, cv2.convexHull(np.round(landmarks[60:68]).astype(np.int32)), 1)
    return (hull > 0) & (near > 0) & (mouth == 0)


def fit_plane(lum: np.ndarray, region: np.ndarray) -> np.ndarray | None:
    """Least-squares plane (a + b x + c y, x and y in pixels) through the region's luminance.

    Dark spots (nostrils, lips, beard) and highlights are trimmed, then the worst residuals,
    so the plane follows the light rather than the features. None when too few pixels remain.
    """
    if np.count_nonzero(region) < 30:
        return None
    v = lum[region].astype(np.float64)
    lo, hi = grey_percentile(v, [15, 97])
    keep = (v >= lo) & (v <= hi)
    fx, fy = _pixel_coords(region)
    coef = None
    for step in range(2):
        if np.count_nonzero(keep) < 30:
            return coef
        coef = np.linalg.lstsq(_design(keep, fx, fy), v[keep], rcond=None)[0]
        if step == 1:  # the last fit: its residuals would trim nothing more
            return coef
        resid = v - (coef[0] + coef[1] * fx + coef[2] * fy)
        mad = float(_median(np.abs(resid[keep]))) + 1e-6
        keep = keep & (np.abs(resid) <= 2.5 * mad)
    return coef


def _pixel_coords(region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x and y (float64) of the region's pixels in ``np.nonzero`` order; boolean indexing of
    coordinate grids is several times faster than ``np.nonzero`` on a 2-d mask."""
    h, w = region.shape
    xs = np.broadcast_to(np.arange(w, dtype=np.float64), (h, w))[region]
    ys = np.broadcast_to(np.arange(h, dtype=np.float64)[:, None], (h, w))[region]
    return xs, ys


def _design(keep: np.ndarray, fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
    """The plane's design matrix (1, x, y) of the kept pixels, written column by column in
    place: no index array or full-size matrix is made (a chip's fit is memory-bound)."""
    design = np.empty((3, np.count_nonzero(keep))).T
    design[:, 0] = 1.0
    np.compress(keep, fx, out=design[:, 1])
    np.compress(keep, fy, out=design[:, 2])
    return design


def _median(values: np.ndarray) -> np.float64:
    """``np.median`` of a 1-d float array (the same number), without its generic overhead."""
    half = values.size // 2
    if values.size % 2:
        return np.partition(values, half)[half]
    part = np.partition(values, [half - 1, half])
    return (part[half - 1] + part[half]) / 2


def illumination_field(image: np.ndarray, landmarks: np.ndarray, footprint: np.ndarray,
                       box: tuple[int, int, int, int], height: float) -> np.ndarray:
    """Relative illumination over ``box`` (x0, y0, x1, y1): the fitted skin plane over SKIN_REF.

    1 where the skin is as bright as evenly lit skin; below 1 on a dim face or its shadow side.
    """
    x0, y0, x1, y1 = box
    # work on the face and the mask only: a large photo is not converted whole
    pad = 0.2 * height
    wx0 = max(int(min(x0, landmarks[:, 0].min() - pad)), 0)
    wy0 = max(int(min(y0, landmarks[:, 1].min() - pad)), 0)
    wx1 = min(int(max(x1, landmarks[:, 0].max() + pad + 1)), image.shape[1])
    wy1 = min(int(max(y1, landmarks[:, 1].max() + pad + 1)), image.shape[0])
    crop = np.ascontiguousarray(image[wy0:wy1, wx0:wx1])
    lum = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)
    region = sample_region(lum.shape, landmarks - [wx0, wy0], footprint[wy0:wy1, wx0:wx1], height)
    coef = fit_plane(lum, region)
    if coef is None:
        return np.ones((y1 - y0, x1 - x0), np.float32)
    xs = np.arange(x0 - wx0, x1 - wx0, dtype=np.float64)
    ys = np.arange(y0 - wy0, y1 - wy0, dtype=np.float64)
    field = (coef[0] + coef[1] * xs)[None, :] + (coef[2] * ys)[:, None]
    seen = lum[region]
    field = np.clip(field, *grey_percentiles(seen, (5, 98)))  # no wild extrapolation
    return np.clip(field / SKIN_REF, *_FIELD_CLIP).astype(np.float32)


def folds(size: tuple[int, int], height: float, rng: np.random.Generator,
          where: np.ndarray | None = None) -> np.ndarray:
    """Soft fabric folds, zero-mean, unit-ish amplitude: a few mostly horizontal waves of random
    length (0.12-0.3 face heights), angle and phase. ``where`` (bool, ``size``): the only pixels
    computed (0 elsewhere); the sines are most of the cost."""
    h, w = size
    xs, ys = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
    out = np.zeros((h, w), np.float32)
    wave = np.empty((h, w), np.float64)
    sine = np.zeros((h, w), np.float64)
    where = True if where is None else where
    for _ in range(3):
        angle = rng.uniform(-0.5, 0.5) + np.pi / 2  # wave vector near vertical: folds run across
        length = rng.uniform(0.12, 0.3) * height
        phase = rng.uniform(0, 2 * np.pi)
        k = np.float32(2 * np.pi / max(length, 2.0))
        # sin(k (cos a x + sin a y) + phase) in float64, the row and column terms taken once
        np.add((np.cos(angle) * xs)[None, :], (np.sin(angle) * ys)[:, None], out=wave)
        np.multiply(k, wave, out=wave)
        np.add(wave, np.float32(phase), out=wave)
        out += np.sin(wave, out=sine, where=where)
    return out / np.float32(np.sqrt(3.0))


def weave(size: tuple[int, int], height: float, rng: np.random.Generator,
          where: np.ndarray | None = None) -> np.ndarray:
    """A procedural weave, zero-mean, amplitude ~1: kind (plain, twill, rib, heather), thread
    period (2-5 % of the face height, at least 2 px) and angle drawn per image. ``where`` (bool,
    ``size``): the only pixels whose sines are computed (0 elsewhere)."""
    h, w = size
    kind = _WEAVES[int(rng.integers(len(_WEAVES)))]
    period = max(float(rng.uniform(0.02, 0.05)) * height, 2.0)
    angle = rng.uniform(-0.4, 0.4)
    xs, ys = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
    scale = np.float32(2 * np.pi / period)

    def along(cx: np.float64, cy: np.float64) -> np.ndarray:  # (cx x + cy y) scale, in float64
        return ((cx * xs)[None, :] + (cy * ys)[:, None]) * scale

    def sin(x: np.ndarray) -> np.ndarray:
        return np.sin(x, out=np.zeros_like(x), where=True if where is None else where)

    if kind == "plain":
        out = sin(along(np.cos(angle), np.sin(angle))) * sin(along(-np.sin(angle), np.cos(angle)))
    elif kind == "twill":
        out = sin(along(np.cos(angle), np.sin(angle)) + along(-np.sin(angle), np.cos(angle)))
    elif kind == "rib":
        out = sin(along(np.cos(angle), np.sin(angle)))
    else:  # heather: blotchy mixed fibres
        noise = rng.normal(0, 1, (h, w)).astype(np.float32)
        out = cv2.GaussianBlur(noise, (0, 0), period / 3)
        out = out / max(float(out.std()), 1e-6)
    return out.astype(np.float32)


def shade_layer(layer: np.ndarray, colour: np.ndarray, image: np.ndarray, landmarks: np.ndarray,
                footprint: np.ndarray, box: tuple[int, int, int, int], height: float,
                match_shading: float, fabric_variety: float, seed: int,
                reach: np.ndarray | None = None) -> np.ndarray:
    """The mask's colour layer (box-sized, float RGB) lit by the face and given folds and weave.

    The field's strength is ``match_shading`` (an exponent: 1 makes the mask's luminance follow
    the skin's in proportion); fold contrast grows with it; the weave's contrast with
    ``fabric_variety``. Seeded from its own stream, so other per-image draws stay as they were.
    ``reach`` (bool, box-sized): the pixels whose values are used (the mask's anti-aliased
    footprint); folds and weave are left out elsewhere, where the layer is never seen.
    """
    x0, y0, x1, y1 = box
    size = (y1 - y0, x1 - x0)
    relief = np.zeros(size, np.float32)
    if match_shading > 0:
        relief += np.float32(_FOLD_AMPLITUDE * match_shading) * folds(size, height, np.random.default_rng([seed, 3]), reach)
    if fabric_variety > 0:
        rng = np.random.default_rng([seed, 4])
        contrast = np.float32(fabric_variety * rng.uniform(0.03, 0.09))
        relief += contrast * weave(size, height, rng, reach)
    # dark cloth shows its relief as sheen on the fibres rather than as darker shadows
    dark = np.float32(60.0 * (1.0 - float(np.mean(colour)) / 255.0))
    out = layer * (1.0 + relief)[..., None]
    out += (dark * relief)[..., None]
    if match_shading > 0:
        field = illumination_field(image, landmarks, footprint, box, height) ** np.float32(match_shading)
        out *= field[..., None]
        out += (np.float32(0.4) * dark * (field - 1.0))[..., None]
        out = soft_highlights(out)
    return out.astype(np.float32, copy=False)


def soft_highlights(values: np.ndarray, knee: float = 200.0) -> np.ndarray:
    """Compress values above ``knee`` toward 255 instead of clipping them, as a camera's tone
    curve does: a brightly lit white mask keeps its folds instead of turning into a flat 255."""
    span = np.float32(255.0 - knee)
    over = np.maximum(values - np.float32(knee), 0)
    return np.where(values > knee, np.float32(knee) + span * (1 - np.exp(-over / span)), values)
