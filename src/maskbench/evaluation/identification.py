"""Identification metrics: searching probes against an enrolled gallery.

Search order follows the model's score (higher = more alike): ``neg_l2`` and ``inv_l2`` are both
decreasing in the Euclidean distance, so the nearest gallery sample is the best candidate;
``cosine`` normalises every embedding first, after which the Euclidean order is the cosine order
(cos = 1 - d^2 / 2). That keeps every search a Euclidean nearest-neighbour query (scikit-learn's
ball tree).

Closed set (mated searches only): rank-k accuracy and the CMC curve, ranks counting distinct
gallery identities, each represented by its best sample (maskbench.evaluation.metrics.rank_k_accuracy).

Open set, in the NIST IREX / FRVT convention with a candidate list of one (rank 1):
a search raises an alarm when its top candidate's score is >= the threshold T.
FPIR(T) = share of non-mated searches with an alarm; FNIR(T) = share of mated searches whose
top candidate is not the mate or scores below T. The threshold for an FPIR target is the lowest
one whose FPIR on the non-mated top scores does not exceed the target, exactly as
maskbench.evaluation.metrics.fnmr_at_fmr fixes a threshold on impostor scores.

A tie goes against the mate (another identity as near as the mate: not found at rank 1), and a
search that could not run (its probe, or its mate's whole gallery entry, has no embedding) counts
as ISO/IEC 19795-1 counts a failure to acquire: a mated one is a miss at every rank and threshold,
a non-mated one raises no alarm.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.neighbors import NearestNeighbors

from maskbench.evaluation.metrics import fnmr_at_fmr, rank_k_accuracy, with_failures_to_enrol

SCORE_KINDS = ("neg_l2", "inv_l2", "cosine")
CMC_DEPTH = 10


class IdentificationError(ValueError):
    """Inputs an identification metric cannot use (empty gallery, no searches...)."""


def search_space(embeddings, score_kind: str) -> np.ndarray:
    """Float64 rows in which the Euclidean order is the score order of ``score_kind``."""
    if score_kind not in SCORE_KINDS:
        raise IdentificationError(f"unknown score kind {score_kind!r}: use one of {list(SCORE_KINDS)}")
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise IdentificationError(f"embeddings must be a 2-d array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise IdentificationError("embeddings contain non-finite values")
    if score_kind == "cosine":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def distance_to_score(distance: np.ndarray, score_kind: str) -> np.ndarray:
    """The model's score of a Euclidean distance measured in :func:`search_space`."""
    d = np.asarray(distance, dtype=np.float64)
    if score_kind == "neg_l2":
        return -d
    if score_kind == "inv_l2":
        return 1.0 / (1.0 + d)
    if score_kind == "cosine":
        return 1.0 - d * d / 2.0
    raise IdentificationError(f"unknown score kind {score_kind!r}: use one of {list(SCORE_KINDS)}")


def _check_gallery(gallery: np.ndarray, gallery_ids: np.ndarray) -> None:
    if gallery.shape[0] == 0:
        raise IdentificationError("the gallery is empty: no enrolled image has an embedding "
                                  "(check the identification protocol and the unmasked embeddings)")
    if gallery_ids.shape != (gallery.shape[0],):
        raise IdentificationError("need one identity per gallery row")


