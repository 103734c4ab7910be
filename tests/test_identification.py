"""Identification: gallery/probe choice, and rank-k, CMC and FNIR@FPIR against a brute-force
search (argsort of the full score matrix)."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.spatial.distance import cdist

from maskbench.config import ConfigError
from maskbench.evaluation.identification import IdentificationError, closed_set, open_set, top_two
from maskbench.protocols.galleries import (
    GALLERY_SCHEMA,
    PROBES_SCHEMA,
    IdentificationSet,
    check_identification,
    choose_identification,
)
from maskbench.stages.identify import build_identification, identify_step
from maskbench.config import identification_probe_variants
from maskbench.io.manifests import embedding_schema
from maskbench.protocols.pairs import ProtocolError

KINDS = ["neg_l2", "inv_l2", "cosine"]


def layout(sizes: list[int]) -> dict[str, str]:
    return {f"id{i:02d}/img_{k}.png": f"id{i:02d}" for i, n in enumerate(sizes) for k in range(n)}


def score_matrix(probes: np.ndarray, gallery: np.ndarray, kind: str) -> np.ndarray:
    """Every probe's score against every gallery sample, computed the obvious way."""
    if kind == "cosine":
        return (probes @ gallery.T) / np.outer(np.linalg.norm(probes, axis=1), np.linalg.norm(gallery, axis=1))
    d = cdist(probes, gallery)
    return -d if kind == "neg_l2" else 1.0 / (1.0 + d)


def brute_force_ranks(scores: np.ndarray, gallery_ids, probe_ids) -> np.ndarray:
    """Rank of the own identity in the order of distinct identities of the sorted candidate list."""
    gallery_ids = np.asarray(gallery_ids)
    ranks = []
    for row, own in zip(scores, probe_ids):
        seen: list[str] = []
        for j in np.argsort(-row, kind="stable"):
            if gallery_ids[j] not in seen:
                seen.append(gallery_ids[j])
        ranks.append(seen.index(own) + 1)
    return np.array(ranks)


def random_search(rng, n_ids=12, gallery_size=2, probes_per_id=3, dim=8, noise=1.2):
    centres = rng.normal(size=(n_ids, dim))
    gids = np.repeat([f"p{i:02d}" for i in range(n_ids)], gallery_size)
    gallery = np.repeat(centres, gallery_size, axis=0) + noise * rng.normal(size=(len(gids), dim))
    pids = np.repeat([f"p{i:02d}" for i in range(n_ids)], probes_per_id)
    probes = np.repeat(centres, probes_per_id, axis=0) + noise * rng.normal(size=(len(pids), dim))
    return gallery, gids, probes, pids


@pytest.mark.parametrize("kind", KINDS)
def test_closed_set_rank_k_and_cmc_equal_brute_force(kind):
    rng = np.random.default_rng(11)
    gallery, gids, probes, pids = random_search(rng)
    ranks = brute_force_ranks(score_matrix(probes, gallery, kind), gids, pids)
    assert 0.2 < np.mean(ranks == 1) < 0.95  # neither trivial nor hopeless
    got = closed_set(gallery, gids, probes, pids, kind, ranks=(1, 5))
    assert got["rank_1"] == pytest.approx(np.mean(ranks <= 1))
    assert got["rank_5"] == pytest.approx(np.mean(ranks <= 5))
    assert got["cmc"] == pytest.approx([np.mean(ranks <= k) for k in range(1, 11)])
    assert got["searches"] == len(pids) and got["gallery_identities"] == 12


@pytest.mark.parametrize("kind", KINDS)
def test_top_candidates_equal_brute_force(kind):
    rng = np.random.default_rng(5)
    gallery, gids, probes, _ = random_search(rng)
    scores = score_matrix(probes, gallery, kind)
    top_id, top_score, _ = top_two(gallery, gids, probes, kind)
    assert list(top_id) == list(gids[scores.argmax(axis=1)])
    np.testing.assert_allclose(top_score, scores.max(axis=1), rtol=1e-9, atol=1e-12)


