"""Score files in and out: Bob's 4/5-column text and CSV, against hand-written files."""

from __future__ import annotations

import struct
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from maskbench.evaluation import metrics
from maskbench.io.manifests import PAIRS_SCHEMA, SCORES_SCHEMA
from maskbench.io.score_files import MISSING_SCORE, NAN_SCORE, ScoreFileError, export_bob4, export_bob5, export_score_file, format_score, import_score_file, import_scores, read_bob, read_csv_scores
from maskbench.config import imported_score_path


def write(path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


BOB4 = """# claimed_id real_id probe_label score
alice alice alice/2.png 0.75

alice bob bob/1.png -1.5e-3
  # an indented comment
bob bob bob/2.png nan
bob carol carol/1.png 2
"""


# ---------------------------------------------------------------------------------------------
# reading Bob's files


def test_read_bob4_keeps_line_numbers_fields_and_nan_with_a_status(tmp_path):
    lines = read_bob(write(tmp_path / "s.txt", BOB4), columns=4).to_pydict()
    assert lines["line"] == [2, 4, 6, 7]
    assert lines["claimed_id"] == ["alice", "alice", "bob", "bob"]
    assert lines["real_id"] == ["alice", "bob", "bob", "carol"]
    assert lines["probe_label"] == ["alice/2.png", "bob/1.png", "bob/2.png", "carol/1.png"]
    assert lines["model_label"] == [None] * 4
    assert lines["score"] == [0.75, -1.5e-3, None, 2.0]
    assert lines["status"] == ["ok", "ok", NAN_SCORE, "ok"]


def test_read_bob_detects_four_and_five_columns(tmp_path):
    four = read_bob(write(tmp_path / "four.txt", BOB4))
    assert four["real_id"].to_pylist() == ["alice", "bob", "bob", "carol"]
    five = read_bob(write(tmp_path / "five.txt", "a a/1.png a a/2.png 1.0\na a/1.png b b/1.png 0.5\n"))
    assert five.to_pydict()["model_label"] == ["a/1.png", "a/1.png"]
    assert five.to_pydict()["real_id"] == ["a", "b"]
    assert five.to_pydict()["probe_label"] == ["a/2.png", "b/1.png"]


@pytest.mark.parametrize("text, columns, message", [
    ("a a x 1.0\na b y\n", None, r"line 2: expected 4 columns \(claimed_id real_id probe_label score\), found 3"),
    ("a a x 1.0\na m b y 0.5\n", None, "line 2: expected 4 columns"),
    ("# c\na a x\n", None, "line 2: a Bob score line has 4 columns"),
    ("a a x 1.0\na b y high\n", None, "line 2: the score 'high' is not a number"),
    ("a m a x 1.0\n", 4, "line 1: expected 4 columns"),
    ("a a x 1.0\n", 5, r"line 1: expected 5 columns \(claimed_id model_label real_id probe_label score\)"),
    ("# only a comment\n\n", None, "has no score lines"),
])
def test_read_bob_errors_name_the_file_and_line(tmp_path, text, columns, message):
    path = write(tmp_path / "bad.txt", text)
    with pytest.raises(ScoreFileError, match=message) as info:
        read_bob(path, columns)
    assert path in str(info.value)


def test_read_bob_rejects_bytes_that_are_not_utf8(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes(b"a a x 1.0\n\xe9 a x 1.0\n")
    with pytest.raises(ScoreFileError, match="line 2: not UTF-8"):
        read_bob(path)


# ---------------------------------------------------------------------------------------------
# importing


def test_import_bob4_labels_pairs_by_identity_in_line_order(tmp_path):
    table = import_scores(write(tmp_path / "s.txt", BOB4), "bob4")
    assert table.schema == SCORES_SCHEMA
    got = table.to_pydict()
    assert got["pair_id"] == [0, 1, 2, 3]
    assert got["genuine"] == [True, False, True, False]
    assert got["ref_image"] == ["alice", "alice", "bob", "bob"]  # no model label: the claimed id
    assert got["probe_image"] == ["alice/2.png", "bob/1.png", "bob/2.png", "carol/1.png"]
    assert got["fold"] == [0] * 4
    assert got["score"] == [0.75, -1.5e-3, None, 2.0]
    assert got["status"] == ["ok", "ok", NAN_SCORE, "ok"]


def test_import_bob5_takes_the_model_label_as_reference(tmp_path):
    table = import_scores(write(tmp_path / "s.txt", "a a/1.png a a/2.png 1.0\na a/1.png b b/1.png inf\n"), "bob5")
    assert table["ref_image"].to_pylist() == ["a/1.png", "a/1.png"]
    assert table["genuine"].to_pylist() == [True, False]
    assert table["status"].to_pylist() == ["ok", "infinite_score"]


def test_import_rejects_unknown_format_and_a_manifest_for_bob(tmp_path):
    path = write(tmp_path / "s.txt", BOB4)
    with pytest.raises(ValueError, match="unknown score file format 'bob6'"):
        import_scores(path, "bob6")
    with pytest.raises(ValueError, match="carry their own pair labels"):
        import_scores(path, "bob4", pairs_table=pairs_manifest())


def pairs_manifest() -> pa.Table:
    """Two comparisons of three image pairs; ids 0-2 unmasked-vs-unmasked, 3-5 unmasked-vs-n95."""
    images = [("a/1", "a/2", True, 0), ("a/1", "b/1", False, 0), ("b/1", "b/2", True, 1)]
    rows = {name: [] for name in PAIRS_SCHEMA.names}
    for k, (variant, (ref, probe, genuine, fold)) in enumerate(
            (v, p) for v in ("unmasked", "n95") for p in images):
        for name, value in zip(PAIRS_SCHEMA.names, (k, ref, "unmasked", probe, variant, genuine, fold)):
            rows[name].append(value)
    return pa.Table.from_pydict(rows, schema=PAIRS_SCHEMA)


def test_csv_by_pair_id_joins_the_comparisons_pairs_and_marks_the_unscored(tmp_path):
    path = write(tmp_path / "s.csv", "pair_id,score\n5,0.25\n3,NaN\n")
    table = import_scores(path, "csv", pairs_manifest(), "unmasked-vs-n95")
    assert table.schema == SCORES_SCHEMA
    manifest = pairs_manifest().to_pandas().set_index("pair_id")
    got = table.to_pandas().set_index("pair_id")
    assert got.index.tolist() == [3, 4, 5]
    for column in ("ref_image", "probe_image", "genuine", "fold"):
        assert got[column].tolist() == manifest.loc[[3, 4, 5], column].tolist()
    assert got["status"].tolist() == [NAN_SCORE, MISSING_SCORE, "ok"]
    assert table["score"].to_pylist() == [None, None, 0.25]


def test_csv_pair_ids_of_another_comparison_are_named(tmp_path):
    path = write(tmp_path / "s.csv", "pair_id,score\n0,0.1\n4,0.2\n1,0.3\n")
    with pytest.raises(ScoreFileError, match=r"2 pair\(s\) that are not among the pairs of unmasked-vs-n95: 0, 1"):
        import_scores(path, "csv", pairs_manifest(), "unmasked-vs-n95")


def test_csv_against_a_manifest_of_several_comparisons_needs_the_comparison(tmp_path):
    with pytest.raises(ValueError, match="several comparisons .*: name the one"):
        import_scores(write(tmp_path / "s.csv", "pair_id,score\n0,0.1\n"), "csv", pairs_manifest())


def test_csv_by_pair_id_needs_the_manifest(tmp_path):
    with pytest.raises(ScoreFileError, match="needs the pairs manifest"):
        import_scores(write(tmp_path / "s.csv", "pair_id,score\n0,0.1\n"), "csv")


def test_csv_by_image_names_matches_the_manifest_and_checks_genuine(tmp_path):
    path = write(tmp_path / "s.csv", "ref_image,probe_image,score,genuine\na/1,b/1,0.5,false\nb/1,b/2,0.9,true\n")
    table = import_scores(path, "csv", pairs_manifest(), "unmasked-vs-unmasked")
    assert table["pair_id"].to_pylist() == [0, 1, 2]
    assert table["score"].to_pylist() == [None, 0.5, 0.9]
    assert table["status"].to_pylist() == [MISSING_SCORE, "ok", "ok"]
    wrong = write(tmp_path / "wrong.csv", "ref_image,probe_image,score,genuine\na/1,b/1,0.5,true\n")
    with pytest.raises(ScoreFileError, match="line 2: pair 'a/1' / 'b/1' is marked genuine=True but the "
                                             "pairs manifest says False"):
        import_scores(wrong, "csv", pairs_manifest(), "unmasked-vs-unmasked")


def test_csv_without_manifest_needs_genuine(tmp_path):
    path = write(tmp_path / "s.csv", "ref_image,probe_image,score,genuine\nx,y,1.0,1\nx,z,-2.0,0\n")
    table = import_scores(path, "csv")
    assert table.to_pydict() == {"pair_id": [0, 1], "ref_image": ["x", "x"], "probe_image": ["y", "z"],
                                 "genuine": [True, False], "fold": [0, 0], "score": [1.0, -2.0],
                                 "status": ["ok", "ok"]}
    with pytest.raises(ScoreFileError, match="has no genuine column"):
        import_scores(write(tmp_path / "no.csv", "ref_image,probe_image,score\nx,y,1.0\n"), "csv")


@pytest.mark.parametrize("text, message", [
    ("ref_image,score\nx,1\n", r"lack \['probe_image'\]"),
    ("pair_id,score\n0,1.0\n0,2.0\n", "scores the same pair twice: 0"),
    ("pair_id,score\n0,1.0\nzero,2.0\n", "line 3: pair_id 'zero' is not an integer"),
    ("pair_id,score\n0,1.0\n1,high\n", "line 3: score 'high' is not a number"),
    ("ref_image,probe_image,score,genuine\nx,y,1,maybe\n", "line 2: genuine 'maybe' is not true/false"),
    ("pair_id,score\n", "has a header but no score rows"),
    ("pair_id,score\n0,1.0\n\n1\n", r"line 4: expected 2 fields \(pair_id,score\), found 1"),
    ('pair_id,score\n0,"1.0\n', "line 2: unexpected end of data"),
    ("", "is empty"),
])
def test_csv_errors_name_the_file_and_the_fix(tmp_path, text, message):
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(ScoreFileError, match=message) as info:
        import_scores(path, "csv", pairs_manifest(), "unmasked-vs-unmasked")
    assert path in str(info.value)


def test_read_csv_reports_empty_scores_as_nan(tmp_path):
    rows = read_csv_scores(write(tmp_path / "s.csv", "pair_id,score\n0,\n1,NA\n2,0.5\n"))
    assert rows["status"].to_pylist() == [NAN_SCORE, NAN_SCORE, "ok"]
    assert rows["line"].to_pylist() == [2, 3, 4]


def test_import_score_file_writes_a_scores_parquet(tmp_path):
    pq.write_table(pairs_manifest(), tmp_path / "pairs.parquet")
    out = tmp_path / "out" / "scores.parquet"
    counts = import_score_file(write(tmp_path / "s.csv", "pair_id,score\n0,0.3\n2,nan\n"), "csv", str(out),
                               str(tmp_path / "pairs.parquet"), "unmasked-vs-unmasked")
    assert counts == {"pairs": 3, "ok": 1, NAN_SCORE: 1, MISSING_SCORE: 1}
    table = pq.read_table(out)
    assert table.schema == SCORES_SCHEMA
    assert table["score"].to_pylist() == [0.3, None, None]


def test_imported_score_path_fills_the_template():
    assert imported_score_path("x/{dataset}/{protocol}/{comparison}.txt", "lfw", "view2",
                               "unmasked-vs-n95") == "x/lfw/view2/unmasked-vs-n95.txt"
    with pytest.raises(ValueError, match="only {dataset}, {protocol} and {comparison}"):
        imported_score_path("x/{model}.txt", "lfw", "view2", "a-vs-b")


# ---------------------------------------------------------------------------------------------
# exporting


def scores_table(n: int = 400, seed: int = 0):
    """Random pairs over 20 identities with scores of awkward magnitudes, a few unscored."""
    rng = np.random.default_rng(seed)
    identity_of = {f"id{k:02d}/{j}.png": f"id{k:02d}" for k in range(20) for j in range(3)}
    images = sorted(identity_of)
    ref = rng.choice(images, n)
    probe = rng.choice(images, n)
    genuine = np.array([identity_of[r] == identity_of[p] for r, p in zip(ref, probe)])
    score = rng.normal(size=n) * 10.0 ** rng.integers(-8, 8, n) + genuine
    status = np.where(rng.random(n) < 0.05, "missing_embedding", "ok")
    ok = status == "ok"
    table = pa.Table.from_pydict(
        {"pair_id": np.arange(n), "ref_image": ref.tolist(), "probe_image": probe.tolist(),
         "genuine": genuine, "fold": np.zeros(n, dtype=np.int16),
         "score": pa.array(np.where(ok, score, 0.0), mask=~ok), "status": status.tolist()},
        schema=SCORES_SCHEMA)
    return table, identity_of, score, genuine, ok


def test_export_bob4_round_trips_scores_and_eer_exactly(tmp_path):
    table, identities, score, genuine, ok = scores_table()
    assert genuine.any() and (~genuine).any() and (~ok).any()
    counts = export_bob4(table, tmp_path / "s.txt", identities)
    assert counts == {"written": int(ok.sum()), "skipped": int((~ok).sum()),
                      "skipped_by_status": {"missing_embedding": int((~ok).sum())}}
    back = import_scores(tmp_path / "s.txt", "bob4").to_pandas()
    gen_back = back.loc[back["genuine"], "score"].to_numpy()
    imp_back = back.loc[~back["genuine"], "score"].to_numpy()
    assert np.array_equal(gen_back, score[ok & genuine])
    assert np.array_equal(imp_back, score[ok & ~genuine])
    assert metrics.eer(gen_back, imp_back) == metrics.eer(score[ok & genuine], score[ok & ~genuine])
    lines = read_bob(tmp_path / "s.txt").to_pandas()
    kept = table.to_pandas()[ok]
    assert lines["claimed_id"].tolist() == kept["ref_image"].map(identities).tolist()
    assert lines["real_id"].tolist() == kept["probe_image"].map(identities).tolist()
    assert lines["probe_label"].tolist() == kept["probe_image"].tolist()


def test_export_bob5_round_trips_with_reference_images(tmp_path):
    table, identities, score, genuine, ok = scores_table(seed=1)
    export_bob5(table, tmp_path / "s5.txt", identities)
    back = import_scores(tmp_path / "s5.txt", "bob5")
    kept = table.filter(pa.array(ok))
    assert back["ref_image"].to_pylist() == kept["ref_image"].to_pylist()
    assert back["probe_image"].to_pylist() == kept["probe_image"].to_pylist()
    assert back["genuine"].to_pylist() == kept["genuine"].to_pylist()
    assert np.array_equal(back["score"].to_numpy(), score[ok])


def test_export_is_deterministic_and_uses_shortest_round_trip_floats(tmp_path):
    table, identities, *_ = scores_table(seed=2)
    export_bob4(table, tmp_path / "a.txt", identities)
    export_bob4(table, tmp_path / "b.txt", identities)
    assert (tmp_path / "a.txt").read_bytes() == (tmp_path / "b.txt").read_bytes()
    for value in (0.1 + 0.2, 1e-300, -0.0, 123456789.123456789, 5e-324, -1.7976931348623157e308):
        assert struct.pack("<d", float(format_score(value))) == struct.pack("<d", value)  # bit for bit
        assert len(format_score(value)) <= len(f"{value:.17e}")


def _one_pair(ref="r", probe="p", genuine=True):
    return pa.Table.from_pydict(
        {"pair_id": [0], "ref_image": [ref], "probe_image": [probe], "genuine": [genuine], "fold": [0],
         "score": [0.5], "status": ["ok"]}, schema=SCORES_SCHEMA)


@pytest.mark.parametrize("table, identities, message", [
    (_one_pair(), {"r": "a"}, r"1 image\(s\) of the scores have no identity in the aligned shards given: 'p'"),
    (_one_pair(), {"r": "a", "p": None}, "Bob's format needs claimed and real identities"),
    (_one_pair(genuine=False), {"r": "a", "p": "a"}, "genuine flag that disagrees with their identities"),
    (_one_pair(), {"r": "a b", "p": "a b"}, "holds whitespace"),
    (_one_pair(), {"r": "#a", "p": "#a"}, "starts with '#'"),
    (_one_pair(probe="p 1"), {"r": "a", "p 1": "a"}, "probe image id 'p 1'"),
])
def test_export_errors_name_the_problem(tmp_path, table, identities, message):
    with pytest.raises(ScoreFileError, match=message):
        export_bob4(table, tmp_path / "s.txt", identities)
    assert not (tmp_path / "s.txt").exists()


def test_export_score_file_reads_identities_from_aligned_shards(tmp_path):
    table, identities, score, genuine, ok = scores_table(n=50, seed=3)
    pq.write_table(table, tmp_path / "scores.parquet")
    ids = sorted(identities)
    shards = []
    for k, part in enumerate((ids[::2], ids[1::2])):
        shard = tmp_path / f"shard-{k}.parquet"
        pq.write_table(pa.table({"image_id": part, "identity": [identities[i] for i in part],
                                 "status": ["ok"] * len(part)}), shard)
        shards.append(str(shard))
    out = tmp_path / "scores.bob4.txt"
    counts = export_score_file(str(tmp_path / "scores.parquet"), shards, str(out))
    assert counts["written"] == int(ok.sum())
    assert np.array_equal(read_bob(out)["score"].to_numpy(), score[ok])
