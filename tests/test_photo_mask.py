"""Masks painted on the photo and found again (`paint_on: image`), failures to enrol in coverage and
FNMR, the face choice, and the rendering settings that match a mask to its photo."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from maskbench.faces.align import AlignResult, FaceAligner, map_points, unmap_points
from maskbench.data.demo import demo_image
from maskbench.faces.landmarks import FRONTAL_CHIP_68
from maskbench.io.manifests import INDEX_SCHEMA, SCORES_SCHEMA
from maskbench.faces.masks import DEFAULT_MASKS, MaskSpec, mask_coverage, paint_mask
from maskbench.faces.photo_mask import mask_photo, paint_on

SURGICAL = DEFAULT_MASKS["surgical_blue"]


@pytest.fixture(scope="module")
def hog():
    return FaceAligner()


def test_unmap_points_inverts_the_chip_transform():
    a = np.array([[1.1 * np.cos(0.2), -1.1 * np.sin(0.2), 12.0], [1.1 * np.sin(0.2), 1.1 * np.cos(0.2), -7.0]])
    pts = np.random.default_rng(0).uniform(0, 200, (68, 2))
    np.testing.assert_allclose(unmap_points(a, map_points(a, pts)), pts, atol=1e-9)


def test_paint_on_comes_from_the_mask_type_then_the_align_section():
    assert paint_on({}, {}) == "chip"
    assert paint_on({}, {"paint_on": "image"}) == "image"
    assert paint_on({"paint_on": "chip"}, {"paint_on": "image"}) == "chip"
    with pytest.raises(ValueError, match="paint_on"):
        MaskSpec.from_dict({**SURGICAL, "paint_on": "photo"})


class _Recorder:
    """An aligner that records the photo it was given and finds a face or not."""

    def __init__(self, finds: bool):
        self.finds, self.seen = finds, None

    def align(self, rgb):
        self.seen = rgb.copy()
        if not self.finds:
            return AlignResult("no_face", "the detector found no face", None, 0, None, None)
        return AlignResult("ok", None, 1.0, 1, FRONTAL_CHIP_68.astype(np.float32), rgb[:150, :150].copy())


def test_image_path_paints_the_photo_at_the_bare_landmarks_then_aligns_the_masked_photo():
    rng = np.random.default_rng(3)
    photo = cv2.GaussianBlur(rng.integers(60, 200, (260, 240, 3), dtype=np.uint8), (0, 0), 2)
    transform = np.array([[0.8, 0.1, -20.0], [-0.1, 0.8, -30.0]])  # image -> chip
    spec = MaskSpec.from_dict({**SURGICAL, "ear_loops": False})
    recorder = _Recorder(finds=True)
    result = mask_photo(photo, FRONTAL_CHIP_68, transform, spec, 5, recorder)
    assert result.status == "masked" and result.chip is not None
    changed = np.any(recorder.seen != photo, axis=2)
    footprint = mask_coverage(unmap_points(transform, FRONTAL_CHIP_68), spec, photo.shape[:2])
    grown = cv2.dilate(footprint.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert changed[footprint].mean() > 0.9
    assert not (changed & ~grown).any()
    np.testing.assert_array_equal(result.chip, recorder.seen[:150, :150])  # the chip is cut from the masked photo

    missed = mask_photo(photo, FRONTAL_CHIP_68, transform, spec, 5, _Recorder(finds=False))
    assert missed.status == "no_face" and missed.chip is None and "failure to enrol" in missed.reason


class _FindsAt(_Recorder):
    """An aligner that finds a face whose chip maps back through ``transform`` (with a transform,
    as the real aligner gives)."""

    def __init__(self, transform):
        super().__init__(finds=True)
        self.transform = transform

    def align(self, rgb):
        found = super().align(rgb)
        return AlignResult(found.status, None, 1.0, 2, found.landmarks, found.chip, self.transform)


def test_image_path_refuses_another_face_found_in_place_of_the_masked_one():
    """With the masked face missed and a bystander found, the chip would be a bare face labelled
    masked: it is a failure to enrol instead."""
    photo = np.random.default_rng(4).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    transform = np.array([[0.8, 0.0, -20.0], [0.0, 0.8, -30.0]])  # image -> chip
    spec = MaskSpec.from_dict(SURGICAL)
    same = mask_photo(photo, FRONTAL_CHIP_68, transform, spec, 5, _FindsAt(transform))
    assert same.status == "masked"
    slightly = transform + [[0, 0, 3.0], [0, 0, -2.0]]  # the same face, fitted a few pixels apart
    assert mask_photo(photo, FRONTAL_CHIP_68, transform, spec, 5, _FindsAt(slightly)).status == "masked"
    bystander = transform + [[0, 0, -160.0], [0, 0, 0]]  # a face 200 px to the right in the photo
    other = mask_photo(photo, FRONTAL_CHIP_68, transform, spec, 5, _FindsAt(bystander))
    assert other.status == "no_face" and other.chip is None and "another one" in other.reason


def _demo_dataset(tmp_path, n=6):
    """n demo faces as photos (with margins, as in a real photo), an index and an acquired.json."""
    root = tmp_path / "images"
    root.mkdir()
    rows = []
    for k in range(n):
        rgb, _ = demo_image(7, k, 0, 160)
        photo = np.full((220, 200, 3), 120, np.uint8)
        photo[30:190, 20:180] = rgb
        cv2.imwrite(str(root / f"p{k}.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
        rows.append({"image_id": f"p{k}.png", "identity": f"id{k}", "source_path": f"p{k}.png", "shard": 0})
    pq.write_table(pa.Table.from_pylist(rows, schema=INDEX_SCHEMA), tmp_path / "index.parquet")
    (tmp_path / "acquired.json").write_text(json.dumps({"images": {"path": str(root)}}))
    return tmp_path


ALIGN = {"detector": "hog", "upsample": 1, "chip_size": 150, "padding": 0.25}


def test_image_path_rechips_and_counts_failures_to_enrol(tmp_path):
    from maskbench.stages.align import align_shard
    from maskbench.stages.mask import mask_shard
    from maskbench.io.summaries import status_counts
    from maskbench.reporting.coverage import coverage_row

    d = _demo_dataset(tmp_path)
    align_shard(str(d / "index.parquet"), str(d / "acquired.json"), "images", 0, ALIGN, None,
                str(d / "aligned.parquet"))
    aligned = pq.read_table(d / "aligned.parquet").to_pandas()
    assert (aligned["status"] == "ok").all() and aligned["transform"].notna().all()
    photos = {"index_path": str(d / "index.parquet"), "acquired_json": str(d / "acquired.json"),
              "images_key": "images", "align_cfg": ALIGN}
    # a light mask HOG still sees through, and a wide black one it mostly does not
    for name in ("surgical_blue", "nist_round_black"):
        mask_shard(str(d / "aligned.parquet"), name, DEFAULT_MASKS[name], 1, str(d / f"chip_{name}.parquet"))
        mask_shard(str(d / "aligned.parquet"), name, DEFAULT_MASKS[name], 1, str(d / f"image_{name}.parquet"),
                   photos=photos)
    statuses = {}
    for name in ("surgical_blue", "nist_round_black"):
        chip = pq.read_table(d / f"chip_{name}.parquet").to_pandas()
        image = pq.read_table(d / f"image_{name}.parquet").to_pandas()
        statuses[name] = image["status"].value_counts().to_dict()
        assert set(image["status"]) <= {"masked", "no_face"}
        assert (image.loc[image["status"] == "no_face", "chip"].isna()).all()
        both = (image["status"] == "masked").to_numpy()
        # re-detected on the masked photo: not the chip path's chips
        assert all(a != b for a, b in zip(chip["chip"][both], image["chip"][both]))
        counts = status_counts([str(d / f"image_{name}.parquet")], ["masked"])
        row = coverage_row("demo", status_counts([str(d / "aligned.parquet")], ["ok"]), {name: counts})
        assert row[f"{name}_failure_to_enrol"] == statuses[name].get("no_face", 0)
        assert row[f"{name}_masked_rate"] == pytest.approx(statuses[name].get("masked", 0) / len(image))
    print("image path statuses:", statuses)
    assert sum(s.get("masked", 0) for s in statuses.values()) > 0
    assert sum(s.get("no_face", 0) for s in statuses.values()) > 0  # some masked photos are missed


def test_failures_to_enrol_count_as_false_non_matches(tmp_path):
    from maskbench.stages.metrics import compute_metrics

    rng = np.random.default_rng(0)
    impostor = rng.uniform(0.0, 0.5, 200)
    genuine = rng.uniform(0.8, 1.0, 30)
    rows = [dict(genuine=False, score=s, status="ok") for s in impostor]
    rows += [dict(genuine=True, score=s, status="ok") for s in genuine]
    rows += [dict(genuine=True, score=None, status="missing_embedding") for _ in range(10)]
    rows += [dict(genuine=False, score=None, status="missing_embedding") for _ in range(4)]
    table = pd.DataFrame(rows)
    table.insert(0, "pair_id", np.arange(len(table)))
    table["ref_image"], table["probe_image"], table["fold"] = "a", "b", 0
    path = tmp_path / "scores.parquet"
    pq.write_table(pa.Table.from_pandas(table[SCORES_SCHEMA.names], schema=SCORES_SCHEMA, preserve_index=False), path)
    out = compute_metrics(str(path))
    assert out["eer"] == 0.0  # over scored pairs: perfectly separated
    assert out["n_failure_to_enrol_genuine"] == 10 and out["n_failure_to_enrol_impostor"] == 4
    assert out["fnmr_at_fmr_1e-2"] == pytest.approx(10 / 40)  # every failure is a false non-match
    assert out["eer_with_fte"] > 0.1


def test_face_choice_centre_keeps_the_face_nearest_the_centre():
    from ten_faces import ten_faces

    canvas, faces = ten_faces()
    canvas = np.ascontiguousarray(canvas[:380])  # the top row's middle face is now the nearest the centre
    h, w = canvas.shape[:2]
    centre = FaceAligner(face_choice="centre").align(canvas)
    largest = FaceAligner().align(canvas)

    nearest = min(faces, key=lambda f: ((f.box[0] + f.box[2]) / 2 - w / 2) ** 2 + ((f.box[1] + f.box[3]) / 2 - h / 2) ** 2)
    for result, face in ((centre, nearest), (largest, faces[-1])):  # the nose tip lies in that face
        nose = unmap_points(result.transform, result.landmarks[30:31])[0]
        left, top, right, bottom = face.box
        assert left < nose[0] < right and top < nose[1] < bottom, (face.box, nose)
    assert nearest is not faces[-1]
    with pytest.raises(ValueError, match="face_choice"):
        FaceAligner(face_choice="middle")


# -- rendering settings --------------------------------------------------------------------------

def _photo_chip(blur=1.8, noise=6.0, seed=0):
    """A demo face, blurred and noisy like a real photo, and its chip landmarks."""
    rgb, lm = demo_image(3, 2, 0, 150)
    soft = cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), blur)
    grain = np.random.default_rng(seed).normal(0, noise, rgb.shape[:2])[..., None]
    return np.clip(soft + grain + 0.5, 0, 255).astype(np.uint8), lm


@pytest.mark.parametrize("setting, value, grow", [
    ("match_blur", True, 15), ("match_noise", True, 1), ("jpeg_quality", 40, 1), ("fit_jitter", 1.0, 1),
])
def test_each_rendering_setting_changes_only_the_mask(setting, value, grow):
    chip, lm = _photo_chip()
    base = {**DEFAULT_MASKS["n95_white"], "ear_loops": False}
    plain, tuned = MaskSpec.from_dict(base), MaskSpec.from_dict({**base, setting: value})
    a, b = paint_mask(chip, lm, plain, seed=9), paint_mask(chip, lm, tuned, seed=9)
    changed = np.any(a != b, axis=2)
    # the plain mask's painted footprint (anti-aliased edge included) and the tuned mask's outline
    claimed = np.any(a != chip, axis=2) | mask_coverage(lm, tuned, chip.shape[:2], seed=9)
    claimed = cv2.dilate(claimed.astype(np.uint8), np.ones((2 * grow + 1,) * 2, np.uint8)) > 0
    assert changed.sum() > 50, f"{setting} changed {changed.sum()} pixels"
    assert not (changed & ~claimed).any(), f"{setting} changed {(changed & ~claimed).sum()} pixels off the mask"


def test_matched_blur_and_noise_bring_the_mask_close_to_the_photo():
    from maskbench.faces.mask_render import estimate_blur, estimate_noise

    chip, lm = _photo_chip(blur=2.0, noise=6.0)
    spec = MaskSpec.from_dict({**DEFAULT_MASKS["n95_white"], "ear_loops": False})
    tuned = MaskSpec.from_dict({**spec.to_dict(), "match_blur": True, "match_noise": True})
    inner = cv2.erode(mask_coverage(lm, spec).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    lum = lambda img: cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)  # noqa: E731
    flat, matched = paint_mask(chip, lm, spec, seed=1), paint_mask(chip, lm, tuned, seed=1)
    assert estimate_noise(lum(flat), inner) < 2.0
    assert estimate_noise(lum(matched), inner) == pytest.approx(estimate_noise(lum(chip), inner), rel=0.35)
    # a known blur is recovered from a textured photo
    texture = np.random.default_rng(1).uniform(0, 255, (150, 150)).astype(np.float32)
    texture = cv2.resize(cv2.resize(texture, (10, 10)), (150, 150), interpolation=cv2.INTER_NEAREST)
    everywhere = np.ones(texture.shape, bool)
    assert estimate_blur(cv2.GaussianBlur(texture, (0, 0), 2.0), everywhere) == pytest.approx(2.0, abs=0.4)
    assert estimate_blur(texture, everywhere) < estimate_blur(cv2.GaussianBlur(texture, (0, 0), 1.0), everywhere)


def test_same_seed_same_bytes_and_the_fit_varies_per_seed():
    chip, lm = _photo_chip()
    spec = MaskSpec.from_dict({**SURGICAL, "fit_jitter": 1.0, "match_blur": True, "match_noise": True,
                               "jpeg_quality": 80, "color_jitter": 0.5})
    first = paint_mask(chip, lm, spec, seed=4)
    assert paint_mask(chip, lm, spec, seed=4).tobytes() == first.tobytes()
    areas = {int(mask_coverage(lm, spec, seed=s).sum()) for s in range(6)}
    assert len(areas) == 6  # each image gets its own fit
    # without the new settings, a mask type paints what it painted before
    plain = MaskSpec.from_dict(SURGICAL)
    assert mask_coverage(lm, plain, seed=4).sum() == mask_coverage(lm, plain).sum()


def test_faces_found_elsewhere_replace_detection(tmp_path):
    from maskbench.stages.align import align_shard, read_faces

    d = _demo_dataset(tmp_path, n=3)
    _, lm = demo_image(7, 1, 0, 160)
    lm = lm + (20, 30)  # where p1's face sits in its photo
    given = tmp_path / "faces.csv"
    given.write_text("image_id,left,top,right,bottom\np0.png,40,60,160,180\np2.png,,,,\n")
    align_shard(str(d / "index.parquet"), str(d / "acquired.json"), "images", 0, ALIGN, None,
                str(d / "boxes.parquet"), faces_path=str(given))
    rows = pq.read_table(d / "boxes.parquet").to_pandas().set_index("image_id")
    assert rows.loc["p0.png", "status"] == "provided" and rows.loc["p0.png", "reason"] == "face box given"
    assert rows.loc["p1.png", "status"] == rows.loc["p2.png", "status"] == "ok"  # detected as usual

    points = pd.DataFrame({"image_id": ["p1.png"], **{f"{a}{i}": [lm[i, j]] for i in range(68)
                                                      for j, a in enumerate("xy")}})
    points.to_parquet(tmp_path / "faces.parquet")
    kind, values = read_faces(tmp_path / "faces.parquet")["p1.png"]
    assert kind == "landmarks" and values.shape == (68, 2)
    (tmp_path / "bad.csv").write_text("image_id,x,y\np0.png,1,2\n")
    with pytest.raises(ValueError, match="left, top, right, bottom|'left'"):
        read_faces(tmp_path / "bad.csv")


def _match_photo_whole_chip(original, painted, covered, landmarks, jpeg_quality, rng):
    """Camera matching computed on the whole chip, as match_photo did before it worked on the
    mask's window: the reference its bytes must equal."""
    from maskbench.faces.mask_render import _PAINTED_SIGMA, reference_region

    def lum(img):
        return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)

    def blur_sigma(grey, region):
        def energy(img):
            gx, gy = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3)
            return float(np.mean((gx * gx + gy * gy)[region]))
        e0 = energy(grey)
        r = min(energy(cv2.GaussianBlur(grey, (0, 0), 1.5)) / e0, 0.99)
        return float(np.clip(1.5 * r / np.sqrt(1 - r * r), 0.0, 6.0))

    def noise_sigma(grey, region):
        kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
        response = np.abs(cv2.filter2D(grey, cv2.CV_32F, kernel, borderType=cv2.BORDER_REFLECT))
        inner = cv2.erode(region.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        return float(np.sqrt(np.pi / 2) * response[inner].mean() / 6.0)

    out = painted.copy()
    grey, region = lum(original), reference_region(original.shape, landmarks, covered)
    sigma = np.sqrt(max(blur_sigma(grey, region) ** 2 - _PAINTED_SIGMA ** 2, 0.0))
    pad = int(np.ceil(2 * sigma)) + 1
    band = cv2.dilate(covered.astype(np.uint8), np.ones((2 * pad + 1, 2 * pad + 1), np.uint8)) > 0
    soft = cv2.GaussianBlur(out.astype(np.float32), (0, 0), sigma)
    out[band] = np.clip(soft[band] + 0.5, 0, 255).astype(np.uint8)
    sigma = np.sqrt(max(noise_sigma(grey, region) ** 2 - noise_sigma(lum(out), covered) ** 2, 0.0))
    grain = rng.normal(0.0, sigma, covered.shape).astype(np.float32)[..., None]
    out[covered] = np.clip((out.astype(np.float32) + grain)[covered] + 0.5, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    coded = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    out[covered] = coded[covered]
    return out


@pytest.mark.parametrize("shift", [0, 40])  # 40: the mask runs off the chip's bottom edge
def test_camera_matching_on_the_mask_window_gives_the_whole_chip_bytes(shift):
    from maskbench.faces.mask_render import match_photo

    chip, lm = _photo_chip(blur=1.2, noise=5.0)
    lm = lm + [0.0, shift]
    painted = paint_mask(chip, lm, MaskSpec.from_dict({**SURGICAL, "ear_loops": False}), seed=3)
    covered = np.any(painted != chip, axis=2)
    assert covered[-1].any() == bool(shift)
    ours = match_photo(chip, painted, covered, lm, True, True, 75, np.random.default_rng(7))
    reference = _match_photo_whole_chip(chip, painted, covered, lm, 75, np.random.default_rng(7))
    assert np.array_equal(ours, reference)
    assert (ours != painted).any()


def test_jpeg_of_the_mask_window_decodes_the_window_as_the_whole_image():
    """match_photo codes only the MCUs around the mask: the mask's pixels must come out as a
    JPEG of the whole image gives them, for any image size, box and quality."""
    from maskbench.faces.mask_render import _mcu_window

    rng = np.random.default_rng(0)
    for trial in range(300):
        h, w = (int(v) for v in rng.integers(8, 200, 2))
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if trial % 2:
            img = cv2.GaussianBlur(img, (0, 0), 1.5)
        (r0, r1), (c0, c1) = sorted(rng.integers(0, h + 1, 2)), sorted(rng.integers(0, w + 1, 2))
        if r1 <= r0 or c1 <= c0:
            continue
        cover = (slice(int(r0), int(r1)), slice(int(c0), int(c1)))
        q = [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(1, 101))]
        whole = cv2.imdecode(cv2.imencode(".jpg", img, q)[1], cv2.IMREAD_COLOR)
        win = _mcu_window(cover, (h, w))
        part = cv2.imdecode(cv2.imencode(".jpg", np.ascontiguousarray(img[win]), q)[1], cv2.IMREAD_COLOR)
        inner = tuple(slice(c.start - s.start, c.stop - s.start) for c, s in zip(cover, win))
        assert np.array_equal(part[inner], whole[cover]), (h, w, cover, win, q)
