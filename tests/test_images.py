"""Reading images from the wild: every odd file gets a status, never an exception."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from maskbench.io.images import read_rgb


def save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def test_modes_become_rgb(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8)
    cases = {
        "gray.png": Image.fromarray(rgb[..., 0]),
        "rgba.png": Image.fromarray(np.dstack([rgb, np.full((40, 30), 255, np.uint8)])),
        "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
        "pal.gif": Image.fromarray(rgb).convert("P"),
        "g16.png": Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)),
    }
    for name, img in cases.items():
        result = read_rgb(save(img, tmp_path / name))
        assert result.status == "ok", (name, result.reason)
        assert result.image.shape == (40, 30, 3) and result.image.dtype == np.uint8


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 40 * 30).reshape(40, 30).astype(np.uint16)
    result = read_rgb(save(Image.fromarray(values), tmp_path / "g16.png"))
    assert result.image[..., 0].max() == 255 and result.image[..., 0].min() == 0
    assert 100 < result.image[20, 15, 0] < 160


def test_exif_rotation_is_applied(tmp_path):
    img = Image.fromarray(np.zeros((40, 60, 3), np.uint8))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees
    result = read_rgb(save(img, tmp_path / "rot.jpg", exif=exif))
    assert result.image.shape[:2] == (60, 40)


def test_bad_files_get_statuses(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    good = io.BytesIO()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(good, format="JPEG")
    (tmp_path / "trunc.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    save(Image.fromarray(np.zeros((1, 1, 3), np.uint8)), tmp_path / "tiny.png")
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    expected = {"empty.jpg": "unreadable", "text.jpg": "unreadable", "trunc.jpg": "unreadable",
                "tiny.png": "too_small", "loop.jpg": "unreadable", "missing.jpg": "unreadable"}
    for name, status in expected.items():
        result = read_rgb(tmp_path / name)
        assert (result.status, result.image) == (status, None), name
        assert result.reason


def test_decompression_bomb_guard(tmp_path):
    path = save(Image.new("L", (3000, 3000)), tmp_path / "big.png")
    result = read_rgb(path, max_pixels=1_000_000)
    assert result.status == "too_large" and "3000x3000" in result.reason


def test_a_corrupt_exif_block_keeps_the_photo_and_its_orientation(tmp_path):
    """Bytes of the EXIF block changed (as on some phone photos) make Pillow's exif_transpose
    raise while the pixels decode: the photo is read, turned as its orientation tag says."""
    for changes in ([(41, 9), (79, 2), (114, 144), (138, 46)], [(41, 63), (50, 81), (99, 62), (141, 170)]):
        im = Image.fromarray((np.random.default_rng(0).random((40, 64, 3)) * 255).astype(np.uint8))
        exif = Image.Exif()
        exif[0x0112], exif[0x010F], exif[0x9003] = 6, "Cam", "2020:01:01 00:00:00"
        buf = io.BytesIO()
        im.save(buf, "JPEG", exif=exif.tobytes())
        data = bytearray(buf.getvalue())
        for offset, value in changes:
            data[offset] = value
        path = tmp_path / "phone.jpg"
        path.write_bytes(bytes(data))
        r = read_rgb(path)
        assert r.status == "ok" and r.image.shape == (64, 40, 3)  # orientation 6: turned upright


def test_thirty_two_bit_grey_is_scaled_by_its_bit_depth(tmp_path):
    """12-bit data in a 32-bit integer image (mode I) came out black when divided by 65535."""
    values = np.arange(64 * 64).reshape(64, 64).astype(np.int32)  # 0 .. 4095
    path = tmp_path / "grey12.tif"
    Image.fromarray(values, mode="I").save(path)
    r = read_rgb(path)
    assert r.status == "ok" and r.image.max() == 255
    assert abs(float(r.image.mean()) - values.mean() / 4095 * 255) < 1.0