def top_two(gallery, gallery_ids, probes, score_kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(identity, score) of each probe's best gallery sample, and the best score of any other
    identity (-inf with a one-identity gallery): equal to the first, the top place is a tie."""
    g, p = search_space(gallery, score_kind), search_space(probes, score_kind)
    gids = np.asarray(gallery_ids)
    _check_gallery(g, gids)
    if p.shape[0] == 0:
        return gids[:0], np.zeros(0), np.zeros(0)
    if p.shape[1] != g.shape[1]:
        raise IdentificationError(f"gallery and probe embeddings differ in width: {g.shape[1]} vs {p.shape[1]}")
    # the top identity has at most `per_identity` samples: one more neighbour is another identity's
    per_identity = int(np.unique(gids, return_counts=True)[1].max())
    depth = min(g.shape[0], per_identity + 1)
    dist, ind = NearestNeighbors(n_neighbors=depth, algorithm="ball_tree").fit(g).kneighbors(p)
    ids = gids[ind]
    other = ids != ids[:, :1]
    has_other = other.any(axis=1)
    runner_up = np.full(p.shape[0], -np.inf)
    rows = np.flatnonzero(has_other)
    runner_up[rows] = distance_to_score(dist[rows, other[rows].argmax(axis=1)], score_kind)
    return ids[:, 0], distance_to_score(dist[:, 0], score_kind), runner_up


def closed_set(gallery, gallery_ids, probes, probe_ids, score_kind: str,
               ranks: Sequence[int] = (1, 5), cmc_depth: int = CMC_DEPTH, failed: int = 0) -> dict:
    """Rank-k accuracy at ``ranks`` and the CMC at ranks 1..``cmc_depth`` over mated probes, with
    ``failed`` more mated searches that could not run counted as misses at every rank."""
    g, p = search_space(gallery, score_kind), search_space(probes, score_kind)
    gids, pids = np.asarray(gallery_ids), np.asarray(probe_ids)
    _check_gallery(g, gids)
    if p.shape[0] + failed == 0:
        raise IdentificationError("closed-set identification needs at least one mated search")
    ks = sorted({int(k) for k in ranks} | set(range(1, cmc_depth + 1)))
    if p.shape[0]:
        try:
            acc = rank_k_accuracy(g, gids, p, pids, ks=ks, metric="euclidean")
        except ValueError as exc:
            raise IdentificationError(str(exc)) from exc
    else:
        acc = {k: 0.0 for k in ks}
    share = p.shape[0] / (p.shape[0] + failed)  # found searches over all of them
    return {
        "searches": int(p.shape[0] + failed),
        "failed_searches": int(failed),
        "gallery_identities": int(np.unique(gids).size),
        **{f"rank_{int(k)}": acc[int(k)] * share for k in ranks},
        "cmc": [acc[k] * share for k in range(1, cmc_depth + 1)],
    }


def all_failed_closed_set(searches: int, ranks: Sequence[int] = (1, 5), cmc_depth: int = CMC_DEPTH) -> dict:
    """:func:`closed_set` where no search could run (no gallery image has an embedding): every
    mated search a miss at every rank."""
    return {"searches": int(searches), "failed_searches": int(searches), "gallery_identities": 0,
            **{f"rank_{int(k)}": 0.0 for k in ranks}, "cmc": [0.0] * cmc_depth}


def open_set(top_ids, top_scores, probe_ids, mated, fpir_targets: Sequence[float], runner_up=None,
             failed_mated: int = 0, failed_non_mated: int = 0) -> dict:
    """FNIR at each FPIR target (rank 1), from each search's top candidate. With ``runner_up``
    (the best other identity's score, :func:`top_two`) a mate tied with another identity is not
    found; ``failed_*`` searches that could not run are misses (mated) or never alarm (non-mated)."""
    top_ids, probe_ids = np.asarray(top_ids), np.asarray(probe_ids)
    scores, mated = np.asarray(top_scores, dtype=np.float64), np.asarray(mated, dtype=bool)
    n_mated, n_non_mated = int(mated.sum()) + failed_mated, int((~mated).sum()) + failed_non_mated
    if n_mated == 0 or n_non_mated == 0:
        raise IdentificationError(
            f"open-set identification needs mated and non-mated searches; got {n_mated} and {n_non_mated} "
            "(give the protocol an unknown_fraction > 0, or too_few_images: unknown)"
        )
    hit = top_ids[mated] == probe_ids[mated]
    if runner_up is not None:
        hit &= scores[mated] > np.asarray(runner_up, dtype=np.float64)[mated]
    # failed searches first, at a score below all others (as failures to enrol in verification)
    hit = np.concatenate([np.zeros(failed_mated, dtype=bool), hit])
    mated_scores, non_mated_scores = with_failures_to_enrol(scores[mated], scores[~mated], failed_mated,
                                                            failed_non_mated)
    points = []
    for target in fpir_targets:
        op = fnmr_at_fmr(mated_scores, non_mated_scores, float(target))
        found = hit & (mated_scores >= op.threshold)
        points.append({
            "fpir_target": float(target),
            "threshold": op.threshold,
            "fpir": op.fmr,
            "fnir": float(1.0 - found.mean()),
            "measurable": op.measurable,
        })
    return {
        "mated_searches": n_mated,
        "non_mated_searches": n_non_mated,
        "fnir_at_rank_1_without_threshold": float(1.0 - hit.mean()),
        "points": points,
    }
