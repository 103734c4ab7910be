"""Verification metrics against plain brute-force references and scikit-learn."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score, roc_curve

from maskbench.evaluation import metrics

# ---------------------------------------------------------------------------------------------
# brute-force references: every candidate threshold, every score compared, exact fractions


def rates_at(g, i, t):
    fa = sum(1 for x in i if x >= t)
    fr = sum(1 for x in g if x < t)
    return Fraction(fa, len(i)), Fraction(fr, len(g))


def candidate_thresholds(g, i):
    return sorted(set(map(float, g)) | set(map(float, i))) + [math.inf]


def brute_eer(g, i):
    def key(t):
        fmr, fnmr = rates_at(g, i, t)
        return abs(fmr - fnmr), max(fmr, fnmr), t
    t = min(candidate_thresholds(g, i), key=key)
    fmr, fnmr = rates_at(g, i, t)
    return float((fmr + fnmr) / 2), t


def brute_fnmr_at_fmr(g, i, target):
    """Rates at the lowest candidate threshold whose FMR (as a float) is within the target."""
    for t in candidate_thresholds(g, i):
        fa = sum(1 for x in i if x >= t)
        if fa / len(i) <= target:
            return rates_at(g, i, t), t
    raise AssertionError("+inf always qualifies")


def brute_rocch_eer(g, i):
    """Min over pairs of step-curve points on opposite sides of FMR = FNMR of the point where their
    segment crosses it: every such point lies in the hull, and the hull's crossing is one of them."""
    pts = [rates_at(g, i, t) for t in candidate_thresholds(g, i)]
    left = [p for p in pts if p[0] <= p[1]]
    right = [p for p in pts if p[0] >= p[1]]
    best = Fraction(1)
    for xa, ya in left:
        for xb, yb in right:
            den = (ya - xa) + (xb - yb)
            t = xa if den == 0 else xa + (ya - xa) / den * (xb - xa)
            best = min(best, t)
    return float(best), pts


def brute_best_accuracy(g, i):
    n = len(g) + len(i)
    return max(Fraction(sum(x >= t for x in g) + sum(x < t for x in i), n)
               for t in candidate_thresholds(g, i))


# ---------------------------------------------------------------------------------------------
# score sets

tied = st.lists(st.integers(-6, 6).map(float), min_size=1, max_size=25)
spread = st.lists(st.floats(-100, 100, allow_nan=False, width=32), min_size=1, max_size=25)
score_lists = st.one_of(tied, spread)

ADVERSARIAL = {
    "all equal": ([0.5, 0.5], [0.5, 0.5, 0.5]),
    "separable": ([2.0, 3.0], [0.0, 1.0]),
    "inverted": ([0.0, 1.0], [2.0, 3.0]),
    "one each": ([1.0], [0.0]),
    "one each inverted": ([0.0], [1.0]),
    "one each tied": ([1.0], [1.0]),
    "many ties": ([1.0, 1.0, 2.0, 2.0, 2.0, 3.0], [0.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0]),
    "touching": ([1.0, 2.0], [0.0, 1.0]),
}


def random_scores(seed=0, n=400, m=3000, decimals=None):
    rng = np.random.default_rng(seed)
    g, i = rng.normal(1.5, 1.0, n), rng.normal(0.0, 1.0, m)
    if decimals is not None:
        g, i = np.round(g, decimals), np.round(i, decimals)
    return g, i


def sk_labels(g, i):
    return np.r_[np.ones(len(g)), np.zeros(len(i))], np.r_[g, i]


# ---------------------------------------------------------------------------------------------
# error_rates


