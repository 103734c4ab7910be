"""Is this probe masked? A logistic regression on a face model's embedding, giving P(masked).

A mask-aware model needs to know, per probe, how much to trust the full face: a mask moves a
face's embedding in a consistent direction (the same lower half is hidden on everyone), so a
linear classifier on the embeddings a model already caches finds it without a network of its own.
It learns on the train identities' bare embeddings against their synthetic masked ones (every
mask type, balanced by class weights), and its probability is calibrated on the val identities
(Platt scaling of its logit), so P(masked) means the same on people it never saw. Nothing of the
test identities is read. The classifier is a few hundred numbers, kept as JSON (exact float
reprs: the same training data gives the same bytes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from maskbench.io.atomic import write_json

__all__ = ["MaskClassifier", "fit_mask_classifier", "load_mask_classifier"]

THRESHOLD = 0.5
"""P(masked) at or above which a probe is called masked (the probability is calibrated on val)."""


@dataclass(frozen=True)
class MaskClassifier:
    """Standardisation, a linear logit and its Platt calibration: P = sigmoid(a * logit + b)."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    calibration: tuple[float, float]
    threshold: float = THRESHOLD
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.coef.size)

    def logit(self, vectors: np.ndarray) -> np.ndarray:
        x = np.asarray(vectors, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"the mask classifier reads {self.dim}-d embeddings, got an array of shape {x.shape}")
        return ((x - self.mean) / self.scale) @ self.coef + self.intercept

    def probability(self, vectors: np.ndarray) -> np.ndarray:
        """Calibrated P(masked) of each row."""
        a, b = self.calibration
        return _sigmoid(a * self.logit(vectors) + b)

    def is_masked(self, vectors: np.ndarray) -> np.ndarray:
        return self.probability(vectors) >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist(), "coef": self.coef.tolist(),
                "intercept": self.intercept, "calibration": list(self.calibration), "threshold": self.threshold,
                "report": self.report}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MaskClassifier:
        try:
            coef = np.asarray(data["coef"], dtype=np.float64)
            out = cls(mean=np.asarray(data["mean"], dtype=np.float64), scale=np.asarray(data["scale"], dtype=np.float64),
                      coef=coef, intercept=float(data["intercept"]),
                      calibration=(float(data["calibration"][0]), float(data["calibration"][1])),
                      threshold=float(data.get("threshold", THRESHOLD)), report=dict(data.get("report") or {}))
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise ValueError(f"not a mask classifier: {exc!r}") from None
        if not (out.mean.shape == out.scale.shape == coef.shape) or coef.ndim != 1:
            raise ValueError("not a mask classifier: mean, scale and coef must be vectors of one length")
        return out

    def save(self, path: str) -> None:
        write_json(path, self.to_dict())


def load_mask_classifier(path: str) -> MaskClassifier:
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not a mask classifier file ({exc})") from None
    try:
        return MaskClassifier.from_dict(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


def _check(vectors: np.ndarray, masked: np.ndarray, part: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(vectors, dtype=np.float64)
    y = np.asarray(masked, dtype=bool)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"{part}: need one label per embedding row, got {x.shape} rows and {y.shape} labels")
    if not np.isfinite(x).all():
        raise ValueError(f"{part}: embeddings with NaN or inf")
    if y.all() or not y.any():
        raise ValueError(f"{part}: needs both bare and masked embeddings ({int(y.sum())} masked of {y.size})")
    return x, y


def _rates(p: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, float]:
    from sklearn.metrics import balanced_accuracy_score, log_loss

    called = p >= threshold
    return {"masked_called_masked": float(called[y].mean()), "bare_called_bare": float((~called[~y]).mean()),
            "balanced_accuracy": float(balanced_accuracy_score(y, called)),
            "log_loss": float(log_loss(y, np.clip(p, 1e-12, 1 - 1e-12), labels=[False, True]))}


def fit_mask_classifier(train_vectors: np.ndarray, train_masked: np.ndarray, val_vectors: np.ndarray,
                        val_masked: np.ndarray, c: float = 1.0) -> MaskClassifier:
    """Fit on train (bare = False, masked = True), calibrate on val; both are people of their own
    split part. Deterministic (lbfgs, no random state involved)."""
    from sklearn.linear_model import LogisticRegression

    x, y = _check(train_vectors, train_masked, "train")
    xv, yv = _check(val_vectors, val_masked, "val")
    if xv.shape[1] != x.shape[1]:
        raise ValueError(f"train embeddings are {x.shape[1]}-d but val ones {xv.shape[1]}-d")
    if not c > 0:
        raise ValueError(f"C must be positive, got {c}")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
    model.fit((x - mean) / scale, y)
    raw = MaskClassifier(mean=mean, scale=scale, coef=model.coef_[0].astype(np.float64),
                         intercept=float(model.intercept_[0]), calibration=(1.0, 0.0))
    # Platt scaling on val, balanced like the fit so the prior of the training mix is not learnt
    platt = LogisticRegression(C=1e4, class_weight="balanced", max_iter=2000)
    platt.fit(raw.logit(xv)[:, None], yv)
    calibration = (float(platt.coef_[0, 0]), float(platt.intercept_[0]))
    if not calibration[0] > 0:
        raise ValueError("the classifier's logit does not separate masked from bare faces on val "
                         f"(calibration slope {calibration[0]:.3g}): the base model's embeddings carry no mask signal")
    fitted = MaskClassifier(mean=mean, scale=scale, coef=raw.coef, intercept=raw.intercept, calibration=calibration)
    report = {
        "C": float(c),
        "train": {"bare": int((~y).sum()), "masked": int(y.sum()), **_rates(fitted.probability(x), y, THRESHOLD)},
        "val": {"bare": int((~yv).sum()), "masked": int(yv.sum()), **_rates(fitted.probability(xv), yv, THRESHOLD)},
    }
    return MaskClassifier(mean=mean, scale=scale, coef=raw.coef, intercept=raw.intercept, calibration=calibration,
                          report=report)
