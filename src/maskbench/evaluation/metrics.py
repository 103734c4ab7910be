"""Biometric verification and identification metrics, computed exactly from sorted scores.

Conventions (ISO/IEC 19795-1; NIST FRVT 1:1; Bob's ``bob.measure``):

* Scores are **similarities**: higher means more alike.
* A comparison is **accepted** when ``score >= threshold``; ties are accepted.
* ``FMR(t)`` is the fraction of impostor scores ``>= t``; ``FNMR(t)`` the fraction of genuine
  scores ``< t``. ``FMR`` falls and ``FNMR`` rises as ``t`` rises.
* Inputs are 1-d arrays of genuine (mated) and impostor (non-mated) scores. Non-finite scores are
  an error naming how many there are; drop them first (``x[np.isfinite(x)]``) if that is intended.
  An empty class is an error.

References: ISO/IEC 19795-1:2021 (FMR, FNMR); Grother et al., NIST FRVT 1:1 reports (ties
accepted, FNMR at fixed FMR); Anjos et al., Bob (``bob.measure``: EER, ROCCH-EER); Brümmer & de
Villiers, BOSARIS toolkit 2011 and Provost & Fawcett 2001 (ROC convex hull); Huang et al. 2007
(LFW View 2); Ngan, Grother & Hanaoka, NISTIR 8311, 2020 (masked probes at a threshold fixed on
unmasked impostors); Martin et al. 1997 (DET curves).

Every rate is computed at the thresholds where it changes (the distinct scores) with
``np.sort`` and ``np.searchsorted``, never on a threshold grid, so results are exact and
independent of the score scale. Functions sort their inputs unless these are already ascending
(an O(n) check), so a caller computing many metrics on large score sets can ``np.sort`` once and
pass the sorted arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

__all__ = [
    "EER", "ErrorRates", "KFoldAccuracy", "MaskedProbeResult", "OperatingPoint",
    "best_accuracy", "bootstrap_ci", "d_prime", "det_curve", "eer", "eer_convex_hull",
    "error_rates", "fixed_threshold_rates", "fnmr_at_fmr", "fnmr_at_fmr_many",
    "histogram_overlap", "kfold_accuracy", "nist_masked_probe", "nist_threshold", "probit", "rank_k_accuracy",
    "roc_auc",
]


# ---------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True, eq=False)
class ErrorRates:
    """The step ROC: ``fmr[j]`` and ``fnmr[j]`` at ``thresholds[j]``.

    ``thresholds`` is ``+inf`` (accept nothing: FMR 0, FNMR 1) followed by every distinct score in
    descending order, the last accepting everything (FMR 1, FNMR 0); so ``fmr`` ascends and
    ``fnmr`` descends, the order of ``sklearn.metrics.roc_curve``.
    """

    thresholds: np.ndarray
    fmr: np.ndarray
    fnmr: np.ndarray


@dataclass(frozen=True)
class EER:
    """Equal error rate ``(fmr + fnmr) / 2`` at the operating ``threshold`` nearest the crossing."""

    eer: float
    threshold: float
    fmr: float
    fnmr: float


@dataclass(frozen=True)
class OperatingPoint:
    """FNMR at the lowest threshold whose FMR does not exceed ``target_fmr``.

    ``measurable`` is False when fewer than ``1 / target_fmr`` impostor scores exist, so that a
    single false match already exceeds the target; report such points as n/a.
    """

    target_fmr: float
    threshold: float
    fmr: float
    fnmr: float
    measurable: bool
    n_impostor: int


@dataclass(frozen=True)
class MaskedProbeResult:
    """Masked FMR and FNMR at the threshold set on unmasked impostors (NISTIR 8311)."""

    target_fmr: float
    threshold: float
    fmr: float
    fnmr: float
    measurable: bool
    n_unmasked_impostor: int
    n_masked_genuine: int
    n_masked_impostor: int


@dataclass(frozen=True)
class KFoldAccuracy:
    """Mean and standard error of the per-fold accuracies, as LFW results are published."""

    mean: float
    std_error: float
    fold_accuracies: tuple[float, ...]
    thresholds: tuple[float, ...]


# ---------------------------------------------------------------------------------------------
# input checks


def _scores(values, name: str) -> np.ndarray:
    """One class of scores as a finite 1-d float64 array; every metric checks its inputs here."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} scores must be a 1-d array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} scores are empty: every metric needs at least one {name} score")
    finite = np.isfinite(arr)
    if not finite.all():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(arr.size - finite.sum()) - n_nan
        what = ", ".join(f"{k} {label}" for k, label in ((n_nan, "NaN"), (n_inf, "infinite")) if k)
        raise ValueError(f"{name} scores contain {what} value(s) out of {arr.size}; "
                         f"drop them first (e.g. x[np.isfinite(x)]) if that is intended")
    return arr


