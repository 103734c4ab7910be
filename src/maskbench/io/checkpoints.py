"""The ``maskbench`` metadata of a safetensors checkpoint, read from the file's JSON header.

Every checkpoint the library writes (projection heads, fine-tuned backbones, attribute CNNs)
carries one metadata entry, ``maskbench``: a sorted JSON object whose ``format`` names what
wrote it. Reading it needs neither torch nor safetensors: a safetensors file starts with the
length of its JSON header (8 bytes, little-endian), then the header, whose ``__metadata__``
maps strings to strings.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

META_KEY = "maskbench"  # a single metadata entry, so the file header has one fixed order
MAX_HEADER_BYTES = 100 << 20  # the limit safetensors itself puts on a header


def safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The string -> string metadata of a safetensors file (empty when it has none).

    Raises ValueError when the file is no safetensors file."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path}: too short for a safetensors file")
        (size,) = struct.unpack("<Q", head)
        if size > MAX_HEADER_BYTES:
            raise ValueError(f"{path}: a safetensors header of {size} bytes is not plausible")
        raw = f.read(size)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: the safetensors header is not JSON ({exc})") from None
    meta = header.get("__metadata__") or {} if isinstance(header, dict) else None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: the safetensors header is not a JSON object with string metadata")
    return dict(meta)


def read_checkpoint_metadata(path: str | Path, expected_format: str, what: str, hint: str) -> dict[str, Any]:
    """The ``maskbench`` metadata of the checkpoint at ``path``, checked to be ``expected_format``.

    ``what`` names the checkpoint kind in messages ("maskbench fine-tuned checkpoint"); ``hint``
    says what to do when the file is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found: {hint}")
    try:
        raw = safetensors_metadata(path).get(META_KEY)
        meta = json.loads(raw) if raw else {}
    except ValueError as exc:
        raise ValueError(f"{path} is not a {what} ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != expected_format:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ValueError(f"{path} is not a {what} (format {found!r}, expected {expected_format!r})")
    return meta
