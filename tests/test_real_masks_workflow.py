"""End to end on a demo drawn with real masks: the `real` variant is embedded and scored, its
pairs take only real-masked photos, coverage counts it apart, and the realism table's cells are
those of the metrics files it names."""

from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import copy_workflow, snakemake
from maskbench.io.chips import decode_chip

pytestmark = pytest.mark.slow

CONFIG = {
    "seed": 5,
    "align": {"detector": "hog", "upsample": 1, "chip_size": 150, "padding": 0.25},
    "masks": {"surgical_blue": {"shape": "surgical", "color": "#1ca0f4", "pattern": "pleats",
                                "rendering": "realistic"}},
    "models": {"dlib_resnet": {"kind": "dlib_resnet", "backend": "torch", "score": "neg_l2"}},
    "datasets": {"demo": {"layout": "demo", "shards": 1, "protocols": ["every_pair", "search"],
                          "generate": {"identities": 10, "images_per_identity": 5, "size": 150, "real_masks": 2}}},
    "protocols": {"every_pair": {"kind": "all_vs_all",
                                 "comparisons": [["unmasked", "masked"], ["unmasked", "real"], ["real", "real"]]},
                  "search": {"kind": "identification", "unknown_fraction": 0.2,
                             "comparisons": [["unmasked", "unmasked"], ["unmasked", "real"], ["real", "real"]]}},
    "tables": {},
    "evaluation": {"bootstrap": 20},
}


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    work = copy_workflow(tmp_path_factory.mktemp("real") / "wf")
    (work / "real.yaml").write_text(yaml.safe_dump(CONFIG))
    snakemake(work, "results/tables/realism.csv", "results/tables/coverage.csv", "results/tables/identification.csv",
              "results/figures/contact_sheet_demo.png", "--cores", "2",
              "--configfile", "real.yaml")
    return work


def test_realism_table_cells_are_the_metrics_files(real_run):
    table = pd.read_csv(real_run / "results/tables/realism.csv")
    assert table["probe"].tolist() == ["real", "surgical_blue"]
    assert (real_run / "results/figures/realism.png").stat().st_size > 0
    assert pd.read_csv(real_run / "results/tables/realism_by_type.csv").empty  # the demo labels no kinds
    for _, row in table.iterrows():
        path = real_run / f"results/demo/metrics/dlib_resnet/every_pair/unmasked-vs-{row['probe']}.json"
        values = json.loads(path.read_text())
        for key in ("eer", "eer_ci_low", "eer_ci_high", "fnmr_at_fmr_1e-2", "n_genuine", "n_impostor"):
            assert row[key] == pytest.approx(values[key], rel=1e-12), key
    synthetic = table.iloc[1]
    assert synthetic["eer_minus_real"] == pytest.approx(synthetic["eer"] - table.iloc[0]["eer"])


def test_real_variant_holds_only_real_masked_photos(real_run):
    index = pd.read_parquet(real_run / "results/demo/index.parquet").set_index("image_id")
    real = index["real_mask"].fillna(False).astype(bool)
    assert real.sum() == 20
    pairs = pd.read_parquet(real_run / "results/demo/pairs/every_pair.parquet")
    for side in ("ref", "probe"):
        is_real = pairs[f"{side}_variant"] == "real"
        assert pairs.loc[is_real, f"{side}_image"].map(real).all()
        assert not pairs.loc[~is_real, f"{side}_image"].map(real).any()
    # 30 bare x 20 real photos; 10 people with 3 bare and 2 real each
    got = pairs.groupby(["ref_variant", "probe_variant"])["genuine"].agg(["sum", "size"])
    assert got.loc[("unmasked", "real")].tolist() == [60, 600]
    assert got.loc[("real", "real")].tolist() == [10, 190]
    assert got.loc[("unmasked", "surgical_blue")].tolist() == [30, 435]
    masked = pd.read_parquet(real_run / "results/demo/masked/surgical_blue/shard-0.parquet").set_index("image_id")
    assert (masked.loc[real[real].index, "status"] == "real_mask").all()
    assert masked.loc[real[~real].index, "chip"].notna().all()
    embedded = pd.read_parquet(real_run / "results/demo/embeddings/dlib_resnet/real.parquet")
    assert set(embedded.loc[embedded["status"] == "ok", "image_id"]) == set(real[real].index)