def test_open_set_fnir_at_fpir_equals_brute_force():
    rng = np.random.default_rng(2)
    gallery, gids, probes, pids = random_search(rng, n_ids=20, probes_per_id=10)
    unknown = {f"p{i:02d}" for i in range(0, 20, 3)}  # 7 identities leave the gallery
    keep = ~np.isin(gids, list(unknown))
    gallery, gids = gallery[keep], gids[keep]
    mated = ~np.isin(pids, list(unknown))
    scores = score_matrix(probes, gallery, "neg_l2")
    best = scores.argmax(axis=1)
    top_score, top_id = scores.max(axis=1), gids[best]
    non_mated = np.sort(top_score[~mated])[::-1]  # 70 non-mated searches
    targets = [0.5, 0.1, 0.03, 0.0]
    got = open_set(*top_two(gallery, gids, probes, "neg_l2")[:2], pids, mated, targets)
    assert got["mated_searches"] == mated.sum() and got["non_mated_searches"] == 70
    for target, point in zip(targets, got["points"]):
        k = math.floor(target * 70 + 1e-9)  # false alarms allowed
        cut = non_mated[k]  # the (k+1)-th highest non-mated top score must stay below the threshold
        alarms = top_score[~mated] > cut
        assert point["fpir"] == pytest.approx(alarms.mean()) and point["fpir"] <= target
        found = (top_id[mated] == pids[mated]) & (top_score[mated] > cut)
        assert point["fnir"] == pytest.approx(1 - found.mean())
    fnirs = [p["fnir"] for p in got["points"]]
    assert fnirs == sorted(fnirs) and fnirs[0] < fnirs[-1]  # stricter FPIR, more misses
    assert got["fnir_at_rank_1_without_threshold"] == pytest.approx(1 - np.mean(top_id[mated] == pids[mated]))


def test_a_tie_goes_against_the_mate_in_closed_and_open_set():
    """A collapsed model (every image at one point) finds nobody at rank 1, in both measures."""
    gallery, gids = np.ones((5, 4)), np.array(list("ABCDE"))
    probes, pids = np.ones((12, 4)), np.array(list("ABCDEABCDEXY"))
    mated = np.array([True] * 10 + [False] * 2)
    got = closed_set(gallery, gids, probes[mated], pids[mated], "neg_l2", ranks=(1, 5))
    assert got["rank_1"] == 0.0 and got["rank_5"] == 1.0
    ids, scores, runner_up = top_two(gallery, gids, probes, "neg_l2")
    np.testing.assert_array_equal(scores, runner_up)
    assert open_set(ids, scores, pids, mated, [0.5], runner_up)["fnir_at_rank_1_without_threshold"] == 1.0
    # apart, the mate is found and the runner-up is the other identity's best sample
    ids, scores, runner_up = top_two(np.array([[0.0], [0.2], [1.0]]), np.array(["a", "a", "b"]), np.array([[0.1]]),
                                     "neg_l2")
    assert ids[0] == "a" and scores[0] == pytest.approx(-0.1) and runner_up[0] == pytest.approx(-0.9)


def test_searches_that_could_not_run_are_misses_or_non_alarms():
    gallery, gids = np.array([[0.0, 0.0], [10.0, 0.0]]), np.array(["A", "B"])
    probes = np.array([[0.1, 0.0], [10.1, 0.0], [5.0, 5.0], [5.0, -6.0]])
    pids, mated = np.array(["A", "B", "X", "Y"]), np.array([True, True, False, False])
    ids, scores, runner_up = top_two(gallery, gids, probes, "neg_l2")
    got = open_set(ids, scores, pids, mated, [0.0, 0.2], runner_up, failed_mated=2, failed_non_mated=3)
    assert got["mated_searches"] == 4 and got["non_mated_searches"] == 5
    assert got["fnir_at_rank_1_without_threshold"] == 0.5  # both that ran were found
    strict, loose = got["points"]
    assert strict["fpir"] == 0.0 and strict["fnir"] == 0.5
    assert loose["fpir"] == pytest.approx(1 / 5) and loose["measurable"]  # five non-mated searches
    closed = closed_set(gallery, gids, probes[mated], pids[mated], "neg_l2", ranks=(1,), failed=2)
    assert closed["rank_1"] == 0.5 and closed["searches"] == 4 and closed["failed_searches"] == 2
    assert closed_set(gallery, gids, probes[:0], pids[:0], "neg_l2", ranks=(1,), failed=3)["rank_1"] == 0.0


