"""Photos of real masks as their own variant: the demo draws some, `real` holds only them,
`unmasked` only the bare ones, synthetic masks are never painted over them, every protocol kind
pairs the right pools, and the realism table is built from the metrics files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from maskbench.io.chips import encode_chip
from maskbench.config import ConfigError, check_config, realism_protocol
from maskbench.data.demo import demo_image, generate_demo
from maskbench.stages.embed import variant_statuses
from maskbench.stages.identify import build_identification, identify_step
from maskbench.config import identification_comparisons
from maskbench.data.index import build_index
from maskbench.io.manifests import ALIGNED_SCHEMA, SCORES_SCHEMA, embedding_schema
from maskbench.stages.mask import mask_shard
from maskbench.stages.metrics import write_metrics
from maskbench.stages.pairs import build_pairs
from maskbench.evaluation.metrics import eer, fnmr_at_fmr, with_failures_to_enrol
from maskbench.reporting.realism import COLUMNS, by_type_rows, realism_rows
from maskbench.io.summaries import variant_status_counts
from maskbench.reporting.coverage import coverage_row
from maskbench.reporting.tables import identification_rows

PEOPLE, BARE, REAL = 8, 4, 2
COMPARISONS = [("unmasked", "unmasked"), ("unmasked", "surgical"), ("unmasked", "real"), ("real", "real"),
               ("surgical", "surgical")]


def person(k: int) -> str:
    return f"p{k}"


def fixture_images() -> dict[str, bool]:
    """image_id -> real_mask, as the demo with ``real_masks: 2`` names them (LFW-style file names)."""
    out = {}
    for k in range(PEOPLE):
        name = person(k)
        for j in range(BARE + REAL):
            real = j >= BARE
            out[f"{name}/{'real_mask/' if real else ''}{name}_{j + 1:04d}.png"] = real
    return out


def write_aligned(path: Path, images: dict[str, bool], failed: set[str] = frozenset()) -> str:
    rows = [{"image_id": i, "identity": i.split("/")[0], "status": "no_face" if i in failed else "ok",
             "reason": None, "detector": None, "detector_score": None, "n_faces": 1, "landmarks": None,
             "chip": None, "real_mask": real} for i, real in sorted(images.items())]
    pq.write_table(pa.Table.from_pylist(rows, schema=ALIGNED_SCHEMA), path)
    return str(path)


@pytest.fixture()
def aligned(tmp_path):
    images = fixture_images()
    return images, [write_aligned(tmp_path / "shard-0.parquet", images)]


def manifest(aligned_paths, tmp_path, protocol, acquired="{}"):
    (tmp_path / "acquired.json").write_text(acquired)
    report = build_pairs(aligned_paths, protocol, COMPARISONS, 7, str(tmp_path / "acquired.json"),
                         str(tmp_path / "pairs.parquet"), str(tmp_path / "pairs.json"))
    return pd.read_parquet(tmp_path / "pairs.parquet"), report


def assert_pools(table: pd.DataFrame, images: dict[str, bool]) -> None:
    """`real` never holds a bare photo; no other variant (synthetic ones included) a real one."""
    for side in ("ref", "probe"):
        real = table[f"{side}_variant"] == "real"
        assert table.loc[real, f"{side}_image"].map(images).all()
        assert not table.loc[~real, f"{side}_image"].map(images).any()
    assert (table["ref_image"] != table["probe_image"]).all()
    assert table["pair_id"].tolist() == list(range(len(table)))
    same = table["ref_image"].str.split("/").str[0] == table["probe_image"].str.split("/").str[0]
    assert (same == table["genuine"]).all()


def counts(table: pd.DataFrame) -> dict[str, tuple[int, int]]:
    out = {}
    for (r, p), part in table.groupby(["ref_variant", "probe_variant"], sort=False):
        out[f"{r}-vs-{p}"] = (int(part["genuine"].sum()), int((~part["genuine"]).sum()))
    return out


def test_all_vs_all_pairs_each_pool(aligned, tmp_path):
    images, paths = aligned
    table, report = manifest(paths, tmp_path, {"kind": "all_vs_all", "folds": 2, "comparisons": []})
    assert_pools(table, images)
    n_bare, n_real = PEOPLE * BARE, PEOPLE * REAL
    bare_genuine = PEOPLE * BARE * (BARE - 1) // 2
    bare = (bare_genuine, n_bare * (n_bare - 1) // 2 - bare_genuine)
    expected = {"unmasked-vs-unmasked": bare, "unmasked-vs-surgical": bare, "surgical-vs-surgical": bare,
                "unmasked-vs-real": (PEOPLE * BARE * REAL, n_bare * n_real - PEOPLE * BARE * REAL),
                "real-vs-real": (PEOPLE, n_real * (n_real - 1) // 2 - PEOPLE)}
    assert counts(table) == expected
    assert {k: (v["genuine"], v["impostor"]) for k, v in report["per_comparison"].items()} == expected
    assert report["rows"] == len(table)


def test_all_identities_pairs_each_pool_on_the_same_references(aligned, tmp_path):
    images, paths = aligned
    table, report = manifest(paths, tmp_path, {"kind": "all_identities", "folds": 2, "comparisons": []})
    assert_pools(table, images)
    assert counts(table) == {c: (PEOPLE, PEOPLE) for c in
                             ["unmasked-vs-unmasked", "unmasked-vs-surgical", "unmasked-vs-real", "real-vs-real",
                              "surgical-vs-surgical"]}
    refs = {c: table[(table.ref_variant + "-vs-" + table.probe_variant) == c]
            .groupby("ref_image")["fold"].first().to_dict() for c in ["unmasked-vs-surgical", "unmasked-vs-real"]}
    assert refs["unmasked-vs-surgical"] == refs["unmasked-vs-real"]  # same references, same folds


@pytest.mark.parametrize("protocol", [{"kind": "all_vs_all", "folds": 3},
                                      {"kind": "all_identities", "folds": 3},
                                      {"kind": "dicta1000", "n_pairs": 12, "folds": 3}])
def test_folds_go_by_person_in_every_pool(aligned, tmp_path, protocol):
    """A person sits in one fold across all comparisons, bare and real-masked alike; a pair of two
    folds' people is in none (-1), so no threshold is chosen on people it is applied to."""
    images, paths = aligned
    table, _ = manifest(paths, tmp_path, protocol | {"comparisons": []})
    people = pd.concat([
        pd.DataFrame({"person": table[f"{side}_image"].str.split("/").str[0], "fold": table["fold"]})
        for side in ("ref", "probe")])
    in_a_fold = people[people["fold"] >= 0]
    assert (in_a_fold.groupby("person")["fold"].nunique() == 1).all()
    assert in_a_fold["fold"].nunique() > 1
    assert (table.loc[table["genuine"], "fold"] >= 0).all()


