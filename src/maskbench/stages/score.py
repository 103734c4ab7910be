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
# Pairs per step of l2_distances: its buffers are allocated once, so a chunk may be larger (1 MiB
# of float64 differences at 128-d): fewer numpy calls per pair.
L2_CHUNK_ROWS = 1024
ROW_GROUP_ROWS = 1 << 18


def _may_hold(row_group: pq.RowGroupMetaData, columns: dict[str, int], wanted: dict[str, str]) -> bool:
    """False only when a row group's min/max statistics rule the comparison out."""
    for name, value in wanted.items():
        stats = row_group.column(columns[name]).statistics
        if stats is not None and stats.has_min_max and not stats.min <= value <= stats.max:
            return False
    return True


def _holds_only(row_group: pq.RowGroupMetaData, columns: dict[str, int], wanted: dict[str, str]) -> bool:
    """True only when a row group's statistics prove every row is of the comparison."""
    for name, value in wanted.items():
        stats = row_group.column(columns[name]).statistics
        if stats is None or not stats.has_min_max or stats.null_count != 0 or not stats.min == value == stats.max:
            return False
    return True


def _windows(pieces: Iterator[pa.RecordBatch], rows: int) -> Iterator[list[pa.RecordBatch]]:
    """Consecutive ``rows``-row windows of a stream of batches (the last may be shorter), each as
    the slices of the batches it spans: the batches pyarrow's ``iter_batches`` gives without
    ``read_dictionary``, which cuts a batch where the dictionary changes (a new row group)."""
    window: list[pa.RecordBatch] = []
    held = 0
    for piece in pieces:
        while piece.num_rows:
            part = piece.slice(0, rows - held)
            window.append(part)
            held += part.num_rows
            piece = piece.slice(part.num_rows)
            if held == rows:
                yield window
                window, held = [], 0
    if window:
        yield window


def comparison_batches(pairs_path: str, ref_variant: str, probe_variant: str,
                       batch_rows: int) -> Iterator[list[pa.RecordBatch]]:
    """The pairs of one comparison, in file order, ``batch_rows`` rows read at a time: each batch
    as its slices of single row groups, with ``ref_image`` and ``probe_image`` dictionary-encoded
    as the file stores them (an image is looked up once per row group, not once per pair). The
    variant columns are read (and filtered on) only where the statistics leave a doubt."""
    pf = pq.ParquetFile(pairs_path, read_dictionary=["ref_image", "probe_image"])
    columns = {name: pf.metadata.schema.names.index(name) for name in ("ref_variant", "probe_variant")}
    wanted = {"ref_variant": ref_variant, "probe_variant": probe_variant}
    groups = [g for g in range(pf.num_row_groups) if _may_hold(pf.metadata.row_group(g), columns, wanted)]
    if not groups:
        return
    exact = all(_holds_only(pf.metadata.row_group(g), columns, wanted) for g in groups)
    read = [c for c in PAIR_COLUMNS if not exact or c not in wanted]
    for window in _windows(pf.iter_batches(batch_size=batch_rows, row_groups=groups, columns=read), batch_rows):
        if not exact:
            window = [piece.filter(pc.and_(pc.equal(piece.column("ref_variant"), ref_variant),
                                           pc.equal(piece.column("probe_variant"), probe_variant)))
                      for piece in window]
            window = [piece for piece in window if piece.num_rows]
        if window:
            yield window


class RowLookup:
    """Row of each image in one embedding matrix's ids (null where absent). A dictionary-encoded
    column is looked up by its dictionary (one per row group), the last one's rows remembered."""

    def __init__(self, ids: pa.Array):
        self.ids = ids
        self._dictionary: pa.Array | None = None
        self._rows: pa.Array | None = None

    def __call__(self, images: pa.Array) -> pa.Array:
        if not pa.types.is_dictionary(images.type):
            return pc.index_in(images, value_set=self.ids)
        if self._dictionary is None or not images.dictionary.equals(self._dictionary):
            self._dictionary, self._rows = images.dictionary, pc.index_in(images.dictionary, value_set=self.ids)
        return self._rows.take(images.indices)


def _decoded(pieces: list[pa.Array]) -> pa.Array:
    """One plain array of a window's slices (image ids decoded from their dictionaries)."""
    plain = [p.dictionary.take(p.indices) if pa.types.is_dictionary(p.type) else p for p in pieces]
    return plain[0] if len(plain) == 1 else pa.concat_arrays(plain)


