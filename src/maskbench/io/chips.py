"""Chip encoding: aligned faces are stored as small lossless byte strings inside Parquet manifests.

Per-shard Parquet files instead of one file per chip keep big datasets (CelebA: 200k faces x
several masks) to a few hundred files. Every chip is encoded once by align, decoded and re-encoded
by the mask stage per mask type and decoded by every stage that reads faces, so the codec's speed
counts as much as its size.

Format (version 1): ``MAGIC``, a version byte, the channel count (1 byte), height, width and the
CRC-32 of the payload (little-endian uint32 each; zstd frames carry no checksum by default, PNG
does), then the payload: one zstd frame (level 1) of the pixels after a two-dimensional
difference filter: each byte minus its left neighbour, then each row minus the row above (mod 256,
per channel). On LFW chips (150 x 150 x 3) that encodes in 0.55 ms instead of PNG's 1.7-2.4 ms
and decodes in 0.3 ms (in a batch; 0.6 alone) instead of 0.9-1.2 ms, into 24 KB instead of PNG's
29 KB (the drawn demo faces: 28.5 KB vs 28.1); the pixels, hence every embedding, are exactly
those PNG stored (``python benchmarks/bench_embed_stage.py`` times both).
PNG chips (written before this format) still decode, so older result folders stay readable.

The chip column is compressed here rather than left raw to Parquet's own zstd (``io/atomic.py``
compresses every column): both cost the same CPU per chip (encode + write 0.6 ms, read + decode
0.4 ms) and give the same file size, but a compressed chip is a third of the raw pixels in memory,
where the mask and fine-tune stages hold whole shards of chip bytes, and every chip decodes alone.
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pyarrow as pa

MAGIC = b"\x89MBC"
VERSION = 1
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_HEADER = struct.Struct("<4sBBIII")  # magic, version, channels, height, width, CRC-32 of the payload
_CODEC = pa.Codec("zstd", compression_level=1)


def encode_chip(rgb: np.ndarray) -> bytes:
    """H x W x C uint8 pixels (C = 1 to 4; RGB for faces) -> chip bytes."""
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or not 1 <= arr.shape[2] <= 4 or 0 in arr.shape:
        raise ValueError(f"a chip is an H x W x C uint8 array with 1 to 4 channels, got {arr.dtype} {arr.shape}")
    height, width, channels = arr.shape
    diff = np.empty(arr.shape, np.uint8)  # C order whatever the input's layout: the payload's order
    diff[:, 0] = arr[:, 0]
    np.subtract(arr[:, 1:], arr[:, :-1], out=diff[:, 1:])
    diff[1:] = diff[1:] - diff[:-1]
    payload = _CODEC.compress(diff, asbytes=True)
    return _HEADER.pack(MAGIC, VERSION, channels, height, width, zlib.crc32(payload)) + payload


def _shape(data: bytes) -> tuple[int, int, int]:
    """The H, W, C of chip bytes in this format; a ValueError for anything else."""
    if len(data) < _HEADER.size or data[:4] != MAGIC:
        raise ValueError(f"stored chip is neither a chip ({MAGIC!r}...) nor a PNG: starts with {bytes(data[:8])!r}")
    _, version, channels, height, width, _ = _HEADER.unpack_from(data)
    if version != VERSION:
        raise ValueError(f"stored chip has format version {version}; this code reads version {VERSION}")
    if not 1 <= channels <= 4 or height == 0 or width == 0:
        raise ValueError(f"stored chip has a corrupt header: {height} x {width} x {channels}")
    return height, width, channels


def _inflate(data: bytes, dst: np.ndarray) -> None:
    """Decompress the filtered pixels of ``data`` into ``dst`` (filter not yet undone)."""
    payload = memoryview(data)[_HEADER.size:]
    if zlib.crc32(payload) != _HEADER.unpack_from(data)[-1]:
        raise ValueError("stored chip is corrupt or truncated: its checksum does not match")
    try:
        raw = _CODEC.decompress(payload, decompressed_size=dst.nbytes)
    except (OSError, pa.ArrowException) as exc:
        raise ValueError(f"stored chip is corrupt or truncated: {exc}") from None
    if raw.size != dst.nbytes:
        raise ValueError(f"stored chip is corrupt: {raw.size} pixel bytes, expected {dst.nbytes}")
    dst[...] = np.frombuffer(raw, np.uint8).reshape(dst.shape)


def _unfilter(batch: np.ndarray) -> None:
    """Undo the difference filter in place on N x H x W x C: a running sum down the columns, then
    along the rows. Sums mod 256 are exact in any order, so this is the filter's inverse bit for bit
    (two passes: 0.29 ms per lone chip where a per-row loop took 0.48)."""
    np.cumsum(batch, axis=1, dtype=np.uint8, out=batch)
    np.cumsum(batch, axis=2, dtype=np.uint8, out=batch)


def _decode_png(data: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("stored chip is not a valid PNG")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def decode_chip(data: bytes) -> np.ndarray:
    """Chip bytes (this format, or PNG from older runs) -> H x W x C uint8 pixels."""
    if bytes(data[:8]) == PNG_MAGIC:
        return _decode_png(data)
    out = np.empty((1, *_shape(data)), dtype=np.uint8)
    _inflate(data, out[0])
    _unfilter(out)
    return out[0]


def decode_chips(chips: list[bytes]) -> np.ndarray:
    """Many chips of one size into one N x H x W x C array: each decompressed into its place,
    then the filter undone over the whole batch at once."""
    if not chips:
        raise ValueError("decode_chips needs at least one chip")
    png = [bytes(c[:8]) == PNG_MAGIC for c in chips]
    first = _decode_png(chips[0]) if png[0] else None
    out = np.empty((len(chips), *(first.shape if png[0] else _shape(chips[0]))), dtype=np.uint8)
    for k, (data, is_png) in enumerate(zip(chips, png)):
        if is_png:
            pixels = first if k == 0 else _decode_png(data)
            if pixels.shape != out.shape[1:]:
                raise ValueError(f"chips differ in size: {pixels.shape} vs {out.shape[1:]}")
            out[k] = pixels
            continue
        shape = _shape(data)
        if shape != out.shape[1:]:
            raise ValueError(f"chips differ in size: {shape} vs {out.shape[1:]}")
        _inflate(data, out[k])
    if not any(png):
        _unfilter(out)
    elif not all(png):
        filtered = np.flatnonzero(~np.asarray(png))
        part = out[filtered]
        _unfilter(part)
        out[filtered] = part
    return out
