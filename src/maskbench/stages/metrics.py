"""The metrics stage: every verification metric of one score file, as JSON."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from maskbench.evaluation import metrics
from maskbench.evaluation.metrics import fmr_key, with_failures_to_enrol
from maskbench.io.atomic import write_json
from maskbench.io.score_files import ScoredPairs, read_scored_pairs, read_scores
from maskbench.evaluation.operating_point import cross_validated_report, json_safe, operating_report

log = logging.getLogger(__name__)

FMR_TARGETS = (1e-2, 1e-3, 1e-4, 1e-5, 0.0)


def _value(x: float | None) -> float | None:
    """A JSON-safe float: exact (thresholds must round-trip), None where not finite."""
    return None if x is None or not np.isfinite(x) else float(x)


NO_VALIDATION = "no validation pairs: set folds > 1 or a validation protocol"
NO_SCORED_FOLDS = "too few scored pairs: every genuine or every impostor pair of the folds failed to enrol"
FOLDS_TOO_SMALL = ("the folds are too small to choose a threshold on the others (a fold holds one person, so "
                   "its impostor pairs lie between folds): use fewer folds or a validation protocol")


def _n_folds(pairs: ScoredPairs) -> int:
    return int(np.unique(pairs.fold).size)


def cross_validatable(in_folds: ScoredPairs) -> bool:
    """Whether, for every fold, the other folds hold both genuine and impostor pairs (folds go by
    person, so on a small set a fold may hold one person and no impostor pair of its own)."""
    _, fold = np.unique(in_folds.fold, return_inverse=True)
    per_fold = np.bincount(fold)  # pairs per fold
    genuine_per_fold = np.bincount(fold[in_folds.genuine], minlength=per_fold.size)
    genuine, total = int(genuine_per_fold.sum()), int(per_fold.sum())
    impostor = total - genuine
    return bool(((genuine - genuine_per_fold > 0) & (impostor - (per_fold - genuine_per_fold) > 0)).all())
OPERATING_KEYS = ("fmr", "fnmr", "accuracy")
# metrics over the scored pairs only: undefined without a scored pair of each kind
SCORED_KEYS = ("eer", "eer_threshold", "eer_rocch", "auc", "d_prime", "best_accuracy", "best_accuracy_threshold",
               "histogram_overlap")


def fold_split(pairs: ScoredPairs) -> tuple[ScoredPairs, int, bool]:
    """(the pairs in a fold, how many folds they are in, whether those folds cross-validate)."""
    in_folds = pairs.where(pairs.fold >= 0)  # fold -1: an impostor pair of people of two folds
    n_folds = _n_folds(in_folds)
    return in_folds, n_folds, n_folds > 1 and folds_cross_validate(in_folds)


def operating_point(pairs: ScoredPairs, val_scores_path: str | None = None, settings: dict | None = None,
                    folds: tuple[ScoredPairs, int, bool] | None = None) -> dict:
    """Confusion matrix and classification report at a threshold never chosen on the test pairs.

    With ``val_scores_path`` (scores of the same model and comparison on a validation protocol)
    the threshold comes from those scores; otherwise, with several folds, each fold's comes from
    the other folds (pairs between two folds, fold -1, are in none: their people are in both); with one fold there is nothing to choose it on and a status says so.
    ``settings``: ``{"rule": "eer" | "fmr", "target": FMR}`` (default: the EER threshold).
    ``folds``: :func:`fold_split` of ``pairs``, if already computed.
    """
    settings = settings or {}
    rule, target = settings.get("rule", "eer"), settings.get("target")
    scores, labels = pairs.score, pairs.genuine
    if val_scores_path:
        val_genuine, val_impostor, _ = read_scores(val_scores_path)
        if not val_genuine.size or not val_impostor.size:
            raise ValueError(f"validation scores {val_scores_path} need scored genuine and impostor pairs; "
                             f"found {val_genuine.size} genuine and {val_impostor.size} impostor")
        return {"status": "ok", **operating_report(val_genuine, val_impostor, scores, labels, rule, target,
                                                   pairs.scored)}
    in_folds, n_folds, cross_validates = folds or fold_split(pairs)
    if n_folds > 1 and not cross_validates:
        return {"status": why_not_cross_validated(in_folds)}
    if n_folds > 1:
        report = cross_validated_report(in_folds.score, in_folds.genuine, in_folds.fold, rule, target,
                                        in_folds.scored)
        return {"status": "ok", **report, "n_between_folds": int(len(pairs) - len(in_folds))}
    return {"status": NO_VALIDATION}


def why_not_cross_validated(in_folds: ScoredPairs) -> str:
    genuine = in_folds.genuine[in_folds.scored]
    return NO_SCORED_FOLDS if genuine.all() or not genuine.any() else FOLDS_TOO_SMALL


def folds_cross_validate(in_folds: ScoredPairs) -> bool:
    """:func:`cross_validatable` on the pairs with a score (only they choose a threshold)."""
    scored = in_folds.where(in_folds.scored)
    return _n_folds(scored) > 1 and cross_validatable(scored)


def compute_metrics(scores_path: str, baseline_path: str | None = None,
                    evaluation: dict | None = None, val_scores_path: str | None = None,
                    index_path: str | None = None, group_by: list[str] | None = None,
                    age_groups: list[int] | None = None) -> dict:
    """All verification metrics of one score file.

    ``baseline_path`` (the unmasked-vs-unmasked scores of the same protocol) enables NIST's
    masked-probe method: the threshold fixed on unmasked impostors, applied to the masked pairs.
    ``val_scores_path`` supplies validation pairs for the operating-point report (see
    :func:`operating_point`). ``group_by`` (attributes of the dataset's ``index_path``) adds
    ``by_group``: the metrics per demographic group (see :mod:`maskbench.evaluation.group_metrics`), age
    groups cut at ``age_groups``.
    """
    evaluation = evaluation or {}
    every_pair = read_scored_pairs(scores_path)
    ok, is_genuine = every_pair.scored, every_pair.genuine
    unscored = int(len(every_pair) - np.count_nonzero(ok))
    genuine_as_read = every_pair.score[ok & is_genuine]
    impostor_as_read = every_pair.score[ok & ~is_genuine]
    # sorted once: every metric below but d' (a mean, whose last bits depend on order) reuses them
    genuine, impostor = np.sort(genuine_as_read), np.sort(impostor_as_read)
    out: dict[str, Any] = {"n_genuine": int(genuine.size), "n_impostor": int(impostor.size), "n_unscored": unscored}
    if genuine.size and impostor.size:
        eer = metrics.eer(genuine, impostor)
        accuracy, accuracy_threshold = metrics.best_accuracy(genuine, impostor)
        out |= {
            "eer": _value(eer.eer),
            "eer_threshold": _value(eer.threshold),
            "eer_rocch": _value(metrics.eer_convex_hull(genuine, impostor)),
            "auc": _value(metrics.roc_auc(genuine, impostor)),
            "d_prime": _value(metrics.d_prime(genuine_as_read, impostor_as_read)),
            "best_accuracy": _value(accuracy),
            "best_accuracy_threshold": _value(accuracy_threshold),
            "histogram_overlap": _value(metrics.histogram_overlap(genuine, impostor)),
        }
    else:  # e.g. every real-masked probe failed to enrol: recorded, the run goes on
        out |= {key: None for key in SCORED_KEYS}
        out["status"] = (f"no scored {'genuine' if not genuine.size else 'impostor'} pair: metrics over scored "
                         "pairs are not defined; those counting failures to enrol are")
    failed = ~ok
    fte_genuine, fte_impostor = int((failed & is_genuine).sum()), int((failed & ~is_genuine).sum())
    genuine_fte, impostor_fte = with_failures_to_enrol(genuine, impostor, fte_genuine, fte_impostor)
    with_fte = bool(genuine_fte.size and impostor_fte.size)
    out["n_failure_to_enrol_genuine"], out["n_failure_to_enrol_impostor"] = fte_genuine, fte_impostor
    out["eer_with_fte"] = _value(metrics.eer(genuine_fte, impostor_fte).eer) if with_fte else None
    # FNMR counts failures to enrol as false non-matches (NIST FRVT); EER above is over scored pairs
    points = metrics.fnmr_at_fmr_many(genuine_fte, impostor_fte, FMR_TARGETS) if with_fte else []
    for point in points:
        key = fmr_key(point.target_fmr)
        out[key] = _value(point.fnmr) if point.measurable else None
        # without a scored impostor the threshold would be the stand-in score of the failures
        out[f"{key}_threshold"] = _value(point.threshold) if impostor.size else None
        out[f"{key}_measurable"] = bool(point.measurable)
    for target in FMR_TARGETS if not with_fte else ():
        key = fmr_key(target)
        out[key], out[f"{key}_threshold"], out[f"{key}_measurable"] = None, None, False
    # decisions (fold accuracy, operating point) are over every pair, a failure to enrol a rejection
    folds = fold_split(every_pair)
    in_folds, n_folds, cross_validates = folds
    if cross_validates:
        kfold = metrics.kfold_accuracy(in_folds.score, in_folds.genuine, in_folds.fold, in_folds.scored)
        out["kfold_accuracy"] = _value(kfold.mean)
        out["kfold_accuracy_se"] = _value(kfold.std_error)
    elif n_folds > 1:  # a table shows n/a: this says why
        out["kfold_accuracy_status"] = why_not_cross_validated(in_folds)
    n_boot = evaluation.get("bootstrap", 0)
    if n_boot:
        alpha = evaluation.get("alpha", 0.05)
        seed = evaluation.get("seed", 0)
        if genuine.size and impostor.size:
            low, high = metrics.bootstrap_ci(genuine, impostor, lambda g, i: metrics.eer(g, i).eer, n_boot, alpha,
                                             seed)
            out["eer_ci_low"], out["eer_ci_high"] = _value(low), _value(high)
        if with_fte and impostor_fte.size >= 100:  # the interval of the FNMR reported: failures to enrol count
            low, high = metrics.bootstrap_ci(
                genuine_fte, impostor_fte, lambda g, i: metrics.fnmr_at_fmr(g, i, 1e-2).fnmr, n_boot, alpha, seed)
            out["fnmr_at_fmr_1e-2_ci_low"], out["fnmr_at_fmr_1e-2_ci_high"] = _value(low), _value(high)
    nist_targets = evaluation.get("nist_fmr", [1e-2, 1e-3])
    # sorted once: nist_threshold sorts what is not already, once per NIST target
    base_impostor = np.sort(read_scores(baseline_path)[1]) if baseline_path else None
    if baseline_path and with_fte:
        for target in nist_targets:
            result = metrics.nist_masked_probe(base_impostor, genuine, impostor, target, fte_genuine, fte_impostor)
            key = f"nist_{fmr_key(target)}"
            out[key] = _value(result.fnmr) if result.measurable else None
            out[f"{key}_fmr"] = _value(result.fmr) if result.measurable else None
    point = json_safe(operating_point(every_pair, val_scores_path, evaluation.get("operating_point"), folds))
    out["operating_point"] = point
    for key in OPERATING_KEYS:  # flat copies for tables; None when no threshold could be chosen
        out[f"operating_{key}"] = point.get(key)
    if group_by:
        if not index_path:
            raise ValueError(f"{scores_path}: metrics by {group_by} need the dataset's index (index_path)")
        from maskbench.attributes.labels import DEFAULT_AGE_GROUPS
        from maskbench.evaluation.group_metrics import group_metrics_of_file

        out["by_group"] = group_metrics_of_file(scores_path, index_path, group_by, age_groups or DEFAULT_AGE_GROUPS,
                                                nist_targets, base_impostor)
    return out


def write_metrics(scores_path: str, out_path: str, baseline_path: str | None = None,
                  evaluation: dict | None = None, val_scores_path: str | None = None,
                  index_path: str | None = None, group_by: list[str] | None = None,
                  age_groups: list[int] | None = None) -> dict:
    result = compute_metrics(scores_path, baseline_path, evaluation, val_scores_path, index_path, group_by,
                             age_groups)
    write_json(out_path, result)
    log.info("%s: EER %.4f over %d genuine / %d impostor", scores_path, result["eer"] or float("nan"),
             result["n_genuine"], result["n_impostor"])
    return result


def write_comparison_metrics(scores_path: str, out_path: str, baseline: Sequence[str], val_scores: Sequence[str],
                             index: Sequence[str], evaluation: dict | None, group_by: Sequence[str] | None,
                             age_groups: Sequence[int] | None) -> dict:
    """:func:`write_metrics` from a rule's optional inputs, each given as no file or one: the
    unmasked-vs-unmasked baseline scores, the validation protocol's scores (the operating
    threshold is chosen on them) and the dataset's index (for metrics per demographic group)."""
    def one(files: Sequence[str], what: str) -> str | None:
        if len(files) > 1:
            raise ValueError(f"one {what} file expected, got {list(files)}")
        return files[0] if files else None

    return write_metrics(scores_path, out_path, baseline_path=one(baseline, "baseline scores"),
                         evaluation=evaluation, val_scores_path=one(val_scores, "validation scores"),
                         index_path=one(index, "index"), group_by=list(group_by or []),
                         age_groups=list(age_groups) if age_groups else None)


def write_rule_metrics(scores_path: str, out_path: str, inputs: Any, params: Any) -> dict:
    """:func:`write_comparison_metrics` from a workflow rule's named inputs (``baseline``,
    ``val_scores``, ``index``) and params (``evaluation``, ``group_by``, ``age_groups``): every rule
    that writes a comparison's metrics (score, fuse, imported scores) declares them alike."""
    return write_comparison_metrics(scores_path, out_path, baseline=list(inputs.baseline),
                                    val_scores=list(inputs.val_scores), index=list(inputs.index),
                                    evaluation=params.evaluation, group_by=params.group_by,
                                    age_groups=params.age_groups)