@pytest.mark.parametrize("decimals", [None, 1])
def test_error_rates_match_sklearn_roc_curve(decimals):
    g, i = random_scores(decimals=decimals)
    y, s = sk_labels(g, i)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    rates = metrics.error_rates(g, i)
    np.testing.assert_array_equal(rates.thresholds, thr)
    np.testing.assert_allclose(rates.fmr, fpr, rtol=0, atol=1e-15)
    np.testing.assert_allclose(rates.fnmr, 1 - tpr, rtol=0, atol=1e-15)
    assert (rates.fmr[0], rates.fnmr[0], rates.fmr[-1], rates.fnmr[-1]) == (0, 1, 1, 0)


@settings(max_examples=60, deadline=None)
@given(score_lists, score_lists)
def test_error_rates_match_brute_force(g, i):
    rates = metrics.error_rates(g, i)
    assert list(rates.thresholds) == candidate_thresholds(g, i)[::-1]
    for t, fmr, fnmr in zip(rates.thresholds, rates.fmr, rates.fnmr):
        assert (fmr, fnmr) == tuple(float(r) for r in rates_at(g, i, t))


def test_sorted_and_unsorted_input_agree():
    g, i = random_scores(seed=3, decimals=2)
    gs, is_ = np.sort(g), np.sort(i)
    assert metrics.eer(g, i) == metrics.eer(gs, is_)
    assert metrics.eer_convex_hull(g, i) == metrics.eer_convex_hull(gs, is_)
    assert metrics.fnmr_at_fmr(g, i, 1e-2) == metrics.fnmr_at_fmr(gs, is_, 1e-2)
    assert metrics.roc_auc(g, i) == metrics.roc_auc(gs, is_)
    assert metrics.best_accuracy(g, i) == metrics.best_accuracy(gs, is_)


# ---------------------------------------------------------------------------------------------
# EER


@settings(max_examples=150, deadline=None)
@given(score_lists, score_lists)
def test_eer_matches_brute_force(g, i):
    result = metrics.eer(g, i)
    expected, threshold = brute_eer(g, i)
    assert result.eer == pytest.approx(expected, abs=1e-15)
    assert result.threshold == threshold
    fmr, fnmr = rates_at(g, i, threshold)
    assert (result.fmr, result.fnmr) == (float(fmr), float(fnmr))
    assert 0.0 <= result.eer <= 1.0


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_eer_adversarial_sets_match_brute_force(name):
    g, i = ADVERSARIAL[name]
    expected, threshold = brute_eer(g, i)
    result = metrics.eer(g, i)
    assert (result.eer, result.threshold) == (pytest.approx(expected), threshold)


def test_eer_known_values():
    assert metrics.eer([2.0, 3.0], [0.0, 1.0]) == metrics.EER(eer=0.0, threshold=2.0, fmr=0.0, fnmr=0.0)
    assert metrics.eer([0.0, 1.0], [2.0, 3.0]).eer == 1.0
    # all scores equal: accept-all (1, 0) and reject-all (0, 1) tie; the lower threshold wins
    assert metrics.eer([0.5] * 2, [0.5] * 3) == metrics.EER(eer=0.5, threshold=0.5, fmr=1.0, fnmr=0.0)
    # ties at 1.0 are accepted: threshold 1 accepts the impostor at 1 and both genuine scores
    assert metrics.eer([1.0, 2.0], [0.0, 1.0]) == metrics.EER(eer=0.25, threshold=1.0, fmr=0.5, fnmr=0.0)


@settings(max_examples=80, deadline=None)
@given(tied, tied)
def test_eer_invariant_under_monotone_transform(g, i):
    def f(x):
        return np.exp(np.asarray(x) / 3.0) + np.asarray(x) ** 3
    before, after = metrics.eer(g, i), metrics.eer(f(g), f(i))
    assert (after.eer, after.fmr, after.fnmr) == (before.eer, before.fmr, before.fnmr)
    assert after.threshold == (math.inf if before.threshold == math.inf else float(f(before.threshold)))


def test_eer_on_gaussians_is_near_theory():
    # genuine N(2, 1), impostor N(0, 1): the EER is Phi(-1)
    rng = np.random.default_rng(7)
    result = metrics.eer(rng.normal(2, 1, 200_000), rng.normal(0, 1, 200_000))
    assert result.eer == pytest.approx(0.158655, abs=3e-3)
    assert result.threshold == pytest.approx(1.0, abs=0.02)


