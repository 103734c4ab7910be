"""The align stage: per shard read, detect, fit landmarks, cut chips (a status per image); per
dataset count the statuses and stop when no image at all gave a usable face."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from maskbench.io.atomic import write_json, write_table
from maskbench.io.chips import encode_chip
from maskbench.errors import UserError, explained_os_errors
from maskbench.io.images import DEFAULT_MAX_PIXELS, read_rgb
from maskbench.io.manifests import ALIGNED_SCHEMA
from maskbench.io.readers import inside, load_acquired

log = logging.getLogger(__name__)


def read_landmarks_csv(path: str | Path) -> dict[str, np.ndarray]:
    """Landmarks shipped with a dataset: ``image_id,x0,y0,...,x67,y67`` per row."""
    out: dict[str, np.ndarray] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        if len(header) != 137 or header[0] != "image_id":
            raise ValueError(f"{path}: expected a header image_id,x0,y0,...,x67,y67 (137 columns)")
        for line, row in enumerate(reader, start=2):
            try:
                out[row[0]] = np.asarray(row[1:], dtype=np.float64).reshape(68, 2)
            except (ValueError, IndexError) as exc:
                image = row[0] if row else "(empty row)"
                raise ValueError(f"{path}, line {line} ({image}): expected 136 numbers x0,y0,...,x67,y67; "
                                 f"{exc}") from None
    return out


def read_faces(path: str | Path) -> dict[str, tuple[str, np.ndarray]]:
    """Faces found elsewhere, keyed by image_id (CSV or Parquet): a box ``left, top, right, bottom``
    in pixels, or 68 landmarks ``x0, y0, ..., x67, y67``. A row with an empty value is ignored
    (that image is detected as usual)."""
    import pandas as pd

    path = Path(path)
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    box = ["left", "top", "right", "bottom"]
    points = [f"{a}{i}" for i in range(68) for a in ("x", "y")]
    if "image_id" not in table.columns:
        raise ValueError(f"{path}: needs an image_id column; found {list(table.columns)[:8]}")
    if set(box) <= set(table.columns):
        kind, columns, shape = "box", box, (4,)
    elif set(points) <= set(table.columns):
        kind, columns, shape = "landmarks", points, (68, 2)
    else:
        raise ValueError(f"{path}: needs columns {box} (a face box in pixels) or x0,y0,...,x67,y67 "
                         f"(68 landmarks); found {list(table.columns)[:8]}")
    if table["image_id"].duplicated().any():
        raise ValueError(f"{path}: image_id {table['image_id'][table['image_id'].duplicated()].iloc[0]!r} "
                         "appears twice")
    values = table[columns].to_numpy(np.float64)
    return {str(i): (kind, v.reshape(shape)) for i, v in zip(table["image_id"], values) if np.isfinite(v).all()}


def read_shard_index(index_path: str | Path, shard: int) -> list[dict[str, Any]]:
    table = pq.read_table(index_path, filters=[("shard", "=", shard)])
    return sorted(table.to_pylist(), key=lambda r: r["image_id"])


def align_one(aligner, root: Path, row: dict[str, Any], provided: np.ndarray | None,
              fallback_box, max_pixels: int, given_box=None) -> dict[str, Any]:
    """One image's manifest row; every failure becomes a status with a reason."""
    out = {
        "image_id": row["image_id"], "identity": row["identity"], "status": "error", "reason": None,
        "detector": None, "detector_score": None, "n_faces": None, "landmarks": None, "chip": None,
        "real_mask": row.get("real_mask"),
    }
    try:
        read = read_rgb(inside(root, row["source_path"]), max_pixels=max_pixels)
        if read.image is None:
            out.update(status=read.status, reason=read.reason)
            return out
        result = aligner.align(read.image, provided_landmarks=provided, fallback_box=fallback_box,
                               provided_box=given_box)
    except Exception as exc:  # a bad image must not lose the shard's work
        out["reason"] = f"{type(exc).__name__}: {exc}"
        return out
    out.update(
        status=result.status,
        reason=result.reason,
        detector=None if result.status == "provided" else aligner.detector_name,
        detector_score=result.detector_score,
        n_faces=result.n_faces,
    )
    if result.chip is not None:
        out["landmarks"] = result.landmarks.reshape(-1).astype(np.float32).tolist()
        out["chip"] = encode_chip(result.chip)
        if result.transform is not None:
            out["transform"] = np.asarray(result.transform, dtype=np.float64).reshape(-1).tolist()
    return out