def test_dicta_pairs_each_pool(aligned, tmp_path):
    images, paths = aligned
    table, _ = manifest(paths, tmp_path, {"kind": "dicta1000", "n_pairs": 12, "comparisons": []})
    assert_pools(table, images)
    assert set(counts(table).values()) == {(6, 6)} and len(counts(table)) == len(COMPARISONS)


def test_listed_pairs_are_sorted_into_pools(aligned, tmp_path):
    images, paths = aligned
    lines = ["p0\t1\t2", "p0\t1\t5", "p1\t6\t2", "p1\t5\t6", "p0\t1\tp1\t5", "p0\t5\tp1\t6", "p2\t1\tp3\t2"]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")  # MFR2 style: no header line
    acquired = json.dumps({"pairs": {"path": str(tmp_path / "pairs.txt")}})
    table, report = manifest(paths, tmp_path, {"kind": "lfw_view2", "comparisons": []}, acquired)
    assert_pools(table, images)
    got = counts(table)
    assert got["unmasked-vs-unmasked"] == (1, 1) and got["unmasked-vs-surgical"] == (1, 1)
    assert got["unmasked-vs-real"] == (2, 1)  # p1 6-vs-2 is turned round: bare reference, real probe
    assert got["real-vs-real"] == (1, 1)
    assert report["dropped"]["listed_pair_not_unmasked-vs-real_photos"] == 4


def test_people_without_both_kinds_are_left_out_and_counted(tmp_path):
    images = fixture_images()
    images = {k: v for k, v in images.items() if not (k.startswith("p0/") and v)}  # p0: bare photos only
    paths = [write_aligned(tmp_path / "shard-0.parquet", images)]
    table, report = manifest(paths, tmp_path, {"kind": "all_vs_all", "comparisons": []})
    assert not table["ref_image"].str.startswith("p0/").any()
    assert report["dropped"]["image_of_person_without_bare_and_real_photos"] == BARE


def test_real_masked_photos_the_aligner_could_not_use_are_failures_to_enrol(tmp_path):
    """They stay in the real pool, unscored (a synthetic mask's face not found again counts so):
    left out, the real-mask numbers were of the photos the detector could handle."""
    images = fixture_images()
    failed = {f"p1/real_mask/p1_{BARE + 1:04d}.png", f"p2/real_mask/p2_{BARE + 2:04d}.png"}
    paths = [write_aligned(tmp_path / "shard-0.parquet", images, failed)]
    table, report = manifest(paths, tmp_path, {"kind": "all_vs_all", "comparisons": []})
    assert report["real_photos_not_aligned"] == 2 and "real_photo_not_aligned" not in report["dropped"]
    assert_pools(table, images)
    real = table[(table.ref_variant == "unmasked") & (table.probe_variant == "real")]
    assert set(failed) <= set(real.probe_image)
    (tmp_path / "all").mkdir()
    everyone = manifest([write_aligned(tmp_path / "all" / "shard-0.parquet", images)], tmp_path / "all",
                        {"kind": "all_vs_all", "comparisons": []})[0]
    assert len(table) == len(everyone)  # the same pairs as had every photo been aligned
    embeddings = tmp_path / "real.parquet"
    usable = sorted(i for i, r in images.items() if r and i not in failed)
    pq.write_table(pa.Table.from_pydict({"image_id": usable, "status": ["ok"] * len(usable),
                                         "embedding": np.ones((len(usable), 4), np.float32).tolist()},
                                        schema=embedding_schema(4)), embeddings)
    bare = tmp_path / "bare.parquet"
    bare_ids = sorted(i for i, r in images.items() if not r)
    pq.write_table(pa.Table.from_pydict({"image_id": bare_ids, "status": ["ok"] * len(bare_ids),
                                         "embedding": np.ones((len(bare_ids), 4), np.float32).tolist()},
                                        schema=embedding_schema(4)), bare)
    from maskbench.stages.score import score_comparison

    counts = score_comparison(str(tmp_path / "pairs.parquet"), "unmasked-vs-real",
                              {"unmasked": [str(bare)], "real": [str(embeddings)]}, "cosine",
                              str(tmp_path / "scores.parquet"))
    assert counts["missing_embedding"] == int(real.probe_image.isin(failed).sum()) > 0
    # restricted to a split part (whose manifest lists usable images only): its people's are counted
    usable = sorted(i for i in images if i not in failed)
    part = {i: ("test" if i.split("/")[0] in ("p1", "p3", "p4", "p5") else "train") for i in usable}
    split = tmp_path / "split.parquet"
    pq.write_table(pa.table({"image_id": usable, "identity": [i.split("/")[0] for i in usable],
                             "split": [part[i] for i in usable]}), split)
    (tmp_path / "acquired.json").write_text("{}")
    report = build_pairs(paths, {"kind": "all_vs_all", "comparisons": [],
                                 "split": {"strategy": "identity", "part": "test"}},
                         COMPARISONS, 7, str(tmp_path / "acquired.json"), str(tmp_path / "s.parquet"),
                         str(tmp_path / "s.json"), split_path=str(split))
    assert report["real_photos_not_aligned"] == 1  # p1's; p2 is in the train part
    # no real-masked photo aligned at all: still pools, every real probe a failure to enrol
    none = {i for i, r in images.items() if r}
    table, report = manifest([write_aligned(tmp_path / "none.parquet", images, none)], tmp_path,
                             {"kind": "all_vs_all", "comparisons": []})
    assert report["real_photos_not_aligned"] == len(none)
    assert_pools(table, images)
    assert set(table.loc[table.probe_variant == "real", "probe_image"]) == none
    assert pd.read_parquet(tmp_path / "s.parquet").probe_image.isin(failed).sum() > 0


