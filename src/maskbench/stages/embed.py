"""The embed stage for one (model, dataset, variant): every chip shard of the variant in, one
embedding table out. One job per variant, not per shard: the model is loaded once and a
workflow plans a handful of jobs per model instead of one per shard (a changed mask type still
re-embeds only its own variant)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyarrow as pa

from maskbench.io.atomic import write_table
from maskbench.io.chips import decode_chip, decode_chips
from maskbench.io.readers import read_shard
from maskbench.models.embed import make_embedder
from maskbench.io.manifests import REAL_MASK_STATUS, REAL_VARIANT, UNMASKED_VARIANT, USABLE_STATUSES, embedding_schema

log = logging.getLogger(__name__)

# A chip row is embeddable if alignment succeeded (unmasked) or masking did (a mask variant).
EMBEDDABLE = set(USABLE_STATUSES) | {"masked"}
UNDECODABLE = "undecodable"  # a chip row that should embed but whose bytes do not decode


def variant_statuses(table: pa.Table, variant: str | None) -> list[str]:
    """Chip statuses as the variant sees them: from an aligned shard, `unmasked` holds only bare
    photos (a real-masked one gets status ``real_mask``) and `real` only real-masked photos (a
    bare one gets ``not_real_mask``)."""
    statuses = table["status"].to_pylist()
    if variant not in (UNMASKED_VARIANT, REAL_VARIANT) or "real_mask" not in table.column_names:
        if variant == REAL_VARIANT:
            raise ValueError("variant real needs an aligned shard with a real_mask column; re-run align")
        return statuses
    real = [bool(r) for r in table["real_mask"].to_pylist()]
    if variant == REAL_VARIANT:
        return [s if r else "not_real_mask" for s, r in zip(statuses, real)]
    return [REAL_MASK_STATUS if r else s for s, r in zip(statuses, real)]


def embed_chips(chips_paths: str | list[str], model: dict[str, Any], threads: int, out_path: str,
                cache_dir: str | None = None, variant: str | None = None) -> dict[str, int]:
    """Embed the chips of ``chips_paths`` (shards, read one at a time so memory holds one shard's
    chips) into one table, rows in shard order."""
    paths = [chips_paths] if isinstance(chips_paths, str) else list(chips_paths)
    if not paths:
        raise ValueError("no chip shard to embed")
    embedder = make_embedder(model, threads=threads, cache_dir=cache_dir)
    schema = embedding_schema(embedder.dim)
    parts = [_embed_shard(p, embedder, schema, variant) for p in paths]
    result = pa.concat_tables(parts)
    write_table(out_path, result)
    out_status = result["status"].to_pylist()
    counts = {s: out_status.count(s) for s in sorted(set(out_status))}
    log.info("embedded %d chips of %d shards: %s", result.num_rows, len(paths), counts)
    return counts


def _embed_shard(chips_path: str, embedder, schema: pa.Schema, variant: str | None) -> pa.Table:
    table = read_shard(chips_path, ["image_id", "status", "chip"], optional=["real_mask"])
    ids = table["image_id"].to_pylist()
    statuses = variant_statuses(table, variant)
    todo = [i for i, s in enumerate(statuses) if s in EMBEDDABLE]
    matrix = np.zeros((len(ids), embedder.dim), dtype=np.float32)
    has_vector = np.zeros(len(ids), dtype=bool)
    out_status = [("ok" if s in EMBEDDABLE else s if s in (REAL_MASK_STATUS, "not_real_mask") else "not_embedded")
                  for s in statuses]
    if todo:
        todo, pixels = _decode(table["chip"].to_pylist(), todo, out_status, chips_path, ids)
    if todo:
        emb = embedder.embed(pixels)
        bad = ~np.isfinite(emb).all(axis=1)
        for k in np.flatnonzero(bad):
            out_status[todo[k]] = "non_finite"
        good = np.asarray(todo)[~bad]
        matrix[good] = emb[~bad]
        has_vector[good] = True
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), embedder.dim,
                                                mask=pa.array(~has_vector))
    log.info("%s: embedded %d of %d chips", chips_path, len(todo), len(ids))
    return pa.Table.from_arrays([pa.array(ids, pa.string()), pa.array(out_status, pa.string()),
                                 vectors.cast(schema.field("embedding").type)], schema=schema)


def _decode(chips: list, todo: list[int], out_status: list[str], chips_path: str,
            ids: list[str]) -> tuple[list[int], np.ndarray | None]:
    """(rows, pixels) of the chips to embed. A chip that does not decode (corrupt, truncated,
    missing, or of another size than the shard's first) gets status ``undecodable``, with the
    reason in the log, and the others are embedded: one bad chip must not lose the variant."""
    try:
        return todo, decode_chips([chips[i] for i in todo])
    except (ValueError, TypeError):
        pass  # find the bad ones, one chip at a time
    rows, pixels = [], []
    for i in todo:
        try:
            if chips[i] is None:
                raise ValueError("no chip stored")
            chip = decode_chip(chips[i])
            if pixels and chip.shape != pixels[0].shape:
                raise ValueError(f"chip is {chip.shape}, the shard's first is {pixels[0].shape}")
        except (ValueError, TypeError) as exc:
            out_status[i] = UNDECODABLE
            log.warning("%s: %s not embedded: %s", chips_path, ids[i], exc)
            continue
        rows.append(i)
        pixels.append(chip)
    return rows, (np.stack(pixels) if pixels else None)
