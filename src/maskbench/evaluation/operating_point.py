"""Decisions at one operating threshold: confusion matrix and classification report.

A deployed verifier accepts a pair when ``score >= threshold`` (as everywhere in maskbench), with
the threshold fixed beforehand. Fixing it on the pairs it is then judged on would flatter it, so
the threshold is always chosen on validation pairs — a separate validation set, or, under
cross-validation, the other folds — and the test pairs only count the decisions it makes.

Rules: ``eer`` takes the threshold of :func:`maskbench.evaluation.metrics.eer` on the validation scores;
``fmr`` the lowest threshold whose validation FMR does not exceed ``target``
(:func:`maskbench.evaluation.metrics.fnmr_at_fmr`).
"""

from __future__ import annotations

import math

import numpy as np

from maskbench.evaluation import metrics

RULES = ("eer", "fmr")
CLASS_NAMES = ("impostor", "genuine")  # label 0, label 1: the rows and columns of the matrix


def _check_rule(rule: str, target: float | None) -> float | None:
    if rule not in RULES:
        raise ValueError(f"operating point rule must be one of {RULES}, got {rule!r}")
    if rule == "eer":
        if target is not None:
            raise ValueError("the eer rule takes no target; use rule 'fmr' to fix a target FMR")
        return None
    if target is None:
        raise ValueError("the fmr rule needs a target FMR, e.g. target=1e-3")
    t = float(target)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"target FMR must be within [0, 1], got {target!r}")
    return t


def choose_threshold(val_genuine, val_impostor, rule: str = "eer", target: float | None = None) -> dict:
    """The threshold a rule picks on validation scores, with the validation rates there."""
    target = _check_rule(rule, target)
    if rule == "eer":
        point = metrics.eer(val_genuine, val_impostor)
        threshold, measurable = point.threshold, True
    else:
        op = metrics.fnmr_at_fmr(val_genuine, val_impostor, target)
        threshold, measurable = op.threshold, op.measurable
    fmr, fnmr = metrics.fixed_threshold_rates(val_genuine, val_impostor, threshold)
    return {"threshold": float(threshold), "fmr": fmr, "fnmr": fnmr, "measurable": bool(measurable),
            "n_genuine": int(np.size(val_genuine)), "n_impostor": int(np.size(val_impostor))}


def _test_arrays(scores, labels, scored=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores, labels, scored mask); an unscored pair's score (NaN) is replaced by 0, never read."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    ok = np.ones(s.shape, dtype=bool) if scored is None else np.asarray(scored, dtype=bool)
    if s.ndim != 1 or y.shape != s.shape or ok.shape != s.shape:
        raise ValueError(f"test scores, labels and the scored mask must be 1-d of equal length, got {s.shape}, "
                         f"{y.shape} and {ok.shape}")
    if s.size == 0:
        raise ValueError("no test scores")
    s = np.where(ok, s, 0.0)
    if not np.isfinite(s).all():
        raise ValueError(f"{int((~np.isfinite(s)).sum())} test score(s) are not finite; mark unscored pairs "
                         "in `scored`")
    if y.dtype != bool:
        if not np.isin(y, (0, 1)).all():
            raise ValueError("test labels must be booleans or 0/1 (1 = genuine)")
        y = y.astype(bool)
    return s, y, ok


def decisions(scores, threshold: float, scored=None) -> np.ndarray:
    """Accepted (genuine) where ``score >= threshold``; a pair without a score (``scored`` False: a
    failure to enrol) is rejected at every threshold, as NIST counts it."""
    accept = np.asarray(scores, dtype=np.float64) >= threshold
    return accept if scored is None else accept & np.asarray(scored, dtype=bool)