def test_a_person_with_one_bare_photo_is_left_out_of_every_comparison(tmp_path):
    """[unmasked, <mask>] has genuine pairs only for people with two bare photos: [unmasked, real]
    takes the same people, and the others are counted."""
    images = fixture_images()
    images = {k: v for k, v in images.items() if not (k.startswith("p0/") and not v and not k.endswith("_0001.png"))}
    paths = [write_aligned(tmp_path / "shard-0.parquet", images)]
    for kind in ("dicta1000", "all_vs_all"):
        protocol = {"kind": kind, "comparisons": []} | ({"n_pairs": 12} if kind == "dicta1000" else {})
        table, report = manifest(paths, tmp_path, protocol)
        assert not table["ref_image"].str.startswith("p0/").any() and not table["probe_image"].str.startswith("p0/").any()
        assert report["dropped"]["image_of_person_with_one_bare_photo"] == 1 + REAL
    # all pairs: the genuine pairs of the real and the synthetic mask are of the same people
    genuine = table[table["genuine"]]
    people = {c: set(g["ref_image"].str.split("/").str[0]) for c, g in
              genuine.groupby(genuine["ref_variant"] + "-vs-" + genuine["probe_variant"])}
    assert people["unmasked-vs-real"] == people["unmasked-vs-surgical"] == {person(k) for k in range(1, PEOPLE)}


def test_identification_searches_real_probes_in_a_bare_gallery(aligned, tmp_path):
    images, paths = aligned
    out = {k: str(tmp_path / f"{k}.parquet") for k in ("gallery", "probes")}
    report = build_identification(paths, {"kind": "identification", "gallery_size": 1, "unknown_fraction": 0.25},
                                  3, out["gallery"], out["probes"], str(tmp_path / "protocol.json"))
    gallery, probes = pd.read_parquet(out["gallery"]), pd.read_parquet(out["probes"])
    assert not gallery["image_id"].map(images).any()
    real = probes[probes["real_mask"]]
    assert real["image_id"].map(images).all() and not probes.loc[~probes["real_mask"], "image_id"].map(images).any()
    assert len(real) == PEOPLE * REAL == report["real_probes"]
    assert (real["mated"] == real["identity"].isin(set(gallery["identity"]))).all()
    unknown = report["unknown_identities"]  # every bare photo of an unknown person is searched
    assert unknown >= 1 and len(probes) - len(real) == PEOPLE * (BARE - 1) + unknown


def test_identification_searches_real_photos_the_aligner_missed_as_failed_probes(tmp_path):
    """They were left out of identification (and their person too, if none aligned) while the
    verification pairs keep them: they are probes without an embedding, misses, never enrolled."""
    images = fixture_images()
    failed = {f"p1/real_mask/p1_{BARE + j:04d}.png" for j in (1, 2)} | {f"p2/real_mask/p2_{BARE + 1:04d}.png"}
    paths = [write_aligned(tmp_path / "shard-0.parquet", images, failed)]
    bare_gallery, bare_probes, report = real_gallery_set(paths, tmp_path, "unmasked", 3, unknown_fraction=0.25)
    assert failed <= set(bare_probes["image_id"]) and report["real_probes_not_aligned"] == 3
    assert "p1" in set(bare_gallery["identity"]) | set(bare_probes["identity"])  # every real photo failed
    gallery, probes, report = real_gallery_set(paths, tmp_path, "real", 3, unknown_fraction=0.25)
    (tmp_path / "all").mkdir()
    everyone = real_gallery_set([write_aligned(tmp_path / "all.parquet", images)], tmp_path / "all", "real", 3,
                                unknown_fraction=0.25)
    assert gallery.equals(everyone[0]) and probes.equals(everyone[1])  # chosen as if every photo had aligned
    assert report["real_probes_not_aligned"] + report["real_gallery_images_not_aligned"] == len(failed)
    # not one real-masked photo aligned: the set is still made (every search fails), as the pairs are
    none = {i for i, r in images.items() if r}
    (tmp_path / "none").mkdir()
    gallery, probes, report = real_gallery_set([write_aligned(tmp_path / "none.parquet", images, none)],
                                               tmp_path / "none", "real", 3, unknown_fraction=0.25)
    assert set(gallery["image_id"]) | set(probes["image_id"]) <= none and report["real_gallery_images_not_aligned"] > 0


def real_set(aligned, tmp_path, seed=3):
    """The [unmasked, real] set of the same protocol, written beside the [real, real] one."""
    return real_gallery_set(aligned, tmp_path, "unmasked", seed, unknown_fraction=0.25)


