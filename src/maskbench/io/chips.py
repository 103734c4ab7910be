"""Chip encoding: aligned faces are stored as lossless PNG bytes inside Parquet manifests.

Per-shard Parquet files instead of one file per chip keep big datasets (CelebA: 200k faces x
several masks) to a few hundred files, and PNG keeps the pixels exact for every model.
"""

from __future__ import annotations

import cv2
import numpy as np

_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]


def encode_chip(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), _PNG_PARAMS)
    if not ok:
        raise ValueError("PNG encoding of a chip failed")
    return buf.tobytes()


def decode_chip(data: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("stored chip is not a valid PNG")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