def test_clear_errors_for_empty_gallery_and_missing_searches():
    probes = np.ones((3, 4))
    with pytest.raises(IdentificationError, match="gallery is empty"):
        closed_set(np.zeros((0, 4)), np.array([]), probes, np.array(["a"] * 3), "neg_l2")
    with pytest.raises(IdentificationError, match="gallery is empty"):
        top_two(np.zeros((0, 4)), np.array([]), probes, "cosine")
    with pytest.raises(IdentificationError, match="non-mated"):
        open_set(np.array(["a"]), np.array([1.0]), np.array(["a"]), np.array([True]), [0.1])
    with pytest.raises(IdentificationError, match="unknown score kind"):
        top_two(np.ones((2, 4)), np.array(["a", "b"]), probes, "dot")


# ----------------------------------------------------------------------------------------------
# the protocol


def test_gallery_and_probes_split_each_identity():
    images = layout([1, 2, 3, 5, 4, 2, 6])
    chosen = choose_identification(images, seed=4, gallery_size=2)
    check_identification(chosen, images)
    by_id: dict[str, list[str]] = {}
    for image, identity in chosen.gallery:
        by_id.setdefault(identity, []).append(image)
    assert sorted(by_id) == ["id02", "id03", "id04", "id06"]  # >= gallery_size + 1 images
    assert all(len(v) == 2 for v in by_id.values())
    probe_ids = {i for i, _, _ in chosen.probes}
    assert probe_ids == {i for i, v in images.items() if v in by_id} - {i for i, _ in chosen.gallery}
    assert all(m for _, _, m in chosen.probes)
    assert chosen == choose_identification(images, seed=4, gallery_size=2)
    assert chosen.notes["identities_with_too_few_images"] == 3


def test_unknown_fraction_leaves_identities_out_of_the_gallery():
    images = layout([3] * 10)
    chosen = choose_identification(images, seed=1, unknown_fraction=0.3)
    check_identification(chosen, images)
    enrolled = {n for _, n in chosen.gallery}
    unknown = {n for _, n, m in chosen.probes if not m}
    assert len(enrolled) == 7 and len(unknown) == 3 and not enrolled & unknown
    # every image of an unknown person is searched: a photo drawn for a gallery they are not in was
    # left out of everything before (FPIR on 2 of their 3 photos)
    assert sum(not m for _, _, m in chosen.probes) == 3 * 3
    other = choose_identification(images, seed=2, unknown_fraction=0.3)
    assert {n for _, n, m in other.probes if not m} != unknown or other.gallery != chosen.gallery
    with pytest.raises(ProtocolError, match="enrolled identities"):
        choose_identification(layout([3, 3]), seed=0, unknown_fraction=0.4)