def real_gallery_set(aligned, tmp_path, variant, seed=3, **protocol):
    out = {k: str(tmp_path / f"{variant}-{k}") for k in ("gallery.parquet", "probes.parquet", "protocol.json")}
    report = build_identification(aligned, {"kind": "identification", **protocol}, seed, *out.values(),
                                  gallery_variant=variant)
    return pd.read_parquet(out["gallery.parquet"]), pd.read_parquet(out["probes.parquet"]), report


@pytest.mark.parametrize("seed,unknown_fraction", [(3, 0.25), (11, 0.5), (4, 0.0)])
def test_real_gallery_enrols_and_searches_only_real_masked_photos(aligned, tmp_path, seed, unknown_fraction):
    images, paths = aligned
    gallery_size = 1  # each person has REAL = 2 real-masked photos: one enrolled, one searched
    setting = {"gallery_size": gallery_size, "unknown_fraction": unknown_fraction}
    gallery, probes, report = real_gallery_set(paths, tmp_path, "real", seed, **setting)
    assert gallery["image_id"].map(images).all() and probes["image_id"].map(images).all()
    assert not set(gallery["image_id"]) & set(probes["image_id"])
    bare_gallery, bare_probes, _ = real_gallery_set(paths, tmp_path, "unmasked", seed, **setting)
    unknown = set(bare_probes.loc[~bare_probes["mated"], "identity"])
    assert (len(unknown) > 0) == (unknown_fraction > 0)
    assert set(probes.loc[~probes["mated"], "identity"]) == unknown  # the same people left out
    assert set(gallery["identity"]) == set(bare_gallery["identity"]) == {person(k) for k in range(PEOPLE)} - unknown
    assert len(gallery) == (PEOPLE - len(unknown)) * gallery_size == report["gallery_images"]
    # as the bare rule: every photo of an unknown person is searched
    assert len(probes) == PEOPLE * (REAL - gallery_size) + len(unknown) * gallery_size == report["probes"]
    assert (probes["mated"] == probes["identity"].isin(set(gallery["identity"]))).all()
    assert report["gallery_variant"] == "real" and "real_mask" not in probes.columns


def test_real_gallery_keeps_to_the_people_of_the_bare_set(tmp_path):
    """A person with too few bare photos for the bare set is left out of the real-masked one too."""
    images = fixture_images()
    failed = {f"p0/p0_{j:04d}.png" for j in range(2, BARE + 1)}  # p0 keeps one bare photo: not eligible
    paths = [write_aligned(tmp_path / "shard-0.parquet", images, failed)]
    gallery, probes, report = real_gallery_set(paths, tmp_path, "real", 3, unknown_fraction=0.25)
    assert "p0" not in set(gallery["identity"]) | set(probes["identity"])
    assert report["pools"]["images_of_people_with_one_bare_photo"] == 1 + REAL  # left out of both pools
    assert report["real_images_of_people_outside_the_bare_set"] == 0
    assert len(probes) == (PEOPLE - 1) * (REAL - 1) + report["unknown_identities"]
    assert len(gallery) == report["enrolled_identities"]


def test_real_gallery_searches_the_bare_sets_unknown_people_with_too_few_real_photos(tmp_path):
    """With ``too_few_images: unknown`` an unknown person of the bare set with one real-masked photo
    (too few to enrol one and search another) is searched in the real-masked set too, so both
    sets search the same unknown people; by default that person is left out of it."""
    images = fixture_images()
    setting = {"gallery_size": 1, "unknown_fraction": 0.25}
    _, bare_probes, _ = real_gallery_set([write_aligned(tmp_path / "all.parquet", images)], tmp_path, "unmasked",
                                         3, **setting)
    unknown = set(bare_probes.loc[~bare_probes["mated"], "identity"])
    assert unknown
    fewer = {i: r for i, r in images.items()
             if not (r and i.split("/")[0] in unknown and i.endswith(f"_{BARE + REAL:04d}.png"))}
    (tmp_path / "few").mkdir()
    paths = [write_aligned(tmp_path / "few" / "shard-0.parquet", fewer)]
    _, left_out, _ = real_gallery_set(paths, tmp_path / "few", "real", 3, **setting)
    assert left_out["mated"].all()
    _, searched, report = real_gallery_set(paths, tmp_path / "few", "real", 3, too_few_images="unknown", **setting)
    assert set(searched.loc[~searched["mated"], "identity"]) == unknown
    assert (~searched["mated"]).sum() == len(unknown) == report["too_few_images_searched_as_unknown"]
    assert searched.loc[searched["mated"], "image_id"].tolist() == left_out["image_id"].tolist()


