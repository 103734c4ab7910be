"""One reader per manifest kind: aligned shards, split manifests, embedding shards, chips, the acquire record.

Stages and library modules read the workflow's files only through these, so each file format is
read one way (which rows count as usable, what a missing ``real_mask`` column means) everywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from maskbench.io.manifests import USABLE_STATUSES

FLOAT64_MATRIX_BYTES = 1 << 29


def load_acquired(path: str | Path) -> dict[str, Any]:
    """The acquire stage's record: files entry -> where it was put (``path``) and how."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_shard(path: str, columns: Sequence[str], optional: Sequence[str] = (),
               filters: list | None = None) -> pa.Table:
    """``columns`` of a shard, plus those of ``optional`` the file has (a shard written before a
    column existed lacks it)."""
    names = pq.read_schema(path).names
    return pq.read_table(path, columns=[*columns, *(c for c in optional if c in names)], filters=filters)


@dataclass
class AlignedImages:
    """What a dataset's aligned shards say about its images."""

    every: list[str] = field(default_factory=list)  # every image id, in shard order
    identity: dict[str, str | None] = field(default_factory=dict)  # every image -> identity
    usable: dict[str, str | None] = field(default_factory=dict)  # images with a usable chip -> identity
    real_masked: set[str] = field(default_factory=set)  # usable images that are photos of a real mask
    real_unaligned: set[str] = field(default_factory=set)  # photos of a real mask without a usable chip

    @property
    def unusable(self) -> int:
        return len(self.every) - len(self.usable)


def read_aligned(paths: Iterable[str]) -> AlignedImages:
    """Identities, usable images and real-masked photos over a dataset's aligned shards."""
    out = AlignedImages()
    for path in paths:
        table = read_shard(path, ["image_id", "identity", "status"], optional=["real_mask"])
        real = table["real_mask"].to_pylist() if "real_mask" in table.column_names else [None] * table.num_rows
        for image_id, identity, status, is_real in zip(*(table[c].to_pylist() for c in ("image_id", "identity", "status")),
                                                       real):
            out.every.append(image_id)
            out.identity[image_id] = identity
            if status in USABLE_STATUSES:
                out.usable[image_id] = identity
                if is_real:
                    out.real_masked.add(image_id)
            elif is_real:
                out.real_unaligned.add(image_id)
    return out


def read_split(path: str | Path) -> dict[str, tuple[str, str | None]]:
    """image_id -> (part, identity) from a split manifest (SPLITS_SCHEMA), in file order."""
    table = pq.read_table(path, columns=["image_id", "identity", "split"])
    return {i: (s, n) for i, n, s in zip(*(table[c].to_pylist() for c in ("image_id", "identity", "split")))}


def split_parts(path: str | Path, parts: Sequence[str] = ("train", "val", "test")) -> dict[str, list[str]]:
    """part -> sorted image ids of a split manifest, for each of ``parts``."""
    out: dict[str, list[str]] = {p: [] for p in parts}
    for image_id, (part, _) in read_split(path).items():
        if part in out:
            out[part].append(image_id)
    return {p: sorted(ids) for p, ids in out.items()}


def embedding_matrix(paths: Iterable[str], float64_up_to: int = FLOAT64_MATRIX_BYTES) -> tuple[pa.Array, np.ndarray]:
    """(image ids, matrix with one row per id) of the rows embedded successfully.

    The matrix is float64 (what pair_scores computes in, so no batch is converted again) when it
    takes at most ``float64_up_to`` bytes, float32 otherwise."""
    ids, blocks, dim = [], [], None
    for path in paths:
        table = pq.read_table(path, columns=["image_id", "status", "embedding"])
        table = table.filter(pc.equal(table["status"], "ok"))
        width = table.schema.field("embedding").type.list_size
        if dim is not None and width != dim:
            raise ValueError(f"{path}: embeddings of width {width}, other shards have {dim}")
        dim = width
        ids.append(table["image_id"].combine_chunks())
        blocks.append(np.asarray(table["embedding"].combine_chunks().flatten(), dtype=np.float32).reshape(-1, dim))
    if not blocks:
        return pa.array([], pa.string()), np.zeros((0, 0), dtype=np.float32)
    matrix = np.concatenate(blocks)
    if matrix.size * 8 <= float64_up_to:
        matrix = matrix.astype(np.float64)
    return pa.concat_arrays(ids), matrix


def load_embeddings(paths: Iterable[str]) -> dict[str, np.ndarray]:
    """image_id -> float32 vector, over embedding shards, for rows embedded successfully."""
    ids, matrix = embedding_matrix(paths, float64_up_to=0)
    return dict(zip(ids.to_pylist(), matrix))


def _chip_rows(path: str, columns: list[str], wanted: set[str], status_ok: tuple[str, ...]) -> pa.Table:
    """Rows of wanted images whose status is usable and whose chip is present."""
    if not wanted:
        return pq.read_schema(path).empty_table().select(columns)
    table = pq.read_table(path, columns=columns, filters=[("image_id", "in", sorted(wanted))])
    keep = pc.and_(pc.is_in(table["status"], pa.array(status_ok)), pc.is_valid(table["chip"]))
    return table.filter(keep)


def read_chips(aligned_paths: list[str], masked_paths: dict[str, list[str]],
               wanted: set[str]) -> tuple[dict[str, bytes], dict[str, dict[str, bytes]]]:
    """image_id -> unmasked PNG, and mask -> image_id -> masked PNG, for wanted images only.

    Only wanted rows are read (a Parquet filter on image_id), so the test part of a split never
    reaches a training process."""
    unmasked: dict[str, bytes] = {}
    for path in aligned_paths:
        real = ["real_mask"] if "real_mask" in pq.read_schema(path).names else []
        t = _chip_rows(path, ["image_id", "status", "chip", *real], wanted, tuple(USABLE_STATUSES))
        if real:  # a photo of a real mask is no unmasked example (variant real)
            t = t.filter(pc.invert(pc.fill_null(t["real_mask"], False)))
        unmasked.update(zip(t["image_id"].to_pylist(), t["chip"].to_pylist()))
    masked: dict[str, dict[str, bytes]] = {}
    for mask in sorted(masked_paths):
        chips: dict[str, bytes] = {}
        for path in masked_paths[mask]:
            t = _chip_rows(path, ["image_id", "status", "chip"], wanted, ("masked",))
            chips.update(zip(t["image_id"].to_pylist(), t["chip"].to_pylist()))
        masked[mask] = chips
    return unmasked, masked


def read_chip_landmarks(aligned_paths: list[str], wanted: set[str]) -> dict[str, np.ndarray]:
    """image_id -> (68, 2) landmarks in chip coordinates, for wanted images with a usable chip."""
    out: dict[str, np.ndarray] = {}
    for path in aligned_paths:
        t = _chip_rows(path, ["image_id", "status", "chip", "landmarks"], wanted, tuple(USABLE_STATUSES))
        for image_id, lm in zip(t["image_id"].to_pylist(), t["landmarks"].to_pylist()):
            if lm is not None:
                out[image_id] = np.asarray(lm, dtype=np.float32).reshape(68, 2)
    return out


def inside(root: Path, relative: str) -> Path:
    """An index entry's image path under the dataset root; it may not point outside it."""
    parts = Path(relative).parts
    if Path(relative).is_absolute() or ".." in parts:
        raise ValueError(f"image path {relative!r} escapes the dataset folder {root}")
    return root / relative
