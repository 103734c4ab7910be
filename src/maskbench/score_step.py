"""The score stage: one comparison (ref variant vs probe variant) of one protocol, one model."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from maskbench.atomic import write_table
from maskbench.embed_step import load_embeddings
from maskbench.manifests import SCORES_SCHEMA
from maskbench.scoring import pair_scores

log = logging.getLogger(__name__)


def score_comparison(
    pairs_path: str,
    comparison: str,
    embedding_paths: dict[str, list[str]],
    score_kind: str,
    out_path: str,
) -> dict[str, int]:
    """Score the pairs of one comparison; a pair with a missing embedding keeps a status."""
    ref_variant, probe_variant = comparison.split("-vs-")
    pairs = pq.read_table(pairs_path)
    pairs = pairs.filter(
        pc.and_(pc.equal(pairs["ref_variant"], ref_variant), pc.equal(pairs["probe_variant"], probe_variant))
    )
    if pairs.num_rows == 0:
        raise ValueError(f"{pairs_path} has no pairs for {comparison}; re-run the pairs rule")
    ref_emb = load_embeddings(embedding_paths[ref_variant])
    probe_emb = load_embeddings(embedding_paths[probe_variant])
    refs = pairs["ref_image"].to_pylist()
    probes = pairs["probe_image"].to_pylist()
    have = np.array([r in ref_emb and p in probe_emb for r, p in zip(refs, probes)], dtype=bool)
    scores = np.full(len(refs), np.nan)
    if have.any():
        idx = np.flatnonzero(have)
        scores[idx] = pair_scores(
            np.stack([ref_emb[refs[i]] for i in idx]), np.stack([probe_emb[probes[i]] for i in idx]), score_kind
        )
    status = np.where(have, "ok", "missing_embedding")
    table = pa.Table.from_pydict(
        {
            "pair_id": pairs["pair_id"],
            "ref_image": pairs["ref_image"],
            "probe_image": pairs["probe_image"],
            "genuine": pairs["genuine"],
            "fold": pairs["fold"],
            "score": pa.array(np.where(have, scores, np.nan), mask=~have),
            "status": status.tolist(),
        },
        schema=SCORES_SCHEMA,
    )
    write_table(out_path, table)
    counts = {"pairs": len(refs), "scored": int(have.sum()), "missing_embedding": int((~have).sum())}
    log.info("%s: %s", comparison, counts)
    return counts
