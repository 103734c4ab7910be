"""The metrics stage's JSON: existing keys kept, and the operating point never fixed on test pairs."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from maskbench.evaluation import metrics
from maskbench.io.manifests import SCORES_SCHEMA
from maskbench.stages.metrics import (FOLDS_TOO_SMALL, NO_VALIDATION, compute_metrics, write_comparison_metrics,
                                     write_metrics, write_rule_metrics)

# keys every metrics file had before the operating point was added; tables and figures read them
EXISTING_KEYS = {
    "n_genuine", "n_impostor", "n_unscored", "eer", "eer_threshold", "eer_rocch", "auc", "d_prime",
    "best_accuracy", "best_accuracy_threshold", "histogram_overlap",
    *(f"fnmr_at_fmr_{t}{suffix}" for t in ("1e-2", "1e-3", "1e-4", "1e-5", "0")
      for suffix in ("", "_threshold", "_measurable")),
}


def scores_file(path, n_gen=60, n_imp=240, folds=1, seed=0, shift=2.0, unscored=0, offset=0.0):
    rng = np.random.default_rng(seed)
    score = np.round(np.concatenate([rng.normal(shift, 1, n_gen), rng.normal(0, 1, n_imp)]), 3) + offset
    genuine = np.arange(score.size) < n_gen
    n = score.size
    status = np.array(["ok"] * n, dtype=object)
    status[rng.choice(n, unscored, replace=False)] = "missing_embedding"
    ok = status == "ok"
    table = pa.Table.from_pydict(
        {"pair_id": np.arange(n), "ref_image": [f"r{i}" for i in range(n)],
         "probe_image": [f"p{i}" for i in range(n)], "genuine": genuine,
         "fold": (np.arange(n) % folds).astype(np.int16),
         "score": pa.array(np.where(ok, score, 0.0), mask=~ok), "status": status.tolist()},
        schema=SCORES_SCHEMA)
    pq.write_table(table, path)
    return str(path), score, genuine, (np.arange(n) % folds), ok


def confusion(scores, labels, t):
    accept = scores >= t
    return [[int(np.sum(~labels & ~accept)), int(np.sum(~labels & accept))],
            [int(np.sum(labels & ~accept)), int(np.sum(labels & accept))]]


def test_single_fold_without_validation_records_why_and_keeps_every_key(tmp_path):
    path, *_ = scores_file(tmp_path / "s.parquet")
    out = compute_metrics(path)
    assert EXISTING_KEYS <= set(out)
    assert out["operating_point"] == {"status": NO_VALIDATION}
    assert out["operating_fmr"] is None and out["operating_accuracy"] is None


def test_single_fold_with_validation_scores_uses_their_threshold(tmp_path):
    path, score, genuine, _, ok = scores_file(tmp_path / "test.parquet", seed=1, unscored=7)
    val_path, val_score, val_gen, _, _ = scores_file(tmp_path / "val.parquet", seed=2, shift=3.0)
    out = compute_metrics(path, val_scores_path=val_path)
    point = out["operating_point"]
    t = metrics.eer(val_score[val_gen], val_score[~val_gen]).threshold
    assert point["status"] == "ok" and point["method"] == "validation"
    assert point["threshold"] == t
    # a pair that failed to enrol is rejected: a genuine one a false non-match (NIST)
    assert point["confusion_matrix"] == confusion(np.where(ok, score, -np.inf), genuine, t)
    assert sum(map(sum, point["confusion_matrix"])) == out["n_genuine"] + out["n_impostor"] + out["n_unscored"]
    assert out["operating_fmr"] == point["fmr"]


def test_a_rules_optional_inputs_give_the_same_metrics_and_more_than_one_file_is_refused(tmp_path):
    """The workflow hands each optional input as no file or one: the same JSON as write_metrics."""
    path, *_ = scores_file(tmp_path / "test.parquet", seed=1)
    val_path, *_ = scores_file(tmp_path / "val.parquet", seed=2, shift=3.0)
    write_metrics(path, str(tmp_path / "direct.json"), val_scores_path=val_path)
    write_comparison_metrics(path, str(tmp_path / "rule.json"), baseline=[], val_scores=[val_path], index=[],
                             evaluation=None, group_by=[], age_groups=[])
    assert (tmp_path / "rule.json").read_bytes() == (tmp_path / "direct.json").read_bytes()
    # as the workflow's scripts call it: the rule's named inputs and params
    inputs = SimpleNamespace(baseline=[], val_scores=[val_path], index=[], scores=path)
    params = SimpleNamespace(evaluation=None, group_by=[], age_groups=[])
    write_rule_metrics(path, str(tmp_path / "named.json"), inputs, params)
    assert (tmp_path / "named.json").read_bytes() == (tmp_path / "direct.json").read_bytes()
    with pytest.raises(ValueError, match="one validation scores file expected"):
        write_comparison_metrics(path, str(tmp_path / "two.json"), baseline=[], val_scores=[val_path, path],
                                 index=[], evaluation=None, group_by=[], age_groups=[])
    with pytest.raises(ValueError, match="one baseline scores file expected"):
        write_rule_metrics(path, str(tmp_path / "two.json"), SimpleNamespace(baseline=[path, path], val_scores=[],
                                                                             index=[]), params)
    assert not (tmp_path / "two.json").exists()


def test_the_fnmr_interval_is_of_the_fnmr_reported_with_failures_to_enrol(tmp_path):
    """FNMR at FMR 1e-2 counts failures to enrol as false non-matches (NIST): its bootstrap
    interval must resample the same pairs, or the number falls outside its own interval."""
    path, score, genuine, _, ok = scores_file(tmp_path / "s.parquet", n_gen=300, n_imp=600, unscored=150, seed=4)
    out = compute_metrics(path, evaluation={"bootstrap": 60})
    n_fte_gen, n_fte_imp = int(np.sum(genuine & ~ok)), int(np.sum(~genuine & ~ok))
    assert (out["n_failure_to_enrol_genuine"], out["n_failure_to_enrol_impostor"]) == (n_fte_gen, n_fte_imp)
    floor = score[ok].min() - 1.0
    gen = np.sort(np.concatenate([np.full(n_fte_gen, floor), score[genuine & ok]]))
    imp = np.sort(np.concatenate([np.full(n_fte_imp, floor), score[~genuine & ok]]))
    assert out["fnmr_at_fmr_1e-2"] == metrics.fnmr_at_fmr(gen, imp, 1e-2).fnmr
    expected = metrics.bootstrap_ci(gen, imp, lambda g, i: metrics.fnmr_at_fmr(g, i, 1e-2).fnmr, 60, 0.05, 0)
    assert (out["fnmr_at_fmr_1e-2_ci_low"], out["fnmr_at_fmr_1e-2_ci_high"]) == expected
    assert expected[0] <= out["fnmr_at_fmr_1e-2"] <= expected[1]
    # the EER and its interval stay over scored pairs only
    scored = metrics.bootstrap_ci(score[genuine & ok], score[~genuine & ok], lambda g, i: metrics.eer(g, i).eer, 60, 0.05, 0)
    assert (out["eer_ci_low"], out["eer_ci_high"]) == scored


def test_folds_cross_validate_and_sum_the_confusion_matrices(tmp_path):
    path, score, genuine, fold, ok = scores_file(tmp_path / "s.parquet", n_gen=100, n_imp=300, folds=4, seed=3)
    out = compute_metrics(path, evaluation={"operating_point": {"rule": "fmr", "target": 0.05}})
    point = out["operating_point"]
    assert point["method"] == "cross_validation" and point["rule"] == "fmr"
    total = np.zeros((2, 2), int)
    for k, entry in enumerate(point["folds"]):
        rest = fold != k
        t = metrics.fnmr_at_fmr(score[rest & genuine], score[rest & ~genuine], 0.05).threshold
        assert entry["threshold"] == t
        assert np.mean(score[rest & ~genuine] >= t) <= 0.05
        total += confusion(score[~rest], genuine[~rest], t)
    assert point["confusion_matrix"] == total.tolist()
    assert "kfold_accuracy" in out  # the LFW accuracy is still reported beside it


def test_fold_accuracy_counts_a_failure_to_enrol_as_a_rejection(tmp_path):
    """LFW classifies every pair: a pair that failed to enrol is 'different', wrong when genuine.
    Leaving such pairs out raised the accuracy as enrolment failed more often."""
    path, score, genuine, fold, ok = scores_file(tmp_path / "s.parquet", n_gen=150, n_imp=150, folds=10, seed=4,
                                                 unscored=60)
    out = compute_metrics(path)
    expected = metrics.kfold_accuracy(score, genuine, fold, scored=ok)
    assert out["kfold_accuracy"] == pytest.approx(expected.mean)
    by_hand = []  # each fold: threshold from the other folds' scored pairs, a failure always 'different'
    for k in range(10):
        rest = (fold != k) & ok
        t = metrics._midpoint_threshold(np.sort(score[rest & genuine]), np.sort(score[rest & ~genuine]))
        by_hand.append(np.mean(((score[fold == k] >= t) & ok[fold == k]) == genuine[fold == k]))
    assert expected.mean == pytest.approx(np.mean(by_hand))
    scored_only = metrics.kfold_accuracy(score[ok], genuine[ok], fold[ok])
    assert out["kfold_accuracy"] < scored_only.mean
    fnr = [f["confusion_matrix"][1][0] for f in out["operating_point"]["folds"]]
    assert sum(fnr) >= int((~ok & genuine).sum())  # every failed genuine pair is a false non-match


def test_an_empty_validation_class_is_a_named_error(tmp_path):
    path, *_ = scores_file(tmp_path / "test.parquet")
    val_path, *_ = scores_file(tmp_path / "val.parquet", n_gen=0)
    with pytest.raises(ValueError, match="val.parquet need scored genuine and impostor pairs"):
        compute_metrics(path, val_scores_path=val_path)


def test_written_json_is_strict_and_byte_stable(tmp_path):
    path, *_ = scores_file(tmp_path / "s.parquet", seed=4)
    # a validation threshold far below every test score accepts every test pair: impostor
    # precision is then undefined, and must reach the JSON as null, never NaN
    val_path, *_ = scores_file(tmp_path / "val.parquet", seed=5, offset=-100.0)
    write_metrics(path, str(tmp_path / "a.json"), val_scores_path=val_path)
    write_metrics(path, str(tmp_path / "b.json"), val_scores_path=val_path)
    text = (tmp_path / "a.json").read_text()
    assert text == (tmp_path / "b.json").read_text()

    def reject(name):
        raise AssertionError(f"{name} in metrics JSON")

    values = json.loads(text, parse_constant=reject)
    point = values["operating_point"]
    assert point["confusion_matrix"] == [[0, values["n_impostor"]], [0, values["n_genuine"]]]
    assert point["classification_report"]["impostor"]["precision"] is None
    assert point["classification_report"]["genuine"]["support"] == values["n_genuine"]


def test_pairs_between_folds_count_in_pooled_metrics_but_in_no_fold(tmp_path):
    """An impostor pair of people from two folds (fold -1) would let a fold's threshold be chosen
    on pairs of its own people; it enters EER and the other pooled metrics, not the folds."""
    path, score, genuine, fold, _ = scores_file(tmp_path / "s.parquet", n_gen=100, n_imp=300, folds=4, seed=5)
    table = pq.read_table(path)
    between = ~genuine & (np.arange(score.size) % 3 == 0)
    fold = np.where(between, -1, fold)
    pq.write_table(table.set_column(table.schema.get_field_index("fold"), "fold",
                                    pa.array(fold.astype(np.int16))), path)
    out = compute_metrics(path)
    assert out["n_impostor"] == 300 and out["eer"] == metrics.eer(score[genuine], score[~genuine]).eer
    inside = fold >= 0
    expected = metrics.kfold_accuracy(score[inside], genuine[inside], fold[inside])
    assert out["kfold_accuracy"] == pytest.approx(expected.mean)
    point = out["operating_point"]
    assert [f["fold"] for f in point["folds"]] == [0, 1, 2, 3]
    assert point["n_between_folds"] == int(between.sum()) and point["n_test"] == int(inside.sum())


def test_folds_of_one_person_record_why_instead_of_failing(tmp_path):
    """On a small test part, folds by person can leave a fold without impostor pairs of its own
    (they all lie between folds): the metrics are still written, with the reason, not a crash."""
    path, score, genuine, fold, _ = scores_file(tmp_path / "s.parquet", n_gen=40, n_imp=80, folds=4, seed=3)
    table = pq.read_table(path)
    fold = np.where(genuine, fold, np.where(fold == 0, 0, -1))  # only fold 0 keeps impostor pairs
    pq.write_table(table.set_column(table.schema.get_field_index("fold"), "fold",
                                    pa.array(fold.astype(np.int16))), path)
    out = compute_metrics(path)
    assert out["eer"] == metrics.eer(score[genuine], score[~genuine]).eer
    assert out["operating_point"]["status"] == FOLDS_TOO_SMALL
    assert out.get("kfold_accuracy") is None and out["kfold_accuracy_status"] == FOLDS_TOO_SMALL


def test_a_comparison_without_a_scored_genuine_pair_is_recorded_not_a_crash(tmp_path):
    """Every genuine pair failed to enrol (e.g. no real-masked photo found): the file says so, and
    the rates that count failures are still given (FNMR 1: every genuine pair is a non-match)."""
    path, score, genuine, _, ok = scores_file(tmp_path / "s.parquet", n_gen=20, n_imp=300, seed=5)
    table = pq.read_table(path).to_pandas()
    table.loc[table.genuine, "status"] = "missing_embedding"
    table.loc[table.genuine, "score"] = None
    pq.write_table(pa.Table.from_pandas(table, schema=SCORES_SCHEMA, preserve_index=False), path)
    out = compute_metrics(path, evaluation={"bootstrap": 20})
    assert out["n_genuine"] == 0 and out["n_failure_to_enrol_genuine"] == 20
    assert out["eer"] is None and "no scored genuine pair" in out["status"]
    assert out["fnmr_at_fmr_1e-2"] == 1.0 and out["eer_with_fte"] == 1.0
    json.dumps(out, allow_nan=False)


def test_a_validation_threshold_below_every_test_score_still_rejects_failures(tmp_path):
    """Unscored pairs were given a score just below the lowest test score; a threshold from another
    set could fall below it and accept them."""
    path, score, genuine, _, ok = scores_file(tmp_path / "test.parquet", seed=1, unscored=20, offset=10.0)
    val_path, *_ = scores_file(tmp_path / "val.parquet", seed=2)
    point = compute_metrics(path, val_scores_path=val_path)["operating_point"]
    assert point["threshold"] < score[ok].min()  # every scored test pair accepted
    (tn, fp), (fn, tp) = point["confusion_matrix"]
    assert fn == int((~ok & genuine).sum()) and tn == int((~ok & ~genuine).sum())
    assert point["iou"] == pytest.approx(metrics.histogram_overlap(score[ok & genuine], score[ok & ~genuine]))


def test_nist_rates_reject_failures_whatever_the_baseline_threshold(tmp_path):
    """neg_l2-like scores: the baseline threshold lay below the stand-in score of pairs that failed
    to enrol, so every failed pair counted as a match (FNMR 0, FMR 1 with every pair failed)."""
    path, score, genuine, _, _ = scores_file(tmp_path / "s.parquet", n_gen=30, n_imp=300, seed=7, offset=-1.0)
    table = pq.read_table(path).to_pandas()
    table["status"], table["score"] = "missing_embedding", np.nan
    pq.write_table(pa.Table.from_pandas(table, schema=SCORES_SCHEMA, preserve_index=False), path)
    base, *_ = scores_file(tmp_path / "base.parquet", n_gen=30, n_imp=300, seed=8, offset=-10.0)
    out = compute_metrics(path, baseline_path=base)
    assert out["nist_fnmr_at_fmr_1e-2"] == 1.0 and out["nist_fnmr_at_fmr_1e-2_fmr"] == 0.0
    assert out["fnmr_at_fmr_1e-2_threshold"] is None  # no scored impostor: no threshold but a stand-in's
    folds, *_ = scores_file(tmp_path / "f.parquet", n_gen=40, n_imp=120, folds=4, seed=9)
    table = pq.read_table(folds).to_pandas()
    table["status"], table["score"] = "missing_embedding", np.nan
    pq.write_table(pa.Table.from_pandas(table, schema=SCORES_SCHEMA, preserve_index=False), folds)
    out = compute_metrics(folds)
    assert out["kfold_accuracy_status"].startswith("too few scored pairs")
    assert out["operating_point"]["status"].startswith("too few scored pairs")
    json.dumps(out, allow_nan=False)
