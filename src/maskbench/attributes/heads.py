"""Attribute prediction from face embeddings: what a (masked) face still gives away.

Tasks follow AJCAI 2021 ("Does a face mask protect my privacy?"): ``sex`` (2 classes), ``race``
(5 classes), ``age`` (regression, years) and ``age_group`` (age bins, by default the paper's 7).
A head is a standardised linear model (logistic regression / ridge) or a small MLP on cached
embeddings; its regularisation is chosen on the validation split, then it predicts the test split.
Metrics: accuracy, balanced accuracy, per-class recall and the confusion matrix (classes); MAE and
RMSE (age); accuracy against coverage when the head abstains below a confidence threshold; and
the same per sex and race group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from maskbench.attributes.labels import (  # noqa: F401  (the study's vocabulary, used as attr.*)
    DEFAULT_AGE_GROUPS, DEFAULT_THRESHOLDS, HEADS, RACE_CLASSES, SEX_CLASSES, TASKS, TaskError, age_group,
    age_group_names, is_regression, task_classes, task_target,
)

# Regularisation grids searched on the validation split, most regularised first.
_LOGISTIC_C = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
_RIDGE_ALPHA = (1000.0, 100.0, 10.0, 1.0)
_MLP_ALPHA = (1e-1, 1e-3)
LOGISTIC_C, RIDGE_ALPHA = _LOGISTIC_C, _RIDGE_ALPHA  # read by the attribute CNN's linear probe


# ----------------------------------------------------------------------------------------------
# heads


@dataclass
class Head:
    """A fitted head and how it was chosen."""

    task: str
    kind: str
    model: Pipeline
    params: dict[str, float]
    val_score: float  # accuracy (classes) or MAE (age) on the validation split
    classes: list[str] | None


def _candidates(task: str, kind: str, seed: int) -> list[tuple[dict[str, float], Pipeline]]:
    seed32 = seed % (2**32)
    if kind == "linear" and is_regression(task):
        return [({"alpha": a}, make_pipeline(StandardScaler(), Ridge(alpha=a))) for a in _RIDGE_ALPHA]
    if kind == "linear":
        return [({"C": c}, make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000)))
                for c in _LOGISTIC_C]
    if kind == "mlp":
        cls = MLPRegressor if is_regression(task) else MLPClassifier
        return [({"alpha": a}, make_pipeline(StandardScaler(), cls(hidden_layer_sizes=(256,), alpha=a, max_iter=500,
                                                                    random_state=seed32)))
                for a in _MLP_ALPHA]
    raise TaskError(f"unknown head {kind!r}; known: {list(HEADS)}")


def fit_head(task: str, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
             kind: str = "linear", seed: int = 0) -> Head:
    """Fit every candidate on train and keep the best on val (accuracy, or MAE for age; ties go to
    the earlier, more regularised candidate). Without a val split the first candidate is kept."""
    regression = is_regression(task)
    if len(y_train) == 0:
        raise TaskError(f"task {task!r}: the train split is empty")
    if not regression and len(set(y_train.tolist())) < 2:
        raise TaskError(f"task {task!r}: the train split has fewer than 2 classes")
    return best_on_val(task, kind, _candidates(task, kind, seed), x_train, y_train, x_val, y_val)


def best_on_val(task: str, kind: str, candidates, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
                y_val: np.ndarray, one_thread: bool = False) -> Head:
    """Fit each (params, model) candidate on train and keep the best on val (accuracy, or MAE for
    age; ties: the earlier); without val rows, the first. ``one_thread``: BLAS on one thread (many
    small fits, which threads only slow down)."""
    regression = is_regression(task)
    best: Head | None = None
    for params, model in candidates:
        if one_thread:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(1):
                model.fit(x_train, y_train)
        else:
            model.fit(x_train, y_train)
        if len(y_val) == 0:
            score = float("nan")
        elif regression:
            score = float(np.mean(np.abs(model.predict(x_val) - y_val)))
        else:
            score = float(np.mean(model.predict(x_val) == y_val))
        if best is None or (score < best.val_score if regression else score > best.val_score):
            classes = None if regression else [str(c) for c in model.classes_]
            best = Head(task, kind, model, params, score, classes)
        if len(y_val) == 0:
            break
    assert best is not None
    return best


@dataclass
class Prediction:
    """Predictions of one head on one set: labels and confidence (classes) or values (age)."""

    predicted: np.ndarray
    confidence: np.ndarray | None


def predict(head: Head, x: np.ndarray) -> Prediction:
    if len(x) == 0:
        empty = np.asarray([], dtype=np.float64 if head.classes is None else object)
        return Prediction(empty, None if head.classes is None else np.asarray([], dtype=np.float64))
    if head.classes is None:
        return Prediction(np.asarray(head.model.predict(x), dtype=np.float64), None)
    proba = head.model.predict_proba(x)
    best = proba.argmax(axis=1)
    labels = np.asarray(head.model.classes_, dtype=object)[best]
    return Prediction(labels, proba[np.arange(len(x)), best].astype(np.float64))


# ----------------------------------------------------------------------------------------------
# metrics


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, balanced accuracy (mean recall over classes present), per-class recall and the
    confusion matrix (rows true, columns predicted, in ``classes`` order)."""
    y_true, y_pred = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)
    k = len(classes)
    position = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        matrix[position[t], position[p]] += 1
    support = matrix.sum(axis=1)
    recall = {c: (float(matrix[i, i] / support[i]) if support[i] else None) for i, c in enumerate(classes)}
    present = [r for r in recall.values() if r is not None]
    n = int(len(y_true))
    return {
        "n": n,
        "accuracy": float(np.trace(matrix) / n) if n else None,
        "balanced_accuracy": float(np.mean(present)) if present else None,
        "recall": recall,
        "support": {c: int(s) for c, s in zip(classes, support)},
        "classes": list(classes),
        "confusion": matrix.tolist(),
    }


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, Any]:
    err = np.asarray(y_pred, dtype=np.float64) - np.asarray(y_true, dtype=np.float64)
    n = int(len(err))
    return {
        "n": n,
        "mae": float(np.mean(np.abs(err))) if n else None,
        "rmse": float(np.sqrt(np.mean(err**2))) if n else None,
        "bias": float(np.mean(err)) if n else None,
    }