def test_real_gallery_search_uses_real_embeddings_and_has_its_own_table_rows(aligned, tmp_path):
    """The [real, real] search reads its gallery from the real-masked embeddings; the table tells it
    from [unmasked, real] by a gallery_variant column, which a table without it does not get."""
    images, paths = aligned
    gallery, probes, _ = real_gallery_set(paths, tmp_path, "real", 3, unknown_fraction=0.25)
    real_set(paths, tmp_path)
    rng = np.random.default_rng(0)
    centre = {person(k): rng.normal(size=8) for k in range(PEOPLE)}
    emb = {}
    for variant, is_real in (("unmasked", False), ("real", True)):
        ids = [i for i, real in sorted(images.items()) if real == is_real]
        vectors = [(centre[i.split("/")[0]] + 0.01 * rng.normal(size=8)).tolist() for i in ids]
        emb[variant] = [str(tmp_path / f"{variant}-emb.parquet")]
        pq.write_table(pa.Table.from_pydict({"image_id": ids, "status": ["ok"] * len(ids), "embedding": vectors},
                                            schema=embedding_schema(8)), emb[variant][0])
    setting = {"score_kind": "neg_l2", "ranks": [1], "fpir_targets": [0.5], "probe_variant": "real"}
    result = identify_step(str(tmp_path / "real-gallery.parquet"), str(tmp_path / "real-probes.parquet"),
                           {"real": emb["real"]}, out_json=str(tmp_path / "real-vs-real.json"),
                           gallery_variant="real", **setting)
    assert result["gallery_variant"] == result["probe_variant"] == "real"
    assert result["counts"]["gallery_images"] == len(gallery)
    assert result["counts"]["mated_searches"] == int(probes["mated"].sum()) > 0
    assert result["closed_set"]["rank_1"] == 1.0  # tight clusters: every mate is found first
    bare = identify_step(str(tmp_path / "unmasked-gallery.parquet"), str(tmp_path / "unmasked-probes.parquet"),
                         emb, out_json=str(tmp_path / "real.json"), **setting)
    assert bare["gallery_variant"] == "unmasked"
    entries = [{"dataset": "demo", "model": "m", "protocol": "p", "path": str(tmp_path / name)}
               for name in ("real.json", "real-vs-real.json")]
    both, alone = identification_rows(entries), identification_rows(entries[:1])
    assert "gallery_variant" not in alone.columns
    assert list(both.columns) == [*alone.columns[:2], "gallery_variant", *alone.columns[2:]]
    assert both[["gallery_variant", "probe_variant"]].values.tolist() == [["real", "real"], ["unmasked", "real"]]
    assert both["mated_searches"].tolist() == [result["counts"]["mated_searches"], bare["counts"]["mated_searches"]]
    # no gallery photo embedded (every one chosen failed to align): every mated search a miss, recorded
    enrolled = set(gallery["image_id"])
    kept = [i for i, real in sorted(images.items()) if real and i not in enrolled]
    pq.write_table(pa.Table.from_pydict({"image_id": kept, "status": ["ok"] * len(kept),
                                         "embedding": [centre[i.split("/")[0]].tolist() for i in kept]},
                                        schema=embedding_schema(8)), tmp_path / "some.parquet")
    lost = identify_step(str(tmp_path / "real-gallery.parquet"), str(tmp_path / "real-probes.parquet"),
                         {"real": [str(tmp_path / "some.parquet")]}, out_json=str(tmp_path / "lost.json"),
                         gallery_variant="real", **setting)
    assert lost["closed_set"]["rank_1"] == 0.0 and lost["closed_set"]["failed_searches"] == int(probes["mated"].sum())
    assert "every mated search is a miss" in lost["status"]


def test_identification_takes_real_real_and_refuses_other_masked_galleries():
    config = config_with(2, [["unmasked", "unmasked"], ["unmasked", "real"], ["real", "real"]])
    config["protocols"]["p"]["kind"] = "identification"
    assert identification_comparisons(config, "demo", "p") == [("unmasked", "unmasked"), ("unmasked", "real"),
                                                                ("real", "real")]
    for bad in (["masked", "masked"], ["real", "unmasked"], ["surgical", "real"]):
        config["protocols"]["p"]["comparisons"] = [bad]
        with pytest.raises(ConfigError, match=r"start with unmasked, or be \[real, real\]"):
            identification_comparisons(config, "demo", "p")
    config = config_with(0, [["unmasked", "unmasked"], ["real", "real"]])
    config["protocols"]["p"]["kind"] = "identification"
    with pytest.raises(ConfigError, match="has none"):
        check_config(config)


def test_no_synthetic_mask_is_painted_on_a_real_masked_photo(tmp_path):
    rows = []
    for j, real in enumerate([False, True, False]):
        rgb, points = demo_image(5, 0, j, size=150)
        rows.append({"image_id": f"a/{j}.png", "identity": "a", "status": "provided", "reason": None,
                     "detector": None, "detector_score": None, "n_faces": None,
                     "landmarks": points.reshape(-1).astype(np.float32).tolist(), "chip": encode_chip(rgb),
                     "real_mask": real})
    path = tmp_path / "aligned.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=ALIGNED_SCHEMA), path)
    spec = {"shape": "surgical", "color": "#1ca0f4"}
    result = mask_shard(str(path), "surgical", spec, 1, str(tmp_path / "masked.parquet"))
    masked = pq.read_table(tmp_path / "masked.parquet").to_pylist()
    assert [r["status"] for r in masked] == ["masked", "real_mask", "masked"]
    assert masked[1]["chip"] is None and result == {"masked": 2, "aligned": 2, "rows": 3}
    table = pq.read_table(path)
    assert variant_statuses(table, "unmasked") == ["provided", "real_mask", "provided"]
    assert variant_statuses(table, "real") == ["not_real_mask", "provided", "not_real_mask"]


def test_coverage_counts_chips_the_painter_failed_on_apart_from_failures_to_enrol(tmp_path):
    """A chip the painter fails on is recorded (status error), left unscored, and counted in
    coverage.csv as a paint error, not as a failure to enrol (a biometric outcome)."""
    from maskbench.io.summaries import status_counts

    rows = []
    for j in range(3):
        rgb, points = demo_image(5, 0, j, size=150)
        rows.append({"image_id": f"a/{j}.png", "identity": "a", "status": "ok", "reason": None, "detector": "hog",
                     "detector_score": None, "n_faces": 1, "landmarks": points.reshape(-1).astype(np.float32).tolist(),
                     "chip": b"not an image" if j == 1 else encode_chip(rgb), "real_mask": False})
    path = tmp_path / "aligned.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=ALIGNED_SCHEMA), path)
    mask_shard(str(path), "surgical", {"shape": "surgical", "color": "#1ca0f4"}, 1, str(tmp_path / "masked.parquet"))
    masked = pq.read_table(tmp_path / "masked.parquet").to_pylist()
    assert [r["status"] for r in masked] == ["masked", "error", "masked"] and masked[1]["reason"]
    aligned = status_counts([str(path)], ["ok"])
    row = coverage_row("demo", aligned, {"surgical": status_counts([str(tmp_path / "masked.parquet")], ["masked"])})
    assert row["surgical_paint_errors"] == 1 and row["surgical_failure_to_enrol"] == 0
    assert row["surgical_masked_rate"] == round(2 / 3, 6)