def _sorted(arr: np.ndarray) -> np.ndarray:
    """``arr`` ascending, sorting only when it is not already."""
    if arr.size > 1 and not bool(np.all(arr[1:] >= arr[:-1])):
        return np.sort(arr)
    return arr


def _pair(genuine, impostor, sort: bool = True) -> tuple[np.ndarray, np.ndarray]:
    g = _scores(genuine, "genuine")
    i = _scores(impostor, "impostor")
    return (_sorted(g), _sorted(i)) if sort else (g, i)


def _check_fmr_target(target) -> float:
    t = float(target)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"target FMR must be within [0, 1], got {target!r}")
    return t


# ---------------------------------------------------------------------------------------------
# counting helpers on sorted scores


def _n_below(sorted_scores: np.ndarray, t) -> np.ndarray | int:
    """How many scores are ``< t``."""
    return np.searchsorted(sorted_scores, t, side="left")


def _false_matches(imp: np.ndarray, t) -> int:
    return int(imp.size - _n_below(imp, t))


def _false_non_matches(gen: np.ndarray, t) -> int:
    return int(_n_below(gen, t))


def _curve_counts(gen: np.ndarray, imp: np.ndarray,
                  with_thresholds: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Thresholds (``+inf`` then distinct scores, descending) with false-match and
    false-non-match counts, in O(n) after the per-class sorts; few temporaries, since on 10^7
    scores fresh memory costs as much as the arithmetic."""
    n, m = gen.size, imp.size
    merged = np.concatenate((gen, imp))
    merged.sort(kind="stable")  # two ascending runs: timsort merges them in linear time
    first = np.empty(merged.size, dtype=bool)
    first[0] = True
    np.not_equal(merged[1:], merged[:-1], out=first[1:])
    n_below_all = np.flatnonzero(first)  # scores < u[j] = index of u[j]'s first occurrence
    del first
    u = merged[n_below_all]
    del merged
    size = u.size + 1
    # count the smaller class per distinct value; the other class is the remainder
    small = gen if n <= m else imp
    per_value = np.bincount(np.searchsorted(u, small, side="left"), minlength=u.size)
    thresholds = None
    if with_thresholds:
        thresholds = np.empty(size)
        thresholds[0] = np.inf
        thresholds[1:] = u[::-1]
    del u
    n_below_small = np.zeros(size - 1, dtype=np.int64)
    np.cumsum(per_value[:-1], out=n_below_small[1:])
    del per_value
    n_below_other = np.subtract(n_below_all, n_below_small, out=n_below_all)
    n_below_gen, n_below_imp = (n_below_small, n_below_other) if n <= m else (n_below_other, n_below_small)
    fa = np.empty(size, dtype=np.int64)
    fa[0] = 0
    np.subtract(m, n_below_imp[::-1], out=fa[1:])
    fr = np.empty(size, dtype=np.int64)
    fr[0] = n
    fr[1:] = n_below_gen[::-1]
    return thresholds, fa, fr


# ---------------------------------------------------------------------------------------------
# ROC and equal error rates


def error_rates(genuine, impostor) -> ErrorRates:
    """The full step ROC at every distinct score (and ``+inf``), as in ``sklearn.metrics.roc_curve``
    with ``drop_intermediate=False`` (its FPR is FMR and its TPR is ``1 - FNMR``)."""
    gen, imp = _pair(genuine, impostor)
    thresholds, fa, fr = _curve_counts(gen, imp)
    return ErrorRates(thresholds=thresholds, fmr=fa / imp.size, fnmr=fr / gen.size)


def eer(genuine, impostor) -> EER:
    """Equal error rate at an observed operating threshold, without a threshold grid.

    Candidate thresholds are ``+inf`` and every distinct score. ``FMR - FNMR`` strictly increases
    as the threshold falls through them, so the crossing lies between two adjacent candidates: the
    lowest with ``FMR <= FNMR`` and the highest with ``FMR > FNMR``. Of these two, the one with the
    smaller ``|FMR - FNMR|`` is chosen; a tie goes to the smaller ``max(FMR, FNMR)``, then to the
    lower threshold. The EER reported is ``(FMR + FNMR) / 2`` there, the average Bob's ``eer``
    reports too. Comparisons are exact, in integer counts.
    """
    gen, imp = _pair(genuine, impostor)
    n, m = gen.size, imp.size

    def diff(t) -> int:  # (FMR - FNMR) * n * m, exact
        return _false_matches(imp, t) * n - _false_non_matches(gen, t) * m

    def lowest_with_diff_le0(s: np.ndarray) -> int:
        """Index of the lowest score in ``s`` with FMR <= FNMR (``diff`` falls with the score)."""
        lo, hi = 0, s.size
        while lo < hi:
            mid = (lo + hi) // 2
            if diff(s[mid]) <= 0:
                hi = mid
            else:
                lo = mid + 1
        return lo

    kg, ki = lowest_with_diff_le0(gen), lowest_with_diff_le0(imp)
    # +inf always has FMR <= FNMR and the lowest score FMR > FNMR, so both sides exist
    upper = min((float(s[k]) for s, k in ((gen, kg), (imp, ki)) if k < s.size), default=math.inf)
    lower = max(float(s[k - 1]) for s, k in ((gen, kg), (imp, ki)) if k > 0)
    candidates = [upper, lower]

    def key(t: float) -> tuple[int, int, float]:
        fa, fr = _false_matches(imp, t), _false_non_matches(gen, t)
        return abs(fa * n - fr * m), max(fa * n, fr * m), t

    best = min(candidates, key=key)
    fmr = _false_matches(imp, best) / m
    fnmr = _false_non_matches(gen, best) / n
    return EER(eer=(fmr + fnmr) / 2, threshold=best, fmr=fmr, fnmr=fnmr)


def eer_convex_hull(genuine, impostor) -> float:
    """EER of the ROC convex hull (ROCCH-EER; Provost & Fawcett 2001, BOSARIS, Bob's ``eer_rocch``).

    The lower-left convex hull of the step curve's ``(FMR, FNMR)`` points is intersected with
    ``FMR = FNMR``. The hull edge that crosses the diagonal is found by a quickhull search that
    keeps one hull vertex on each side of the diagonal and replaces one by the point farthest
    below their chord until no point lies below it. Hull tests use integer counts, exactly.
    """
    gen, imp = _pair(genuine, impostor)
    n, m = gen.size, imp.size
    _, fa, fr = _curve_counts(gen, imp, with_thresholds=False)
    # A hull vertex is entered by a step down (genuine scores) and left by a step right
    # (impostor scores); other points lie on or above the segment joining their neighbours.
    corner = np.ones(fa.size, dtype=bool)
    corner[1:-1] = (fr[:-2] > fr[1:-1]) & (fa[2:] > fa[1:-1])
    corners = np.flatnonzero(corner)
    fa, fr = fa[corners], fr[corners]
    # endpoints: +inf (0, n) lies on the FNMR side, the lowest score (m, 0) on the FMR side
    a, b = 0, fa.size - 1
    cand = None  # None: every point, without copying
    while True:
        normal_fa = int(fr[a] - fr[b])  # both >= 0: a is up-left of b
        normal_fr = int(fa[b] - fa[a])
        c = normal_fa * int(fa[a]) + normal_fr * int(fr[a])
        fa_c, fr_c = (fa, fr) if cand is None else (fa[cand], fr[cand])
        v = normal_fa * fa_c + normal_fr * fr_c
        keep = (v < c) & (fa_c >= fa[a]) & (fa_c <= fa[b])
        cand = np.flatnonzero(keep) if cand is None else cand[keep]
        if not cand.size:
            break
        k = int(cand[np.argmin(v[keep])])
        if int(fa[k]) * n <= int(fr[k]) * m:  # FMR <= FNMR
            a = k
        else:
            b = k
    xa, ya = Fraction(int(fa[a]), m), Fraction(int(fr[a]), n)
    xb, yb = Fraction(int(fa[b]), m), Fraction(int(fr[b]), n)
    s = (ya - xa) / ((ya - xa) + (xb - yb))  # xb > yb, so the denominator is positive
    return float(xa + s * (xb - xa))


# ---------------------------------------------------------------------------------------------
# operating points


def _threshold_at_fmr(imp: np.ndarray, target: float) -> tuple[float, bool]:
    """The lowest threshold whose FMR on ``imp`` (ascending) is ``<= target`` (``-inf`` when every
    impostor may match), and whether ``target`` is measurable (at least ``1 / target`` impostor
    scores; FMR 0 always is)."""
    m = imp.size
    k = math.floor(target * m)  # false matches allowed; corrected to agree with k / m <= target
    while k < m and (k + 1) / m <= target:
        k += 1
    while k > 0 and k / m > target:
        k -= 1
    measurable = target == 0.0 or 1.0 / m <= target
    if k >= m:
        return -math.inf, measurable  # every impostor may match: accept everything
    # accepting the (k+1)-th highest impostor score would make k+1 false matches: go just above it
    return float(np.nextafter(imp[m - k - 1], np.inf)), measurable


def _operating_point(gen: np.ndarray, imp: np.ndarray, target: float) -> OperatingPoint:
    threshold, measurable = _threshold_at_fmr(imp, target)
    if threshold == -math.inf:  # report the lowest score, which accepts everything too
        threshold = min(float(gen[0]), float(imp[0]))
    return OperatingPoint(
        target_fmr=target, threshold=threshold,
        fmr=_false_matches(imp, threshold) / imp.size,
        fnmr=_false_non_matches(gen, threshold) / gen.size,
        measurable=measurable, n_impostor=int(imp.size))


def fnmr_at_fmr(genuine, impostor, target: float) -> OperatingPoint:
    """FNMR at the lowest threshold whose FMR does not exceed ``target``.

    That threshold is the float just above the ``(k+1)``-th highest impostor score, ``k`` being
    the most false matches with ``k / n_impostor <= target`` (in floating point, so that a target
    of 0.29 admits 29 of 100 impostors): the FMR never exceeds the target and no lower threshold
    keeps it there. ``target = 0`` gives FMR 0, just above the highest impostor score;
    ``target = 1`` accepts everything (threshold = the lowest score). Rounding the threshold
    down when storing it can let through the impostor it was set just above.
    """
    return fnmr_at_fmr_many(genuine, impostor, [target])[0]


def fnmr_at_fmr_many(genuine, impostor, targets: Sequence[float]) -> list[OperatingPoint]:
    """:func:`fnmr_at_fmr` for several targets, in the given order, sorting the scores once."""
    checked = [_check_fmr_target(t) for t in targets]
    gen, imp = _pair(genuine, impostor)
    return [_operating_point(gen, imp, t) for t in checked]


def fixed_threshold_rates(genuine, impostor, threshold: float) -> tuple[float, float]:
    """``(FMR, FNMR)`` at a given threshold, e.g. one fixed on other data."""
    t = float(threshold)
    if math.isnan(t):
        raise ValueError("threshold is NaN")
    gen, imp = _pair(genuine, impostor, sort=False)
    return (int(np.count_nonzero(imp >= t)) / imp.size, int(np.count_nonzero(gen < t)) / gen.size)


def rates_with_failures(genuine, impostor, threshold: float, fte_genuine: int = 0,
                        fte_impostor: int = 0) -> tuple[float | None, float | None]:
    """``(FMR, FNMR)`` at a threshold fixed elsewhere, with pairs that failed to enrol counted as
    NIST counts them whatever the threshold: a genuine one a non-match, an impostor one a correct
    rejection (a stand-in score below the others would be accepted by a threshold set lower)."""
    t = float(threshold)
    if math.isnan(t):
        raise ValueError("threshold is NaN")
    gen, imp = np.asarray(genuine, dtype=np.float64), np.asarray(impostor, dtype=np.float64)
    n_gen, n_imp = gen.size + int(fte_genuine), imp.size + int(fte_impostor)
    fmr = int(np.count_nonzero(imp >= t)) / n_imp if n_imp else None
    fnmr = (int(np.count_nonzero(gen < t)) + int(fte_genuine)) / n_gen if n_gen else None
    return fmr, fnmr


def nist_threshold(unmasked_impostor, target_fmr: float) -> tuple[float, bool]:
    """The threshold NISTIR 8311 fixes on unmasked-unmasked impostor scores at ``target_fmr``, and
    whether they are enough to measure it (see :func:`nist_masked_probe`)."""
    return _threshold_at_fmr(_sorted(_scores(unmasked_impostor, "unmasked impostor")), _check_fmr_target(target_fmr))


def nist_masked_probe(unmasked_impostor, masked_genuine, masked_impostor, target_fmr: float,
                      fte_genuine: int = 0, fte_impostor: int = 0) -> MaskedProbeResult:
    """The NISTIR 8311 protocol (Ngan, Grother & Hanaoka 2020, FRVT Part 6A).

    The threshold is fixed on unmasked-unmasked impostor scores at ``target_fmr`` (as in
    :func:`fnmr_at_fmr`); masked FNMR and FMR are then measured at that same threshold, so the
    effect of masks shows in both rates rather than being absorbed by a re-tuned threshold.
    ``measurable`` refers to the unmasked impostors fixing the threshold. ``target_fmr = 1``
    gives threshold ``-inf`` (accept everything). ``fte_genuine`` / ``fte_impostor`` masked pairs
    failed to enrol and count as NIST counts them (:func:`rates_with_failures`), so a class may
    have no scored pair as long as it has failures.
    """
    threshold, measurable = nist_threshold(unmasked_impostor, target_fmr)
    gen, imp = (_scores_or_none(v, name) for v, name in ((masked_genuine, "masked genuine"),
                                                         (masked_impostor, "masked impostor")))
    for arr, failed, name in ((gen, fte_genuine, "genuine"), (imp, fte_impostor, "impostor")):
        if arr.size + int(failed) == 0:
            raise ValueError(f"masked {name} scores are empty and none failed to enrol: no {name} pair to rate")
    fmr, fnmr = rates_with_failures(gen, imp, threshold, fte_genuine, fte_impostor)
    return MaskedProbeResult(
        target_fmr=float(target_fmr), threshold=threshold, fmr=fmr, fnmr=fnmr, measurable=measurable,
        n_unmasked_impostor=int(np.size(unmasked_impostor)), n_masked_genuine=int(gen.size + fte_genuine),
        n_masked_impostor=int(imp.size + fte_impostor))


def _scores_or_none(values, name: str) -> np.ndarray:
    """:func:`_scores`, an empty array allowed (a class whose pairs all failed to enrol)."""
    arr = np.asarray(values, dtype=np.float64)
    return arr.reshape(0) if arr.size == 0 else _scores(arr, name)


# ---------------------------------------------------------------------------------------------
# summary statistics


def roc_auc(genuine, impostor) -> float:
    """Area under the ROC: P(genuine > impostor) + P(genuine = impostor) / 2 (Mann-Whitney U / nm),
    equal to ``sklearn.metrics.roc_auc_score``; computed exactly in integer counts."""
    gen, imp = _pair(genuine, impostor)
    below = np.searchsorted(imp, gen, side="left").sum(dtype=np.int64)
    not_above = np.searchsorted(imp, gen, side="right").sum(dtype=np.int64)
    # 2 * (below + ties / 2) = below + not_above
    return float(Fraction(int(below) + int(not_above), 2 * gen.size * imp.size))


def d_prime(genuine, impostor) -> float:
    """Decidability ``|mu_g - mu_i| / sqrt((var_g + var_i) / 2)`` (Daugman 2004), population
    variances; ``inf`` when both classes are constant and differ, ``nan`` when they are equal."""
    gen, imp = _pair(genuine, impostor, sort=False)
    gap = abs(float(gen.mean()) - float(imp.mean()))
    spread = math.sqrt((float(gen.var()) + float(imp.var())) / 2)
    if spread == 0.0:
        return math.nan if gap == 0.0 else math.inf
    return gap / spread


def _best_accuracy(gen: np.ndarray, imp: np.ndarray) -> tuple[int, float]:
    """Fewest errors over all thresholds and the highest threshold reaching it.

    Only ``+inf`` and genuine scores are candidates: moving from a threshold at which no genuine
    score lies up to the next candidate only rejects impostors, which removes errors.
    """
    first = np.empty(gen.size, dtype=bool)
    first[0] = True
    np.not_equal(gen[1:], gen[:-1], out=first[1:])
    n_below_gen = np.flatnonzero(first)
    values = gen[n_below_gen]
    errors = (imp.size - np.searchsorted(imp, values, side="left")) + n_below_gen
    j = errors.size - 1 - int(np.argmin(errors[::-1]))  # highest threshold among equals
    if gen.size <= int(errors[j]):  # rejecting everything is as good or better
        return gen.size, math.inf
    return int(errors[j]), float(values[j])


def best_accuracy(genuine, impostor) -> tuple[float, float]:
    """``(accuracy, threshold)``: the highest fraction of all pairs classified correctly at any
    threshold, and the highest threshold achieving it (``inf`` if rejecting all is best)."""
    gen, imp = _pair(genuine, impostor)
    errors, threshold = _best_accuracy(gen, imp)
    return 1.0 - errors / (gen.size + imp.size), threshold


def _midpoint_threshold(gen: np.ndarray, imp: np.ndarray) -> float:
    """The best-accuracy threshold moved to the middle of the interval of thresholds with the
    same training accuracy, so that it leans toward neither class on unseen pairs."""
    _, t = _best_accuracy(gen, imp)
    if t == math.inf:
        return t
    below = [float(s[k - 1]) for s in (gen, imp) if (k := int(_n_below(s, t))) > 0]
    if not below:
        return -math.inf  # accepting everything is best
    mid = (max(below) + t) / 2
    return mid if mid > max(below) else t


def cross_validation_folds(scores: np.ndarray, labels: np.ndarray, folds,
                           scored: np.ndarray | None = None) -> Iterator[tuple[Any, np.ndarray, np.ndarray, np.ndarray]]:
    """(fold name, its pairs as a mask, genuine and impostor scores of the other folds) per fold.

    ``folds`` is a fold label per pair, or a number of contiguous near-equal folds in pair order.
    Every fold's threshold is chosen on the other folds, so each of those must hold both kinds.
    ``scored`` (a mask) leaves pairs without a score out of the other folds' scores."""
    if isinstance(folds, (int, np.integer)):
        if not 2 <= folds <= scores.size:
            raise ValueError(f"need 2 <= folds <= number of pairs ({scores.size}), got {folds}")
        fold_of = np.repeat(np.arange(folds), [len(p) for p in np.array_split(np.arange(scores.size), folds)])
    else:
        fold_of = np.asarray(folds)
        if fold_of.shape != scores.shape:
            raise ValueError(f"folds has shape {fold_of.shape}, scores {scores.shape}")
    names = np.unique(fold_of)
    if names.size < 2:
        raise ValueError("cross-validation needs at least 2 folds")
    use = np.ones(scores.shape, dtype=bool) if scored is None else np.asarray(scored, dtype=bool)
    for name in names.tolist():
        test = fold_of == name
        train_g, train_i = scores[~test & labels & use], scores[~test & ~labels & use]
        if not train_g.size or not train_i.size:
            raise ValueError(f"the folds other than {name!r} lack genuine or impostor pairs to choose a threshold on")
        yield name, test, train_g, train_i


def kfold_accuracy(scores, genuine_labels, folds, scored=None) -> KFoldAccuracy:
    """Verification accuracy under the LFW View 2 protocol (Huang et al. 2007).

    For each fold the threshold is chosen on the other folds (maximum accuracy, at the middle of
    the interval of equally accurate thresholds) and applied to that fold. ``folds`` is either the
    number of folds, splitting the pairs in their given order into contiguous near-equal parts (as
    LFW's pairs.txt is ordered), or one fold label per pair. Reports the mean, the standard error
    ``std(ddof=1) / sqrt(k)`` of the LFW results tables, and the per-fold values. ``scored`` (a
    mask) marks the pairs with a score: one without (a failure to enrol) is decided 'different'
    whatever the threshold, and takes no part in choosing it, as LFW classifies every pair.
    """
    ok = None if scored is None else np.asarray(scored, dtype=bool)
    s = _scores(scores if ok is None else np.where(ok, np.asarray(scores, dtype=np.float64), 0.0), "pair")
    if ok is None:
        ok = np.ones(s.shape, dtype=bool)
    labels = np.asarray(genuine_labels)
    if labels.shape != s.shape:
        raise ValueError(f"genuine_labels has shape {labels.shape}, scores {s.shape}")
    if labels.dtype != bool:
        if not np.isin(labels, (0, 1)).all():
            raise ValueError("genuine_labels must be booleans or 0/1")
        labels = labels.astype(bool)
    accuracies, thresholds = [], []
    for _, test, train_g, train_i in cross_validation_folds(s, labels, folds, ok):
        # a fresh sort per fold is cheaper than one argsort and k gathers (SIMD float sorts)
        t = _midpoint_threshold(np.sort(train_g), np.sort(train_i))
        accuracies.append(float(np.mean(((s[test] >= t) & ok[test]) == labels[test])))
        thresholds.append(t)
    acc = np.array(accuracies)
    return KFoldAccuracy(mean=float(acc.mean()), std_error=float(acc.std(ddof=1) / math.sqrt(acc.size)),
                         fold_accuracies=tuple(accuracies), thresholds=tuple(thresholds))


def bootstrap_ci(genuine, impostor, statistic: Callable[[np.ndarray, np.ndarray], float],
                 n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap ``(low, high)`` confidence interval of ``statistic(genuine, impostor)``
    (Efron & Tibshirani 1993), e.g. ``lambda g, i: eer(g, i).eer``.

    Genuine and impostor scores are resampled independently, with replacement, from
    ``np.random.default_rng(seed)``, so the interval is deterministic. Resamples are passed to
    ``statistic`` in ascending order (drawn as counts per sorted score), which saves the metrics
    here from sorting again; statistics of score sets do not depend on order. This treats pairs as
    independent; pairs sharing subjects make the interval too narrow.
    """
    if int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be within (0, 1), got {alpha!r}")
    gen, imp = _pair(genuine, impostor)
    rng = np.random.default_rng(seed)
    values = np.empty(int(n_boot))
    for b in range(values.size):
        g = np.repeat(gen, np.bincount(rng.integers(0, gen.size, gen.size), minlength=gen.size))
        i = np.repeat(imp, np.bincount(rng.integers(0, imp.size, imp.size), minlength=imp.size))
        values[b] = float(statistic(g, i))
    n_nan = int(np.isnan(values).sum())
    if n_nan:
        raise ValueError(f"statistic returned NaN for {n_nan} of {values.size} resamples")
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def histogram_overlap(genuine, impostor, bins: int = 100) -> float:
    """Overlap ("IoU") of the two score histograms, each normalised to sum 1, on one shared grid
    of ``bins`` equal bins over the range of all scores: ``sum(min) / sum(max)``; 1 for identical
    histograms, 0 for disjoint ones. Depends on ``bins``: compare values at equal ``bins`` only."""
    if int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    gen, imp = _pair(genuine, impostor, sort=False)
    lo, hi = min(gen.min(), imp.min()), max(gen.max(), imp.max())
    hg = np.histogram(gen, bins=int(bins), range=(lo, hi))[0] / gen.size
    hi_ = np.histogram(imp, bins=int(bins), range=(lo, hi))[0] / imp.size
    return float(np.minimum(hg, hi_).sum() / np.maximum(hg, hi_).sum())


# ---------------------------------------------------------------------------------------------
# DET curves


def probit(p, eps: float = 1e-9) -> np.ndarray:
    """Standard normal quantile of ``p`` clipped to ``[eps, 1 - eps]``, the axis scale of DET plots
    (Martin et al. 1997); clipping keeps rates of 0 and 1 finite."""
    from scipy.stats import norm  # here: importing scipy.stats costs every scoring job ~1 s

    return norm.ppf(np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps))


def det_curve(genuine, impostor, max_points: int | None = 2000,
              eps: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """``(fmr, fnmr)`` points of the DET curve, FMR ascending.

    With ``max_points`` set, keeps at most that many points: both extremes and, for a grid evenly
    spaced in probit units between ``eps`` and ``1 - eps``, the first point at which FMR, and the
    first at which FNMR, passes each grid level, so that the curve keeps its resolution on
    probit axes. ``None`` keeps every point.
    """
    rates = error_rates(genuine, impostor)
    fmr, fnmr = rates.fmr, rates.fnmr
    if max_points is None or fmr.size <= max_points:
        return fmr, fnmr
    if max_points < 4:
        raise ValueError(f"max_points must be at least 4, got {max_points}")
    from scipy.stats import norm

    levels = norm.cdf(np.linspace(norm.ppf(eps), norm.ppf(1 - eps), (max_points - 2) // 2))
    idx = np.concatenate(([0, fmr.size - 1],
                          np.searchsorted(fmr, levels, side="left"),
                          np.searchsorted(-fnmr, -levels, side="left")))
    idx = np.unique(np.minimum(idx, fmr.size - 1))
    return fmr[idx], fnmr[idx]


# ---------------------------------------------------------------------------------------------
# identification


def rank_k_accuracy(gallery_emb, gallery_ids, probe_emb, probe_ids, ks: Sequence[int] = (1, 5),
                    metric: str = "euclidean") -> dict[int, float]:
    """Closed-set identification rate at each rank ``k`` (the CMC at ``ks``).

    Ranks count distinct gallery identities, each represented by its nearest sample: a probe's rank
    is 1 + the number of other identities as near as its own or nearer (a tie goes against the
    mate: a model that maps everyone to one point ranks nobody first). Neighbours come from
    ``sklearn.neighbors.NearestNeighbors`` (ball tree for ``euclidean``, brute force for
    ``cosine``), queried deep enough to see ``max(ks)`` identities whatever their sample counts.
    Every probe identity must be enrolled in the gallery.
    """
    from scipy.spatial.distance import cdist
    from sklearn.metrics.pairwise import cosine_distances
    from sklearn.neighbors import NearestNeighbors

    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive ranks, got {ks}")
    gallery = np.asarray(gallery_emb, dtype=np.float64)
    probes = np.asarray(probe_emb, dtype=np.float64)
    gids, pids = np.asarray(gallery_ids), np.asarray(probe_ids)
    if gallery.ndim != 2 or probes.ndim != 2 or gallery.shape[1] != probes.shape[1]:
        raise ValueError(f"embeddings must be 2-d with equal widths, got {gallery.shape} and {probes.shape}")
    if gids.shape != (gallery.shape[0],) or pids.shape != (probes.shape[0],):
        raise ValueError("need one identity per gallery row and per probe row")
    if gallery.shape[0] == 0 or probes.shape[0] == 0:
        raise ValueError("gallery and probes must be non-empty")
    if not (np.isfinite(gallery).all() and np.isfinite(probes).all()):
        raise ValueError("embeddings contain non-finite values")
    names, gcode = np.unique(gids, return_inverse=True)
    pos = np.minimum(np.searchsorted(names, pids), names.size - 1)
    enrolled = names[pos] == pids
    if not enrolled.all():
        raise ValueError(f"{int((~enrolled).sum())} probe(s) have identities absent from the gallery; "
                         "closed-set rank-k accuracy needs every probe identity enrolled")
    pcode = pos

    depth = min(max(ks), names.size)
    per_identity = int(np.bincount(gcode).max())
    n_neighbors = min(gallery.shape[0], depth * per_identity + 1)
    nn = NearestNeighbors(n_neighbors=n_neighbors, metric=metric,
                          algorithm="ball_tree" if metric == "euclidean" else "brute").fit(gallery)
    dist, ind = nn.kneighbors(probes)
    codes = gcode[ind]
    own = codes == pcode[:, None]
    found = own.any(axis=1)
    d_own = dist[np.arange(len(probes)), own.argmax(axis=1)]
    missing = np.flatnonzero(~found)
    for r in missing:  # own identity beyond the queried depth: measure its distance directly
        mine = gallery[gcode == pcode[r]]
        d = cdist(probes[r:r + 1], mine) if metric == "euclidean" else cosine_distances(probes[r:r + 1], mine)
        d_own[r] = d.min()
    # first occurrence of each identity along a row = that identity's nearest sample
    order = np.argsort(codes, axis=1, kind="stable")
    sorted_codes = np.take_along_axis(codes, order, axis=1)
    first_sorted = np.ones_like(sorted_codes, dtype=bool)
    first_sorted[:, 1:] = sorted_codes[:, 1:] != sorted_codes[:, :-1]
    first = np.empty_like(first_sorted)
    np.put_along_axis(first, order, first_sorted, axis=1)
    # every other sample as near as the own identity or nearer is in the queried list, unless all
    # of the list is: then it already holds more than `depth` other identities, rank > depth
    ranks = 1 + (first & ~own & (dist <= d_own[:, None])).sum(axis=1)
    return {k: float(np.mean(ranks <= k)) for k in ks}


def fmr_key(target: float) -> str:
    """The name of FNMR at one FMR target in metrics files (``fnmr_at_fmr_1e-3``, ``fnmr_at_fmr_0``)."""
    return "fnmr_at_fmr_0" if target == 0 else f"fnmr_at_fmr_{target:.0e}".replace("e-0", "e-")


def with_failures_to_enrol(genuine: np.ndarray, impostor: np.ndarray, fte_genuine: int,
                           fte_impostor: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores with every failure to enrol as a score below all others, as NIST FRVT counts them:
    a genuine pair that failed is a false non-match at every threshold, an impostor pair a
    correct rejection. Metrics that depend only on the order of scores are then exact. The
    failures come first, so ascending scores stay ascending (and are not sorted again)."""
    if not (fte_genuine or fte_impostor):
        return genuine, impostor
    floor = min((a.min() for a in (genuine, impostor) if a.size), default=0.0) - 1.0
    return (np.concatenate([np.full(fte_genuine, floor), genuine]),
            np.concatenate([np.full(fte_impostor, floor), impostor]))
