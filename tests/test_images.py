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