def test_demo_draws_real_masks_that_the_index_marks(tmp_path):
    summary = generate_demo(tmp_path / "demo", 3, 4, seed=2, size=96, real_masks=2)
    assert summary["real_masks_per_identity"] == 2
    table, _ = build_index("demo", tmp_path / "demo", 1)
    flags = dict(zip(table["image_id"].to_pylist(), table["real_mask"].to_pylist()))
    assert sum(bool(v) for v in flags.values()) == 6 and len(flags) == 12
    assert all(bool(v) == ("/real_mask/" in k) for k, v in flags.items())
    # the masked photo is the same drawing as the bare one would be, with a mask on its lower face
    bare, _ = demo_image(2, 0, 3, size=96)
    worn = cv2.cvtColor(cv2.imread(str(tmp_path / "demo/person_000/real_mask/person_000_0004.png")), cv2.COLOR_BGR2RGB)
    changed = np.abs(worn.astype(int) - bare.astype(int)).sum(axis=2) > 30
    assert changed[60:].mean() > 5 * changed[:35].mean()
    with pytest.raises(ValueError, match="real_masks"):
        generate_demo(tmp_path / "bad", 2, 2, seed=2, size=96, real_masks=2)


def test_coverage_counts_alignment_per_variant(tmp_path):
    images = fixture_images()
    failed = {k for k, v in images.items() if v and k.endswith("_0006.png")}  # one real photo per person missed
    path = write_aligned(tmp_path / "shard.parquet", images, failed)
    per = variant_status_counts([path])
    assert per["real"]["statuses"] == {"no_face": PEOPLE, "ok": PEOPLE} and per["real"]["usable_rate"] == 0.5
    assert per["unmasked"]["usable"] == PEOPLE * BARE
    row = coverage_row("demo", {"images": 48, "usable": 40, "usable_rate": 0.833333, "per_variant": per},
                       {"surgical": {"usable": PEOPLE * BARE}})
    assert row["real_aligned_rate"] == 0.5 and row["surgical_masked_rate"] == 1.0
    assert row["real_detected_rate"] == 0.5 and row["unmasked_detected_rate"] == 1.0


def config_with(real_masks: int, comparisons) -> dict:
    return {"masks": {"surgical": {"shape": "surgical", "color": "#1ca0f4"}},
            "models": {"m": {"kind": "dlib_resnet"}},
            "datasets": {"demo": {"layout": "demo", "shards": 1, "protocols": ["p"],
                                  "generate": {"identities": 4, "images_per_identity": 4, "real_masks": real_masks}}},
            "protocols": {"p": {"kind": "all_vs_all", "comparisons": comparisons}}, "tables": {}}


def test_config_refuses_real_on_a_dataset_without_real_masks():
    with pytest.raises(ConfigError, match="has none"):
        check_config(config_with(0, [["unmasked", "real"]]))
    with pytest.raises(ConfigError, match="never painted over"):
        check_config(config_with(2, [["real", "masked"]]))
    config = config_with(2, [["unmasked", "masked"], ["unmasked", "real"], ["real", "real"]])
    check_config(config)
    assert realism_protocol(config, "demo") == "p"
    config["datasets"]["plain"] = {**config["datasets"]["demo"], "generate": {"identities": 4, "images_per_identity": 4},
                                   "protocols": []}
    config["tables"] = {"t": {"metric": "eer", "ref_variant": "unmasked", "probe_variant": "real"}}
    with pytest.raises(ConfigError, match="'plain' has no photos of real masks"):
        check_config(config)
    config["tables"]["t"]["datasets"] = ["demo"]
    check_config(config)
    assert realism_protocol(config, "plain") is None


def write_scores(path: Path, genuine, impostor, failed_genuine: int = 0) -> str:
    """A score file with references of 20 people (``p<k>/ref.png``); the last ``failed_genuine``
    genuine pairs failed to enrol (no score)."""
    n_g, n_i = len(genuine), len(impostor)
    status = ["ok"] * (n_g - failed_genuine) + ["not_embedded"] * failed_genuine + ["ok"] * n_i
    score = [*genuine[:n_g - failed_genuine], *[None] * failed_genuine, *impostor]
    refs = [f"p{k % 20}/ref.png" for k in range(n_g + n_i)]
    pq.write_table(pa.Table.from_pydict({
        "pair_id": list(range(n_g + n_i)), "ref_image": refs, "probe_image": ["b"] * (n_g + n_i),
        "genuine": [True] * n_g + [False] * n_i, "fold": [0] * (n_g + n_i), "score": score,
        "status": status}, schema=SCORES_SCHEMA), path)
    return str(path)


def write_people_index(path: Path) -> str:
    pq.write_table(pa.table({"image_id": [f"p{k}/ref.png" for k in range(20)],
                             "identity": [f"p{k}" for k in range(20)]}), path)
    return str(path)


