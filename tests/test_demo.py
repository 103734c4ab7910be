"""The generated demo dataset: layout, landmark sanity, determinism and identity separability."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from maskbench.data.demo import N_POINTS, demo_image, generate_demo, landmark_header

SEED = 2021


def read_landmarks(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == landmark_header().split(",")
    return {r[0]: np.array(r[1:], dtype=float).reshape(N_POINTS, 2) for r in rows[1:]}


def all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    summary = generate_demo(out, n_identities=3, images_per_identity=2, seed=SEED)
    assert summary == {"identities": 3, "images_per_identity": 2, "images": 6, "seed": SEED,
                       "size": 250, "landmarks": "landmarks.csv"}
    return out


@pytest.fixture(scope="module")
def sample() -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(identity, image, landmarks) for 8 identities x 4 images, drawn in memory."""
    return [(i, *demo_image(SEED, i, j)) for i in range(8) for j in range(4)]


def test_layout_and_counts(demo_dir: Path) -> None:
    names = sorted(p.relative_to(demo_dir).as_posix() for p in demo_dir.rglob("*.png"))
    expected = [f"person_{i:03d}/person_{i:03d}_{j:04d}.png" for i in range(3) for j in (1, 2)]
    assert names == expected
    assert not list(demo_dir.rglob("*.tmp")) and not list(demo_dir.rglob(".*"))
    for name in names:
        img = cv2.imread(str(demo_dir / name), cv2.IMREAD_UNCHANGED)
        assert img.shape == (250, 250, 3) and img.dtype == np.uint8
    marks = read_landmarks(demo_dir / "landmarks.csv")
    assert sorted(marks) == expected


