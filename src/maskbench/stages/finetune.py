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

from maskbench.io.atomic import write_json, write_table
from maskbench.io.manifests import CURVE_SCHEMA
from maskbench.training.finetune import ChipSet, FinetuneSpec, finetune, save_checkpoint
from maskbench.io.readers import read_chip_landmarks, read_chips, read_split

log = logging.getLogger(__name__)

PARTS = ("train", "val")


def read_split_parts(split_path: str | Path) -> tuple[dict[str, dict[str, str]], dict[str, int]]:
    """part -> {image_id: identity} for train and val; images without identity are counted, not used."""
    parts: dict[str, dict[str, str]] = {p: {} for p in PARTS}
    no_identity = {p: 0 for p in PARTS}
    for image_id, (part, identity) in read_split(split_path).items():
        if part not in parts:
            continue
        if identity is None:
            no_identity[part] += 1
        else:
            parts[part][image_id] = identity
    return parts, no_identity


def build_chipset(identities: dict[str, str], unmasked: dict[str, bytes],
                  masked: dict[str, dict[str, bytes]], landmarks: dict[str, np.ndarray] | None = None) -> ChipSet:
    """The images of one part that have an unmasked chip, sorted by image_id."""
    ids = sorted(i for i in identities if i in unmasked)
    position = {image_id: k for k, image_id in enumerate(ids)}
    per_mask = {m: {position[i]: chip for i, chip in chips.items() if i in position}
                for m, chips in masked.items()}
    marks = None if landmarks is None else [landmarks.get(i) for i in ids]
    return ChipSet(ids, [identities[i] for i in ids], [unmasked[i] for i in ids], per_mask, marks)


def finetune_step(aligned_paths: list[str], masked_paths: dict[str, list[str]], split_path: str,
                  spec: dict[str, Any], seed: int, threads: int, model_out: str, curve_out: str,
                  report_out: str, cache_dir: str | None = None) -> dict[str, Any]:
    """Fine-tune per ``spec`` and write the checkpoint (safetensors), curve (Parquet) and report (JSON)."""
    parsed = FinetuneSpec.from_dict(spec)
    parts, no_identity = read_split_parts(split_path)
    wanted = set(parts["train"]) | set(parts["val"])
    unmasked, masked = read_chips(list(aligned_paths), dict(masked_paths), wanted)
    landmarks = read_chip_landmarks(list(aligned_paths), wanted) if parsed.region != "full" else None
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