def test_realism_rows_put_synthetic_masks_beside_real_ones(tmp_path):
    rng = np.random.default_rng(0)
    index = write_people_index(tmp_path / "index.parquet")
    entries = []
    for comparison, shift in [("unmasked-vs-real", 1.0), ("unmasked-vs-surgical", 1.5), ("unmasked-vs-n95", 0.9)]:
        gen, imp = rng.normal(shift, 1, 200), rng.normal(0, 1, 300)
        # 30 surgical pairs lost their probe (no face found to mask): visible, and in the FTE columns
        scores = write_scores(tmp_path / f"{comparison}.parquet", gen, imp, 30 if "surgical" in comparison else 0)
        write_metrics(scores, str(tmp_path / f"{comparison}.json"), evaluation={"bootstrap": 20})
        entries.append({"dataset": "d", "model": "m", "protocol": "p", "comparison": comparison,
                        "metrics": str(tmp_path / f"{comparison}.json"), "scores": scores, "index": index})
    frame = realism_rows(entries, {"bootstrap": 20})
    assert list(frame.columns) == COLUMNS and frame["probe"].tolist() == ["real", "surgical", "n95"]
    for e, (_, row) in zip(entries, frame.iterrows()):
        values = json.loads(Path(e["metrics"]).read_text())
        for key in ("eer", "eer_ci_low", "eer_ci_high", "fnmr_at_fmr_1e-2", "n_genuine", "eer_with_fte",
                    "n_failure_to_enrol_genuine", "n_failure_to_enrol_impostor"):
            assert row[key] == values[key]
    assert frame["n_failure_to_enrol_genuine"].tolist() == [0, 30, 0]
    assert frame.loc[1, "eer_with_fte"] > frame.loc[1, "eer"]  # the failed pairs count against it
    assert frame.loc[1, "eer_with_fte_minus_real"] == pytest.approx(frame.loc[1, "eer_with_fte"] - frame.loc[0, "eer_with_fte"])
    real_eer = frame.loc[0, "eer"]
    assert frame.loc[1, "eer_minus_real"] == pytest.approx(frame.loc[1, "eer"] - real_eer)
    assert frame.loc[1, "eer_minus_real_ci_low"] <= frame.loc[1, "eer_minus_real"] <= frame.loc[1, "eer_minus_real_ci_high"]
    assert frame["closest_to_real"].tolist() == [False, False, True]  # n95 (shift 0.9) is nearest to real (1.0)


def test_realism_rows_when_no_real_masked_probe_was_found(tmp_path):
    """Every real-masked probe failed to enrol (the detector found none): the real row says so with
    its failures counted; the synthetic rows keep their numbers and no difference is made up."""
    rng = np.random.default_rng(1)
    index = write_people_index(tmp_path / "index.parquet")
    entries = []
    for comparison, failed in [("unmasked-vs-real", 200), ("unmasked-vs-surgical", 0)]:
        scores = write_scores(tmp_path / f"{comparison}.parquet", rng.normal(1, 1, 200), rng.normal(0, 1, 300), failed)
        write_metrics(scores, str(tmp_path / f"{comparison}.json"), evaluation={"bootstrap": 20})
        entries.append({"dataset": "d", "model": "m", "protocol": "p", "comparison": comparison,
                        "metrics": str(tmp_path / f"{comparison}.json"), "scores": scores, "index": index})
    frame = realism_rows(entries, {"bootstrap": 20}).set_index("probe")
    assert frame.loc["real", "n_failure_to_enrol_genuine"] == 200 and pd.isna(frame.loc["real", "eer"])
    assert frame.loc["real", "fnmr_at_fmr_1e-2"] == 1.0
    assert 0 < frame.loc["surgical", "eer"] < 0.5 and pd.isna(frame.loc["surgical", "eer_minus_real"])
    assert frame.loc["surgical", "eer_with_fte_minus_real"] < 0


def test_difference_interval_resamples_people_once_for_both_comparisons():
    """Identical scores on both sides differ by exactly 0 in every resample when the same people are
    drawn for both (independent draws would give an interval around 0)."""
    from maskbench.reporting.realism import difference_ci

    rng = np.random.default_rng(4)
    person = np.repeat(np.array([f"p{k}" for k in range(15)], dtype=object), 40)
    effect = np.repeat(rng.normal(0, 1.0, 15), 40)  # some people are hard for every mask
    genuine = np.tile(np.arange(40) < 10, 15)
    score = np.where(genuine, 1.0 + effect, 0.0) + rng.normal(0, 0.7, person.size)
    same = (score, genuine, person)
    assert difference_ci(same, same, 50, 0.05, 1) == (0.0, 0.0)
    shifted = (score - 0.3 * genuine, genuine, person)
    low, high = difference_ci(same, shifted, 200, 0.05, 1)
    point = eer(score[genuine] - 0.3, score[~genuine]).eer - eer(score[genuine], score[~genuine]).eer
    assert low < point < high


def test_difference_interval_draws_again_when_a_side_would_lose_its_genuine_pairs():
    """Only one of four reference people has genuine pairs: about a third of the draws leave him
    out, and those are drawn again rather than failing on an empty set."""
    from maskbench.reporting.realism import difference_ci

    rng = np.random.default_rng(2)
    person = np.array(["p0"] * 10 + ["p1"] * 10 + ["p2"] * 10 + ["p3"] * 10, dtype=object)
    genuine = np.arange(40) < 10
    side = (np.where(genuine, 1.0, 0.0) + rng.normal(0, 0.8, 40), genuine, person)
    low, high = difference_ci(side, (side[0] - 0.2 * genuine, genuine, person), 100, 0.05, 3)
    assert np.isfinite([low, high]).all() and low <= high


