"""The synthetic mask engine on known landmark layouts (no real images needed)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maskbench.faces.masks import (
    DEFAULT_MASKS,
    NOSE_LEVELS,
    SHAPES,
    MaskSpec,
    contact_sheet,
    mask_coverage,
    mask_polygon,
    paint_mask,
)

from maskbench.faces.landmarks import FRONTAL_CHIP_68 as FRONTAL


def turned(lm: np.ndarray, yaw_deg: float) -> np.ndarray:
    """Rotate the layout about a vertical axis with a rough head depth (positive: nose to image-right)."""
    cx = lm[27, 0]
    dx = lm[:, 0] - cx
    z = np.sqrt(np.clip(62.0**2 - dx**2, 0, None))
    z[27:36] += [6, 10, 14, 20, 12, 14, 16, 14, 12]
    z[48:68] += 6
    a = math.radians(yaw_deg)
    out = lm.copy()
    out[:, 0] = cx + dx * math.cos(a) + z * math.sin(a)
    return out


def face_chip(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    chip = cv2.GaussianBlur(rng.integers(60, 220, (150, 150, 3), dtype=np.uint8), (0, 0), 2)
    return chip


def spec(shape: str = "surgical", **kw) -> MaskSpec:
    return MaskSpec(shape=shape, color=kw.pop("color", "#1ca0f4"), **kw)


def covered(cov: np.ndarray, pts: np.ndarray) -> np.ndarray:
    ij = np.round(pts).astype(int)
    return cov[ij[:, 1], ij[:, 0]]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("level", ["medium", "high"])
def test_covers_mouth_and_nose_tip_not_eyes(shape, level):
    cov = mask_coverage(FRONTAL, spec(shape, nose_coverage=level))
    assert covered(cov, FRONTAL[48:68]).all()
    assert covered(cov, FRONTAL[30:31]).all()
    assert not covered(cov, FRONTAL[36:48]).any()


@pytest.mark.parametrize("shape", SHAPES)
def test_low_coverage_leaves_the_nose_tip_free(shape):
    cov = mask_coverage(FRONTAL, spec(shape, nose_coverage="low"))
    assert covered(cov, FRONTAL[48:68]).all()
    assert not covered(cov, FRONTAL[30:31]).any()
    assert not covered(cov, FRONTAL[36:48]).any()


@pytest.mark.parametrize("shape", SHAPES)
def test_nose_coverage_levels_are_nested_on_the_nose(shape):
    """high covers strictly more of the nose than medium, medium than low."""
    x0, x1 = int(FRONTAL[31, 0]), int(FRONTAL[35, 0]) + 1
    y0, y1 = int(FRONTAL[27, 1]), int(FRONTAL[33, 1]) + 1
    strips = {lvl: mask_coverage(FRONTAL, spec(shape, nose_coverage=lvl))[y0:y1, x0:x1]
              for lvl in NOSE_LEVELS}
    for more, less in (("high", "medium"), ("medium", "low")):
        assert not (strips[less] & ~strips[more]).any(), f"{less} covers nose pixels {more} leaves"
        assert strips[more].sum() > strips[less].sum()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("yaw", [-30.0, 30.0])
def test_turned_head_gives_wider_near_side(shape, yaw):
    lm = turned(FRONTAL, yaw)
    poly = mask_polygon(lm, spec(shape), shape=None)
    nose = lm[30, 0]
    left, right = nose - poly[:, 0].min(), poly[:, 0].max() - nose
    # the nose points to the far side; the near side (opposite) widens
    if yaw > 0:
        assert left > 1.3 * right
    else:
        assert right > 1.3 * left
    frontal = mask_polygon(FRONTAL, spec(shape), shape=None)
    assert abs((FRONTAL[30, 0] - frontal[:, 0].min()) - (frontal[:, 0].max() - FRONTAL[30, 0])) < 6


def test_turned_head_mask_still_covers_mouth_and_nose():
    for yaw in (-35.0, 35.0):
        lm = turned(FRONTAL, yaw)
        for shape in SHAPES:
            cov = mask_coverage(lm, spec(shape))
            assert covered(cov, lm[[30, 48, 54, 51, 57, 62, 66]]).all(), (shape, yaw)


def test_same_seed_same_bytes_and_jitter_varies():
    chip = face_chip()
    for name, d in DEFAULT_MASKS.items():
        s = MaskSpec.from_dict(d)
        a = paint_mask(chip, FRONTAL, s, seed=7)
        b = paint_mask(chip, FRONTAL, s, seed=7)
        assert a.tobytes() == b.tobytes(), name
    jitter = spec("surgical", pattern="pleats", color_jitter=0.5)
    a = paint_mask(chip, FRONTAL, jitter, seed=1)
    b = paint_mask(chip, FRONTAL, jitter, seed=2)
    assert a.tobytes() != b.tobytes()


def test_input_not_modified():
    chip = face_chip()
    lm = FRONTAL.astype(np.float32)
    chip_before, lm_before = chip.copy(), lm.copy()
    out = paint_mask(chip, lm, spec("kn95", ear_loops=True), seed=3)
    assert np.array_equal(chip, chip_before) and np.array_equal(lm, lm_before)
    assert out is not chip and not np.shares_memory(out, chip)


@pytest.mark.parametrize("name", sorted(DEFAULT_MASKS))
def test_every_default_mask_parses_and_paints(name):
    s = MaskSpec.from_dict(DEFAULT_MASKS[name])
    assert MaskSpec.from_dict(s.to_dict()) == s
    chip = face_chip()
    out = paint_mask(chip, FRONTAL, s, seed=0)
    assert out.shape == chip.shape and out.dtype == np.uint8
    cov = mask_coverage(FRONTAL, s)
    changed = np.any(out != chip, axis=2)
    assert changed[cov].mean() > 0.95
    eyes = np.round(FRONTAL[36:48]).astype(int)
    assert not changed[eyes[:, 1], eyes[:, 0]].any()


def test_hkust_and_paper_colours():
    assert DEFAULT_MASKS["surgical_green"]["color"].lower() == "#44b4a8"
    assert DEFAULT_MASKS["surgical_blue"]["color"].lower() == "#1ca0f4"
    assert DEFAULT_MASKS["n95_white"]["color"] == "#FFFFFF"
    assert DEFAULT_MASKS["cloth_black"]["color"] == "#000000"
    assert DEFAULT_MASKS["dicta_polygon"]["shading"] == 0


def test_flat_fill_paints_the_exact_colour():
    s = MaskSpec.from_dict(DEFAULT_MASKS["dicta_polygon"])
    out = paint_mask(face_chip(), FRONTAL, s)
    cov = mask_coverage(FRONTAL, s)
    inner = cv2.erode(cov.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert (out[inner] == 255).all()


def test_opacity_blends_with_the_face():
    chip = face_chip()
    full = paint_mask(chip, FRONTAL, spec("nist_wide", shading=0.0, opacity=1.0)).astype(int)
    half = paint_mask(chip, FRONTAL, spec("nist_wide", shading=0.0, opacity=0.5)).astype(int)
    cov = mask_coverage(FRONTAL, spec("nist_wide"))
    inner = cv2.erode(cov.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    expected = (chip.astype(int) + full) / 2
    assert np.abs(half[inner] - expected[inner]).max() <= 1


def test_image_pattern(tmp_path):
    tex = np.zeros((40, 40, 3), np.uint8)
    tex[::4] = (0, 0, 255)  # BGR red stripes
    path = tmp_path / "tex.png"
    cv2.imwrite(str(path), tex)
    s = spec("cloth", pattern="image", pattern_image=str(path), shading=0.0)
    out = paint_mask(face_chip(), FRONTAL, s)
    cov = mask_coverage(FRONTAL, s)
    assert out[cov][:, 0].max() > 200 and out[cov][:, 0].min() < 30
    with pytest.raises(FileNotFoundError, match="pattern_image"):
        paint_mask(face_chip(), FRONTAL, spec("cloth", pattern="image", pattern_image=str(tmp_path / "no.png")))


@pytest.mark.parametrize(
    "d, needle",
    [
        ({"shape": "surgical", "color": "#123456", "colour": "#000000"}, "'colour'"),
        ({"shape": "surgical", "color": "blue"}, "'color'"),
        ({"shape": "surgical", "color": "#12345"}, "'color'"),
        ({"shape": "bandana", "color": "#123456"}, "'bandana'"),
        ({"color": "#123456"}, "'shape'"),
        ({"shape": "n95"}, "'color'"),
        ({"shape": "n95", "color": "#123456", "pattern": "dots"}, "'pattern'"),
        ({"shape": "n95", "color": "#123456", "nose_coverage": "full"}, "'nose_coverage'"),
        ({"shape": "n95", "color": "#123456", "opacity": 1.5}, "'opacity'"),
        ({"shape": "n95", "color": "#123456", "shading": -0.1}, "'shading'"),
        ({"shape": "n95", "color": "#123456", "color_jitter": "lots"}, "'color_jitter'"),
        ({"shape": "n95", "color": "#123456", "ear_loops": "yes"}, "'ear_loops'"),
        ({"shape": "n95", "color": "#123456", "pattern": "image"}, "'pattern_image'"),
    ],
)
def test_from_dict_errors_name_the_key(d, needle):
    with pytest.raises(ValueError, match=needle):
        MaskSpec.from_dict(d)


def test_from_dict_defaults_and_roundtrip():
    s = MaskSpec.from_dict({"shape": "surgical", "color": "#1ca0f4", "opacity": 1})
    assert s.pattern == "plain" and s.nose_coverage == "medium" and s.opacity == 1.0
    assert 0 < s.shading < 1 and s.color_jitter == 0 and s.ear_loops is False
    assert MaskSpec.from_dict(s.to_dict()) == s


def test_bad_landmarks_rejected():
    with pytest.raises(ValueError, match="68, 2"):
        mask_polygon(FRONTAL[:5], spec())
    bad = FRONTAL.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        paint_mask(face_chip(), bad, spec())


def test_other_chip_sizes():
    lm = FRONTAL * 2
    s = MaskSpec.from_dict(DEFAULT_MASKS["surgical_blue"])
    out = paint_mask(np.zeros((300, 300, 3), np.uint8), lm, s, seed=1)
    cov = mask_coverage(lm, s, shape=(300, 300))
    assert covered(cov, lm[48:68]).all() and not covered(cov, lm[36:48]).any()
    assert np.any(out != 0, axis=2)[cov].mean() > 0.95
    assert mask_polygon(lm, s, shape=(300, 300)).max() > 149


def test_contact_sheet_grid():
    specs = {k: MaskSpec.from_dict(v) for k, v in DEFAULT_MASKS.items()}
    sheet = contact_sheet([face_chip(0), face_chip(1)], [FRONTAL, turned(FRONTAL, 20)], specs)
    assert sheet.dtype == np.uint8 and sheet.shape[1] == 150 * (1 + len(specs))
    assert sheet.shape[0] > 2 * 150


@settings(max_examples=40, deadline=None)
@given(
    noise_seed=st.integers(0, 2**32 - 1),
    scale=st.floats(0.9, 1.05),
    angle=st.floats(-6, 6),
    dx=st.floats(-3, 3),
    dy=st.floats(-3, 3),
    yaw=st.floats(-20, 20),
)
def test_perturbed_layouts_stay_in_chip_and_cover_mouth(noise_seed, scale, angle, dx, dy, yaw):
    rng = np.random.default_rng(noise_seed)
    lm = turned(FRONTAL, yaw) + rng.normal(0, 1.0, FRONTAL.shape)
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    centre = np.array([75.0, 75.0])
    lm = (lm - centre) @ np.array([[c, s], [-s, c]]) * scale + centre + [dx, dy]
    mouth = lm[48:68].mean(0)
    for shape in SHAPES:
        for level in NOSE_LEVELS:
            poly = mask_polygon(lm, spec(shape, nose_coverage=level))
            assert np.isfinite(poly).all()
            assert (poly >= 0).all() and (poly[:, 0] <= 149).all() and (poly[:, 1] <= 149).all()
            inside = cv2.pointPolygonTest(poly.astype(np.float32), tuple(map(float, mouth)), False)
            assert inside >= 0, (shape, level)


def test_a_far_turned_head_keeps_its_mouth_covered():
    """On a head turned far, the jaw points between the chin and the nose are not pushed across
    the face (that folded the outline and left the lips bare)."""
    lm = turned(FRONTAL, 55)
    mouth = np.zeros((150, 150), np.uint8)
    cv2.fillConvexPoly(mouth, cv2.convexHull(np.round(lm[48:60]).astype(np.int32)), 1)
    for shape in ("surgical", "cloth", "nist_wide"):
        share = mask_coverage(lm, spec(shape))[mouth > 0].mean()
        assert share > 0.7, (shape, share)


@pytest.mark.parametrize("shape", SHAPES)
def test_a_loose_fit_never_pulls_the_mask_over_the_eyes(shape):
    """fit_jitter moves the nose edge and the whole mask per image, but never above the eyes'
    floor: the lower eyelids stay bare whatever the draw."""
    loose = spec(shape, nose_coverage="high", fit_jitter=1.0)
    areas = set()
    for seed in range(40):
        cov = mask_coverage(FRONTAL, loose, seed=seed)
        assert not covered(cov, FRONTAL[[40, 41, 46, 47]]).any(), seed
        areas.add(int(cov.sum()))
    assert len(areas) > 20  # the fit still varies per image
