"""Alignment: dlib's chip convention, landmarks mapped into the chip by the same transform, and
a picture of ten faces (largest kept by align, every face masked by `maskbench mask --all-faces`)."""

from __future__ import annotations

import csv
import io
import tarfile

import cv2
import dlib
import numpy as np
import pytest
from PIL import Image

from maskbench.faces.align import FaceAligner, array_to_shape, chip_transform, map_points, unmap_points


@pytest.fixture(scope="module")
def lfw_images(shared_data):
    with tarfile.open(shared_data / "lfw-mini" / "lfw-deepfunneled-mini.tgz") as tf:
        members = [m for m in tf.getmembers() if m.isfile()][:12]
        return [np.asarray(Image.open(io.BytesIO(tf.extractfile(m).read())).convert("RGB")) for m in members]


@pytest.fixture(scope="module")
def aligner():
    return FaceAligner()


def test_chip_transform_reproduces_dlibs_chip(lfw_images, aligner):
    """Warping with our matrix gives dlib's own chip: the landmark mapping is the chip's geometry."""
    for rgb in lfw_images[:6]:
        rect, _ = aligner.detect(rgb)[0]
        points = aligner.landmarks(rgb, rect)
        details = dlib.get_face_chip_details(array_to_shape(points), 150, 0.25)
        chip = np.asarray(dlib.extract_image_chip(rgb, details), dtype=np.float64)
        warped = cv2.warpAffine(rgb, chip_transform(details), (150, 150), flags=cv2.INTER_LINEAR)
        assert np.abs(warped - chip).mean() < 1.5


def test_align_gives_chip_and_chip_landmarks(lfw_images, aligner):
    result = aligner.align(lfw_images[0])
    assert result.status == "ok" and result.n_faces >= 1 and result.detector_score is not None
    assert result.chip.shape == (150, 150, 3) and result.landmarks.shape == (68, 2)
    pts = result.landmarks
    # In dlib's chip convention the eyes sit level in the upper half, the mouth lower down.
    left_eye, right_eye, mouth = pts[36:42].mean(0), pts[42:48].mean(0), pts[48:68].mean(0)
    assert abs(left_eye[1] - right_eye[1]) < 3
    assert 40 < left_eye[1] < 75 and mouth[1] > left_eye[1] + 30
    assert left_eye[0] < 75 < right_eye[0]


def test_provided_landmarks_skip_detection(lfw_images, aligner):
    rect, _ = aligner.detect(lfw_images[1])[0]
    points = aligner.landmarks(lfw_images[1], rect)
    result = aligner.align(lfw_images[1], provided_landmarks=points)
    detected = aligner.align(lfw_images[1])
    assert result.status == "provided"
    assert np.array_equal(result.chip, detected.chip)


def test_fallback_box_keeps_an_image_without_detection(aligner):
    blank = np.full((250, 250, 3), 128, np.uint8)
    assert aligner.align(blank).status == "no_face"
    result = aligner.align(blank, fallback_box=(0.27, 0.32, 0.7, 0.75))
    assert result.status == "fallback" and result.chip.shape == (150, 150, 3)


def test_map_points_is_affine():
    m = np.array([[2.0, 0.0, 1.0], [0.0, 3.0, -1.0]])
    assert np.allclose(map_points(m, np.array([[1.0, 1.0], [0.0, 2.0]])), [[3.0, 2.0], [1.0, 5.0]])


def test_cnn_detector_option_aligns_too(lfw_images):
    cnn = FaceAligner(detector="cnn", upsample=0)
    result = cnn.align(lfw_images[2])
    assert result.status == "ok" and result.chip.shape == (150, 150, 3)
    assert result.detector_score is not None and result.detector_score > 0


# ----------------------------------------------------------------------------------------------
# a picture with ten faces


@pytest.fixture(scope="module")
def group():
    from ten_faces import ten_faces

    return ten_faces()


def test_ten_faces_align_keeps_the_largest_and_counts_them(group, aligner):
    canvas, faces = group
    direct = dlib.get_frontal_face_detector()(canvas, 1)  # the detector alone, same upsampling
    result = aligner.align(canvas)
    print(f"ten-face picture: the detector finds {len(direct)} faces; align records n_faces={result.n_faces}")
    assert result.status == "ok"
    assert result.n_faces == len(direct) == len(faces) == 10
    # The chip is the largest face's: aligning that face cut out alone gives the same chip,
    # and every other face cut out alone gives a clearly different one.
    def alone(face, margin=40):
        left, top, right, bottom = face.box
        crop = canvas[max(0, top - margin):bottom + margin, max(0, left - margin):right + margin]
        return aligner.align(np.ascontiguousarray(crop)).chip.astype(float)

    differences = [np.abs(alone(face) - result.chip).mean() for face in faces]
    assert differences[-1] < 2, differences
    assert min(differences[:-1]) > 10, differences
    largest = max(direct, key=lambda r: r.area())
    centre = ((largest.left() + largest.right()) / 2, (largest.top() + largest.bottom()) / 2)
    left, top, right, bottom = faces[-1].box
    assert left < centre[0] < right and top < centre[1] < bottom