# ---------------------------------------------------------------------------------------------
# ROCCH-EER


@settings(max_examples=100, deadline=None)
@given(score_lists, score_lists)
def test_rocch_eer_matches_brute_force(g, i):
    expected, points = brute_rocch_eer(g, i)
    got = metrics.eer_convex_hull(g, i)
    assert got == pytest.approx(expected, abs=1e-12)
    # the hull lies below every step point and the chance line
    assert got <= min(float(max(x, y)) for x, y in points) + 1e-12
    assert got >= min(float(x + y) / 2 for x, y in points) - 1e-12
    assert got <= 0.5 + 1e-12


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_rocch_eer_adversarial_sets_match_brute_force(name):
    g, i = ADVERSARIAL[name]
    assert metrics.eer_convex_hull(g, i) == pytest.approx(brute_rocch_eer(g, i)[0], abs=1e-12)


def test_rocch_eer_known_values():
    assert metrics.eer_convex_hull([2.0, 3.0], [0.0, 1.0]) == 0.0
    assert metrics.eer_convex_hull([0.0, 1.0], [2.0, 3.0]) == 0.5  # inverted: hull is chance
    assert metrics.eer_convex_hull([0.5], [0.5]) == 0.5
    # points (0, 1), (0, 1/2), (1/2, 0), (1, 0): the hull edge from (0, 1/2) to (1/2, 0) crosses at 1/4
    assert metrics.eer_convex_hull([1.0, 3.0], [0.0, 2.0]) == 0.25


