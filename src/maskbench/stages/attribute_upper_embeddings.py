"""The upper-face embeddings of the attribute study: dlib's embedding of every chip blanked below
the nose line, so heads can be compared on the region a mask leaves visible."""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from maskbench.io.atomic import write_table
from maskbench.io.readers import read_chip_landmarks, read_chips, split_parts

log = logging.getLogger(__name__)

EMBEDDING_SCHEMA = pa.schema([("image_id", pa.string()), ("status", pa.string()),
                              ("embedding", pa.list_(pa.float32(), 128))])


def upper_face_embeddings(aligned_paths: Sequence[str], masked_paths: Sequence[str], split_path: str, out_path: str,
                          threads: int = 1, batch_size: int = 64, cache_dir: str | None = None) -> dict[str, Any]:
    """dlib's embedding of every chip of one variant (``masked_paths`` empty: the unmasked chips)
    blanked below the nose line, which is placed from the train images' landmarks."""
    from maskbench.models.backbones import build_backbone
    from maskbench.io.chips import decode_chip
    from maskbench.models.embed import BackboneEmbedder
    from maskbench.models.upper_face import cut_fraction, with_region

    by_split = split_parts(split_path)
    wanted = {i for ids in by_split.values() for i in ids}
    landmarks = read_chip_landmarks(list(aligned_paths), set(by_split["train"]))
    if masked_paths:
        _, masked = read_chips(list(aligned_paths), {"mask": list(masked_paths)}, wanted)
        chips = masked["mask"]
    else:
        chips, _ = read_chips(list(aligned_paths), {}, wanted)
    if not chips:
        raise ValueError(f"no usable chip in {list(masked_paths) or list(aligned_paths)}: re-run align or mask")
    chip_size = decode_chip(next(iter(chips.values()))).shape[0]
    cut = cut_fraction(landmarks.values(), chip_size)
    trunk = build_backbone({"arch": "dlib_resnet"}, cache_dir=cache_dir)
    embedder = BackboneEmbedder(with_region(trunk, "upper", cut), batch_size=batch_size, threads=threads)
    ids = sorted(chips)
    vectors = [np.zeros((0, 128), np.float32)]
    for start in range(0, len(ids), 256):
        vectors.append(embedder.embed(np.stack([decode_chip(chips[i]) for i in ids[start:start + 256]])))
    matrix = np.concatenate(vectors)
    table = pa.Table.from_pydict({"image_id": ids, "status": ["ok"] * len(ids),
                                  "embedding": [row.tolist() for row in matrix]}, schema=EMBEDDING_SCHEMA)
    write_table(out_path, table)
    log.info("upper-face embeddings: %d chips, cut at %.3f of the chip height", len(ids), cut)
    return {"chips": len(ids), "cut": cut}


