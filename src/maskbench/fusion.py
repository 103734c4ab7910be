"""Score-level fusion: an ensemble model's scores from its members' scores of the same pairs.

Members score on different scales (negative L2 distance, cosine, 1/(1+L2)), so each member's scores
are z-normalised first, using the mean and standard deviation of all its scored pairs in the
comparison: a label-free normalisation (it never looks at which pairs are genuine), then a weighted
mean. A pair that any member could not score keeps the status ``missing_member_score``.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from maskbench.atomic import write_table
from maskbench.manifests import SCORES_SCHEMA

log = logging.getLogger(__name__)


class FusionError(ValueError):
    """Member score files that do not describe the same pairs."""


def zscore(scores: np.ndarray) -> np.ndarray:
    """(s - mean) / std over the finite scores; a member with constant scores contributes 0."""
    finite = np.isfinite(scores)
    if not finite.any():
        return np.full_like(scores, np.nan)
    mean = scores[finite].mean()
    std = scores[finite].std()
    return (scores - mean) / std if std > 0 else np.where(finite, 0.0, np.nan)


def fuse(member_scores: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """Weighted mean of z-normalised member scores; NaN where any member has no score."""
    if len(member_scores) < 2:
        raise FusionError("an ensemble needs at least two members")
    weights = np.ones(len(member_scores)) if weights is None else np.asarray(weights, dtype=float)
    if len(weights) != len(member_scores) or weights.sum() <= 0 or (weights < 0).any():
        raise FusionError(f"need one non-negative weight per member, not all zero; got {list(weights)}")
    stacked = np.stack([zscore(np.asarray(s, dtype=float)) for s in member_scores])
    return (weights[:, None] * stacked).sum(axis=0) / weights.sum()


def fuse_score_files(paths: Sequence[str], members: Sequence[str], out_path: str,
                     weights: Sequence[float] | None = None) -> dict[str, int]:
    """Fuse members' score Parquet files of one comparison into one file in SCORES_SCHEMA."""
    tables = [pq.read_table(p) for p in paths]
    first = tables[0]
    for member, path, table in zip(members, paths, tables):
        if table["pair_id"].to_pylist() != first["pair_id"].to_pylist():
            raise FusionError(
                f"{path} ({member}) does not score the same pairs as {paths[0]} ({members[0]}); "
                "re-run its score rule"
            )
    scores = [np.asarray(t["score"].to_numpy(zero_copy_only=False), dtype=float) for t in tables]
    ok = np.logical_and.reduce([np.asarray(t["status"].to_pylist()) == "ok" for t in tables])
    fused = fuse([np.where(ok, s, np.nan) for s in scores], weights)
    table = pa.Table.from_pydict(
        {
            "pair_id": first["pair_id"],
            "ref_image": first["ref_image"],
            "probe_image": first["probe_image"],
            "genuine": first["genuine"],
            "fold": first["fold"],
            "score": pa.array(np.where(ok, fused, 0.0), mask=~ok),
            "status": np.where(ok, "ok", "missing_member_score").tolist(),
        },
        schema=SCORES_SCHEMA,
    )
    write_table(out_path, table)
    counts = {"pairs": len(ok), "fused": int(ok.sum()), "missing_member_score": int((~ok).sum())}
    log.info("fused %s: %s", ", ".join(members), counts)
    return counts
