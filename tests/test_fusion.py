"""Ensemble scores: label-free z-normalised weighted means of the members' scores."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from maskbench.evaluation.fusion import FusionError, fuse, fuse_score_files, zscore
from maskbench.io.manifests import SCORES_SCHEMA
from maskbench.evaluation.metrics import eer


def _scores_file(path, scores, genuine, status=None):
    n = len(scores)
    status = status or ["ok"] * n
    ok = np.array([s == "ok" for s in status])
    table = pa.Table.from_pydict(
        {
            "pair_id": list(range(n)),
            "ref_image": [f"r{i}" for i in range(n)],
            "probe_image": [f"p{i}" for i in range(n)],
            "genuine": list(map(bool, genuine)),
            "fold": [0] * n,
            "score": pa.array(np.where(ok, scores, 0.0), mask=~ok),
            "status": status,
        },
        schema=SCORES_SCHEMA,
    )
    pq.write_table(table, path)
    return str(path)


def test_fusion_is_invariant_to_each_members_scale_and_offset():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=200), rng.normal(size=200)
    fused = fuse([a, b])
    rescaled = fuse([3.0 * a - 7.0, 0.01 * b + 100.0])
    np.testing.assert_allclose(fused, rescaled, atol=1e-12)
    expected = ((a - a.mean()) / a.std() + (b - b.mean()) / b.std()) / 2
    np.testing.assert_allclose(fused, expected, atol=1e-12)


def test_weights_and_constant_member():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=50), rng.normal(size=50)
    np.testing.assert_allclose(fuse([a, b], [1.0, 0.0]), zscore(a))
    np.testing.assert_allclose(fuse([a, np.full(50, 4.0)]), zscore(a) / 2)
    with pytest.raises(FusionError, match="one non-negative weight per member"):
        fuse([a, b], [1.0])
    with pytest.raises(FusionError, match="at least two"):
        fuse([a])


def test_two_noisy_members_fuse_to_a_lower_eer(tmp_path):
    rng = np.random.default_rng(2)
    genuine = np.repeat([True, False], 2000)
    signal = np.where(genuine, 1.0, 0.0)
    a = signal + rng.normal(scale=1.0, size=genuine.size)
    b = 0.1 * signal + rng.normal(scale=0.1, size=genuine.size)  # same information, another scale
    paths = [_scores_file(tmp_path / "a.parquet", a, genuine), _scores_file(tmp_path / "b.parquet", b, genuine)]
    out = tmp_path / "fused.parquet"
    counts = fuse_score_files(paths, ["a", "b"], str(out))
    assert counts == {"pairs": 4000, "fused": 4000, "missing_member_score": 0}
    fused = pq.read_table(out)
    s = fused["score"].to_numpy()
    e_fused = eer(s[genuine], s[~genuine]).eer
    assert e_fused < min(eer(a[genuine], a[~genuine]).eer, eer(b[genuine], b[~genuine]).eer)


def test_a_pair_missing_in_one_member_keeps_a_status(tmp_path):
    genuine = [True, False, True, False]
    a = _scores_file(tmp_path / "a.parquet", [1.0, 0.0, 0.9, 0.2], genuine)
    b = _scores_file(tmp_path / "b.parquet", [0.5, 0.1, 0.0, 0.3], genuine,
                     status=["ok", "ok", "missing_embedding", "ok"])
    out = tmp_path / "fused.parquet"
    counts = fuse_score_files([a, b], ["a", "b"], str(out))
    assert counts["missing_member_score"] == 1
    table = pq.read_table(out)
    assert table["status"].to_pylist()[2] == "missing_member_score"
    assert table["score"].to_pylist()[2] is None


def test_members_with_different_pairs_are_refused(tmp_path):
    a = _scores_file(tmp_path / "a.parquet", [1.0, 0.0], [True, False])
    b = _scores_file(tmp_path / "b.parquet", [1.0, 0.0, 0.5], [True, False, True])
    with pytest.raises(FusionError, match="does not score the same pairs"):
        fuse_score_files([a, b], ["a", "b"], str(tmp_path / "out.parquet"))
    assert not (tmp_path / "out.parquet").exists()


def test_every_comparison_uses_the_reference_comparisons_scale(tmp_path):
    """Moments come from the reference comparison, so a threshold fixed there means the same here."""
    rng = np.random.default_rng(3)
    genuine = np.repeat([True, False], 500)
    ref_a, ref_b = rng.normal(size=1000), 5.0 + 2.0 * rng.normal(size=1000)
    cmp_a, cmp_b = 0.5 + rng.normal(size=1000), 4.0 + 3.0 * rng.normal(size=1000)
    refs = [_scores_file(tmp_path / f"ref_{m}.parquet", s, genuine) for m, s in (("a", ref_a), ("b", ref_b))]
    paths = [_scores_file(tmp_path / f"cmp_{m}.parquet", s, genuine) for m, s in (("a", cmp_a), ("b", cmp_b))]
    fuse_score_files(paths, ["a", "b"], str(tmp_path / "fused.parquet"), reference_paths=refs)
    fused = pq.read_table(tmp_path / "fused.parquet")["score"].to_numpy()
    expected = ((cmp_a - ref_a.mean()) / ref_a.std() + (cmp_b - ref_b.mean()) / ref_b.std()) / 2
    np.testing.assert_allclose(fused, expected, atol=1e-12)
    # the comparison's own moments would have hidden its shift: a different, wrong scale
    assert not np.allclose(fused, fuse([cmp_a, cmp_b]))


@pytest.mark.parametrize("reference, what", [([0.7] * 4, "one score for every pair"),
                                              ([None] * 4, "no scored pair")])
def test_a_reference_that_cannot_set_a_members_scale_is_refused(tmp_path, reference, what):
    """A member whose reference scores are all missing or all equal would add 0 to every fused
    score: the ensemble would silently be the other member."""
    genuine = [True, False, True, False]
    status = ["ok" if v is not None else "missing_embedding" for v in reference]
    refs = [_scores_file(tmp_path / "ref_a.parquet", [0.9, 0.1, 0.8, 0.3], genuine),
            _scores_file(tmp_path / "ref_b.parquet", [v or 0.0 for v in reference], genuine, status)]
    paths = [_scores_file(tmp_path / f"{m}.parquet", [0.9, 0.2, 0.7, 0.1], genuine) for m in "ab"]
    with pytest.raises(FusionError, match=f"ref_b.parquet: {what}"):
        fuse_score_files(paths, ["a", "b"], str(tmp_path / "fused.parquet"), reference_paths=refs)
    assert not (tmp_path / "fused.parquet").exists()


def test_members_with_the_same_pair_ids_but_other_images_are_refused(tmp_path):
    a = _scores_file(tmp_path / "a.parquet", [1.0, 0.0], [True, False])
    b = tmp_path / "b.parquet"
    table = pq.read_table(a)
    table = table.set_column(1, "ref_image", pa.array(["x0", "x1"]))
    pq.write_table(table, b)
    with pytest.raises(FusionError, match="pair id, images, genuine"):
        fuse_score_files([a, str(b)], ["a", "b"], str(tmp_path / "out.parquet"))


def test_fuse_step_pairs_each_member_with_its_own_reference_scores(tmp_path):
    from maskbench.stages.fuse import fuse_step

    rng = np.random.default_rng(4)
    genuine = np.repeat([True, False], 100)
    a, b = rng.normal(size=200), rng.normal(size=200)
    ref_a, ref_b = rng.normal(loc=5.0, size=200), rng.normal(scale=3.0, size=200)
    files = {n: _scores_file(tmp_path / f"{n}.parquet", s, genuine)
             for n, s in {"a": a, "b": b, "ra": ref_a, "rb": ref_b}.items()}
    # members given in another order than their reference files: each still gets its own moments
    fuse_step({"b": files["b"], "a": files["a"]}, str(tmp_path / "by_name.parquet"),
              reference_scores={"b": files["rb"], "a": files["ra"]})
    fuse_score_files([files["a"], files["b"]], ["a", "b"], str(tmp_path / "direct.parquet"),
                     reference_paths=[files["ra"], files["rb"]])
    np.testing.assert_allclose(pq.read_table(tmp_path / "by_name.parquet")["score"].to_numpy(),
                               pq.read_table(tmp_path / "direct.parquet")["score"].to_numpy())
    with pytest.raises(ValueError, match="reference scores are of"):
        fuse_step({"a": files["a"], "b": files["b"]}, str(tmp_path / "x.parquet"), reference_scores={"a": files["ra"]})


def test_fusion_in_windows_gives_the_table_of_one_pass_and_checks_every_window(tmp_path, monkeypatch):
    """Score files are fused a window of rows at a time (memory follows the window): windows that
    cut through the members' row groups give the same fused table as one window, moments included,
    and a member differing only in a later window is still refused."""
    import maskbench.evaluation.fusion as fusion

    rng = np.random.default_rng(5)
    n = 1000
    genuine = rng.random(n) < 0.3
    status = ["missing_embedding" if k % 97 == 0 else "ok" for k in range(n)]
    a = _scores_file(tmp_path / "a.parquet", rng.normal(size=n), genuine)
    b = _scores_file(tmp_path / "b.parquet", rng.normal(size=n) * 5 + 2, genuine, status=status)
    counts = fuse_score_files([a, b], ["a", "b"], str(tmp_path / "whole.parquet"), weights=[2.0, 1.0])
    monkeypatch.setattr(fusion, "WINDOW_ROWS", 77)
    assert fuse_score_files([a, b], ["a", "b"], str(tmp_path / "windows.parquet"), weights=[2.0, 1.0]) == counts
    whole, windows = pq.read_table(tmp_path / "whole.parquet"), pq.read_table(tmp_path / "windows.parquet")
    assert pq.ParquetFile(tmp_path / "windows.parquet").num_row_groups == -(-n // 77)
    assert windows.equals(whole)
    assert counts["missing_member_score"] == sum(s != "ok" for s in status)

    late = pq.read_table(b).to_pydict()
    late["probe_image"][900] = "someone else"
    pq.write_table(pa.Table.from_pydict(late, schema=SCORES_SCHEMA), tmp_path / "late.parquet")
    with pytest.raises(FusionError, match="does not score the same pairs"):
        fuse_score_files([a, str(tmp_path / "late.parquet")], ["a", "b"], str(tmp_path / "x.parquet"))
    assert not (tmp_path / "x.parquet").exists()