def test_people_with_too_few_images_can_be_searched_as_unknown():
    """BLUFR's open set: people who cannot be enrolled with a photo left (here <= 2 images) are
    non-mated searches, every photo of theirs; the gallery and every mated search stay as they are."""
    images = layout([1, 2, 3, 5, 4, 2, 6, 3, 3, 4])
    left_out = choose_identification(images, seed=4, gallery_size=2, unknown_fraction=0.2)
    searched = choose_identification(images, seed=4, gallery_size=2, unknown_fraction=0.2, too_few_images="unknown")
    check_identification(searched, images)
    assert searched.gallery == left_out.gallery
    assert [p for p in searched.probes if p[2]] == [p for p in left_out.probes if p[2]]
    few = {"id00", "id01", "id05"}
    extra = [p for p in searched.probes if p not in left_out.probes]
    assert sorted(extra) == sorted((i, n, False) for i, n in images.items() if n in few)
    assert searched.probes == sorted(searched.probes, key=lambda p: (p[1], p[0]))
    assert searched.notes["too_few_images_searched_as_unknown"] == 3
    assert "too_few_images" not in left_out.notes  # the default's report keeps its bytes
    # a gallery of another pool (real-masked photos) searches only the few the bare set named unknown
    named = choose_identification(images, seed=4, gallery_size=2, unknown={"id01", "id03"}, too_few_images="unknown")
    assert {n for _, n, m in named.probes if not m} == {"id01", "id03"}
    with pytest.raises(ProtocolError, match="too_few_images"):
        choose_identification(images, seed=4, too_few_images="drop")


def test_check_identification_catches_a_probe_in_the_gallery():
    images = layout([2, 2])
    bad = IdentificationSet([("id00/img_0.png", "id00"), ("id01/img_0.png", "id01")],
                            [("id00/img_0.png", "id00", True)], {})
    with pytest.raises(ProtocolError, match="both enrolled and searched"):
        check_identification(bad, images)
    with pytest.raises(ProtocolError, match="mated=False"):
        check_identification(IdentificationSet(bad.gallery, [("id00/img_1.png", "id00", False)], {}), images)


def test_probe_variants_need_an_unmasked_gallery():
    config = {"masks": {"surgical": {}, "n95": {}},
              "datasets": {"d": {"protocols": ["ident"]}},
              "protocols": {"ident": {"kind": "identification",
                                      "comparisons": [["unmasked", "unmasked"], ["unmasked", "masked"]]}}}
    assert identification_probe_variants(config, "d", "ident") == ["unmasked", "surgical", "n95"]
    config["protocols"]["ident"]["comparisons"] = [["surgical", "unmasked"]]
    with pytest.raises(ConfigError, match="start with unmasked"):
        identification_probe_variants(config, "d", "ident")


# ----------------------------------------------------------------------------------------------
# the stages, end to end on small files


def write_embeddings(path, vectors: dict[str, np.ndarray]) -> str:
    ids = sorted(vectors)
    dim = len(next(iter(vectors.values())))
    pq.write_table(pa.Table.from_pydict(
        {"image_id": ids, "status": ["ok"] * len(ids), "embedding": [vectors[i].tolist() for i in ids]},
        schema=embedding_schema(dim)), path)
    return str(path)


