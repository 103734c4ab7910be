"""Aligned demo chips with painted masks, straight in memory or as chip shards.

The drawn demo faces carry exact landmarks, so a chip is cut the way the align stage cuts one from
provided landmarks (dlib's ``get_face_chip``, 150 px, padding 0.25) without running a detector.
Used by tests and benchmarks that need many labelled chips quickly; real runs use the workflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dlib
import numpy as np
import pyarrow as pa

from maskbench.faces.align import array_to_shape, chip_transform, map_points
from maskbench.io.atomic import write_table
from maskbench.io.chips import encode_chip
from maskbench.data.demo import demo_image, identity_name
from maskbench.io.manifests import ALIGNED_SCHEMA, MASKED_SCHEMA
from maskbench.faces.masks import DEFAULT_MASKS, MaskSpec, paint_mask
from maskbench.seeds import item_seed

CHIP_SIZE = 150
PADDING = 0.25


@dataclass(frozen=True)
class DemoChip:
    image_id: str
    identity: str
    chip: np.ndarray  # 150 x 150 x 3 uint8 RGB
    landmarks: np.ndarray  # (68, 2) float32 in chip coordinates
    masked: dict[str, np.ndarray]  # mask name -> painted chip


def aligned_demo_chip(seed: int, identity: int, image: int) -> tuple[np.ndarray, np.ndarray]:
    """One demo face cut as a 150 px aligned chip, and its landmarks in chip coordinates."""
    rgb, points = demo_image(seed, identity, image)
    details = dlib.get_face_chip_details(array_to_shape(points), CHIP_SIZE, PADDING)
    chip = np.asarray(dlib.extract_image_chip(rgb, details), dtype=np.uint8)
    return chip, map_points(chip_transform(details), points).astype(np.float32)


def demo_chips(n_identities: int, images_per_identity: int, masks: list[str] | dict[str, dict[str, Any]],
               seed: int = 0) -> list[DemoChip]:
    """Chips of ``n_identities`` x ``images_per_identity`` demo faces with each mask painted on.

    ``masks``: names of :data:`maskbench.faces.masks.DEFAULT_MASKS` or a name -> mask spec mapping.
    """
    specs = {m: DEFAULT_MASKS[m] for m in masks} if isinstance(masks, list) else dict(masks)
    parsed = {m: MaskSpec.from_dict(s) for m, s in specs.items()}
    out = []
    for i in range(n_identities):
        name = identity_name(i)
        for j in range(images_per_identity):
            chip, lm = aligned_demo_chip(seed, i, j)
            image_id = f"{name}/{name}_{j + 1:04d}.png"
            painted = {m: paint_mask(chip, lm, spec, seed=item_seed(seed, m, image_id)) for m, spec in parsed.items()}
            out.append(DemoChip(image_id, name, chip, lm, painted))
    return out


def write_demo_shards(chips: list[DemoChip], out_dir: str | Path,
                      n_shards: int = 1) -> tuple[list[str], dict[str, list[str]]]:
    """Write ``aligned/shard-N.parquet`` and ``masked/{mask}/shard-N.parquet`` as the workflow lays
    them out; returns (aligned paths, mask -> its shard paths), as the workflow hands them to a stage."""
    out_dir = Path(out_dir)
    masks = sorted(chips[0].masked) if chips else []
    aligned_paths: list[str] = []
    masked_paths: dict[str, list[str]] = {mask: [] for mask in masks}
    for shard in range(n_shards):
        part = chips[shard::n_shards]
        aligned = [{"image_id": c.image_id, "identity": c.identity, "status": "provided", "reason": None,
                    "detector": None, "detector_score": None, "n_faces": 0,
                    "landmarks": c.landmarks.reshape(-1).tolist(), "chip": encode_chip(c.chip)} for c in part]
        path = out_dir / "aligned" / f"shard-{shard}.parquet"
        write_table(path, pa.Table.from_pylist(aligned, schema=ALIGNED_SCHEMA))
        aligned_paths.append(str(path))
        for mask in masks:
            rows = [{"image_id": c.image_id, "status": "masked", "reason": None, "chip": encode_chip(c.masked[mask])}
                    for c in part]
            path = out_dir / "masked" / mask / f"shard-{shard}.parquet"
            write_table(path, pa.Table.from_pylist(rows, schema=MASKED_SCHEMA))
            masked_paths[mask].append(str(path))
    return aligned_paths, masked_paths