def _confusion(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """sklearn's ``confusion_matrix(y_true, y_pred, labels=[False, True])`` of boolean arrays,
    counted directly (sklearn encodes millions of labels one by one)."""
    t, p = np.asarray(y_true, dtype=bool), np.asarray(y_pred, dtype=bool)
    tp = np.count_nonzero(t & p)
    fn = np.count_nonzero(t) - tp
    fp = np.count_nonzero(p) - tp
    return np.array([[t.size - tp - fn - fp, fp], [fn, tp]], dtype=np.int64)


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den is 0 (an undefined rate is reported as such, never as 0)."""
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _weighted(values: np.ndarray, weights: np.ndarray) -> float:
    """Average of the defined values by their weights (plain mean if those weights are all 0)."""
    keep = ~np.isnan(values)
    if not keep.any():
        return float("nan")
    if not weights[keep].any():
        return float(np.mean(values[keep]))
    return float(np.average(values[keep], weights=weights[keep]))


def _report(cm: np.ndarray) -> dict:
    """The classification report of the decisions a confusion matrix counts (per class precision,
    recall, F1 and support; accuracy; macro and support-weighted averages), as scikit-learn's
    ``classification_report(..., output_dict=True, zero_division=np.nan)`` gives it: computed
    from the four counts in the same floating-point steps (tests/test_operating_point.py checks
    equality with scikit-learn), so a scoring job need not import scikit-learn (~1 s per job)."""
    (tn, fp), (fn, tp) = np.asarray(cm, dtype=np.float64)
    hits = np.array([tn, tp])  # per class (impostor, genuine): pairs of the class decided so
    decided = np.array([tn + fn, fp + tp])  # pairs decided as the class
    support = np.array([tn + fp, fn + tp])  # pairs truly of the class
    precision, recall = _divide(hits, decided), _divide(hits, support)
    f1 = _divide(2.0 * hits, support + decided)
    report = {name: {"precision": float(precision[k]), "recall": float(recall[k]), "f1-score": float(f1[k]),
                     "support": float(support[k])} for k, name in enumerate(CLASS_NAMES)}
    total = float(np.sum(support))
    report["accuracy"] = float(_divide(np.array([np.sum(hits)]), np.array([np.sum(decided)]))[0])
    # macro: the two classes weighted alike (their plain mean, as scikit-learn's nanmean)
    for average, weights in (("macro avg", np.ones(2)), ("weighted avg", support)):
        report[average] = {key: _weighted(v, weights)
                           for key, v in (("precision", precision), ("recall", recall), ("f1-score", f1))}
        report[average]["support"] = total
    return report


def _summary(y_true: np.ndarray, y_pred: np.ndarray, scores: np.ndarray, scored: np.ndarray) -> dict:
    """Confusion matrix, rates and sklearn's classification report of pooled test decisions."""
    cm = _confusion(y_true, y_pred)
    (tn, fp), (fn, tp) = cm.tolist()
    report = _report(cm)
    gen, imp = scores[y_true & scored], scores[~y_true & scored]
    return {
        "labels": list(CLASS_NAMES),
        "confusion_matrix": cm.tolist(),  # rows: true impostor, genuine; columns: decided so
        "fmr": fp / (tn + fp) if tn + fp else None,
        "fnmr": fn / (fn + tp) if fn + tp else None,
        "accuracy": (tn + tp) / cm.sum(),
        "classification_report": report,
        # HKUST's "IoU": overlap of the genuine and impostor score histograms of the test pairs
        "iou": metrics.histogram_overlap(gen, imp) if gen.size and imp.size else None,
        "n_test": int(y_true.size),
    }


def operating_report(val_genuine, val_impostor, test_scores, test_labels, rule: str = "eer",
                     target: float | None = None, scored=None) -> dict:
    """Threshold chosen on validation scores by ``rule``; decisions on the test pairs counted
    (``scored``: a mask of the pairs with a score; the others are rejected)."""
    s, y, ok = _test_arrays(test_scores, test_labels, scored)
    chosen = choose_threshold(val_genuine, val_impostor, rule, target)
    return {
        "method": "validation", "rule": rule, "target_fmr": _check_rule(rule, target),
        "threshold": chosen["threshold"],
        "validation": {k: v for k, v in chosen.items() if k != "threshold"},
        **_summary(y, decisions(s, chosen["threshold"], ok), s, ok),
    }


def cross_validated_report(scores, labels, folds, rule: str = "eer", target: float | None = None,
                           scored=None) -> dict:
    """Each fold's threshold chosen on the other folds' scored pairs; decisions pooled over the
    folds, so the confusion matrix is the sum of the folds' matrices (each listed under ``folds``);
    a pair without a score (``scored`` False) is rejected."""
    s, y, ok = _test_arrays(scores, labels, scored)
    target = _check_rule(rule, target)
    pred = np.empty_like(y)
    per_fold = []
    for name, test, val_g, val_i in metrics.cross_validation_folds(s, y, folds, ok):
        chosen = choose_threshold(val_g, val_i, rule, target)
        pred[test] = decisions(s[test], chosen["threshold"], ok[test])
        per_fold.append({
            "fold": name,
            "threshold": chosen["threshold"], "validation_fmr": chosen["fmr"],
            "validation_fnmr": chosen["fnmr"], "measurable": chosen["measurable"],
            "confusion_matrix": _confusion(y[test], pred[test]).tolist(),
        })
    return {"method": "cross_validation", "rule": rule, "target_fmr": target, "folds": per_fold,
            **_summary(y, pred, s, ok)}


def json_safe(value):
    """``value`` with every non-finite float (NaN: undefined, e.g. precision without any
    acceptance; inf: accept nothing) replaced by None, as JSON has no such numbers."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value
