"""The score stage: one comparison (ref variant vs probe variant) of one protocol, one model.

A protocol can hold many millions of pairs (all_vs_all), so the pairs are streamed: Parquet row
groups that cannot hold the comparison are skipped by their statistics, the rest are read in
batches, each batch is scored by looking its image ids up in one embedding matrix per variant,
and the scores are written as they come. Memory follows the batch, not the protocol.
"""

from __future__ import annotations

import logging
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from maskbench.io.atomic import atomic_path
from maskbench.io.manifests import SCORES_SCHEMA
from maskbench.io.readers import embedding_matrix
from maskbench.evaluation.scoring import pair_scores

log = logging.getLogger(__name__)

OK, MISSING = "ok", "missing_embedding"
PAIR_COLUMNS = ["pair_id", "ref_image", "ref_variant", "probe_image", "probe_variant", "genuine", "fold"]
BATCH_ROWS = 1 << 16  # pairs read from Parquet at a time
# Bytes of each float64 temporary of one pair_scores call. Below glibc's 128 KiB mmap threshold
# they are reused from the heap; larger ones are mapped afresh and page-faulted on every call,
# which made scoring about five times slower.
CHUNK_BYTES = 127 << 10
ROW_GROUP_ROWS = 1 << 18


def _may_hold(row_group: pq.RowGroupMetaData, columns: dict[str, int], wanted: dict[str, str]) -> bool:
    """False only when a row group's min/max statistics rule the comparison out."""
    for name, value in wanted.items():
        stats = row_group.column(columns[name]).statistics
        if stats is not None and stats.has_min_max and not stats.min <= value <= stats.max:
            return False
    return True


def comparison_batches(pairs_path: str, ref_variant: str, probe_variant: str,
                       batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The pairs of one comparison, in file order, ``batch_rows`` rows read at a time."""
    pf = pq.ParquetFile(pairs_path)
    columns = {name: pf.metadata.schema.names.index(name) for name in ("ref_variant", "probe_variant")}
    wanted = {"ref_variant": ref_variant, "probe_variant": probe_variant}
    groups = [g for g in range(pf.num_row_groups) if _may_hold(pf.metadata.row_group(g), columns, wanted)]
    if not groups:
        return
    for batch in pf.iter_batches(batch_size=batch_rows, row_groups=groups, columns=PAIR_COLUMNS):
        keep = pc.and_(pc.equal(batch.column("ref_variant"), ref_variant),
                       pc.equal(batch.column("probe_variant"), probe_variant))
        batch = batch.filter(keep)
        if batch.num_rows:
            yield batch


def score_batch(batch: pa.RecordBatch, ref: tuple[pa.Array, np.ndarray], probe: tuple[pa.Array, np.ndarray],
                score_kind: str) -> pa.Table:
    """SCORES_SCHEMA rows of one batch; a pair without both embeddings gets a null score."""
    ref_rows = pc.index_in(batch.column("ref_image"), value_set=ref[0])
    probe_rows = pc.index_in(batch.column("probe_image"), value_set=probe[0])
    have = pc.and_(pc.is_valid(ref_rows), pc.is_valid(probe_rows))
    have_np = have.to_numpy(zero_copy_only=False)
    scores = np.full(batch.num_rows, np.nan)
    if have_np.any():
        r = ref_rows.fill_null(0).to_numpy()[have_np]
        p = probe_rows.fill_null(0).to_numpy()[have_np]
        chunk = max(16, CHUNK_BYTES // (8 * max(ref[1].shape[1], 1)))
        scored = np.empty(r.size)
        for s in range(0, r.size, chunk):
            scored[s:s + chunk] = pair_scores(ref[1][r[s:s + chunk]], probe[1][p[s:s + chunk]], score_kind)
        scores[have_np] = scored
    return pa.Table.from_arrays(
        [
            batch.column("pair_id"),
            batch.column("ref_image"),
            batch.column("probe_image"),
            batch.column("genuine"),
            batch.column("fold"),
            pa.array(scores, mask=~have_np),
            pc.if_else(have, OK, MISSING),
        ],
        schema=SCORES_SCHEMA,
    )


def score_comparison(
    pairs_path: str,
    comparison: str,
    embedding_paths: dict[str, list[str]],
    score_kind: str,
    out_path: str,
    batch_rows: int | None = None,
) -> dict[str, int]:
    """Score the pairs of one comparison; a pair with a missing embedding keeps a status."""
    ref_variant, probe_variant = comparison.split("-vs-")
    missing = sorted({ref_variant, probe_variant} - set(embedding_paths))
    if missing:
        raise ValueError(f"no embedding files given for variant(s) {missing} of {comparison}")
    ref = embedding_matrix(embedding_paths[ref_variant])
    probe = ref if probe_variant == ref_variant else embedding_matrix(embedding_paths[probe_variant])
    batch_rows = batch_rows or BATCH_ROWS
    counts = {"pairs": 0, "scored": 0, "missing_embedding": 0}
    with atomic_path(out_path) as tmp:
        with pq.ParquetWriter(tmp, SCORES_SCHEMA, compression="zstd", write_statistics=True) as writer:
            pending: list[pa.Table] = []
            for batch in comparison_batches(pairs_path, ref_variant, probe_variant, batch_rows):
                table = score_batch(batch, ref, probe, score_kind)
                scored = table.num_rows - table["score"].null_count
                counts["pairs"] += table.num_rows
                counts["scored"] += scored
                counts["missing_embedding"] += table.num_rows - scored
                pending.append(table)
                if sum(t.num_rows for t in pending) >= ROW_GROUP_ROWS:
                    _flush(writer, pending)
            if counts["pairs"] == 0:
                raise ValueError(f"{pairs_path} has no pairs for {comparison}; re-run the pairs rule")
            _flush(writer, pending)
    log.info("%s: %s", comparison, counts)
    return counts


def _flush(writer: pq.ParquetWriter, pending: list[pa.Table]) -> None:
    """Write the buffered batches as one row group."""
    if pending:
        table = pa.concat_tables(pending)
        writer.write_table(table, row_group_size=table.num_rows)
        pending.clear()
