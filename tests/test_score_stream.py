"""The score stage's fast paths give exactly what the plain ones give."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from maskbench.evaluation.scoring import pair_scores
from maskbench.io.manifests import PAIRS_SCHEMA
from maskbench.stages.score import PAIR_COLUMNS, _may_hold, _pair_scores_at, comparison_batches, l2_distances


@pytest.mark.parametrize("kind", ["neg_l2", "inv_l2", "cosine"])
@pytest.mark.parametrize("n", [0, 1, 7, 1023, 1024, 1025, 5000])
def test_scores_at_rows_equal_pair_scores_to_the_bit(kind, n):
    rng = np.random.default_rng(n)
    ref = rng.normal(0, 1, (300, 128)).astype(np.float32)
    probe = (ref + rng.normal(0, 0.1, ref.shape)).astype(np.float32)
    probe[:5] = ref[:5]  # distance 0: -0.0 for neg_l2
    r, p = rng.integers(0, 300, n), rng.integers(0, 300, n)
    got = _pair_scores_at(ref, probe, r, p, kind)
    want = pair_scores(ref.astype(np.float64)[r], probe.astype(np.float64)[p], kind) if n else np.empty(0)
    assert got.tobytes() == want.tobytes()


def test_l2_distances_do_not_depend_on_the_chunk():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, (50, 33)).astype(np.float32), rng.normal(0, 1, (40, 33)).astype(np.float32)
    r, p = rng.integers(0, 50, 999), rng.integers(0, 40, 999)
    runs = [l2_distances(a, b, r, p, np.empty(999), chunk).tobytes() for chunk in (1, 10, 998, 4096)]
    assert len(set(runs)) == 1


def _plain_batches(path, ref_variant, probe_variant, rows):
    """The batches as the score stage read them before (iter_batches over the row groups whose
    statistics allow the comparison, without read_dictionary, filtered)."""
    pf = pq.ParquetFile(path)
    columns = {name: pf.metadata.schema.names.index(name) for name in ("ref_variant", "probe_variant")}
    wanted = {"ref_variant": ref_variant, "probe_variant": probe_variant}
    groups = [g for g in range(pf.num_row_groups) if _may_hold(pf.metadata.row_group(g), columns, wanted)]
    for batch in pf.iter_batches(batch_size=rows, row_groups=groups, columns=PAIR_COLUMNS):
        batch = batch.filter(pc.and_(pc.equal(batch.column("ref_variant"), ref_variant),
                                     pc.equal(batch.column("probe_variant"), probe_variant)))
        if batch.num_rows:
            yield batch


@pytest.mark.parametrize("rows", [1, 7, 100, 1000])
@pytest.mark.parametrize("mixed, group_rows", [(False, 130), (False, 150), (True, 130)])
def test_batches_are_the_plain_batches_in_slices(tmp_path, rows, mixed, group_rows):
    """Row groups of one comparison only (150: the variant columns are not read), or not."""
    n = 1500
    rng = np.random.default_rng(rows)
    variants = rng.choice(["a", "b"], n) if mixed else np.repeat(["a", "b"], n // 2)
    images = [f"img{k}" for k in rng.integers(0, 200, 2 * n)]
    table = pa.Table.from_pydict({"pair_id": np.arange(n), "ref_image": images[:n], "ref_variant": ["u"] * n,
                                  "probe_image": images[n:], "probe_variant": variants.tolist(),
                                  "genuine": rng.random(n) < 0.1, "fold": np.zeros(n, np.int16)}, schema=PAIRS_SCHEMA)
    pq.write_table(table, tmp_path / "p.parquet", row_group_size=group_rows)
    for variant in ("a", "b"):
        plain = list(_plain_batches(tmp_path / "p.parquet", "u", variant, rows))
        sliced = list(comparison_batches(str(tmp_path / "p.parquet"), "u", variant, rows))
        assert [b.num_rows for b in plain] == [sum(s.num_rows for s in w) for w in sliced]
        for batch, window in zip(plain, sliced):
            for name in ("pair_id", "ref_image", "probe_image", "genuine", "fold"):
                parts = [s.column(name) for s in window]
                parts = [c.dictionary.take(c.indices) if pa.types.is_dictionary(c.type) else c for c in parts]
                assert pa.concat_arrays(parts).equals(batch.column(name))