def test_identify_step_matches_brute_force_on_written_manifests(tmp_path):
    images = layout([4] * 15)
    pq.write_table(pa.table({"image_id": list(images), "identity": list(images.values()),
                             "status": ["ok"] * len(images)}), tmp_path / "aligned.parquet")
    protocol = {"kind": "identification", "gallery_size": 1, "unknown_fraction": 0.2}
    report = build_identification([str(tmp_path / "aligned.parquet")], protocol, 9, str(tmp_path / "g.parquet"),
                                  str(tmp_path / "p.parquet"), str(tmp_path / "protocol.json"))
    gallery, probes = pq.read_table(tmp_path / "g.parquet"), pq.read_table(tmp_path / "p.parquet")
    assert gallery.schema == GALLERY_SCHEMA and probes.schema == PROBES_SCHEMA
    assert report["gallery_images"] == gallery.num_rows == 12 and report["unknown_identities"] == 3
    assert report == json.loads((tmp_path / "protocol.json").read_text())
    rng = np.random.default_rng(3)
    centre = {f"id{i:02d}": rng.normal(size=8) for i in range(15)}
    unmasked = {i: (centre[v] + rng.normal(size=8)).astype(np.float32) for i, v in images.items()}
    masked = {i: (centre[v] + 1.5 * rng.normal(size=8)).astype(np.float32) for i, v in images.items()}
    lost = probes["image_id"][0].as_py()
    del masked[lost]  # masking failed on one probe
    paths = {"unmasked": [write_embeddings(tmp_path / "u.parquet", unmasked)],
             "surgical": [write_embeddings(tmp_path / "s.parquet", masked)]}
    out = identify_step(str(tmp_path / "g.parquet"), str(tmp_path / "p.parquet"), paths, "cosine",
                        str(tmp_path / "r.json"), fpir_targets=[0.2])
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(json.dumps(out))
    g_ids = gallery["image_id"].to_pylist()
    g_emb = np.stack([unmasked[i] for i in g_ids]).astype(np.float64)
    rows = [r for r in probes.to_pylist() if r["image_id"] != lost]
    lost_mated = probes["mated"][0].as_py()
    p_emb = np.stack([masked[r["image_id"]] for r in rows]).astype(np.float64)
    mated = np.array([r["mated"] for r in rows])
    scores = score_matrix(p_emb, g_emb, "cosine")
    ranks = brute_force_ranks(scores[mated], gallery["identity"].to_pylist(),
                              [r["identity"] for r in rows if r["mated"]])
    # the probe that lost its mask is still a search: a miss at every rank if mated
    n_mated = int(mated.sum()) + lost_mated
    assert out["closed_set"]["rank_1"] == pytest.approx(np.sum(ranks == 1) / n_mated)
    assert out["closed_set"]["cmc"] == pytest.approx([np.sum(ranks <= k) / n_mated for k in range(1, 11)])
    assert out["counts"]["probes_missing_embedding"] == 1
    assert out["counts"]["mated_searches"] + out["counts"]["non_mated_searches"] == probes.num_rows
    assert out["counts"]["mated_searches"] == n_mated and out["counts"]["mated_searches_failed"] == lost_mated
    assert out["counts"]["non_mated_searches_failed"] == 1 - lost_mated
    assert out["open_set"]["non_mated_searches"] == int((~mated).sum()) + (1 - lost_mated)
    assert out["open_set"]["mated_searches"] == n_mated
    # an enrolled image without embedding takes its identity's probes out of the searches
    first = gallery.to_pylist()[0]
    del unmasked[first["image_id"]]
    paths["unmasked"] = [write_embeddings(tmp_path / "u2.parquet", unmasked)]
    out = identify_step(str(tmp_path / "g.parquet"), str(tmp_path / "p.parquet"), paths, "cosine",
                        str(tmp_path / "r1.json"), fpir_targets=[0.2])
    orphans = sum(r["identity"] == first["identity"] for r in rows)
    assert orphans >= 2 and out["counts"]["probes_whose_mate_has_no_embedding"] == orphans
    assert out["counts"]["gallery_images_embedded"] == 11 and out["closed_set"]["gallery_identities"] == 11
    assert out["counts"]["mated_searches"] == n_mated
    assert out["counts"]["mated_searches_failed"] == out["closed_set"]["failed_searches"] == orphans + lost_mated
    # their searches count as misses: rank-1 over every mated search
    kept = np.array([r["identity"] != first["identity"] for r in rows if r["mated"]])
    g_keep = [i for i in g_ids if i != first["image_id"]]
    ranks = brute_force_ranks(scores[mated][kept][:, [g_ids.index(i) for i in g_keep]],
                              [gallery["identity"][g_ids.index(i)].as_py() for i in g_keep],
                              [r["identity"] for r in rows if r["mated"] and r["identity"] != first["identity"]])
    assert out["closed_set"]["rank_1"] == pytest.approx(np.sum(ranks == 1) / n_mated)
    # an empty gallery (no unmasked embeddings) is a clear error
    paths["unmasked"] = [write_embeddings(tmp_path / "none.parquet", {"elsewhere.png": np.ones(8, np.float32)})]
    with pytest.raises(IdentificationError, match="gallery is empty"):
        identify_step(str(tmp_path / "g.parquet"), str(tmp_path / "p.parquet"), paths, "cosine",
                      str(tmp_path / "r2.json"))
    assert not (tmp_path / "r2.json").exists()