def test_csv_holds_the_drawn_points_to_three_decimals(demo_dir: Path) -> None:
    marks = read_landmarks(demo_dir / "landmarks.csv")
    rgb, points = demo_image(SEED, 1, 1)
    np.testing.assert_allclose(marks["person_001/person_001_0002.png"], points, atol=5e-4)
    saved = cv2.cvtColor(cv2.imread(str(demo_dir / "person_001/person_001_0002.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(saved, rgb)
    text = (demo_dir / "landmarks.csv").read_text().splitlines()[1]
    assert all(len(v.split(".")[1]) == 3 for v in text.split(",")[1:])


def deroll(p: np.ndarray) -> np.ndarray:
    """Landmarks rotated so that the face's axis (nose bridge to chin) is vertical."""
    axis = p[8] - p[27]
    a = np.arctan2(-axis[0], axis[1])
    return p @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]).T


def test_landmarks_inside_and_in_ibug_order(sample) -> None:
    for _, rgb, p in sample:
        h, w = rgb.shape[:2]
        assert p.shape == (N_POINTS, 2)
        assert (p >= 0).all() and (p[:, 0] < w).all() and (p[:, 1] < h).all()
        x, y = p[:, 0], p[:, 1]
        eyes_y = p[36:48, 1].mean()
        assert p[17:27, 1].mean() < eyes_y < y[30] < y[33] < y[51] < y[57] < y[8]  # brows..chin
        assert x[0] < x[36] < x[39] < x[42] < x[45] < x[16]  # jaw spans both eyes
        assert x[0] < x[8] < x[16] and y[8] > y[0] and y[8] > y[16]
        upright = deroll(p)[:, 0]  # the near-vertical top of the jaw leans with a tilted head
        assert np.diff(upright[:17]).min() > -1.0  # the jaw runs from image left to image right
        assert x[17] < x[21] < x[22] < x[26]  # brows: outer to inner, inner to outer
        assert (np.diff(x[31:36]) > 0).all() and x[48] < x[51] < x[54] and x[60] < x[64]
        assert y[37] < y[41] and y[38] < y[40] and y[43] < y[47] and y[44] < y[46]  # lids
        assert y[62] <= y[66] + 0.05 and y[51] < y[62] and y[66] < y[57]  # lips
        jaw_width, eye_gap = x[16] - x[0], np.linalg.norm(p[36:42].mean(0) - p[42:48].mean(0))
        assert 0.3 * w < jaw_width < 0.6 * w and 0.3 < eye_gap / jaw_width < 0.6


def test_face_is_central_like_lfw(sample) -> None:
    centres = np.array([p.mean(0) for _, _, p in sample])
    assert np.abs(centres - 125).max() < 25


def test_same_arguments_give_identical_bytes(tmp_path: Path, demo_dir: Path) -> None:
    again = tmp_path / "again"
    generate_demo(again, n_identities=3, images_per_identity=2, seed=SEED)
    assert all_files(again) == all_files(demo_dir)


def test_more_identities_and_images_leave_existing_ones_unchanged(tmp_path: Path, demo_dir: Path) -> None:
    bigger = tmp_path / "bigger"
    generate_demo(bigger, n_identities=4, images_per_identity=3, seed=SEED)
    old, new = all_files(demo_dir), all_files(bigger)
    for name, data in old.items():
        if name.endswith(".png"):
            assert new[name] == data, name
    old_rows = set((demo_dir / "landmarks.csv").read_text().splitlines())
    assert old_rows <= set((bigger / "landmarks.csv").read_text().splitlines())


def test_other_seed_other_faces(tmp_path: Path) -> None:
    a, _ = demo_image(SEED, 0, 0)
    b, _ = demo_image(SEED + 1, 0, 0)
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 10


def test_images_of_one_person_vary(sample) -> None:
    """Not copies: pose, expression, light and background change between a person's images."""
    for i in range(8):
        imgs = [rgb.astype(int) for k, rgb, _ in sample if k == i]
        marks = [p for k, _, p in sample if k == i]
        assert np.abs(imgs[0] - imgs[1]).mean() > 8
        assert np.abs(marks[0] - marks[1]).max() > 1.5


def normalised_shape(p: np.ndarray) -> np.ndarray:
    q = p - p.mean(0)
    return q / np.linalg.norm(q)


def test_landmark_shapes_cluster_by_identity(sample) -> None:
    """Cheap check: a face's shape is nearer its own identity's mean shape than others' on average."""
    shapes = {i: [normalised_shape(p) for k, _, p in sample if k == i] for i in range(8)}
    means = {i: np.mean(v, axis=0) for i, v in shapes.items()}
    within = np.mean([np.linalg.norm(s - means[i]) for i, v in shapes.items() for s in v])
    between = np.mean([np.linalg.norm(s - means[j]) for i, v in shapes.items() for s in v
                       for j in means if j != i])
    assert within < 0.8 * between


def eer(genuine: np.ndarray, impostor: np.ndarray) -> float:
    best = 1.0
    for t in np.unique(np.concatenate([genuine, impostor])):
        frr, far = (genuine > t).mean(), (impostor <= t).mean()
        best = min(best, max(frr, far))
    return best


def test_dlib_resnet_tells_identities_apart(sample) -> None:
    """The benchmark numbers must not be noise: dlib's face ResNet separates the demo people."""
    dlib = pytest.importorskip("dlib")
    from maskbench.io.model_files import model_path

    try:
        net = dlib.face_recognition_model_v1(str(model_path("face_recognition_resnet")))
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    vectors, labels = [], []
    for i, rgb, p in sample:
        rect = dlib.rectangle(*(int(v) for v in (*p.min(0), *p.max(0))))
        shape = dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in p])
        chip = dlib.get_face_chip(rgb, shape, size=150, padding=0.25)
        vectors.append(np.array(net.compute_face_descriptor(chip)))
        labels.append(i)
    v, lab = np.array(vectors), np.array(labels)
    d = np.linalg.norm(v[:, None] - v[None], axis=2)
    iu = np.triu_indices(len(lab), 1)
    same = (lab[:, None] == lab[None])[iu]
    assert eer(d[iu][same], d[iu][~same]) <= 0.25
    assert d[iu][same].mean() > 0.05  # images of one person are not copies to the network either


def test_other_sizes_scale_the_face(tmp_path: Path) -> None:
    small, p_small = demo_image(SEED, 2, 0, size=128)
    _, p_full = demo_image(SEED, 2, 0)
    assert small.shape == (128, 128, 3)
    np.testing.assert_allclose(p_small, p_full * 128 / 250, atol=0.05)


@pytest.mark.parametrize("kwargs", [dict(n_identities=0, images_per_identity=1),
                                    dict(n_identities=1, images_per_identity=0),
                                    dict(n_identities=1, images_per_identity=1, size=32)])
def test_rejects_empty_or_tiny_datasets(tmp_path: Path, kwargs) -> None:
    with pytest.raises(ValueError):
        generate_demo(tmp_path, seed=1, **kwargs)
