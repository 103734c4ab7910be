"""The mask stage for one shard: paint one mask type onto every aligned chip."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from maskbench.io.atomic import write_table
from maskbench.io.chips import decode_chip, encode_chip
from maskbench.io.manifests import MASKED_SCHEMA, REAL_MASK_STATUS, USABLE_STATUSES
from maskbench.io.readers import inside, load_acquired, read_shard
from maskbench.seeds import item_seed

log = logging.getLogger(__name__)


def read_aligned_rows(aligned_path: str, columns: list[str]) -> list[dict]:
    """Rows of an aligned shard with ``real_mask`` (False where the shard predates that column)."""
    rows = read_shard(aligned_path, columns, optional=["real_mask"]).to_pylist()
    for row in rows:
        row["real_mask"] = bool(row.get("real_mask"))
    return rows


def mask_shard(aligned_path: str, mask_name: str, spec: dict[str, Any], seed: int, out_path: str,
               photos: dict[str, Any] | None = None) -> dict:
    """``photos`` (index_path, acquired_json, images_key, align_cfg) selects the ``image`` path."""
    from maskbench.faces.masks import MaskSpec, paint_mask

    mask_spec = MaskSpec.from_dict(spec)
    columns = ["image_id", "status", "landmarks", "chip"] + (["transform"] if photos else [])
    rows = read_aligned_rows(aligned_path, columns)
    on_photo = _photo_masker(photos, aligned_path) if photos else None
    records = []
    for row in tqdm(rows, desc=f"mask {mask_name}", mininterval=5):
        out = {"image_id": row["image_id"], "status": "masked", "reason": None, "chip": None}
        if row["real_mask"]:
            out.update(status=REAL_MASK_STATUS, reason="a photo of a real mask: never painted over (variant real)")
        elif row["status"] not in USABLE_STATUSES:
            out.update(status="not_aligned", reason=f"alignment status {row['status']}")
        else:
            try:
                landmarks = np.asarray(row["landmarks"], dtype=np.float32).reshape(68, 2)
                item = item_seed(seed, mask_name, row["image_id"])
                if on_photo:
                    status, reason, painted = on_photo(row, landmarks, mask_spec, item)
                    out.update(status=status, reason=reason)
                else:
                    painted = paint_mask(decode_chip(row["chip"]), landmarks, mask_spec, seed=item)
                out["chip"] = None if painted is None else encode_chip(painted)
            except Exception as exc:  # one bad chip must not lose the shard
                out.update(status="error", reason=f"{type(exc).__name__}: {exc}")
        records.append(out)
    write_table(out_path, pa.Table.from_pylist(records, schema=MASKED_SCHEMA))
    n_masked = sum(r["status"] == "masked" for r in records)
    n_usable = sum(r["status"] not in ("not_aligned", REAL_MASK_STATUS) for r in records)
    log.info("%s: masked %d of %d aligned chips (%d rows)", mask_name, n_masked, n_usable, len(records))
    return {"masked": n_masked, "aligned": n_usable, "rows": len(records)}


def _photo_masker(photos: dict[str, Any], aligned_path: str):
    """A function (row, chip landmarks, spec, seed) -> (status, reason, chip) on the original photos."""
    from maskbench.faces.align import FaceAligner
    from maskbench.io.images import DEFAULT_MAX_PIXELS, read_rgb
    from maskbench.faces.photo_mask import mask_photo

    cfg = photos["align_cfg"]
    root = Path(load_acquired(photos["acquired_json"])[photos["images_key"]]["path"])
    index = pq.read_table(photos["index_path"], columns=["image_id", "source_path"]).to_pylist()
    sources = {r["image_id"]: r["source_path"] for r in index}
    aligner = FaceAligner(detector=cfg["detector"], upsample=cfg["upsample"], chip_size=cfg["chip_size"],
                          padding=cfg["padding"], max_side=cfg.get("max_side", 1200),
                          face_choice=cfg.get("face_choice", "largest"),
                          upsample_on_miss=cfg.get("upsample_on_miss", False))
    max_pixels = cfg.get("max_pixels", DEFAULT_MAX_PIXELS)

    def on_photo(row, landmarks, spec, seed):
        if row.get("transform") is None:
            raise ValueError(f"{aligned_path} has no image->chip transform for {row['image_id']}; "
                             "re-run the align stage")
        read = read_rgb(inside(root, sources[row["image_id"]]), max_pixels=max_pixels)
        if read.image is None:
            return read.status, read.reason, None
        result = mask_photo(read.image, landmarks, np.asarray(row["transform"]).reshape(2, 3), spec, seed, aligner)
        return result.status, result.reason, result.chip

    return on_photo