def l2_distances(ref: np.ndarray, probe: np.ndarray, r: np.ndarray, p: np.ndarray,
                 out: np.ndarray, chunk: int = L2_CHUNK_ROWS) -> np.ndarray:
    """``out[k] = ||ref[r[k]] - probe[p[k]]||`` in float64, computed by the steps, hence to the bit,
    of :func:`maskbench.evaluation.scoring.pair_scores` (``np.linalg.norm(a - b, axis=1)`` is
    ``sqrt(add.reduce(d * d, axis=1))``), in reused buffers: the rows are gathered as stored
    (float32, converted exactly by the subtraction) and no temporary is allocated per chunk."""
    dim = ref.shape[1]
    a, b = np.empty((chunk, dim), ref.dtype), np.empty((chunk, dim), probe.dtype)
    d = np.empty((chunk, dim), np.float64)
    for s in range(0, r.size, chunk):
        n = min(chunk, r.size - s)
        np.take(ref, r[s:s + n], axis=0, out=a[:n])
        np.take(probe, p[s:s + n], axis=0, out=b[:n])
        np.subtract(a[:n], b[:n], out=d[:n], dtype=np.float64)
        np.multiply(d[:n], d[:n], out=d[:n])
        np.add.reduce(d[:n], axis=1, out=out[s:s + n])
    return np.sqrt(out, out=out)


def _pair_scores_at(ref: np.ndarray, probe: np.ndarray, r: np.ndarray, p: np.ndarray, score_kind: str) -> np.ndarray:
    """:func:`pair_scores` of the rows ``r`` of ``ref`` and ``p`` of ``probe``, to the bit."""
    scored = np.empty(r.size)
    if score_kind in ("neg_l2", "inv_l2") and ref.shape[1] and probe.shape[1] == ref.shape[1]:
        dist = l2_distances(ref, probe, r, p, scored)
        return np.negative(dist, out=dist) if score_kind == "neg_l2" else np.divide(1.0, np.add(1.0, dist, out=dist),
                                                                                    out=dist)
    chunk = max(16, CHUNK_BYTES // (8 * max(ref.shape[1], 1)))
    for s in range(0, r.size, chunk):
        scored[s:s + chunk] = pair_scores(ref[r[s:s + chunk]], probe[p[s:s + chunk]], score_kind)
    return scored


def score_batch(pieces: list[pa.RecordBatch], ref: tuple[pa.Array, np.ndarray], probe: tuple[pa.Array, np.ndarray],
                score_kind: str, lookups: tuple[RowLookup, RowLookup]) -> pa.Table:
    """SCORES_SCHEMA rows of one batch, given as its slices (see :func:`comparison_batches`); a
    pair without both embeddings gets a null score. ``lookups`` (of ``ref`` and ``probe``'s ids)
    carry dictionaries already looked up over from earlier batches."""
    ref_lookup, probe_lookup = lookups

    def column(name: str) -> pa.Array:
        return _decoded([piece.column(name) for piece in pieces])

    def rows(name: str, lookup: RowLookup) -> pa.Array:
        found = [lookup(piece.column(name)) for piece in pieces]
        return found[0] if len(found) == 1 else pa.concat_arrays(found)

    ref_rows, probe_rows = rows("ref_image", ref_lookup), rows("probe_image", probe_lookup)
    have = pc.and_(pc.is_valid(ref_rows), pc.is_valid(probe_rows))
    have_np = have.to_numpy(zero_copy_only=False)
    n = len(have_np)
    scores = np.full(n, np.nan)
    if have_np.any():
        r = ref_rows.fill_null(0).to_numpy()[have_np]
        p = probe_rows.fill_null(0).to_numpy()[have_np]
        scores[have_np] = _pair_scores_at(ref[1], probe[1], r, p, score_kind)
    return pa.Table.from_arrays(
        [
            column("pair_id"),
            column("ref_image"),
            column("probe_image"),
            column("genuine"),
            column("fold"),
            pa.array(scores, mask=~have_np),
            pc.if_else(have, OK, MISSING),
        ],
        schema=SCORES_SCHEMA,
    )


def _sorted_by_id(ids: pa.Array, matrix: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """Embeddings in image-id order (a stable sort: of a repeated id the first row stays first),
    the order the pairs list images in, so consecutive pairs read nearby rows."""
    order = pc.sort_indices(ids).to_numpy()
    return ids.take(order), matrix[order]


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
    # float32 as stored: the scores convert each gathered row (exactly), half the bytes to gather
    ref = _sorted_by_id(*embedding_matrix(embedding_paths[ref_variant], float64_up_to=0))
    probe = ref if probe_variant == ref_variant else _sorted_by_id(
        *embedding_matrix(embedding_paths[probe_variant], float64_up_to=0))
    batch_rows = batch_rows or BATCH_ROWS
    counts = {"pairs": 0, "scored": 0, "missing_embedding": 0}
    with atomic_path(out_path) as tmp:
        with pq.ParquetWriter(tmp, SCORES_SCHEMA, compression="zstd", write_statistics=True) as writer:
            pending: list[pa.Table] = []
            lookups = RowLookup(ref[0]), RowLookup(probe[0])
            for batch in comparison_batches(pairs_path, ref_variant, probe_variant, batch_rows):
                table = score_batch(batch, ref, probe, score_kind, lookups)
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
