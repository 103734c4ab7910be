"""Make a painted mask look taken by the same camera as the face it sits on.

A freshly painted mask is sharper and cleaner than the photo around it: no lens or resampling
blur, no sensor noise, no JPEG blocks. Each of these is estimated on the uncovered upper face
(brows, eyes, nose bridge) and applied to the mask region only, so the mask cannot be told from
the face by its sharpness or noise alone.
"""

from __future__ import annotations

import cv2
import numpy as np

_REBLUR = 1.5  # sigma of the probe blur used to estimate the photo's own blur
_PAINTED_SIGMA = 0.5  # anti-aliased drawing is already about this soft


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)


def reference_region(shape: tuple[int, int], landmarks: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """Boolean map of the uncovered upper face: the hull of brows, eyes and nose, minus the mask."""
    region = np.zeros(shape[:2], np.uint8)
    hull = cv2.convexHull(np.round(landmarks[17:48]).astype(np.int32))
    cv2.fillConvexPoly(region, hull, 1)
    return (region > 0) & ~covered


def _window(mask: np.ndarray, margin: int) -> tuple[slice, slice]:
    """Slices of ``mask``'s bounding box grown by ``margin`` pixels, within the image.

    A filter whose reach is at most ``margin`` gives the same values inside the box on this
    window as on the whole image: the image's own borders are kept where the window meets them.
    """
    x, y, bw, bh = cv2.boundingRect(mask.view(np.uint8))  # of the nonzero pixels; the mask has one
    h, w = mask.shape[:2]
    return (slice(max(y - margin, 0), min(y + bh + margin, h)),
            slice(max(x - margin, 0), min(x + bw + margin, w)))


# how far around their region estimate_blur and estimate_noise read (the larger, blur's)
_ESTIMATE_REACH = 2 + int(np.ceil(4 * _REBLUR))


def estimate_blur(lum: np.ndarray, region: np.ndarray) -> float:
    """Gaussian blur sigma (px) of the photo, from how much a known re-blur removes.

    For a step edge blurred by s0, gradient energy falls as 1/s; re-blurring by s1 scales it by
    r = s0 / sqrt(s0^2 + s1^2), so s0 = s1 r / sqrt(1 - r^2).
    """
    if np.count_nonzero(region) < 20:
        return 0.0
    # the region's box and the reach of the filters (Sobel 1 px + the probe blur's 4 sigmas):
    # every value read below is computed from the same pixels as on the whole image
    win = _window(region, _ESTIMATE_REACH)
    lum, region = lum[win], region[win]

    def energy(img: np.ndarray) -> float:
        gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3)
        return float(np.mean((gx * gx + gy * gy)[region]))

    e0 = energy(lum)
    if e0 <= 1e-6:
        return 0.0
    r = min(energy(cv2.GaussianBlur(lum, (0, 0), _REBLUR)) / e0, 0.99)
    return float(np.clip(_REBLUR * r / np.sqrt(1 - r * r), 0.0, 6.0))