def test_a_probe_that_is_a_copy_of_an_enrolled_picture_is_not_searched(tmp_path):
    """One picture filed twice under a person (identical aligned chips): with one copy enrolled,
    the other as a probe found itself at rank 1, whatever the mask."""
    from maskbench.io.chips import encode_chip

    rng = np.random.default_rng(1)
    images = {f"id{k:02d}/img_{i}.png": f"id{k:02d}" for k in range(5) for i in range(3)}
    chips = {i: encode_chip(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)) for i in images}
    for i in range(3):  # every photo of id00 is one picture: whichever is enrolled, the others are copies
        chips[f"id00/img_{i}.png"] = chips["id00/img_0.png"]
    pq.write_table(pa.table({"image_id": list(images), "identity": list(images.values()),
                             "status": ["ok"] * len(images), "chip": [chips[i] for i in images]}),
                   tmp_path / "aligned.parquet")
    report = build_identification([str(tmp_path / "aligned.parquet")], {"kind": "identification"}, 3,
                                  str(tmp_path / "g.parquet"), str(tmp_path / "p.parquet"), str(tmp_path / "r.json"))
    probes = pq.read_table(tmp_path / "p.parquet").to_pylist()
    assert "id00" not in {p["identity"] for p in probes} and len(probes) == 4 * 2
    assert report["probes_copies_of_enrolled_images"] == 2 and report["mated_probes"] == 8

    from maskbench.stages.copies import write_copies  # found once per dataset, as the workflow does

    write_copies([str(tmp_path / "aligned.parquet")], str(tmp_path / "copies.json"))
    again = build_identification([str(tmp_path / "aligned.parquet")], {"kind": "identification"}, 3,
                                 str(tmp_path / "g2.parquet"), str(tmp_path / "p2.parquet"), str(tmp_path / "r2.json"),
                                 copies_path=str(tmp_path / "copies.json"))
    assert again == report and (tmp_path / "p2.parquet").read_bytes() == (tmp_path / "p.parquet").read_bytes()


def test_only_copies_filed_under_the_enrolled_person_are_left_out():
    from maskbench.protocols.galleries import without_copies_of_enrolled

    chosen = IdentificationSet([("a/1", "a"), ("b/1", "b")], [("a/2", "a", True), ("b/2", "b", True),
                                                              ("c/1", "c", False)], {})
    kept = without_copies_of_enrolled(chosen, [["a/1", "a/2"], ["b/2", "c/1", "a/9"]])
    assert kept.probes == [("b/2", "b", True), ("c/1", "c", False)]  # b/2 copies no enrolled photo of b
    assert kept.notes["probes_copies_of_enrolled_images"] == 1
    other = without_copies_of_enrolled(chosen, [["a/1", "c/1"]])  # a copy under another person stays
    assert other.probes == chosen.probes


def test_a_real_masked_probe_that_copies_an_enrolled_bare_picture_is_left_out():
    from maskbench.stages.identify import with_real_probes

    chosen = IdentificationSet([("a/1", "a"), ("b/1", "b")], [("a/2", "a", True)], {})
    real = {"a/real_1": "a", "a/real_2": "a", "b/real_1": "b"}
    out, table = with_real_probes(chosen, real, [["a/1", "a/real_1"]])
    assert [p[0] for p in out.probes] == ["a/2", "a/real_2", "b/real_1"]
    assert out.notes["probes_copies_of_enrolled_images"] == 1
    assert table["real_mask"].to_pylist() == [False, True, True]
    assert with_real_probes(chosen, real)[0].probes[1:] == [("a/real_1", "a", True), ("a/real_2", "a", True),
                                                           ("b/real_1", "b", True)]
