"""The chip codec (io/chips.py): exact round trips, PNG chips of older runs, clear errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from maskbench.io.chips import MAGIC, decode_chip, decode_chips, encode_chip

SHAPES = [(150, 150, 3), (1, 1, 3), (7, 13, 3), (151, 149, 3), (33, 64, 1), (20, 9, 4)]


def random_chip(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def face_like_chip(shape, seed=0) -> np.ndarray:
    """Smooth shading, sharp edges, noise and saturated pixels (0 and 255) where wraparound in the
    difference filter shows."""
    h, w, c = shape
    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    base = 128 + 100 * np.sin(x / 9.0 + seed)[..., None] * np.cos(y / 13.0)[..., None] * np.linspace(0.5, 1, c)
    base = base + rng.normal(0, 4, (h, w, c))
    base[h // 3 : h // 2, w // 4 :] = 255
    base[: h // 5, : w // 5] = 0
    return np.clip(base, 0, 255).astype(np.uint8)


def png_chip(rgb: np.ndarray, params=(cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY,
                                      cv2.IMWRITE_PNG_STRATEGY_RLE)) -> bytes:
    """A chip as the former codec stored it."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), list(params))
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("make", [random_chip, face_like_chip])
def test_round_trip_is_exact(shape, make):
    chip = make(shape)
    data = encode_chip(chip)
    assert data.startswith(MAGIC)
    assert encode_chip(chip) == data  # same pixels, same bytes
    back = decode_chip(data)
    assert back.dtype == np.uint8 and back.shape == shape
    assert np.array_equal(back, chip)
    batch = decode_chips([data, encode_chip(make(shape, seed=1)), data])
    assert np.array_equal(batch, np.stack([chip, make(shape, seed=1), chip]))


def test_encoder_takes_views_and_compresses_face_like_chips():
    chip = face_like_chip((150, 150, 3))
    for view in (chip[:, ::-1], chip[::2, 1::3], np.asfortranarray(chip)):
        assert np.array_equal(decode_chip(encode_chip(view)), view)
    assert len(encode_chip(chip)) < 0.6 * chip.nbytes


@pytest.mark.parametrize("bad", [np.zeros((5, 5), np.uint8), np.zeros((5, 5, 3), np.float32),
                                 np.zeros((5, 5, 5), np.uint8), np.zeros((0, 5, 3), np.uint8)])
def test_encoder_rejects_what_is_not_a_chip(bad):
    with pytest.raises(ValueError, match="H x W x C uint8"):
        encode_chip(bad)


def test_png_chips_of_older_runs_still_decode_alone_and_mixed():
    chips = [face_like_chip((150, 150, 3), seed=s) for s in range(4)]
    old = [png_chip(c) for c in chips[:2]] + [png_chip(chips[2], (cv2.IMWRITE_PNG_COMPRESSION, 3))]
    assert np.array_equal(decode_chip(old[0]), chips[0])
    assert np.array_equal(decode_chips(old), np.stack(chips[:3]))
    mixed = [old[0], encode_chip(chips[1]), old[2], encode_chip(chips[3])]
    assert np.array_equal(decode_chips(mixed), np.stack(chips))
    with pytest.raises(ValueError, match="not a valid PNG"):
        decode_chip(old[0][:60])


def test_corrupt_truncated_and_unknown_bytes_raise_clear_errors():
    data = encode_chip(face_like_chip((40, 30, 3)))
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x01
    for broken in (data[:-5], data[:20], bytes(flipped), data + b"\x00"):
        with pytest.raises(ValueError, match="corrupt or truncated"):
            decode_chip(broken)
        with pytest.raises(ValueError, match="corrupt or truncated"):
            decode_chips([data, broken])
    for unknown in (b"", b"\x89MB", b"GIF89a" + bytes(100), data[1:]):
        with pytest.raises(ValueError, match="neither a chip .* nor a PNG"):
            decode_chip(unknown)
    newer = bytearray(data)
    newer[4] = 99
    with pytest.raises(ValueError, match="format version 99"):
        decode_chip(bytes(newer))
    wrong_size = bytearray(data)
    wrong_size[10] += 1  # width 30 -> 31: the payload no longer fills the array
    with pytest.raises(ValueError, match="corrupt"):
        decode_chip(bytes(wrong_size))


def test_decode_chips_rejects_mixed_sizes_and_an_empty_list():
    a, b = face_like_chip((20, 20, 3)), face_like_chip((20, 21, 3))
    with pytest.raises(ValueError, match="differ in size"):
        decode_chips([encode_chip(a), encode_chip(b)])
    with pytest.raises(ValueError, match="differ in size"):
        decode_chips([encode_chip(a), encode_chip(a[..., :1])])
    with pytest.raises(ValueError, match="differ in size"):
        decode_chips([encode_chip(a), png_chip(b)])
    with pytest.raises(ValueError, match="at least one"):
        decode_chips([])