def estimate_noise(lum: np.ndarray, region: np.ndarray) -> float:
    """Sensor noise sigma (grey levels): Immerkaer's (1996) fast estimate over the region."""
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    if np.count_nonzero(region):
        win = _window(region, 2)
        lum, region = lum[win], region[win]
    response = np.abs(cv2.filter2D(lum, cv2.CV_32F, kernel, borderType=cv2.BORDER_REFLECT))
    inner = cv2.erode(region.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    if np.count_nonzero(inner) < 20:
        return 0.0
    return float(np.sqrt(np.pi / 2) * response[inner].mean() / 6.0)


def match_photo(original: np.ndarray, painted: np.ndarray, covered: np.ndarray, landmarks: np.ndarray,
                blur: bool, noise: bool, jpeg_quality: int | None, rng: np.random.Generator) -> np.ndarray:
    """``painted`` with blur, noise and JPEG of ``original`` applied inside the mask only.

    ``covered`` is the mask's footprint (bool); blur may also soften a band of about two sigmas
    around it (the mask's edge), nothing further away changes.
    """
    out = painted.copy()
    if not np.count_nonzero(covered):
        return out
    region = reference_region(original.shape, landmarks, covered)
    # the estimates read the region's box and their filters' reach: the luminance of that only
    near = _window(region, _ESTIMATE_REACH) if np.count_nonzero(region) else (slice(None), slice(None))
    lum, region = _luminance(original[near]), region[near]
    cover = _window(covered, 0)  # the mask's box: nothing outside it is written but the blur's band
    if blur:
        sigma = np.sqrt(max(estimate_blur(lum, region) ** 2 - _PAINTED_SIGMA ** 2, 0.0))
        if sigma > 0.05:
            pad = int(np.ceil(2 * sigma)) + 1
            # the blur reaches 4 sigmas (OpenCV's kernel for float images): blurring the band's
            # window gives the band the values a blur of the whole chip gives it
            win = _grow(cover, pad + int(np.ceil(4 * sigma)) + 2, covered.shape)
            # the window holds the mask and ``pad`` around it: dilating it gives the band there
            band = cv2.dilate(covered[win].view(np.uint8), np.ones((2 * pad + 1, 2 * pad + 1), np.uint8))
            soft = cv2.GaussianBlur(out[win].astype(np.float32), (0, 0), sigma)
            soft += np.float32(0.5)
            np.clip(soft, 0, 255, out=soft)
            out[win] = cv2.copyTo(soft.astype(np.uint8), band, out[win])
    if noise:
        win = _grow(cover, 2, covered.shape)
        target, present = estimate_noise(lum, region), estimate_noise(_luminance(out[win]), covered[win])
        sigma = np.sqrt(max(target ** 2 - present ** 2, 0.0))
        if sigma > 0.05:
            # the grain of the rows down to the mask's last (the draws before them are the same)
            grain = rng.normal(0.0, sigma, (cover[0].stop, covered.shape[1]))[cover].astype(np.float32)
            noisy = out[cover].astype(np.float32)
            noisy += grain[..., None]
            noisy += np.float32(0.5)
            np.clip(noisy, 0, 255, out=noisy)
            out[cover] = cv2.copyTo(noisy.astype(np.uint8), covered[cover].view(np.uint8), out[cover])
    if jpeg_quality:
        # code the MCUs around the mask only: they decode to the same pixels as in the whole image
        win = _mcu_window(cover, covered.shape)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(out[win], cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
        if not ok:
            raise ValueError("JPEG re-encoding of the mask failed")
        coded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        inner = tuple(slice(c.start - w.start, c.stop - w.start) for c, w in zip(cover, win))
        out[cover] = cv2.copyTo(cv2.cvtColor(coded[inner], cv2.COLOR_BGR2RGB), covered[cover].view(np.uint8),
                                out[cover])
    return out


_MCU = 16  # OpenCV writes 4:2:0 JPEG: 16 x 16 pixel MCUs


def _mcu_window(win: tuple[slice, slice], shape: tuple[int, int]) -> tuple[slice, slice]:
    """``win`` grown by 2 pixels and out to the JPEG's MCU grid, within an image of ``shape``.

    Each MCU is coded alone (4:2:0 chroma is averaged within it); decoding reads one chroma
    sample (2 pixels) across MCU edges. So an image cut on the grid codes its inner MCUs as the
    whole image does and decodes them the same but within 2 pixels of a cut; where the cut meets
    the image's border, the border's padding is the same.
    """
    def grow(s: slice, n: int) -> slice:
        start = max((s.start - 2) // _MCU * _MCU, 0)
        stop = -(-(s.stop + 2) // _MCU) * _MCU
        return slice(start, n if stop >= n else stop)

    return grow(win[0], shape[0]), grow(win[1], shape[1])


def _grow(win: tuple[slice, slice], margin: int, shape: tuple[int, int]) -> tuple[slice, slice]:
    """``win`` grown by ``margin`` pixels on every side, within an image of ``shape``."""
    rows, cols = win
    return (slice(max(rows.start - margin, 0), min(rows.stop + margin, shape[0])),
            slice(max(cols.start - margin, 0), min(cols.stop + margin, shape[1])))
