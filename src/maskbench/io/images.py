"""Reading face images from the wild without crashing and without silent drops.

Every read returns either an RGB uint8 array or a status with a reason: truncated files,
CMYK, 16-bit, alpha, palette/GIF, EXIF rotation and decompression bombs are all handled here,
so every later stage can trust its input.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# A face image larger than this many pixels is refused before decoding (decompression-bomb guard).
DEFAULT_MAX_PIXELS = 64_000_000
MIN_SIDE = 16


@dataclass(frozen=True)
class ReadResult:
    image: np.ndarray | None  # RGB uint8 H x W x 3
    status: str  # "ok" or a failure status
    reason: str | None = None


def _full_scale(peak: float) -> float:
    """The white level of 32-bit integer pixels: the smallest common sensor depth (8, 10, 12, 14,
    16, 24 or 32 bits) that holds the brightest pixel (12-bit data divided by 65535 came out black)."""
    for bits in (8, 10, 12, 14, 16, 24, 32):
        if peak <= 2 ** bits - 1:
            return float(2 ** bits - 1)
    return float(peak)


# EXIF orientation -> the transpose that makes the image upright (as ImageOps.exif_transpose)
_ORIENTATION = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
                5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                8: Image.Transpose.ROTATE_90}


def _upright(img: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says. A corrupt EXIF block (common on phone
    photos) makes Pillow's exif_transpose raise while the pixels are fine: then the orientation tag
    is read alone, and where even that fails the pixels are kept as stored."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - any error inside Pillow's EXIF parsing
        try:
            orientation = int(img.getexif().get(0x0112, 1))
        except Exception:  # noqa: BLE001
            orientation = 1
        method = _ORIENTATION.get(orientation)
        return img.transpose(method) if method is not None else img


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    """Convert any PIL mode to RGB uint8, scaling 16/32-bit data instead of clipping it."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") else _full_scale(arr.max(initial=0))
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        span = max(float(arr.max(initial=0) - arr.min(initial=0)), 1e-12)
        arr = ((arr - arr.min(initial=0)) / span * 255.0 + 0.5).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite on white: a transparent background must not become black hair.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def read_rgb(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> ReadResult:
    """Read an image file as RGB uint8, honouring EXIF orientation; never raises for bad files."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return ReadResult(None, "unreadable", "empty file (0 bytes)")
        with Image.open(path) as img:
            w, h = img.size
            if w * h > max_pixels:
                return ReadResult(None, "too_large", f"{w}x{h} exceeds the {max_pixels}-pixel guard")
            if min(w, h) < MIN_SIDE:
                return ReadResult(None, "too_small", f"{w}x{h} is smaller than {MIN_SIDE}px")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img.seek(0)  # first frame of GIF/TIFF stacks
                img.load()
                img = _upright(img)
            return ReadResult(_to_rgb_array(img), "ok")
    except PermissionError:
        return ReadResult(None, "unreadable", "permission denied: make the file readable (chmod a+r)")
    except FileNotFoundError:
        return ReadResult(None, "unreadable", "file not found (broken link or moved)")
    except UnidentifiedImageError:
        return ReadResult(None, "unreadable", "not an image (format not recognised)")
    except Image.DecompressionBombError as exc:
        return ReadResult(None, "too_large", str(exc))
    except (OSError, SyntaxError, ValueError) as exc:
        # Truncated JPEG/PNG, symlink loops, corrupt headers.
        return ReadResult(None, "unreadable", f"{type(exc).__name__}: {exc}")


# Truncated images must be reported, not half-decoded silently.
ImageFile.LOAD_TRUNCATED_IMAGES = False


def iter_tar_images(path: str | os.PathLike, limit: int | None = None):
    """(member name, RGB array) of the JPEG/PNG members of a tar archive, in name order, read in
    memory without extracting; unreadable members are skipped. For benchmarks and tests that use
    an archived dataset as it is distributed."""
    import io
    import tarfile

    count = 0
    with tarfile.open(path) as tar:
        members = sorted((m for m in tar if m.isfile() and m.name.lower().endswith((".jpg", ".jpeg", ".png"))),
                         key=lambda m: m.name)
        for member in members:
            if limit is not None and count >= limit:
                return
            try:
                with Image.open(io.BytesIO(tar.extractfile(member).read())) as img:
                    rgb = _to_rgb_array(ImageOps.exif_transpose(img))
            except (OSError, UnidentifiedImageError):
                continue
            count += 1
            yield member.name, rgb
