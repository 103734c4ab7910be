"""Operating-point reports against counting decisions by hand."""

from __future__ import annotations

import numpy as np
import pytest

from maskbench.evaluation import metrics
from maskbench.evaluation.operating_point import (
    choose_threshold,
    cross_validated_report,
    json_safe,
    operating_report,
)


def sample(n_gen: int, n_imp: int, seed: int, shift: float = 2.0):
    rng = np.random.default_rng(seed)
    gen = np.round(rng.normal(shift, 1.0, n_gen), 2)  # rounded: ties at the threshold happen
    imp = np.round(rng.normal(0.0, 1.0, n_imp), 2)
    scores = np.concatenate([gen, imp])
    labels = np.concatenate([np.ones(n_gen, bool), np.zeros(n_imp, bool)])
    order = rng.permutation(scores.size)
    return scores[order], labels[order]


def counts(scores, labels, t):
    """(tn, fp, fn, tp) with acceptance at score >= t, counted directly."""
    accept = scores >= t
    return (int(np.sum(~labels & ~accept)), int(np.sum(~labels & accept)),
            int(np.sum(labels & ~accept)), int(np.sum(labels & accept)))


def test_threshold_comes_from_validation_and_decisions_are_counted_on_test():
    val_s, val_y = sample(80, 300, seed=0)
    test_s, test_y = sample(60, 200, seed=1, shift=1.0)  # a harder test set: its EER threshold differs
    report = operating_report(val_s[val_y], val_s[~val_y], test_s, test_y)
    t = metrics.eer(val_s[val_y], val_s[~val_y]).threshold
    assert report["threshold"] == t
    assert t != metrics.eer(test_s[test_y], test_s[~test_y]).threshold
    tn, fp, fn, tp = counts(test_s, test_y, t)
    assert report["confusion_matrix"] == [[tn, fp], [fn, tp]]
    assert report["labels"] == ["impostor", "genuine"]
    assert report["fmr"] == fp / (tn + fp)
    assert report["fnmr"] == fn / (fn + tp)
    assert report["accuracy"] == (tn + tp) / test_s.size
    cr = report["classification_report"]
    assert cr["genuine"]["precision"] == pytest.approx(tp / (tp + fp))
    assert cr["genuine"]["recall"] == pytest.approx(tp / (tp + fn))
    assert cr["impostor"]["recall"] == pytest.approx(tn / (tn + fp))
    assert cr["impostor"]["support"] == tn + fp
    assert cr["accuracy"] == pytest.approx((tn + tp) / test_s.size)
    vfmr, vfnmr = np.mean(val_s[~val_y] >= t), np.mean(val_s[val_y] < t)
    assert report["validation"]["fmr"] == vfmr and report["validation"]["fnmr"] == vfnmr


def test_test_scores_do_not_move_the_threshold():
    val_s, val_y = sample(50, 200, seed=2)
    a = operating_report(val_s[val_y], val_s[~val_y], *sample(40, 100, seed=3))
    b = operating_report(val_s[val_y], val_s[~val_y], *sample(40, 100, seed=4, shift=-1.0))
    assert a["threshold"] == b["threshold"]


def test_a_score_equal_to_the_threshold_is_accepted():
    report = operating_report([1.0, 2.0], [0.0, 0.5], [1.0, 1.0, 0.99], [True, False, True])
    t = report["threshold"]
    assert t == 1.0
    assert report["confusion_matrix"] == [[0, 1], [1, 1]]


def test_fmr_rule_keeps_validation_fmr_within_target():
    val_s, val_y = sample(100, 1000, seed=5)
    test_s, test_y = sample(100, 1000, seed=6)
    report = operating_report(val_s[val_y], val_s[~val_y], test_s, test_y, rule="fmr", target=0.01)
    imp = val_s[~val_y]
    t = report["threshold"]
    assert np.mean(imp >= t) <= 0.01
    assert report["validation"]["fmr"] == np.mean(imp >= t)
    lower = np.max(imp[imp < t])  # the next candidate down would exceed the target
    assert np.mean(imp >= lower) > 0.01
    assert report["target_fmr"] == 0.01 and report["validation"]["measurable"]
    tn, fp, fn, tp = counts(test_s, test_y, t)
    assert report["confusion_matrix"] == [[tn, fp], [fn, tp]]


def test_iou_is_the_test_histogram_overlap():
    same = operating_report([1.0, 2.0], [0.0], [0.0, 1.0, 0.0, 1.0], [True, True, False, False])
    assert same["iou"] == 1.0
    apart = operating_report([1.0, 2.0], [0.0], [5.0, 6.0, 0.0, 1.0], [True, True, False, False])
    assert apart["iou"] == 0.0
    # one genuine histogram bin of two, half the impostors in each of two bins: overlap 1/2, union 3/2
    third = operating_report([1.0, 2.0], [0.0], [0.0, 0.0, 0.0, 1.0], [True, True, False, False])
    assert third["iou"] == pytest.approx((0.5) / (1.0 + 0.5))


