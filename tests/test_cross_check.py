"""The project's numbers against tools written elsewhere, read from the exported Bob score file
as a reviewer would: pyeer (EER, rates at the EER threshold, FNMR at FMR 0) and scikit-learn
(ROC AUC). bob.measure pins numpy 1.x, which this environment cannot take; its check runs where
it is installed."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from maskbench.io.manifests import SCORES_SCHEMA
from maskbench.stages.metrics import compute_metrics
from maskbench.io.score_files import export_bob4


def write_scores(path, n_people: int = 40, per_person: int = 5, seed: int = 0) -> dict[str, str]:
    """A scores file of all pairs of n_people x per_person images (scores rounded to 2 decimals
    so that ties occur), one pair left unscored; returns image -> identity."""
    rng = np.random.default_rng(seed)
    images = {f"p{p:02d}/{k}.png": f"p{p:02d}" for p in range(n_people) for k in range(per_person)}
    ids = sorted(images)
    ref, probe = np.triu_indices(len(ids), k=1)
    genuine = np.array([images[ids[a]] == images[ids[b]] for a, b in zip(ref, probe)])
    score = np.round(np.where(genuine, rng.normal(1.2, 1, genuine.size), rng.normal(-1, 1, genuine.size)), 2)
    status = np.where(np.arange(genuine.size) == 7, "no_embedding", "ok")
    table = pa.Table.from_pydict({
        "pair_id": np.arange(genuine.size), "ref_image": [ids[a] for a in ref],
        "probe_image": [ids[b] for b in probe], "genuine": genuine,
        "fold": np.zeros(genuine.size, dtype=np.int16),
        "score": pa.array(np.where(status == "ok", score, 0.0), mask=status != "ok"), "status": status.tolist(),
    }, schema=SCORES_SCHEMA)
    pq.write_table(table, path)
    return images


def read_bob4(path) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor scores of a 4-column Bob file, read without the project's code."""
    genuine, impostor = [], []
    for line in open(path, encoding="utf-8"):
        claimed, real, _probe, score = line.split()
        (genuine if claimed == real else impostor).append(float(score))
    return np.array(genuine), np.array(impostor)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("cross")
    images = write_scores(root / "scores.parquet")
    counts = export_bob4(str(root / "scores.parquet"), root / "scores.bob4.txt", images)
    assert counts["skipped"] == 1  # the unscored pair is left out of the Bob file, and counted
    return compute_metrics(str(root / "scores.parquet")), read_bob4(root / "scores.bob4.txt")


def test_pyeer_agrees_with_the_eer_of_the_exported_bob_file(exported):
    from pyeer.eer_stats import calculate_roc, get_eer_values, get_fmr_op

    ours, (gen, imp) = exported
    assert (gen.size, imp.size) == (ours["n_genuine"], ours["n_impostor"])
    thresholds, fmr, fnmr = calculate_roc(gen, imp)
    _, _, _, their_eer = get_eer_values(fmr, fnmr)
    # both take (FMR + FNMR) / 2 at one of the two thresholds around the crossing; pyeer breaks the
    # choice by the smaller sum, we by the smaller gap, so they may differ by at most one step
    step = max(1 / gen.size, 1 / imp.size)
    print(f"EER maskbench {ours['eer']:.6f}, pyeer {their_eer:.6f} ({gen.size} genuine, {imp.size} impostor)")
    assert abs(ours["eer"] - their_eer) <= step / 2 + 1e-12
    # at our EER threshold pyeer counts the same error rates (accept score >= threshold)
    at = int(np.flatnonzero(thresholds == ours["eer_threshold"])[0])
    assert (fmr[at] + fnmr[at]) / 2 == pytest.approx(ours["eer"], abs=1e-12)
    # FNMR at FMR 0 (pyeer's ZeroFMR): the lowest threshold above every impostor
    _, zero_fmr = get_fmr_op(fmr, fnmr, 0)
    assert ours["fnmr_at_fmr_0"] == pytest.approx(zero_fmr, abs=1e-12)


def test_sklearn_auc_of_the_exported_bob_file_equals_ours(exported):
    ours, (gen, imp) = exported
    labels = np.r_[np.ones(gen.size), np.zeros(imp.size)]
    assert ours["auc"] == pytest.approx(roc_auc_score(labels, np.r_[gen, imp]), abs=1e-12)


def test_bob_measure_agrees_where_it_installs(exported):
    measure = pytest.importorskip("bob.measure", reason="bob.measure needs numpy 1.x; not installable here")
    ours, (gen, imp) = exported
    threshold = measure.eer_threshold(imp, gen)
    far, frr = measure.farfrr(imp, gen, threshold)
    assert abs(ours["eer"] - (far + frr) / 2) <= max(1 / gen.size, 1 / imp.size)
    assert ours["eer_rocch"] == pytest.approx(measure.eer_rocch(imp, gen), abs=1e-9)
