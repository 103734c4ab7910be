"""Comparison scores between embeddings; every score is a similarity (higher = more alike)."""

from __future__ import annotations

import numpy as np


def pair_scores(ref: np.ndarray, probe: np.ndarray, kind: str) -> np.ndarray:
    """Row-wise scores of two N x d arrays.

    ``neg_l2``: minus the Euclidean distance (dlib's convention, threshold 0.6 becomes -0.6);
    ``inv_l2``: 1 / (1 + distance), the DICTA 2021 released models' score; ``cosine``: cosine similarity.
    """
    ref = np.asarray(ref, dtype=np.float64)
    probe = np.asarray(probe, dtype=np.float64)
    if kind in ("neg_l2", "inv_l2"):
        dist = np.linalg.norm(ref - probe, axis=1)
        return -dist if kind == "neg_l2" else 1.0 / (1.0 + dist)
    if kind == "cosine":
        norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(probe, axis=1)
        return np.einsum("ij,ij->i", ref, probe) / np.maximum(norms, 1e-12)
    raise ValueError(f"unknown score kind {kind!r}: use neg_l2, inv_l2 or cosine")