def test_cross_validation_picks_each_folds_threshold_on_the_other_folds():
    scores, labels = sample(90, 300, seed=7)
    folds = np.arange(scores.size) % 3
    report = cross_validated_report(scores, labels, folds)
    total = np.zeros(4, int)
    for entry, k in zip(report["folds"], range(3)):
        rest = folds != k
        t = metrics.eer(scores[rest & labels], scores[rest & ~labels]).threshold
        assert entry["fold"] == k and entry["threshold"] == t
        c = counts(scores[~rest], labels[~rest], t)
        assert entry["confusion_matrix"] == [[c[0], c[1]], [c[2], c[3]]]
        total += c
    tn, fp, fn, tp = total.tolist()
    assert report["confusion_matrix"] == [[tn, fp], [fn, tp]]
    assert report["fmr"] == fp / (tn + fp) and report["fnmr"] == fn / (fn + tp)
    assert report["classification_report"]["genuine"]["precision"] == pytest.approx(tp / (tp + fp))
    assert report["n_test"] == scores.size


def test_accepting_everything_leaves_impostor_precision_undefined_not_zero():
    report = operating_report([1.0], [0.0], [5.0, 6.0], [True, False])
    assert report["confusion_matrix"] == [[0, 1], [0, 1]]
    safe = json_safe(report)
    assert safe["classification_report"]["impostor"]["precision"] is None
    assert safe["classification_report"]["genuine"]["precision"] == 0.5


@pytest.mark.parametrize("kwargs, message", [
    ({"rule": "median"}, "rule must be one of"),
    ({"rule": "fmr"}, "needs a target FMR"),
    ({"rule": "eer", "target": 0.1}, "takes no target"),
    ({"rule": "fmr", "target": 2.0}, r"within \[0, 1\]"),
])
def test_bad_rules_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        choose_threshold([1.0], [0.0], **kwargs)


def test_cross_validation_errors():
    with pytest.raises(ValueError, match="at least 2 folds"):
        cross_validated_report([1.0, 0.0], [True, False], [0, 0])
    with pytest.raises(ValueError, match="other than 1 lack genuine or impostor"):
        cross_validated_report([1.0, 0.9, 0.0, 0.5], [True, True, False, True], [0, 0, 1, 1])
    with pytest.raises(ValueError, match="not finite"):
        operating_report([1.0], [0.0], [np.nan, 1.0], [True, False])


@pytest.mark.parametrize("seed", range(6))
def test_counted_confusion_and_report_equal_sklearns(seed):
    """The confusion matrix counted with numpy and the report computed from its four counts are
    sklearn's own on the decisions, value for value (degenerate cases included)."""
    import json

    from sklearn.metrics import classification_report, confusion_matrix

    from maskbench.evaluation.operating_point import CLASS_NAMES, _confusion, _report

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    y, pred = rng.random(n) < rng.random(), rng.random(n) < rng.random()
    if seed == 1:
        pred[:] = False  # nothing accepted: precision undefined
    if seed == 2:
        y[:] = True  # no impostor pair
    expected = confusion_matrix(y, pred, labels=[False, True])
    assert _confusion(y, pred).tolist() == expected.tolist()
    report = classification_report(y, pred, labels=[False, True], target_names=list(CLASS_NAMES),
                                   output_dict=True, zero_division=np.nan)
    assert json.dumps(_report(expected), sort_keys=True) == json.dumps(report, sort_keys=True)


def test_classification_report_equals_scikit_learns_to_the_bit():
    """The report is computed without scikit-learn (scoring jobs skip its import); it must be the
    very dict scikit-learn gives for the same four counts, undefined rates (NaN) included."""
    import json
    import math

    from sklearn.metrics import classification_report

    from maskbench.evaluation.operating_point import CLASS_NAMES, _report

    rng = np.random.default_rng(7)
    cases = [(0, 0, 0, 1), (0, 0, 1, 0), (0, 1, 0, 0), (1, 0, 0, 0), (0, 0, 0, 0), (5, 0, 0, 0), (0, 3, 4, 0),
             (7_800_000, 12, 30_000, 520), (3, 3, 3, 3)]
    cases += [tuple(int(v) for v in rng.integers(0, hi, 4) * (rng.random(4) > 0.2))
              for hi in (3, 10, 1000, 10**7) for _ in range(250)]
    same = lambda a, b: json.dumps(a, sort_keys=False) == json.dumps(b, sort_keys=False)  # NaN == NaN here
    for tn, fp, fn, tp in cases:
        cm = np.array([[tn, fp], [fn, tp]])
        ours = _report(cm)
        if tn + fp + fn + tp == 0:  # scikit-learn refuses an all-zero weighting; ours says NaN
            assert math.isnan(ours["accuracy"]) and ours["macro avg"]["support"] == 0.0
            continue
        theirs = classification_report(np.array([False, False, True, True]), np.array([False, True, False, True]),
                                       labels=[False, True], target_names=list(CLASS_NAMES), output_dict=True,
                                       zero_division=np.nan,
                                       sample_weight=np.array([tn, fp, fn, tp], dtype=np.float64))
        assert same(ours, theirs), (tn, fp, fn, tp, ours, theirs)