@pytest.mark.parametrize("all_faces", [True, False])
def test_ten_faces_mask_command_masks_every_face_or_the_largest(group, tmp_path, all_faces):
    from ten_faces import region

    from maskbench.cli import main

    canvas, faces = group
    source = tmp_path / "group.png"
    Image.fromarray(canvas).save(source)
    out = tmp_path / "out"
    assert main(["mask", str(source), "--mask", "surgical_blue", "--out", str(out),
                 *(["--all-faces"] if all_faces else [])]) == 0
    with open(out / "mask_report.csv", newline="") as f:
        [row] = list(csv.DictReader(f))
    assert row["status"] == "masked" and int(row["faces"]) == (10 if all_faces else 1)
    masked = np.asarray(Image.open(out / "surgical_blue" / "group.png")).astype(int)
    diff = np.abs(masked - canvas).mean(axis=2)
    mouths = [diff[region(face.landmarks[48:68])].mean() for face in faces]  # drawn landmarks, not detected
    eyes = [diff[region(face.landmarks[36:48])].mean() for face in faces]
    changed = [m > 40 for m in mouths]
    assert changed == ([True] * 10 if all_faces else [False] * 9 + [True]), mouths
    assert max(eyes) < 5, eyes


def test_upsample_on_miss_searches_enlarged_only_where_nothing_is_found(lfw_images):
    """A large face is found at native size (one search); a small one, missed there, is searched
    again upsampled and aligned exactly as with upsampling everywhere."""
    first = FaceAligner(upsample=1, upsample_on_miss=True)
    always = FaceAligner(upsample=1)
    calls = []
    inner = first._detector
    first._detector = lambda rgb, upsample=None: calls.append(upsample) or inner(rgb, upsample)
    large = lfw_images[0]
    assert first.align(large).status == "ok" and calls == [0]
    small = cv2.resize(large, (110, 110), interpolation=cv2.INTER_AREA)
    assert not FaceAligner(upsample=0).detect(small)
    calls.clear()
    found, reference = first.align(small), always.align(small)
    assert calls == [0, None] and found.status == reference.status == "ok"
    assert np.array_equal(found.chip, reference.chip)


def test_a_bad_row_of_a_landmarks_file_names_the_file_line_and_image(tmp_path):
    from maskbench.stages.align import read_landmarks_csv

    header = "image_id," + ",".join(f"x{i},y{i}" for i in range(68))
    good = "a.jpg," + ",".join(["1.5"] * 136)
    path = tmp_path / "landmarks.csv"
    path.write_text("\n".join([header, good]) + "\n")
    assert read_landmarks_csv(path)["a.jpg"].shape == (68, 2)
    for bad in ("b.jpg," + ",".join(["1"] * 134), "b.jpg," + ",".join(["1"] * 135) + ","):
        path.write_text("\n".join([header, good, bad]) + "\n")
        with pytest.raises(ValueError, match=r"landmarks.csv, line 3 \(b.jpg\): expected 136 numbers"):
            read_landmarks_csv(path)


@pytest.mark.parametrize("config", ["lfw.yaml", "paper.yaml"])
def test_configs_of_subject_centred_sets_keep_the_subject_where_a_bystander_is_larger(shared_data, config):
    """In these LFW photos the largest face is someone else's; the configs of subject-centred
    sets choose the face nearest the centre, so the chip is the named person's."""
    import yaml

    from conftest import REPO

    settings = yaml.safe_load((REPO / "config" / config).read_text())["align"]
    aligner = FaceAligner(detector=settings["detector"], upsample=settings["upsample"],
                          face_choice=settings.get("face_choice", "largest"),
                          upsample_on_miss=settings.get("upsample_on_miss", False))
    largest = FaceAligner(detector=settings["detector"], upsample=settings["upsample"], face_choice="largest",
                          upsample_on_miss=settings.get("upsample_on_miss", False))
    names = ["lfw-deepfunneled/Gwendal_Peizerat/Gwendal_Peizerat_0002.jpg",
             "lfw-deepfunneled/Rita_Moreno/Rita_Moreno_0002.jpg"]
    with tarfile.open(shared_data / "lfw-mini" / "lfw-deepfunneled-mini.tgz") as tf:
        images = [np.asarray(Image.open(io.BytesIO(tf.extractfile(n).read())).convert("RGB")) for n in names]
    for image in images:
        centre = np.array(image.shape[1::-1]) / 2
        kept, big = aligner.align(image), largest.align(image)
        assert kept.n_faces >= 2
        off = [np.hypot(*(unmap_points(r.transform, r.landmarks)[27:48].mean(0) - centre)) for r in (kept, big)]
        assert off[0] < 30  # eyes and nose of the kept face at the centre
        if not settings.get("upsample_on_miss"):  # searched upsampled, the largest face is a bystander's
            assert off[1] > 30