def align_shard(
    index_path: str,
    acquired_json: str,
    images_key: str,
    shard: int,
    align_cfg: dict[str, Any],
    fallback_box: list[float] | None,
    out_path: str,
    faces_path: str | None = None,
) -> dict[str, int]:
    """``faces_path``: boxes or landmarks made elsewhere (see :func:`read_faces`), used instead of
    detection for the images it lists."""
    from maskbench.faces.align import FaceAligner

    with explained_os_errors(acquired_json, "read"):
        acquired = load_acquired(acquired_json)
    root = Path(acquired[images_key]["path"])
    landmarks = {}
    if "landmarks" in acquired:
        with explained_os_errors(acquired["landmarks"]["path"], "read"):
            landmarks = read_landmarks_csv(acquired["landmarks"]["path"])
    boxes: dict[str, np.ndarray] = {}
    if faces_path:
        with explained_os_errors(faces_path, "read"):
            given = read_faces(faces_path)
        boxes = {k: v for k, (kind, v) in given.items() if kind == "box"}
        landmarks.update({k: v for k, (kind, v) in given.items() if kind == "landmarks"})
    aligner = FaceAligner(
        detector=align_cfg["detector"],
        upsample=align_cfg["upsample"],
        chip_size=align_cfg["chip_size"],
        padding=align_cfg["padding"],
        max_side=align_cfg.get("max_side", 1200),
        face_choice=align_cfg.get("face_choice", "largest"),
        upsample_on_miss=align_cfg.get("upsample_on_miss", False),
    )
    max_pixels = align_cfg.get("max_pixels", DEFAULT_MAX_PIXELS)
    with explained_os_errors(index_path, "read"):
        rows = read_shard_index(index_path, shard)
    records = [
        align_one(aligner, root, row, landmarks.get(row["image_id"]), fallback_box, max_pixels,
                  boxes.get(row["image_id"]))
        for row in tqdm(rows, desc=f"align shard {shard}", mininterval=5)
    ]
    write_table(out_path, pa.Table.from_pylist(records, schema=ALIGNED_SCHEMA))
    counts: dict[str, int] = {}
    for r in records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    log.info("shard %d: %d images, statuses %s", shard, len(records), counts)
    return counts


class NoFacesError(UserError, RuntimeError):
    """Not one image of a dataset gave a usable aligned face."""


def check_faces_found(dataset: str, counts: dict[str, Any]) -> None:
    """Raise NoFacesError, naming the dataset and the settings to try, if nothing is usable."""
    if counts["usable"] or not counts["images"]:
        return
    statuses = ", ".join(f"{k} {v}" for k, v in counts["statuses"].items())
    top = sorted(counts["reasons"].items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    reasons = "; ".join(f"{reason} ({n})" for reason, n in top)
    raise NoFacesError(
        f"dataset {dataset!r}: no usable face in any of its {counts['images']} images "
        f"(statuses: {statuses}; most common: {reasons}). The per-image reasons are in "
        f"results/{dataset}/aligned/shard-*.parquet. If the images show faces the HOG detector "
        f"misses, set `align: {{detector: mediapipe}}` (finds masked faces; optional install) or "
        f"`align: {{detector: cnn}}` in the config (finds turned and small faces), or "
        f"`align: {{upsample: 2}}` for small faces, or, for a set of cropped, centred faces, "
        f"`datasets.{dataset}.fallback_box: [left, top, right, bottom]` (fractions of the image); "
        f"if they are unreadable, check datasets.{dataset}.files and the layout against "
        f"results/{dataset}/index.parquet. Then run again."
    )


def write_align_summary(dataset: str, shard_paths: list[str], usable: list[str], out_path: str) -> dict:
    """Status counts over a dataset's aligned shards, written only if some face was usable."""
    from maskbench.io.summaries import status_counts, variant_status_counts

    counts = status_counts(shard_paths, usable)
    check_faces_found(dataset, counts)
    per_variant = variant_status_counts(shard_paths, usable)
    if per_variant:
        counts["per_variant"] = per_variant
    write_json(out_path, counts)
    log.info("%s: %d of %d images usable; statuses %s", dataset, counts["usable"], counts["images"],
             counts["statuses"])
    return counts