def test_rocch_eer_large_random_matches_pair_search_on_hull():
    g, i = random_scores(seed=5, n=3000, m=20000, decimals=2)
    rates = metrics.error_rates(g, i)
    x, y = rates.fmr, rates.fnmr
    # same min-over-pairs definition, vectorised over one side
    left = np.flatnonzero(x <= y)
    right = np.flatnonzero(x >= y)
    best = 1.0
    for a in left:
        den = (y[a] - x[a]) + (x[right] - y[right])
        with np.errstate(invalid="ignore", divide="ignore"):
            t = np.where(den == 0, x[a], x[a] + (y[a] - x[a]) / den * (x[right] - x[a]))
        best = min(best, float(t.min()))
    assert metrics.eer_convex_hull(g, i) == pytest.approx(best, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# FNMR at FMR

targets = st.one_of(st.sampled_from([0.0, 1e-3, 0.01, 0.05, 0.1, 0.29, 0.5, 1.0]),
                    st.floats(0.0, 1.0, allow_nan=False))


@settings(max_examples=150, deadline=None)
@given(score_lists, score_lists, targets)
def test_fnmr_at_fmr_matches_brute_force(g, i, target):
    point = metrics.fnmr_at_fmr(g, i, target)
    (fmr, fnmr), t = brute_fnmr_at_fmr(g, i, target)
    assert (point.fmr, point.fnmr) == (float(fmr), float(fnmr))
    assert point.fmr <= target
    assert point.threshold <= t
    # the reported threshold gives the reported rates, and no lower threshold keeps FMR <= target
    assert metrics.fixed_threshold_rates(g, i, point.threshold) == (point.fmr, point.fnmr)
    if point.fmr < 1.0:
        lower = np.nextafter(point.threshold, -np.inf)
        assert metrics.fixed_threshold_rates(g, i, lower)[0] > target


def test_fnmr_at_fmr_zero_is_just_above_the_highest_impostor():
    g, i = random_scores(seed=2)
    point = metrics.fnmr_at_fmr(g, i, 0.0)
    assert point.fmr == 0.0 and point.measurable
    assert point.threshold == np.nextafter(i.max(), np.inf)
    assert point.fnmr == np.mean(g <= i.max())


def test_fnmr_at_fmr_measurable_needs_one_over_target_impostors():
    g = np.linspace(0, 1, 50)
    assert not metrics.fnmr_at_fmr(g, np.linspace(0, 1, 999), 1e-3).measurable
    point = metrics.fnmr_at_fmr(g, np.linspace(0, 1, 1000), 1e-3)
    assert point.measurable and point.n_impostor == 1000 and point.fmr == 1e-3


def test_fnmr_at_fmr_allows_exactly_target_share_of_false_matches():
    # 0.29 * 100 is 28.999999999999996 in floating point: still 29 false matches allowed
    point = metrics.fnmr_at_fmr([1.0], np.arange(100.0), 0.29)
    assert point.fmr == 0.29 and point.threshold == np.nextafter(70.0, np.inf)


def test_fnmr_at_fmr_one_accepts_everything():
    point = metrics.fnmr_at_fmr([0.2, 3.0], [1.0, 2.0], 1.0)
    assert (point.fmr, point.fnmr, point.threshold) == (1.0, 0.0, 0.2)


def test_fnmr_at_fmr_many_shares_order_and_values():
    g, i = random_scores(seed=4, decimals=2)
    wanted = (1e-2, 0.0, 1e-3, 1e-5, 0.1)
    many = metrics.fnmr_at_fmr_many(g, i, wanted)
    assert [p.target_fmr for p in many] == list(wanted)
    assert many == [metrics.fnmr_at_fmr(g, i, t) for t in wanted]
    assert [p.measurable for p in many] == [True, True, True, False, True]  # 3000 impostors


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_fnmr_at_fmr_rejects_bad_targets(bad):
    with pytest.raises(ValueError, match="target FMR"):
        metrics.fnmr_at_fmr([1.0], [0.0], bad)


# ---------------------------------------------------------------------------------------------
# fixed thresholds and NISTIR 8311


def test_fixed_threshold_accepts_ties():
    assert metrics.fixed_threshold_rates([1.0, 2.0], [0.0, 1.0, 1.0, 3.0], 1.0) == (0.75, 0.0)
    assert metrics.fixed_threshold_rates([1.0, 2.0], [0.0, 1.0, 1.0, 3.0], 1.5) == (0.25, 0.5)


def test_nist_masked_probe_fixes_threshold_on_unmasked_impostors():
    rng = np.random.default_rng(11)
    unmasked_imp = rng.normal(0, 1, 10_000)
    masked_gen, masked_imp = rng.normal(1.0, 1.2, 3000), rng.normal(0.3, 1.0, 10_000)
    result = metrics.nist_masked_probe(unmasked_imp, masked_gen, masked_imp, 1e-3)
    fixed = metrics.fnmr_at_fmr([0.0], unmasked_imp, 1e-3)
    assert result.threshold == fixed.threshold and result.measurable
    assert (result.fmr, result.fnmr) == metrics.fixed_threshold_rates(masked_gen, masked_imp, fixed.threshold)
    assert result.fmr > 1e-3  # masked impostors score higher: the fixed threshold lets more through
    counts = (result.n_unmasked_impostor, result.n_masked_genuine, result.n_masked_impostor)
    assert counts == (10_000, 3000, 10_000)
    assert not metrics.nist_masked_probe(unmasked_imp, masked_gen, masked_imp, 1e-5).measurable


def test_nist_masked_probe_small_case():
    # 4 unmasked impostors, target 0.25: one false match allowed, threshold just above 0.6
    result = metrics.nist_masked_probe([0.1, 0.6, 0.7, 0.2], [0.65, 0.9, 0.5], [0.61, 0.0], 0.25)
    assert result.threshold == np.nextafter(0.6, 1.0)
    assert (result.fmr, result.fnmr) == (0.5, pytest.approx(1 / 3))  # 0.61 matches; 0.5 does not


def test_nist_masked_probe_counts_failures_to_enrol_whatever_the_threshold():
    """Failures passed as counts: a genuine one a non-match, an impostor one a rejection, also where
    no pair of a class was scored (it needed stand-in scores, which a low threshold accepted)."""
    result = metrics.nist_masked_probe([0.1, 0.6, 0.7, 0.2], [0.65, 0.9, 0.5], [0.61, 0.0], 0.25,
                                       fte_genuine=1, fte_impostor=2)
    assert (result.fmr, result.fnmr) == (0.25, 0.5)  # 1 of 4 impostors matches; 0.5 and the failure miss
    assert (result.n_masked_genuine, result.n_masked_impostor) == (4, 4)
    everyone_failed = metrics.nist_masked_probe([0.1, 0.6, 0.7, 0.2], [], [], 1.0, fte_genuine=3, fte_impostor=5)
    assert everyone_failed.threshold == -np.inf and (everyone_failed.fmr, everyone_failed.fnmr) == (0.0, 1.0)
    assert metrics.nist_threshold([0.1, 0.6, 0.7, 0.2], 0.25) == (result.threshold, result.measurable)
    with pytest.raises(ValueError, match="none failed to enrol"):
        metrics.nist_masked_probe([0.1], [], [0.2], 0.5)


# ---------------------------------------------------------------------------------------------
# AUC, d', accuracy, overlap


@settings(max_examples=100, deadline=None)
@given(score_lists, score_lists)
def test_roc_auc_matches_sklearn(g, i):
    y, s = sk_labels(g, i)
    assert metrics.roc_auc(g, i) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_roc_auc_known_values():
    assert metrics.roc_auc([2.0, 3.0], [0.0, 1.0]) == 1.0
    assert metrics.roc_auc([0.0, 1.0], [2.0, 3.0]) == 0.0
    assert metrics.roc_auc([1.0, 1.0], [1.0]) == 0.5
    assert metrics.roc_auc([1.0, 2.0], [1.0, 0.0]) == 0.875  # 3 wins and 1 tie of 4


def test_roc_auc_matches_sklearn_on_large_tied_set():
    g, i = random_scores(seed=8, n=5000, m=50_000, decimals=1)
    y, s = sk_labels(g, i)
    assert metrics.roc_auc(g, i) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_d_prime_values():
    assert metrics.d_prime([1.0, 3.0], [-1.0, 1.0]) == 2.0  # means 2 and 0, variances 1 and 1
    assert metrics.d_prime([-1.0, 1.0], [1.0, 3.0]) == 2.0
    assert metrics.d_prime([1.0], [0.0]) == math.inf
    assert math.isnan(metrics.d_prime([1.0], [1.0]))


@settings(max_examples=100, deadline=None)
@given(score_lists, score_lists)
def test_best_accuracy_matches_brute_force(g, i):
    accuracy, threshold = metrics.best_accuracy(g, i)
    assert accuracy == pytest.approx(float(brute_best_accuracy(g, i)), abs=1e-15)
    fmr, fnmr = rates_at(g, i, threshold)
    assert accuracy == pytest.approx(float(1 - (fmr * len(i) + fnmr * len(g)) / (len(g) + len(i))))


def test_best_accuracy_known_values():
    assert metrics.best_accuracy([2.0, 3.0], [0.0, 1.0]) == (1.0, 2.0)
    assert metrics.best_accuracy([0.0], [1.0, 2.0]) == (pytest.approx(2 / 3), math.inf)


def test_histogram_overlap():
    assert metrics.histogram_overlap([1.0, 2.0, 3.0], [3.0, 1.0, 2.0]) == 1.0
    assert metrics.histogram_overlap([10.0, 11.0], [0.0, 1.0]) == 0.0
    g, i = random_scores(seed=9)
    hg = np.histogram(g, bins=20, range=(min(g.min(), i.min()), max(g.max(), i.max())))[0] / g.size
    hi = np.histogram(i, bins=20, range=(min(g.min(), i.min()), max(g.max(), i.max())))[0] / i.size
    expected = np.minimum(hg, hi).sum() / np.maximum(hg, hi).sum()
    assert metrics.histogram_overlap(g, i, bins=20) == pytest.approx(expected)
    assert 0.0 < metrics.histogram_overlap(g, i, bins=20) < 1.0
    assert metrics.histogram_overlap([0.5, 0.5], [0.5]) == 1.0  # one value: one bin


# ---------------------------------------------------------------------------------------------
# LFW k-fold accuracy


def test_kfold_accuracy_constructed_case():
    # fold A: g .9, i .1; fold B: g .8, i .2; fold C: g .45 .7, i .55 .3
    scores = [0.9, 0.1, 0.8, 0.2, 0.45, 0.7, 0.55, 0.3]
    labels = [1, 0, 1, 0, 1, 1, 0, 0]
    folds = ["A", "A", "B", "B", "C", "C", "C", "C"]
    result = metrics.kfold_accuracy(scores, labels, folds)
    # A and B: thresholds 0.7 and 0.45 tie on the training folds; the higher (0.7) is taken and moved
    # to the middle of (0.55, 0.7]: 0.625. C: training is separable in (0.2, 0.8]: middle 0.5.
    assert result.thresholds == pytest.approx((0.625, 0.625, 0.5))
    assert result.fold_accuracies == (1.0, 1.0, 0.5)
    assert result.mean == pytest.approx(2.5 / 3)
    assert result.std_error == pytest.approx(np.std([1, 1, 0.5], ddof=1) / math.sqrt(3))
    assert result.std_error == pytest.approx(1 / 6)


def test_kfold_accuracy_integer_folds_split_in_order():
    rng = np.random.default_rng(12)
    labels = np.tile([True, False], 300)
    scores = np.where(labels, rng.normal(1.0, 1.0, 600), rng.normal(-1.0, 1.0, 600))
    by_count = metrics.kfold_accuracy(scores, labels, 10)
    by_label = metrics.kfold_accuracy(scores, labels, np.repeat(np.arange(10), 60))
    assert by_count == by_label
    assert len(by_count.fold_accuracies) == 10
    assert 0.75 < by_count.mean < 0.92  # Bayes accuracy Phi(1) = 0.841


def test_kfold_accuracy_errors():
    with pytest.raises(ValueError, match="lack genuine or impostor"):
        metrics.kfold_accuracy([0.9, 0.1, 0.8, 0.2], [1, 0, 1, 1], [0, 0, 1, 1])
    with pytest.raises(ValueError, match="booleans or 0/1"):
        metrics.kfold_accuracy([0.9, 0.1], [2, 0], 2)
    with pytest.raises(ValueError, match="2 <= folds"):
        metrics.kfold_accuracy([0.9, 0.1], [1, 0], 1)


# ---------------------------------------------------------------------------------------------
# bootstrap


def test_bootstrap_is_deterministic_and_brackets_the_estimate():
    g, i = random_scores(seed=13, n=300, m=2000)
    stat = lambda a, b: metrics.eer(a, b).eer  # noqa: E731
    first = metrics.bootstrap_ci(g, i, stat, n_boot=200, seed=5)
    assert first == metrics.bootstrap_ci(g, i, stat, n_boot=200, seed=5)
    assert first != metrics.bootstrap_ci(g, i, stat, n_boot=200, seed=6)
    low, high = first
    assert low < stat(g, i) < high
    assert high - low < 0.1


def test_bootstrap_resamples_each_class_with_its_own_size():
    seen = []

    def stat(a, b):
        seen.append((a.size, b.size, set(a) <= {1.0, 2.0, 3.0}, set(b) <= {7.0, 8.0}))
        return float(a.mean())

    low, high = metrics.bootstrap_ci([1.0, 2.0, 3.0], [7.0, 8.0], stat, n_boot=50)
    assert set(seen) == {(3, 2, True, True)}
    assert 1.0 <= low <= high <= 3.0


def test_bootstrap_rejects_nan_statistics_and_bad_arguments():
    with pytest.raises(ValueError, match="NaN for 10 of 10"):
        metrics.bootstrap_ci([1.0], [1.0], metrics.d_prime, n_boot=10)
    with pytest.raises(ValueError, match="n_boot"):
        metrics.bootstrap_ci([1.0], [0.0], metrics.d_prime, n_boot=0)
    with pytest.raises(ValueError, match="alpha"):
        metrics.bootstrap_ci([1.0], [0.0], metrics.d_prime, alpha=1.5)


# ---------------------------------------------------------------------------------------------
# DET


def test_det_curve_subsamples_from_the_curve_keeping_extremes():
    g, i = random_scores(seed=14, n=20_000, m=100_000)
    fmr, fnmr = metrics.det_curve(g, i, max_points=300)
    full = metrics.error_rates(g, i)
    assert fmr.size <= 300
    assert (fmr[0], fnmr[0], fmr[-1], fnmr[-1]) == (0.0, 1.0, 1.0, 0.0)
    assert np.all(np.diff(fmr) >= 0) and np.all(np.diff(fnmr) <= 0)
    on_curve = set(zip(full.fmr.tolist(), full.fnmr.tolist()))
    assert all(p in on_curve for p in zip(fmr.tolist(), fnmr.tolist()))
    # resolution at low FMR survives: points below FMR 1e-3 are kept
    assert np.count_nonzero((fmr > 0) & (fmr < 1e-3)) >= 5
    every = metrics.det_curve(g, i, max_points=None)
    np.testing.assert_array_equal(every[0], full.fmr)


def test_probit_clips_to_finite_values():
    z = metrics.probit([0.0, 0.5, 1.0, 0.158655253931457], eps=1e-6)
    assert np.all(np.isfinite(z))
    assert z[1] == 0.0 and z[0] == pytest.approx(-4.753424, abs=1e-5) and z[3] == pytest.approx(-1.0)


# ---------------------------------------------------------------------------------------------
# input checks


@pytest.mark.parametrize("fn", [metrics.eer, metrics.eer_convex_hull, metrics.error_rates,
                                metrics.roc_auc, metrics.d_prime, metrics.best_accuracy,
                                metrics.histogram_overlap])
def test_empty_class_and_nan_are_clear_errors(fn):
    with pytest.raises(ValueError, match="genuine scores are empty"):
        fn([], [0.1])
    with pytest.raises(ValueError, match="impostor scores are empty"):
        fn([0.1], np.array([]))
    with pytest.raises(ValueError, match=r"impostor scores contain 2 NaN value\(s\) out of 4"):
        fn([0.1], [0.1, np.nan, 0.3, np.nan])
    with pytest.raises(ValueError, match="1 infinite"):
        fn([np.inf, 0.2], [0.1])
    with pytest.raises(ValueError, match="1-d"):
        fn([[0.1, 0.2]], [0.1])


def test_nan_error_in_operating_point_functions():
    with pytest.raises(ValueError, match="genuine scores contain 1 NaN"):
        metrics.fnmr_at_fmr([np.nan, 1.0], [0.0], 0.1)
    with pytest.raises(ValueError, match="unmasked impostor scores contain 1 NaN"):
        metrics.nist_masked_probe([np.nan], [1.0], [0.0], 0.1)
    with pytest.raises(ValueError, match="threshold is NaN"):
        metrics.fixed_threshold_rates([1.0], [0.0], float("nan"))


# ---------------------------------------------------------------------------------------------
# identification


def brute_ranks(gallery, gids, probes, pids, metric):
    if metric == "euclidean":
        d = np.sqrt(((probes[:, None, :] - gallery[None, :, :]) ** 2).sum(-1))
    else:
        gn = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
        pn = probes / np.linalg.norm(probes, axis=1, keepdims=True)
        d = 1 - pn @ gn.T
    ranks = []
    for r in range(len(probes)):
        per_id = {}
        for c, ident in enumerate(gids):
            per_id[ident] = min(per_id.get(ident, np.inf), d[r, c])
        own = per_id[pids[r]]
        ranks.append(1 + sum(1 for k, v in per_id.items() if k != pids[r] and v <= own))  # ties count against
    return np.array(ranks)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_rank_k_accuracy_matches_brute_force(metric):
    rng = np.random.default_rng(15)
    n_ids = 40
    centres = rng.normal(size=(n_ids, 8))
    counts = rng.integers(1, 6, n_ids)  # uneven: the neighbour query must reach deep enough
    gids = np.repeat([f"id{k}" for k in range(n_ids)], counts)
    gallery = np.repeat(centres, counts, axis=0) + 0.6 * rng.normal(size=(counts.sum(), 8))
    pick = rng.integers(0, n_ids, 150)
    probes = centres[pick] + 0.6 * rng.normal(size=(150, 8))
    pids = np.array([f"id{k}" for k in pick])
    ks = (1, 2, 5, 10)
    got = metrics.rank_k_accuracy(gallery, gids, probes, pids, ks=ks, metric=metric)
    ranks = brute_ranks(gallery, gids, probes, pids, metric)
    assert got == {k: pytest.approx(float(np.mean(ranks <= k))) for k in ks}
    assert 0.2 < got[1] < got[10] < 1.0


def test_rank_k_accuracy_counts_ties_against_the_mate():
    # a collapsed model (every image at one point) ranks no probe first, only last
    same = np.ones((5, 3))
    assert metrics.rank_k_accuracy(same, list("abcde"), same, list("abcde"), ks=(1, 4, 5)) == {1: 0.0, 4: 0.0, 5: 1.0}
    # on an integer lattice many identities tie; uneven sample counts; brute force agrees
    rng = np.random.default_rng(8)
    counts = rng.integers(1, 5, 30)
    gids = np.repeat([f"id{k}" for k in range(30)], counts)
    gallery = rng.integers(0, 3, size=(counts.sum(), 2)).astype(float)
    pick = rng.integers(0, 30, 200)
    probes, pids = rng.integers(0, 3, size=(200, 2)).astype(float), np.array([f"id{k}" for k in pick])
    ks = (1, 2, 5, 10)
    ranks = brute_ranks(gallery, gids, probes, pids, "euclidean")
    got = metrics.rank_k_accuracy(gallery, gids, probes, pids, ks=ks)
    assert got == {k: pytest.approx(float(np.mean(ranks <= k))) for k in ks}


def test_rank_k_accuracy_counts_identities_not_samples():
    gallery = np.array([[0.0], [0.1], [0.2], [1.0]])
    gids = ["a", "a", "a", "b"]
    # nearest samples: a, a, a, then b; b is the second identity, not the fourth sample
    assert metrics.rank_k_accuracy(gallery, gids, [[-0.1]], ["b"], ks=(1, 2)) == {1: 0.0, 2: 1.0}


def test_rank_k_accuracy_rejects_unenrolled_probes():
    with pytest.raises(ValueError, match="2 probe"):
        metrics.rank_k_accuracy([[0.0], [1.0]], ["a", "b"], [[0.0], [1.0], [2.0]], ["a", "c", "d"])


def test_failures_to_enrol_come_first_so_sorted_scores_stay_sorted():
    gen, imp = np.array([0.5, 1.0, 2.0]), np.array([-3.0, 0.0])
    g, i = metrics.with_failures_to_enrol(gen, imp, 2, 1)
    assert g.tolist() == [-4.0, -4.0, 0.5, 1.0, 2.0] and i.tolist() == [-4.0, -3.0, 0.0]
    assert metrics.with_failures_to_enrol(np.array([]), np.array([]), 1, 0)[0].tolist() == [-1.0]
