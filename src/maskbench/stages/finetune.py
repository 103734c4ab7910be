"""The fine-tune stage: chips of the train and val parts of a split in, a model, curve and report out.

Only rows of train and val images are read from the chip shards (a Parquet filter on image_id),
so the test part of the split never reaches the training process.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from maskbench.io.atomic import write_json, write_table
from maskbench.training.finetune import CURVE_SCHEMA, ChipSet, FinetuneSpec, finetune, save_checkpoint
from maskbench.io.manifests import USABLE_STATUSES

log = logging.getLogger(__name__)

PARTS = ("train", "val")


def read_split_parts(split_path: str | Path) -> tuple[dict[str, dict[str, str]], dict[str, int]]:
    """part -> {image_id: identity} for train and val; images without identity are counted, not used."""
    table = pq.read_table(split_path, columns=["image_id", "identity", "split"])
    parts: dict[str, dict[str, str]] = {p: {} for p in PARTS}
    no_identity = {p: 0 for p in PARTS}
    for image_id, identity, part in zip(*(table[c].to_pylist() for c in ("image_id", "identity", "split"))):
        if part not in parts:
            continue
        if identity is None:
            no_identity[part] += 1
        else:
            parts[part][image_id] = identity
    return parts, no_identity


def _read_rows(path: str, columns: list[str], wanted: set[str], status_ok: tuple[str, ...]) -> pa.Table:
    """Rows of wanted images whose status is usable and whose chip is present."""
    if not wanted:
        return pq.read_schema(path).empty_table().select(columns)
    table = pq.read_table(path, columns=columns, filters=[("image_id", "in", sorted(wanted))])
    keep = pc.and_(pc.is_in(table["status"], pa.array(status_ok)), pc.is_valid(table["chip"]))
    return table.filter(keep)


def read_chips(aligned_paths: list[str], masked_paths: dict[str, list[str]],
               wanted: set[str]) -> tuple[dict[str, bytes], dict[str, dict[str, bytes]]]:
    """image_id -> unmasked PNG, and mask -> image_id -> masked PNG, for wanted images only."""
    unmasked: dict[str, bytes] = {}
    for path in aligned_paths:
        real = ["real_mask"] if "real_mask" in pq.read_schema(path).names else []
        t = _read_rows(path, ["image_id", "status", "chip", *real], wanted, tuple(USABLE_STATUSES))
        if real:  # a photo of a real mask is no unmasked example (variant real)
            t = t.filter(pc.invert(pc.fill_null(t["real_mask"], False)))
        unmasked.update(zip(t["image_id"].to_pylist(), t["chip"].to_pylist()))
    masked: dict[str, dict[str, bytes]] = {}
    for mask in sorted(masked_paths):
        chips: dict[str, bytes] = {}
        for path in masked_paths[mask]:
            t = _read_rows(path, ["image_id", "status", "chip"], wanted, ("masked",))
            chips.update(zip(t["image_id"].to_pylist(), t["chip"].to_pylist()))
        masked[mask] = chips
    return unmasked, masked


def read_landmarks(aligned_paths: list[str], wanted: set[str]) -> dict[str, np.ndarray]:
    """image_id -> (68, 2) landmarks in chip coordinates, for wanted images with a usable chip."""
    out: dict[str, np.ndarray] = {}
    for path in aligned_paths:
        t = _read_rows(path, ["image_id", "status", "chip", "landmarks"], wanted, tuple(USABLE_STATUSES))
        for image_id, lm in zip(t["image_id"].to_pylist(), t["landmarks"].to_pylist()):
            if lm is not None:
                out[image_id] = np.asarray(lm, dtype=np.float32).reshape(68, 2)
    return out


def build_chipset(identities: dict[str, str], unmasked: dict[str, bytes],
                  masked: dict[str, dict[str, bytes]], landmarks: dict[str, np.ndarray] | None = None) -> ChipSet:
    """The images of one part that have an unmasked chip, sorted by image_id."""
    ids = sorted(i for i in identities if i in unmasked)
    position = {image_id: k for k, image_id in enumerate(ids)}
    per_mask = {m: {position[i]: chip for i, chip in chips.items() if i in position}
                for m, chips in masked.items()}
    marks = None if landmarks is None else [landmarks.get(i) for i in ids]
    return ChipSet(ids, [identities[i] for i in ids], [unmasked[i] for i in ids], per_mask, marks)


def group_masked_paths(paths: list[str]) -> dict[str, list[str]]:
    """mask name -> shard paths, from paths laid out as ``.../masked/{mask}/shard-N.parquet``."""
    groups: dict[str, list[str]] = {}
    for path in paths:
        p = Path(path)
        if p.parent.parent.name != "masked":
            raise ValueError(f"masked shard {path} is not under .../masked/<mask>/: cannot tell its mask type")
        groups.setdefault(p.parent.name, []).append(str(path))
    return {m: sorted(v) for m, v in sorted(groups.items())}


def finetune_step(aligned_paths: list[str], masked_paths: dict[str, list[str]], split_path: str,
                  spec: dict[str, Any], seed: int, threads: int, model_out: str, curve_out: str,
                  report_out: str, cache_dir: str | None = None) -> dict[str, Any]:
    """Fine-tune per ``spec`` and write the checkpoint (safetensors), curve (Parquet) and report (JSON)."""
    parsed = FinetuneSpec.from_dict(spec)
    parts, no_identity = read_split_parts(split_path)
    wanted = set(parts["train"]) | set(parts["val"])
    unmasked, masked = read_chips(list(aligned_paths), dict(masked_paths), wanted)
    landmarks = read_landmarks(list(aligned_paths), wanted) if parsed.region != "full" else None
    sets = {p: build_chipset(parts[p], unmasked, masked, landmarks) for p in PARTS}
    log.info("train: %d images of %d people; val: %d images; masks: %s", len(sets["train"]),
             len(set(sets["train"].identities)), len(sets["val"]), sorted(masked))
    result = finetune(sets["train"], sets["val"], parsed, seed=seed, threads=threads, cache_dir=cache_dir)
    save_checkpoint(model_out, result, parsed, seed)
    write_table(curve_out, pa.Table.from_pylist(result.curve, schema=CURVE_SCHEMA))
    report = dict(result.report)
    report["inputs"] = {
        "aligned_shards": len(aligned_paths),
        "masks": sorted(masked_paths),
        "images_without_identity": no_identity,
        "images_without_usable_chip": {p: len(parts[p]) - len(sets[p]) for p in PARTS},
    }
    write_json(report_out, report)
    return report
