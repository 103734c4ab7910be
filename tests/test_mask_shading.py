"""Masks lit like the face they sit on (`match_shading`) and given a per-image weave
(`fabric_variety`): only the mask's pixels change, in the direction claimed, same seed same bytes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from maskbench.data.demo import demo_image
from maskbench.faces.mask_shading import SKIN_REF, fit_plane, illumination_field
from maskbench.faces.masks import DEFAULT_MASKS, MaskSpec, mask_coverage, paint_mask

BLUE = {**DEFAULT_MASKS["surgical_blue"], "ear_loops": False}
WHITE = {**DEFAULT_MASKS["n95_white"], "ear_loops": False}


def _face(gain=None):
    rgb, lm = demo_image(3, 1, 0, 150)
    if gain is not None:
        rgb = np.clip(rgb.astype(np.float32) * gain + 0.5, 0, 255).astype(np.uint8)
    return rgb, lm


def _lum(img):
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)


def _inner(lm, spec):
    return cv2.erode(mask_coverage(lm, spec).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0


@pytest.mark.parametrize("setting", [{"match_shading": 1.0}, {"fabric_variety": 1.0},
                                     {"match_shading": 0.5, "fabric_variety": 0.5}])
@pytest.mark.parametrize("base", [BLUE, WHITE, {**DEFAULT_MASKS["cloth_black"], "ear_loops": False}])
def test_only_the_mask_changes(setting, base):
    chip, lm = _face(np.linspace(0.5, 1.1, 150)[None, :, None])
    plain, tuned = MaskSpec.from_dict(base), MaskSpec.from_dict({**base, **setting})
    a, b = paint_mask(chip, lm, plain, seed=3), paint_mask(chip, lm, tuned, seed=3)
    changed = np.any(a != b, axis=2)
    painted = np.any(a != chip, axis=2) | mask_coverage(lm, plain)
    assert changed.sum() > 200
    assert not (changed & ~painted).any(), f"{(changed & ~painted).sum()} pixels changed off the mask"
    assert np.array_equal(b[~painted], chip[~painted])


def test_a_dim_face_gets_a_dim_mask():
    spec = MaskSpec.from_dict({**BLUE, "match_shading": 1.0})
    plain = MaskSpec.from_dict(BLUE)
    (bright, lm), (dim, _) = _face(), _face(0.5)
    inner = _inner(lm, spec)
    skin = _lum(dim)[inner].mean() / _lum(bright)[inner].mean()
    lit = _lum(paint_mask(dim, lm, spec, 2))[inner].mean() / _lum(paint_mask(bright, lm, spec, 2))[inner].mean()
    flat = _lum(paint_mask(dim, lm, plain, 2))[inner].mean() / _lum(paint_mask(bright, lm, plain, 2))[inner].mean()
    assert lit == pytest.approx(skin, abs=0.1)  # the mask's luminance follows the skin's
    assert flat > lit + 0.15  # without the setting it barely does


def test_side_light_gives_the_mask_a_gradient():
    ramp = np.linspace(0.35, 1.15, 150)[None, :, None]  # light from the image's right
    chip, lm = _face(ramp)
    inner = _inner(lm, MaskSpec.from_dict(BLUE))
    cx = int(np.median(np.nonzero(inner)[1]))
    left, right = inner.copy(), inner.copy()
    left[:, cx:], right[:, :cx] = False, False

    def right_over_left(spec):
        lum = _lum(paint_mask(chip, lm, MaskSpec.from_dict(spec), 5))
        return lum[right].mean() / lum[left].mean()

    lit, plain = right_over_left({**BLUE, "match_shading": 1.0}), right_over_left(BLUE)
    assert lit > 1.1 and lit > plain + 0.1  # brighter on the lit side, more than without the setting


def test_a_light_mask_is_no_longer_flat():
    chip, lm = _face()
    inner = _inner(lm, MaskSpec.from_dict(WHITE))
    plain = _lum(paint_mask(chip, lm, MaskSpec.from_dict(WHITE), 1))
    shaded = _lum(paint_mask(chip, lm, MaskSpec.from_dict({**WHITE, "match_shading": 1.0}), 1))
    woven = _lum(paint_mask(chip, lm, MaskSpec.from_dict({**WHITE, "fabric_variety": 1.0}), 1))
    assert shaded[inner].std() > 1.5 * plain[inner].std()  # folds and light, not a flat sticker

    def fine(lum):  # detail finer than a couple of pixels: the weave
        return (lum - cv2.GaussianBlur(lum, (0, 0), 2.0))[inner].std()

    assert fine(woven) > 1.5 * fine(plain)


def test_same_seed_same_bytes_and_the_weave_varies_per_image():
    chip, lm = _face()
    spec = MaskSpec.from_dict({**BLUE, "match_shading": 0.7, "fabric_variety": 1.0})
    first = paint_mask(chip, lm, spec, seed=11)
    assert paint_mask(chip, lm, spec, seed=11).tobytes() == first.tobytes()
    others = {paint_mask(chip, lm, spec, seed=s).tobytes() for s in range(4)}
    assert len(others) == 4
    # off by default: a mask type paints what it painted before
    assert MaskSpec.from_dict(BLUE).match_shading == 0 and MaskSpec.from_dict(BLUE).fabric_variety == 0


def test_the_field_is_the_skin_plane_despite_dark_features():
    h, w = 120, 120
    yy, xx = np.mgrid[0:h, 0:w]
    lum = (60 + 0.8 * xx + 0.2 * yy).astype(np.float32)
    spots = np.random.default_rng(0).random((h, w)) < 0.08
    lum[spots] = 10  # nostrils, lips, beard
    coef = fit_plane(lum, np.ones((h, w), bool))
    assert coef == pytest.approx([60, 0.8, 0.2], abs=0.5)
    assert fit_plane(lum, np.zeros((h, w), bool)) is None


def test_the_field_is_relative_to_evenly_lit_skin():
    chip, lm = _face()
    grey = np.full_like(chip, int(SKIN_REF / 2))
    footprint = mask_coverage(lm, MaskSpec.from_dict(BLUE))
    field = illumination_field(grey, lm, footprint, (20, 60, 130, 140), 80.0)
    assert field.shape == (80, 110)
    assert np.allclose(field, 0.5, atol=0.01)


@pytest.mark.parametrize("key", ["match_shading", "fabric_variety"])
def test_settings_outside_zero_to_one_are_refused(key):
    with pytest.raises(ValueError, match=key):
        MaskSpec.from_dict({**BLUE, key: 1.5})


def test_grey_percentile_and_median_are_numpys_numbers():
    from maskbench.faces.grey_stats import grey_percentile, grey_percentiles
    from maskbench.faces.mask_shading import _median

    rng = np.random.default_rng(0)
    for n in [1, 2, 3, 7, 30, 31, 500, 4097]:
        for dtype in (np.float32, np.float64):
            grey = rng.integers(20, 240, n).astype(dtype)
            for q in (5, 98, 50.0, [15, 97], [0, 100]):
                ours, theirs = grey_percentile(grey, q), np.percentile(grey, q)
                assert type(ours) is type(theirs) and np.asarray(ours).tobytes() == np.asarray(theirs).tobytes()
            pair = grey_percentiles(grey, (5, 98))
            assert [np.asarray(p).tobytes() for p in pair] == [np.percentile(grey, q).tobytes() for q in (5, 98)]
            spread = np.abs(rng.normal(0, 3, n)).astype(dtype)
            assert np.asarray(_median(spread)).tobytes() == np.asarray(np.median(spread)).tobytes()
            # values that are not whole grey levels take numpy's own route
            assert grey_percentile(spread, [15, 97]).tobytes() == np.percentile(spread, [15, 97]).tobytes()
