"""Score-level fusion: an ensemble model's scores from its members' scores of the same pairs.

Members score on different scales (negative L2 distance, cosine, 1/(1+L2)), so each member's scores
are z-normalised first, then averaged with weights. The mean and standard deviation of a member come
from its scores on validation pairs (the first comparison, normally unmasked vs unmasked, of the
ensemble's ``normalise_on`` protocol or the tested protocol's validation protocol: people of the
val part of a split), never from the tested pairs, and are applied to every comparison, so all of
an ensemble's comparisons share one scale: a threshold fixed on one comparison (NIST's masked-probe
rates, a validation protocol) means the same on another. The normalisation is label-free. A pair that any member could
not score keeps the status ``missing_member_score``.
"""

from __future__ import annotations

import logging
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from maskbench.io.atomic import atomic_path
from maskbench.io.manifests import SCORES_SCHEMA
from maskbench.io.score_files import read_with_ok

log = logging.getLogger(__name__)


class FusionError(ValueError):
    """Member score files that do not describe the same pairs."""


def moments(scores: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the finite scores (0, 0 when there are none)."""
    finite = np.asarray(scores, dtype=float)
    finite = finite[np.isfinite(finite)]
    return (float(finite.mean()), float(finite.std())) if finite.size else (0.0, 0.0)


def reference_moments(scores: np.ndarray, path: str) -> tuple[float, float]:
    """The moments of a member's reference scores, refused where they cannot set its scale: with
    no scored pair, or every pair scored alike, the member would add 0 to every fused score
    and the ensemble would silently be its other members."""
    mean, std = moments(scores)
    if not std > 0:
        what = "no scored pair" if not np.isfinite(np.asarray(scores, dtype=float)).any() else "one score for every pair"
        raise FusionError(f"{path}: {what}; it cannot set this member's scale for the ensemble")
    return mean, std


def zscore(scores: np.ndarray, reference: tuple[float, float] | None = None) -> np.ndarray:
    """(s - mean) / std with the moments of ``reference`` (default: of ``scores``); a member whose
    reference scores are constant contributes 0."""
    scores = np.asarray(scores, dtype=float)
    mean, std = reference if reference is not None else moments(scores)
    finite = np.isfinite(scores)
    if not finite.any():
        return np.full_like(scores, np.nan)
    return (scores - mean) / std if std > 0 else np.where(finite, 0.0, np.nan)


def fuse(member_scores: Sequence[np.ndarray], weights: Sequence[float] | None = None,
         references: Sequence[tuple[float, float]] | None = None) -> np.ndarray:
    """Weighted mean of z-normalised member scores; NaN where any member has no score."""
    if len(member_scores) < 2:
        raise FusionError("an ensemble needs at least two members")
    weights = np.ones(len(member_scores)) if weights is None else np.asarray(weights, dtype=float)
    if len(weights) != len(member_scores) or weights.sum() <= 0 or (weights < 0).any():
        raise FusionError(f"need one non-negative weight per member, not all zero; got {list(weights)}")
    references = references or [None] * len(member_scores)
    stacked = np.stack([zscore(s, r) for s, r in zip(member_scores, references)])
    return (weights[:, None] * stacked).sum(axis=0) / weights.sum()


# Pairs fused at a time: the member files are read, and the fused file written, this many rows at
# a time, so a fusion job's memory follows the window, not the protocol (all-vs-all on LFW: 7.8M
# pairs). Equal to Parquet's default row group (1Mi rows), so the fused file has the same row
# groups, hence the same bytes, as writing the whole table at once.
WINDOW_ROWS = 1 << 20
_KEYS = ("pair_id", "ref_image", "probe_image", "genuine")


def _windows(path: str, columns: list[str], rows: int) -> Iterator[pa.Table]:
    """The columns of a Parquet file as consecutive tables of ``rows`` rows (the last may be shorter),
    whatever the file's own row groups."""
    pending: list[pa.RecordBatch] = []
    held = 0
    # read as pq.read_table reads (the dataset scanner's batches), so the fused columns reach the
    # Parquet writer in the same chunks as when the whole table was read and written at once; one
    # batch read ahead, not 16 (the same batches: on 7.9 M pairs a fusion peaks at 1.4 GB, not 2.4)
    scanner = ds.dataset(path, format="parquet").to_batches(columns=columns, use_threads=False,
                                                            batch_readahead=1, fragment_readahead=1)
    for batch in scanner:
        pending.append(batch)
        held += batch.num_rows
        while held >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield pa.Table.from_batches(pending)


def _ok_and_scores(path: str) -> tuple[np.ndarray, np.ndarray]:
    table, ok = read_with_ok(path, ["score"])  # the status compared once per distinct string
    return ok, np.asarray(table["score"].to_numpy(zero_copy_only=False), dtype=float)


def fuse_score_files(paths: Sequence[str], members: Sequence[str], out_path: str,
                     weights: Sequence[float] | None = None,
                     reference_paths: Sequence[str] | None = None) -> dict[str, int]:
    """Fuse members' score Parquet files of one comparison into one file in SCORES_SCHEMA, each
    member normalised with the moments of its scores in ``reference_paths`` (default: of its
    scores of the pairs every member scored)."""
    if len(paths) < 2:
        raise FusionError("an ensemble needs at least two members")
    rows = [pq.ParquetFile(p).metadata.num_rows for p in paths]
    if len(set(rows)) > 1:
        k = next(k for k, n in enumerate(rows) if n != rows[0])
        raise FusionError(f"{paths[k]} ({members[k]}) does not score the same pairs (pair id, images, genuine) as "
                          f"{paths[0]} ({members[0]}): {rows[k]} pairs vs {rows[0]}; an ensemble's members must "
                          "score one pairs manifest")
    # the moments come from whole files (score and status columns only, a few bytes per pair)
    ok_and_scores = [_ok_and_scores(p) for p in paths]
    ok = np.logical_and.reduce([o for o, _ in ok_and_scores])
    if reference_paths:
        references = [reference_moments(np.where(*_ok_and_scores(p), np.nan), p) for p in reference_paths]
    elif ok.any():
        references = [reference_moments(np.where(ok, s, np.nan), p) for (_, s), p in zip(ok_and_scores, paths)]
    else:  # no pair scored by every member: every row is missing_member_score
        references = [(0.0, 0.0)] * len(paths)
    del ok_and_scores
    columns = list(SCORES_SCHEMA.names)
    streams = [_windows(paths[0], columns, WINDOW_ROWS)]
    streams += [_windows(p, [*_KEYS, "score"], WINDOW_ROWS) for p in paths[1:]]
    start = 0
    with atomic_path(out_path) as tmp:
        with pq.ParquetWriter(tmp, SCORES_SCHEMA, compression="zstd", write_statistics=True) as writer:
            for windows in zip(*streams):
                first = windows[0]
                for member, path, table in zip(members[1:], paths[1:], windows[1:]):
                    if any(not table[k].equals(first[k]) for k in _KEYS):
                        raise FusionError(
                            f"{path} ({member}) does not score the same pairs (pair id, images, genuine) as "
                            f"{paths[0]} ({members[0]}); an ensemble's members must score one pairs manifest"
                        )
                here = ok[start:start + first.num_rows]
                # ``here`` holds only pairs every member's status calls ok (their scores as stored)
                scores = [t["score"].to_numpy(zero_copy_only=False) for t in windows]
                fused = fuse([np.where(here, s, np.nan) for s in scores], weights, references)
                writer.write_table(pa.Table.from_pydict(
                    {
                        **{k: first[k] for k in ("pair_id", "ref_image", "probe_image", "genuine", "fold")},
                        "score": pa.array(np.where(here, fused, 0.0), mask=~here),
                        "status": pc.if_else(pa.array(here), "ok", "missing_member_score"),
                    },
                    schema=SCORES_SCHEMA,
                ), row_group_size=WINDOW_ROWS)
                start += first.num_rows
    counts = {"pairs": len(ok), "fused": int(ok.sum()), "missing_member_score": int((~ok).sum())}
    log.info("fused %s: %s; reference moments %s", ", ".join(members), counts, references)
    return counts
