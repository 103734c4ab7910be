"""Ordinal heads for age and age group: one binary classifier per threshold ("older than t?").

Age groups and ages are ordered, which a plain softmax or an L1 regression ignores. Following
Frank & Hall (2001) and the ordinal-regression CNN of Niu et al. (2016), a standardised logistic
regression learns P(y > t_k) for each threshold t_k; for age groups the class probabilities are
the differences of these cumulative probabilities (made monotone first), for age the prediction is
the expected age they imply (each band between thresholds at its mean train age). Each threshold's
regularisation is chosen with the rest on the validation split, as the linear heads' is.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from maskbench.attributes import heads as attr

ORDINAL = "ordinal"
ORDINAL_TASKS = ("age", "age_group")
AGE_THRESHOLDS = 12  # thresholds at train-age quantiles (distinct values only)
ORDINAL_C = (0.01, 0.1, 1.0)  # logistic regression strengths per threshold, chosen on val


class _Cumulative:
    """P(y > t_k) for thresholds t_1 < ... < t_K on an ordinal code 0..K of y, non-increasing in k."""

    def __init__(self, C: float, seed: int):
        self.C, self.seed = C, seed

    def fit(self, x: np.ndarray, code: np.ndarray, levels: int) -> "_Cumulative":
        self.scaler = StandardScaler().fit(x)
        z = self.scaler.transform(x)
        self.models: list[LogisticRegression | float] = []
        for k in range(levels - 1):
            above = code > k
            if above.all() or not above.any():  # a threshold no train image crosses: a constant
                self.models.append(float(above.mean()))
                continue
            self.models.append(LogisticRegression(C=self.C, max_iter=5000, random_state=self.seed % 2**32).fit(z, above))
        return self

    def above(self, x: np.ndarray) -> np.ndarray:
        """N x K: P(y > t_k), forced non-increasing along k (a running minimum)."""
        z = self.scaler.transform(x)
        cols = [np.full(len(x), m) if isinstance(m, float) else m.predict_proba(z)[:, 1] for m in self.models]
        p = np.stack(cols, axis=1) if cols else np.zeros((len(x), 0))
        return np.minimum.accumulate(p, axis=1)


class OrdinalClassifier:
    """Ordered classes (``classes`` in order) from cumulative binary classifiers; sklearn-like."""

    def __init__(self, classes: Sequence[str], C: float = 1.0, seed: int = 0):
        self.classes_ = np.asarray(list(classes), dtype=object)
        self.C, self.seed = C, seed

    def fit(self, x: np.ndarray, y: np.ndarray) -> "OrdinalClassifier":
        position = {c: k for k, c in enumerate(self.classes_)}
        unknown = sorted({str(v) for v in y} - set(position))
        if unknown:
            raise attr.TaskError(f"ordinal head: labels {unknown} are not among the classes {list(self.classes_)}")
        code = np.asarray([position[v] for v in y])
        self.cumulative = _Cumulative(self.C, self.seed).fit(x, code, len(self.classes_))
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        above = self.cumulative.above(x)
        n = len(x)
        upper = np.hstack([np.ones((n, 1)), above])  # P(y > t_(k-1)), with P(y > t_0) = 1
        lower = np.hstack([above, np.zeros((n, 1))])
        return np.clip(upper - lower, 0.0, 1.0)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(x).argmax(axis=1)]


class OrdinalRegressor:
    """Age as the expectation implied by P(age > t_k) at thresholds on the train ages' quantiles."""

    def __init__(self, C: float = 1.0, seed: int = 0, thresholds: int = AGE_THRESHOLDS):
        self.C, self.seed, self.n_thresholds = C, seed, thresholds

    def fit(self, x: np.ndarray, y: np.ndarray) -> "OrdinalRegressor":
        y = np.asarray(y, dtype=np.float64)
        quantiles = np.quantile(y, np.linspace(0, 1, self.n_thresholds + 2)[1:-1])
        self.thresholds = np.unique(quantiles)
        code = np.searchsorted(self.thresholds, y, side="left")  # y > t_k for k < code
        levels = len(self.thresholds) + 1
        # the mean train age between consecutive thresholds (the midpoint where none falls there)
        edges = np.concatenate([[y.min()], self.thresholds, [y.max()]])
        self.level_age = np.asarray([y[code == j].mean() if (code == j).any() else (edges[j] + edges[j + 1]) / 2
                                     for j in range(levels)])
        self.cumulative = _Cumulative(self.C, self.seed).fit(x, code, levels)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        above = self.cumulative.above(x)
        n = len(x)
        proba = np.clip(np.hstack([np.ones((n, 1)), above]) - np.hstack([above, np.zeros((n, 1))]), 0.0, 1.0)
        return proba @ self.level_age


def ordinal_candidates(task: str, age_groups: Sequence[int], seed: int) -> list[tuple[dict[str, float], object]]:
    """The ordinal head's candidates for ``task``, most regularised first (as the linear head's)."""
    if task not in ORDINAL_TASKS:
        raise attr.TaskError(f"the ordinal head predicts {list(ORDINAL_TASKS)}, not {task!r}")
    if task == "age":
        return [({"C": c}, OrdinalRegressor(C=c, seed=seed)) for c in ORDINAL_C]
    classes = attr.task_classes(task, age_groups)
    return [({"C": c}, OrdinalClassifier(classes, C=c, seed=seed)) for c in ORDINAL_C]


def fit_ordinal_head(task: str, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                     age_groups: Sequence[int] = attr.DEFAULT_AGE_GROUPS, seed: int = 0) -> attr.Head:
    """Fit every candidate on train, keep the best on val (accuracy or MAE; ties: the earlier)."""
    if len(y_train) == 0:
        raise attr.TaskError(f"task {task!r}: the train split is empty")
    return attr.best_on_val(task, ORDINAL, ordinal_candidates(task, age_groups, seed), x_train, y_train, x_val, y_val,
                            one_thread=True)
