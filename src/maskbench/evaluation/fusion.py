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
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from maskbench.io.atomic import write_table
from maskbench.io.manifests import SCORES_SCHEMA

log = logging.getLogger(__name__)


class FusionError(ValueError):
    """Member score files that do not describe the same pairs."""


def moments(scores: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the finite scores (0, 0 when there are none)."""
    finite = np.asarray(scores, dtype=float)
    finite = finite[np.isfinite(finite)]
    return (float(finite.mean()), float(finite.std())) if finite.size else (0.0, 0.0)


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


def _is_ok(table: pa.Table) -> np.ndarray:
    """Rows whose status is ``ok`` (a null status is not), computed in Arrow: score files hold
    millions of pairs, and a Python object per row cost most of a fusion job's time and memory."""
    return pc.fill_null(pc.equal(table["status"], "ok"), False).to_numpy(zero_copy_only=False)


def _ok_scores(table: pa.Table) -> np.ndarray:
    scores = np.asarray(table["score"].to_numpy(zero_copy_only=False), dtype=float)
    return np.where(_is_ok(table), scores, np.nan)


def fuse_score_files(paths: Sequence[str], members: Sequence[str], out_path: str,
                     weights: Sequence[float] | None = None,
                     reference_paths: Sequence[str] | None = None) -> dict[str, int]:
    """Fuse members' score Parquet files of one comparison into one file in SCORES_SCHEMA, each
    member normalised with the moments of its scores in ``reference_paths`` (default: these)."""
    tables = [pq.read_table(p) for p in paths]
    first = tables[0]
    keys = ("pair_id", "ref_image", "probe_image", "genuine")
    for member, path, table in zip(members, paths, tables):
        if any(not table[k].equals(first[k]) for k in keys):
            raise FusionError(
                f"{path} ({member}) does not score the same pairs (pair id, images, genuine) as "
                f"{paths[0]} ({members[0]}); an ensemble's members must score one pairs manifest"
            )
    references = ([moments(_ok_scores(pq.read_table(p, columns=["score", "status"]))) for p in reference_paths]
                  if reference_paths else None)
    ok = np.logical_and.reduce([_is_ok(t) for t in tables])
    fused = fuse([np.where(ok, _ok_scores(t), np.nan) for t in tables], weights, references)
    table = pa.Table.from_pydict(
        {
            "pair_id": first["pair_id"],
            "ref_image": first["ref_image"],
            "probe_image": first["probe_image"],
            "genuine": first["genuine"],
            "fold": first["fold"],
            "score": pa.array(np.where(ok, fused, 0.0), mask=~ok),
            "status": pc.if_else(pa.array(ok), "ok", "missing_member_score"),
        },
        schema=SCORES_SCHEMA,
    )
    write_table(out_path, table)
    counts = {"pairs": len(ok), "fused": int(ok.sum()), "missing_member_score": int((~ok).sum())}
    log.info("fused %s: %s; reference moments %s", ", ".join(members), counts, references)
    return counts