def test_coverage_reports_real_masked_photos_apart(real_run):
    coverage = pd.read_csv(real_run / "results/tables/coverage.csv").iloc[0]
    assert coverage["real_images"] == 20 and coverage["unmasked_images"] == 30
    summary = json.loads((real_run / "results/demo/aligned/summary.json").read_text())
    assert coverage["real_aligned_rate"] == summary["per_variant"]["real"]["usable_rate"]


def test_identification_searches_a_real_masked_gallery_apart(real_run):
    """[real, real] enrols real-masked photos only and has its own rows; [unmasked, real] keeps its file."""
    index = pd.read_parquet(real_run / "results/demo/index.parquet").set_index("image_id")
    real = index["real_mask"].fillna(False).astype(bool)
    folder = real_run / "results/demo/identification/search"
    gallery = pd.read_parquet(folder / "real-vs-real/gallery.parquet")
    probes = pd.read_parquet(folder / "real-vs-real/probes.parquet")
    assert gallery["image_id"].map(real).all() and probes["image_id"].map(real).all()
    assert not set(gallery["image_id"]) & set(probes["image_id"])
    bare = pd.read_parquet(folder / "probes.parquet")
    assert set(probes.loc[~probes["mated"], "identity"]) == set(bare.loc[~bare["mated"], "identity"])
    table = pd.read_csv(real_run / "results/tables/identification.csv")
    got = table.set_index(["gallery_variant", "probe_variant"])["mated_searches"]
    assert sorted(got.index) == [("real", "real"), ("unmasked", "real"), ("unmasked", "unmasked")]
    for (g, p), name in {("real", "real"): "real-vs-real", ("unmasked", "real"): "real"}.items():
        result = json.loads((real_run / f"results/demo/identification/dlib_resnet/search/{name}.json").read_text())
        assert (result["gallery_variant"], result["probe_variant"]) == (g, p)
        assert got[(g, p)] == result["counts"]["mated_searches"]


def test_contact_sheet_sets_real_masks_beside_synthetic_ones(real_run):
    """One row of real-masked chips, one per mask type, a column per person; made by `all` only
    for a config with real masks."""
    sheet = cv2.cvtColor(cv2.imread(str(real_run / "results/figures/contact_sheet_demo.png")), cv2.COLOR_BGR2RGB)
    cell, label = 96, 120
    assert sheet.shape == (2 * cell, label + 8 * cell, 3)  # real + surgical_blue; 8 of the 10 people
    aligned = pd.read_parquet(real_run / "results/demo/aligned/shard-0.parquet").set_index("image_id").sort_index()
    masked = pd.read_parquet(real_run / "results/demo/masked/surgical_blue/shard-0.parquet").set_index("image_id")
    real = aligned["real_mask"].fillna(False).astype(bool)
    mine = aligned["identity"] == sorted(aligned.loc[real, "identity"])[0]  # the first column's person
    first = {0: aligned.loc[mine & real, "chip"].iloc[0], 1: masked.loc[aligned.index[mine & ~real][0], "chip"]}
    for row, chip in first.items():
        want = cv2.resize(decode_chip(chip), (cell, cell), interpolation=cv2.INTER_AREA)
        assert np.array_equal(sheet[row * cell:(row + 1) * cell, label:label + cell], want)
    # `all` makes it for a config with real masks (the default config's dry run has no such job)
    listed = snakemake(real_run, "-n", "all", "--forcerun", "contact_sheet", "--configfile", "real.yaml").stdout
    assert re.search(r"^contact_sheet\s+1$", listed.split("Job stats:", 1)[1], re.M)