def test_breakdown_by_kind_of_real_mask_splits_the_real_probes(tmp_path):
    rng = np.random.default_rng(1)
    probes = [f"p{k % 6}/p{k % 6}_{k:04d}.png" for k in range(120)]
    kinds = {p: ("cloth" if int(p[-8:-4]) % 3 else "surgical_white") for p in probes}
    genuine = rng.random(120) < 0.3
    score = np.where(genuine, rng.normal(1, 1, 120), rng.normal(0, 1, 120))
    failed = genuine & (np.arange(120) % 5 == 0)  # genuine pairs whose probe failed to enrol
    path = tmp_path / "scores.parquet"
    pq.write_table(pa.Table.from_pydict({
        "pair_id": list(range(120)), "ref_image": ["r"] * 120, "probe_image": probes, "genuine": genuine.tolist(),
        "fold": [0] * 120, "score": np.where(failed, np.nan, score).tolist(),
        "status": np.where(failed, "not_embedded", "ok").tolist()}, schema=SCORES_SCHEMA), path)
    entry = {"dataset": "mfr2", "model": "m", "protocol": "p", "comparison": "unmasked-vs-real",
             "metrics": "", "scores": str(path)}
    frame = by_type_rows([entry], {"mfr2": kinds}).set_index("real_mask_type")
    assert frame[["n_genuine", "n_impostor", "n_failure_to_enrol_genuine", "n_failure_to_enrol_impostor"]].sum().sum() == 120
    for kind in ("cloth", "surgical_white"):
        mine = np.array([kinds[p] == kind for p in probes])
        ok = mine & ~failed
        assert frame.loc[kind, "n_genuine"] == (ok & genuine).sum()
        assert frame.loc[kind, "n_failure_to_enrol_genuine"] == (mine & failed).sum() > 0
        assert frame.loc[kind, "eer"] == eer(score[ok & genuine], score[ok & ~genuine]).eer
        # the FNMR counts the failed pairs as false non-matches, as the realism table's does
        point = fnmr_at_fmr(*with_failures_to_enrol(score[ok & genuine], score[ok & ~genuine],
                                                    int((mine & failed).sum()), 0), 1e-2)
        assert frame.loc[kind, "fnmr_at_fmr_1e-2"] == (point.fnmr if point.measurable else None)
    assert by_type_rows([entry], {}).empty  # a set without labels has no breakdown
    # a kind whose every genuine probe failed: FNMR 1, not n/a (40 failed genuine, 200 scored impostor pairs)
    n = 240
    pq.write_table(pa.Table.from_pydict({
        "pair_id": list(range(n)), "ref_image": ["r"] * n, "probe_image": [f"q/q_{k:04d}.png" for k in range(n)],
        "genuine": [True] * 40 + [False] * 200, "fold": [0] * n, "score": [None] * 40 + rng.normal(size=200).tolist(),
        "status": ["not_embedded"] * 40 + ["ok"] * 200}, schema=SCORES_SCHEMA), path)
    frame = by_type_rows([entry], {"mfr2": {f"q/q_{k:04d}.png": "cloth" for k in range(n)}})
    assert frame.loc[0, "n_genuine"] == 0 and frame.loc[0, "fnmr_at_fmr_1e-2"] == 1.0


def test_fine_tuning_takes_no_real_masked_photo_as_an_unmasked_example(tmp_path):
    from maskbench.io.readers import read_chips

    images = fixture_images()
    rows = [{"image_id": i, "identity": i.split("/")[0], "status": "ok", "reason": None, "detector": None,
             "detector_score": None, "n_faces": 1, "landmarks": None, "chip": b"png", "real_mask": real}
            for i, real in sorted(images.items())]
    path = tmp_path / "aligned.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=ALIGNED_SCHEMA), path)
    unmasked, _ = read_chips([str(path)], {}, set(images))
    assert set(unmasked) == {i for i, real in images.items() if not real}


def test_workflow_plans_a_real_masked_gallery_beside_the_bare_one(tmp_path):
    """A dry run on a demo drawn with real masks: [real, real] gets its own gallery manifests and
    result file, [unmasked, real] keeps its paths, and the table waits for both."""
    import yaml
    from conftest import copy_workflow, snakemake

    work = copy_workflow(tmp_path / "wf")
    config = config_with(2, [["unmasked", "unmasked"], ["unmasked", "real"], ["real", "real"]])
    config["protocols"]["p"] = {"kind": "identification", "unknown_fraction": 0.25,
                                "comparisons": config["protocols"]["p"]["comparisons"]}
    config["datasets"]["demo"]["generate"] |= {"identities": 6, "size": 96}
    config["models"]["m"] |= {"backend": "torch", "score": "neg_l2"}
    config |= {"seed": 5, "align": {"detector": "hog", "upsample": 1, "chip_size": 96, "padding": 0.25}}
    (work / "c.yaml").write_text(yaml.safe_dump(config))
    target = "results/tables/identification.csv"
    plan = snakemake(work, target, "-n", "--quiet", "rules", "--cores", "1", "--configfile", "c.yaml").stdout
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)\s*$", plan, re.M))
    assert jobs["identification_protocol"] == jobs["identification_protocol_real"] == "1", plan
    assert jobs["identify"] == "2" and jobs["identify_real_gallery"] == "1", plan
    paths = snakemake(work, target, "-n", "--cores", "1", "--configfile", "c.yaml").stdout
    for path in ("results/demo/identification/p/real-vs-real/gallery.parquet",
                 "results/demo/identification/m/p/real-vs-real.json", "results/demo/identification/m/p/real.json",
                 "results/demo/embeddings/m/real.parquet"):
        assert path in paths, path
    config["protocols"]["p"]["comparisons"] = [["masked", "masked"]]
    (work / "c.yaml").write_text(yaml.safe_dump(config))
    refused = snakemake(work, target, "-n", "--cores", "1", "--configfile", "c.yaml", check=False)
    assert refused.returncode != 0 and "start with unmasked, or be [real, real]" in refused.stdout