def coverage_curve(y_true: Sequence[str], y_pred: Sequence[str], confidence: Sequence[float],
                   thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> list[dict[str, Any]]:
    """Abstain below each threshold: the share of faces kept (coverage) and accuracy on them."""
    y_true, y_pred = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = y_true == y_pred
    curve = []
    for t in thresholds:
        kept = confidence >= t
        n_kept = int(kept.sum())
        curve.append({
            "threshold": float(t),
            "kept": n_kept,
            "coverage": float(n_kept / len(kept)) if len(kept) else None,
            "accuracy": float(correct[kept].mean()) if n_kept else None,
        })
    return curve


def group_metrics(task: str, y_true: np.ndarray, y_pred: np.ndarray, groups: dict[str, Sequence]) -> dict[str, Any]:
    """Per group (e.g. race -> white, black ...): n and accuracy, or MAE for age. Images without
    a label for the grouping (None or NaN, e.g. CelebA's race) are in no group."""
    out: dict[str, Any] = {}
    for group_by, values in groups.items():
        names = np.array([None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values],
                         dtype=object)
        per: dict[str, Any] = {}
        for value in sorted({v for v in names if v is not None}):
            sel = names == value
            if is_regression(task):
                per[value] = {"n": int(sel.sum()), "mae": float(np.mean(np.abs(y_pred[sel] - y_true[sel])))}
            else:
                per[value] = {"n": int(sel.sum()), "accuracy": float(np.mean(y_pred[sel] == y_true[sel]))}
        out[group_by] = per
    return out


def evaluate(task: str, y_true: np.ndarray, prediction: Prediction, classes: Sequence[str] | None,
             groups: dict[str, Sequence], thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> dict[str, Any]:
    """Every metric of one head on one test set."""
    if is_regression(task):
        metrics = regression_metrics(y_true, prediction.predicted)
    else:
        metrics = classification_metrics(y_true, prediction.predicted, classes or [])
        metrics["coverage"] = coverage_curve(y_true, prediction.predicted, prediction.confidence, thresholds)
    metrics["by_group"] = group_metrics(task, y_true, prediction.predicted, groups)
    return metrics
