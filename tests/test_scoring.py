from __future__ import annotations

import numpy as np
import pytest

from maskbench.evaluation.scoring import pair_scores


def test_scores_are_similarities():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 8))
    near = a + 0.01 * rng.normal(size=a.shape)
    far = rng.normal(size=a.shape)
    for kind in ("neg_l2", "inv_l2", "cosine"):
        assert (pair_scores(a, near, kind) > pair_scores(a, far, kind)).mean() > 0.95, kind


def test_score_values():
    a = np.array([[3.0, 4.0]])
    b = np.zeros((1, 2))
    assert pair_scores(a, b, "neg_l2")[0] == pytest.approx(-5.0)
    assert pair_scores(a, b, "inv_l2")[0] == pytest.approx(1 / 6)
    assert pair_scores(a, 2 * a, "cosine")[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown score kind"):
        pair_scores(a, b, "dot")
