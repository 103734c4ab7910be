"""The mask stage for one shard: paint one mask type onto every aligned chip."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from maskbench.atomic import write_table
from maskbench.chips import decode_chip, encode_chip
from maskbench.manifests import MASKED_SCHEMA, REAL_MASK_STATUS, USABLE_STATUSES
from maskbench.seeds import item_seed

log = logging.getLogger(__name__)


def read_aligned_rows(aligned_path: str, columns: list[str]) -> list[dict]:
    """Rows of an aligned shard with ``real_mask`` (False where the shard predates that column)."""
    names = pq.read_schema(aligned_path).names
    table = pq.read_table(aligned_path, columns=[*columns, *(["real_mask"] if "real_mask" in names else [])])
    rows = table.to_pylist()
    for row in rows:
        row["real_mask"] = bool(row.get("real_mask"))
    return rows


def mask_shard(aligned_path: str, mask_name: str, spec: dict[str, Any], seed: int, out_path: str) -> dict:
    from maskbench.masks import MaskSpec, paint_mask

    mask_spec = MaskSpec.from_dict(spec)
    rows = read_aligned_rows(aligned_path, ["image_id", "status", "landmarks", "chip"])
    records = []
    for row in tqdm(rows, desc=f"mask {mask_name}", mininterval=5):
        out = {"image_id": row["image_id"], "status": "masked", "reason": None, "chip": None}
        if row["real_mask"]:
            out.update(status=REAL_MASK_STATUS, reason="a photo of a real mask: never painted over (variant real)")
        elif row["status"] not in USABLE_STATUSES:
            out.update(status="not_aligned", reason=f"alignment status {row['status']}")
        else:
            try:
                chip = decode_chip(row["chip"])
                landmarks = np.asarray(row["landmarks"], dtype=np.float32).reshape(68, 2)
                painted = paint_mask(chip, landmarks, mask_spec, seed=item_seed(seed, mask_name, row["image_id"]))
                out["chip"] = encode_chip(painted)
            except Exception as exc:  # one bad chip must not lose the shard
                out.update(status="error", reason=f"{type(exc).__name__}: {exc}")
        records.append(out)
    write_table(out_path, pa.Table.from_pylist(records, schema=MASKED_SCHEMA))
    n_masked = sum(r["status"] == "masked" for r in records)
    n_usable = sum(r["status"] not in ("not_aligned", REAL_MASK_STATUS) for r in records)
    log.info("%s: masked %d of %d aligned chips (%d rows)", mask_name, n_masked, n_usable, len(records))
    return {"masked": n_masked, "aligned": n_usable, "rows": len(records)}
