"""Attribute heads and metrics on synthetic embeddings (labels encoded in a subspace that a "mask"
hides), the attribute stage on synthetic files, and the AJCAI study on real UTKFace-mini faces
run through the workflow."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from snakemake.utils import validate

from conftest import REPO, copy_workflow, snakemake
from maskbench.attributes import heads as attr
from maskbench.io.atomic import write_table
from maskbench.stages.attributes import PREDICTIONS_SCHEMA, attribute_figures, attributes_tables, run_attributes
from maskbench.attributes.settings import check_attributes_config
from maskbench.config import ConfigError
from maskbench.io.readers import load_embeddings
from maskbench.io.manifests import INDEX_SCHEMA, embedding_schema
from maskbench.protocols.splits import random_split, split_table

SEXES, RACES = attr.SEX_CLASSES, attr.RACE_CLASSES


def synthetic(n: int, seed: int, signal: float = 2.5, dim: int = 24):
    """Embeddings whose first 7 dimensions encode sex (1), race (5) and age (1), plus the same
    faces "masked": those dimensions replaced by noise, so the labels are gone."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(SEXES, n)
    race = rng.choice(RACES, n)
    age = rng.integers(1, 90, n)
    x = rng.normal(size=(n, dim))
    x[:, 0] += np.where(sex == "male", signal, -signal)
    x[np.arange(n), 1 + np.asarray([RACES.index(r) for r in race])] += 1.5 * signal
    x[:, 6] += (age - 45) / 25 * signal
    masked = x.copy()
    masked[:, :7] = rng.normal(size=(n, 7))
    return x.astype(np.float32), masked.astype(np.float32), sex, race, age


def fit_and_test(task, n=900, signal=2.5, kind="linear", seed=0):
    x, masked, sex, race, age = synthetic(n, seed, signal)
    y = attr.task_target(task, sex, race, age)
    tr, va, te = slice(0, 600), slice(600, 700), slice(700, n)
    head = attr.fit_head(task, x[tr], y[tr], x[va], y[va], kind, seed)
    return head, y[te], attr.predict(head, x[te]), attr.predict(head, masked[te])


# ----------------------------------------------------------------------------------------------
# labels and metrics


def test_age_groups_are_ajcai_bins():
    assert attr.age_group_names() == ["0-3", "4-12", "13-19", "20-30", "31-45", "46-60", "61+"]
    cases = {0: "0-3", 3: "0-3", 4: "4-12", 12: "4-12", 13: "13-19", 30: "20-30", 31: "31-45",
             60: "46-60", 61: "61+", 116: "61+"}
    assert {a: attr.age_group(a) for a in cases} == cases
    assert attr.age_group_names([10, 20]) == ["0-10", "11-20", "21+"]


def test_classification_metrics_by_hand():
    m = attr.classification_metrics(["a", "a", "a", "b", "b", "c"], ["a", "a", "b", "b", "a", "a"], ["a", "b", "c"])
    assert m["confusion"] == [[2, 1, 0], [1, 1, 0], [1, 0, 0]]
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["recall"] == {"a": pytest.approx(2 / 3), "b": 0.5, "c": 0.0}
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 0.5 + 0.0) / 3)
    assert m["support"] == {"a": 3, "b": 2, "c": 1}
    absent = attr.classification_metrics(["a", "a"], ["a", "b"], ["a", "b", "c"])
    assert absent["recall"]["c"] is None and absent["balanced_accuracy"] == 0.5  # only classes present


def test_regression_and_group_metrics_by_hand():
    m = attr.regression_metrics([10, 20, 30], [12, 18, 36])
    assert m["mae"] == pytest.approx(10 / 3) and m["rmse"] == pytest.approx(math.sqrt((4 + 4 + 36) / 3))
    groups = attr.group_metrics("sex", np.array(["a", "b", "a", "b"], dtype=object),
                                np.array(["a", "a", "a", "b"], dtype=object), {"sex": ["m", "m", "f", "f"]})
    assert groups == {"sex": {"f": {"n": 2, "accuracy": 1.0}, "m": {"n": 2, "accuracy": 0.5}}}
    # images without a label for the grouping are in no group (not a "None" group of n = 0)
    groups = attr.group_metrics("sex", np.array(["a", "b", "a", "b"], dtype=object),
                                np.array(["a", "a", "a", "b"], dtype=object),
                                {"race": [None, "white", float("nan"), "white"], "age_group": [1, 1, 2, 2]})
    assert groups == {"race": {"white": {"n": 2, "accuracy": 0.5}},
                      "age_group": {"1": {"n": 2, "accuracy": 0.5}, "2": {"n": 2, "accuracy": 1.0}}}


def test_coverage_curve_counts_kept_faces():
    curve = attr.coverage_curve(["a", "a", "b", "b"], ["a", "b", "b", "a"], [0.9, 0.55, 0.8, 0.6], [0.0, 0.7, 0.95])
    assert [(p["coverage"], p["accuracy"]) for p in curve] == [(1.0, 0.5), (0.5, 1.0), (0.0, None)]


# ----------------------------------------------------------------------------------------------
# heads on synthetic embeddings


@pytest.mark.parametrize("task,chance", [("sex", 0.5), ("race", 0.2)])
def test_head_reads_the_label_subspace_and_fails_when_it_is_hidden(task, chance):
    head, truth, clear, hidden = fit_and_test(task)
    assert np.mean(clear.predicted == truth) > 0.9
    assert np.mean(hidden.predicted == truth) < chance + 0.15
    assert head.val_score > 0.85 and set(head.params) == {"C"}


def test_age_regression_reads_the_subspace():
    head, truth, clear, hidden = fit_and_test("age")
    baseline = np.mean(np.abs(truth - truth.mean()))
    assert np.mean(np.abs(clear.predicted - truth)) < 0.5 * baseline
    assert np.mean(np.abs(hidden.predicted - truth)) > 0.8 * baseline
    assert clear.confidence is None


def test_mlp_head_learns_too_and_is_seeded():
    first = fit_and_test("sex", kind="mlp", seed=3)
    second = fit_and_test("sex", kind="mlp", seed=3)
    assert np.mean(first[2].predicted == first[1]) > 0.85
    assert np.array_equal(first[2].confidence, second[2].confidence)


def test_abstaining_raises_accuracy_on_the_faces_kept():
    head, truth, clear, _ = fit_and_test("race", signal=1.2)
    curve = attr.coverage_curve(truth, clear.predicted, clear.confidence)
    coverages = [p["coverage"] for p in curve]
    assert coverages == sorted(coverages, reverse=True) and coverages[0] == 1.0
    full = curve[0]["accuracy"]
    assert full < 0.9
    kept = [p for p in curve if p["coverage"] >= 0.25 and p["threshold"] >= 0.5]
    assert kept and all(p["accuracy"] > full + 0.05 for p in kept)


def test_one_class_cannot_be_learned():
    x = np.zeros((4, 3))
    with pytest.raises(attr.TaskError, match="fewer than 2 classes"):
        attr.fit_head("sex", x, np.array(["male"] * 4, dtype=object), x, np.array(["male"] * 4, dtype=object))


# ----------------------------------------------------------------------------------------------
# the stage on synthetic files


def write_synthetic_dataset(root, n=400, seed=1):
    """index, unmasked and masked embedding shards and a random split, as the workflow writes them."""
    x, masked, sex, race, age = synthetic(n, seed)
    ids = [f"UTKFace/{k:04d}.jpg" for k in range(n)]
    index = pa.Table.from_pydict(
        {"image_id": ids, "identity": [None] * n, "source_path": ids, "shard": [k % 2 for k in range(n)],
         "age": age.tolist(), "sex": sex.tolist(), "race": race.tolist(), "pose": [None] * n, "real_mask": [None] * n, "group": [None] * n},
        schema=INDEX_SCHEMA,
    )
    write_table(root / "index.parquet", index)
    paths = {}
    for variant, matrix in (("unmasked", x), ("surgical", masked)):
        keep = list(range(n)) if variant == "unmasked" else [k for k in range(n) if k != 3]  # mask failed on one
        table = pa.Table.from_pydict(
            {"image_id": [ids[k] for k in keep], "status": ["ok"] * len(keep),
             "embedding": [matrix[k].tolist() for k in keep]},
            schema=embedding_schema(x.shape[1]),
        )
        paths[variant] = [str(root / f"{variant}.parquet")]
        write_table(paths[variant][0], table)
    identities = {i: None for i in ids}
    split = random_split(ids, {"train": 0.6, "val": 0.2, "test": 0.2}, seed)
    split.assignment[ids[3]] = "test"
    write_table(root / "split.parquet", split_table(split, identities))
    return paths


def run_synthetic(root, paths, train="mixed", out="run"):
    train_on = ["unmasked", "surgical"] if train == "mixed" else [train]
    return run_attributes(
        str(root / "split.parquet"), str(root / "index.parquet"), paths, train, train_on, ["unmasked", "surgical"],
        list(attr.TASKS), ["linear"], list(attr.DEFAULT_AGE_GROUPS), list(attr.DEFAULT_THRESHOLDS), 11,
        str(root / out / "predictions.parquet"), str(root / out / "metrics.json"), {"dataset": "syn", "model": "m"},
    )


def test_attribute_stage_pairs_the_test_set_and_pools_masks(tmp_path):
    paths = write_synthetic_dataset(tmp_path)
    result = run_synthetic(tmp_path, paths, train="unmasked")
    assert result["images"]["test_dropped_unpaired"] == 1  # image 3 has no masked embedding
    n_test = result["images"]["test_paired"]
    sex = result["heads"]["linear"]["sex"]["test"]
    assert set(sex) == {"unmasked", "surgical", "masked"}
    assert sex["unmasked"]["n"] == sex["surgical"]["n"] == n_test and sex["masked"]["n"] == n_test
    assert sex["unmasked"]["accuracy"] > 0.9 > 0.7 > sex["surgical"]["accuracy"]
    assert set(sex["unmasked"]["by_group"]) == {"sex", "race", "age_group"}
    age = result["heads"]["linear"]["age"]["test"]
    assert age["surgical"]["mae"] > age["unmasked"]["mae"]
    predictions = pq.read_table(tmp_path / "run" / "predictions.parquet")
    assert predictions.schema.equals(PREDICTIONS_SCHEMA)
    assert predictions.num_rows == len(attr.TASKS) * 2 * n_test
    first = (tmp_path / "run" / "predictions.parquet").read_bytes(), (tmp_path / "run" / "metrics.json").read_bytes()
    run_synthetic(tmp_path, paths, train="unmasked")
    assert first == ((tmp_path / "run" / "predictions.parquet").read_bytes(),
                     (tmp_path / "run" / "metrics.json").read_bytes())


def test_tables_and_figures_from_synthetic_runs(tmp_path):
    paths = write_synthetic_dataset(tmp_path)
    entries = []
    for train in ("unmasked", "mixed"):
        run_synthetic(tmp_path, paths, train=train, out=train)
        entries.append({"dataset": "syn", "model": "m", "split": "random", "train_variant": train,
                        "path": str(tmp_path / train / "metrics.json")})
    table = attributes_tables(entries, ["random"], str(tmp_path / "attributes.csv"), str(tmp_path / "by_group.csv"))
    assert list(table.columns[6:]) == ["unmasked/random", "masked/random", "surgical/random"]
    assert list(table["train_variant"].unique()) == ["unmasked", "mixed", "-"]
    assert list(table["task"].unique()) == list(attr.TASKS)
    chance = table[table["head"] == "chance"]  # once for the two runs, after them: the level to beat
    assert len(chance) == len(chance[["task", "metric"]].drop_duplicates()) == 8
    assert table.index[-8:].equals(chance.index)
    csv = pd.read_csv(tmp_path / "attributes.csv")
    mixed_sex = csv[(csv.train_variant == "mixed") & (csv.task == "sex") & (csv.metric == "accuracy")].iloc[0]
    assert 0 <= mixed_sex["masked/random"] <= 1
    groups = pd.read_csv(tmp_path / "by_group.csv")
    assert set(groups["group_by"]) == {"sex", "race", "age_group"}
    # every known group has a row per head, task and variant; one without a test face has n = 0, no value
    one = groups[(groups.train_variant == "mixed") & (groups.task == "sex") & (groups.test_variant == "unmasked")]
    for group_by, names in (("sex", attr.SEX_CLASSES), ("race", attr.RACE_CLASSES)):
        assert list(one.loc[one.group_by == group_by, "group"].drop_duplicates()) == list(names)
    assert groups.loc[groups["n"] == 0, "value"].isna().all() and groups.loc[groups["n"] > 0, "value"].notna().all()
    assert (tmp_path / "attributes.md").read_text().startswith("# attributes")
    pngs = [tmp_path / f"{k}.png" for k in ("confusion", "coverage", "age_error")]
    attribute_figures(str(tmp_path / "mixed" / "metrics.json"), *map(str, pngs))
    first = [p.read_bytes() for p in pngs]
    attribute_figures(str(tmp_path / "mixed" / "metrics.json"), *map(str, pngs))
    assert first == [p.read_bytes() for p in pngs] and all(len(b) > 5000 for b in first)


# ----------------------------------------------------------------------------------------------
# configuration


def test_config_references_are_checked():
    config = yaml.safe_load((REPO / "config" / "utkface.yaml").read_text())
    check_attributes_config(config)
    bad = {**config, "attributes": {**config["attributes"], "train_variants": ["unmasked", "n95_white"]}}
    with pytest.raises(ConfigError, match="n95_white"):
        check_attributes_config(bad)
    bad = {**config, "attributes": {**config["attributes"], "datasets": ["lfw"]}}
    with pytest.raises(ConfigError, match="lfw"):
        check_attributes_config(bad)
    bad = {**config, "splits": {"ratios": {"train": 0.8, "val": 0.1, "test": 0.2}}}
    with pytest.raises(ConfigError, match="sum to 1"):
        check_attributes_config(bad)


def test_schema_names_a_wrong_key():
    schema = str(REPO / "workflow" / "schemas" / "attributes.schema.yaml")
    config = yaml.safe_load((REPO / "config" / "utkface.yaml").read_text())
    validate({"splits": config["splits"], "attributes": config["attributes"]}, schema=schema)
    with pytest.raises(Exception, match="train_variant"):
        validate({"attributes": {"train_variant": ["unmasked"]}}, schema=schema)
    with pytest.raises(Exception, match="gender"):
        validate({"splits": {"stratify": ["gender"]}}, schema=schema)


# ----------------------------------------------------------------------------------------------
# real faces: UTKFace-mini through the workflow


UTK_TARGETS = ("results/tables/attributes.csv", "results/tables/attributes_privacy.csv",
               "results/tables/attributes_heads.csv", "results/tables/attributes_abstention.csv")


@pytest.fixture(scope="module")
def utk_run(tmp_path_factory, shared_data):
    work = copy_workflow(tmp_path_factory.mktemp("utk") / "wf")
    local = {"datasets": {"utkface": {"files": {"images": {"path": str(shared_data / "utkface-mini" /
                                                                       "UTKFace-mini.tar.gz")}}}}}
    (work / "local.yaml").write_text(yaml.safe_dump(local))
    snakemake(work, "--cores", "2", *UTK_TARGETS, "--configfile", "config/utkface.yaml", "config/utkface-mini.yaml",
              "local.yaml")
    return work


@pytest.mark.slow
def test_utkface_mini_fills_the_attribute_tables(utk_run):
    table = pd.read_csv(utk_run / "results/tables/attributes.csv")
    view = table[table.train_variant == "unmasked"].set_index(["task", "metric"])
    print(view[["unmasked/random", "masked/random", "unmasked/uniform", "masked/uniform"]].to_string())
    columns = ["unmasked/random", "masked/random", "unmasked/uniform", "masked/uniform"]
    assert set(columns) <= set(table.columns)
    heads = table[table.model == "dlib_resnet"]
    assert heads[columns].notna().all().all()
    cnn = table[table.model == "cnn_dlib_resnet"]  # the CNN runs on the random split only
    assert len(cnn) and cnn[["unmasked/random", "masked/random"]].notna().all().all()
    assert cnn[["unmasked/uniform", "masked/uniform"]].isna().all().all()
    for split in ("random", "uniform"):
        assert view.loc[("sex", "accuracy"), f"unmasked/{split}"] > 0.85
        assert view.loc[("race", "accuracy"), f"unmasked/{split}"] > 0.65  # 5 classes
        assert view.loc[("age_group", "accuracy"), f"unmasked/{split}"] > 0.45  # 7 classes
        assert view.loc[("age", "mae"), f"unmasked/{split}"] < 10
        # a mask hides race and age from a head trained on unmasked faces
        assert view.loc[("race", "accuracy"), f"masked/{split}"] < view.loc[("race", "accuracy"), f"unmasked/{split}"]
        assert view.loc[("age", "mae"), f"masked/{split}"] > view.loc[("age", "mae"), f"unmasked/{split}"]
    groups = pd.read_csv(utk_run / "results/tables/attributes_by_group.csv")
    assert set(groups.loc[groups.group_by == "race", "group"]) == set(RACES)
    figures = sorted((utk_run / "results/figures/attributes").rglob("*.png"))
    # the heads: 2 splits x 3 train variants; the CNN: the random split, mixed; 3 figures each
    assert len(figures) == (2 * 3 + 1) * 3 and all(f.stat().st_size > 10_000 for f in figures)


@pytest.mark.slow
def test_copies_of_one_utkface_photo_stay_in_one_part(utk_run):
    """UTKFace files some pictures twice under different names (UTKFace-mini has a pair): the
    image-level splits keep each picture's copies in one part, so none is trained on and tested."""
    from glob import glob

    from maskbench.io.duplicates import duplicate_chips
    from maskbench.io.readers import read_split

    shards = sorted(glob(str(utk_run / "results/utkface/aligned/shard-*.parquet")))
    for strategy in ("random", "uniform"):
        parts = read_split(utk_run / f"results/utkface/splits/{strategy}.parquet")
        groups = duplicate_chips(shards, list(parts))
        report = json.loads((utk_run / f"results/utkface/splits/{strategy}.json").read_text())
        assert groups and report["notes"]["duplicate_groups"] == len(groups), strategy
        assert all(len({parts[i][0] for i in group}) == 1 for group in groups), strategy
        # read from the dataset's copies file (the copies stage), not found from every chip again
        assert "no copies file given" not in (utk_run / f"results/logs/splits/utkface/{strategy}.log").read_text()


@pytest.mark.slow
def test_cpu_cnn_against_the_linear_head_on_masked_faces(utk_run):
    """dlib's ResNet with 11 blocks frozen and cached, fine-tuned on masked and unmasked chips
    mixed (cosine schedule, weight average, each chip scored with its mirror image), against the
    linear head trained on the same mixed embeddings, on the same masked test faces (every mask
    type pooled), random split. Settings chosen on val (benchmarks/tune_attributes_cnn.py); on
    these 239 test faces the CNN reads sex and race better than the linear head (0.904 / 0.898
    and 0.695 / 0.678 when measured: a few faces, inside the noise of so small a set) and age
    clearly better (MAE 6.5 against 8.4 years); age group is only checked not to have collapsed."""
    table = pd.read_csv(utk_run / "results/tables/attributes.csv").set_index(
        ["model", "head", "train_variant", "task", "metric"])
    value = lambda model, head, task, metric: table.loc[(model, head, "mixed", task, metric), "masked/random"]  # noqa: E731
    for task in ("sex", "race", "age_group"):
        cnn, linear = value("cnn_dlib_resnet", "cnn", task, "accuracy"), value("dlib_resnet", "linear", task, "accuracy")
        print(f"UTKFace-mini {task}, masked test faces: CNN {cnn:.4f}, linear head {linear:.4f}")
        assert cnn > (linear if task in ("sex", "race") else linear - 0.04), task
    cnn, linear = value("cnn_dlib_resnet", "cnn", "age", "mae"), value("dlib_resnet", "linear", "age", "mae")
    print(f"UTKFace-mini age MAE, masked test faces: CNN {cnn:.2f}, linear head {linear:.2f}")
    assert cnn < linear - 1.0
    run = utk_run / "results/utkface/attributes/cnn_dlib_resnet/random/mixed"
    timing = json.loads((run / "timing.json").read_text())
    print(f"CPU CNN: {timing['mean_seconds_per_epoch_per_1000_chips']} s per epoch per 1,000 chips, "
          f"feature cache {timing['feature_cache']}")
    assert timing["feature_cache"]["chips"] > 2 * timing["train_images"]  # masks and mirror images
    assert timing["mean_seconds_per_epoch_per_1000_chips"] > 0
    curve = json.loads((run / "metrics.json").read_text())["training"]["curve"]
    assert curve[0]["epoch"] == 0 and "linear_probe" in curve[0]  # the start: linear heads, a candidate
    # the weight average keeps the val age MAE from jumping epoch to epoch once the first quarter
    # of the epochs has moved the network away from its start
    ages = [e["val"]["age"] for e in curve][len(curve) // 4:]
    assert max(abs(b - a) for a, b in zip(ages, ages[1:])) < 0.5, ages


@pytest.mark.slow
def test_heads_table_on_real_faces_upper_face_keeps_what_the_mask_hides(utk_run):
    """Every head x features x train -> test variant on the CNN's split; heads trained on bare
    faces lose far less race accuracy (and age) to a mask when they read the upper face only."""
    table = pd.read_csv(utk_run / "results/tables/attributes_heads.csv")
    print(table.to_string())
    assert len(table) == 3 * 2 * 3 * 2 and set(table["split"]) == {"random"}
    view = table.set_index(["head", "features", "train_variant", "test_variant"])
    for head in ("linear", "mlp", "ordinal"):
        for features in ("full", "upper"):
            row = view.loc[(head, features, "mixed", "masked")]
            assert 0.45 < row["age_group accuracy"] < 1 and 4 < row["age mae"] < 15, (head, features)
    assert view[["sex accuracy", "race accuracy"]].loc[["linear", "mlp"]].notna().all().all()
    assert view[["sex accuracy", "race accuracy"]].loc["ordinal"].isna().all().all()
    drop = lambda features, column: (view.loc[("linear", features, "unmasked", "unmasked"), column]  # noqa: E731
                                     - view.loc[("linear", features, "unmasked", "masked"), column])
    assert drop("upper", "race accuracy") < drop("full", "race accuracy") - 0.05
    assert drop("upper", "age mae") > drop("full", "age mae")  # MAE: a smaller rise


@pytest.mark.slow
def test_abstention_table_on_real_faces_holds_the_cnn(utk_run):
    """The CNN's curves beside the heads'; abstaining on its least confident masked faces raises
    its sex accuracy on those it keeps."""
    table = pd.read_csv(utk_run / "results/tables/attributes_abstention.csv")
    cnn = table[(table.model == "cnn_dlib_resnet") & (table.task == "sex") & (table.test_variant == "masked")]
    print(cnn.to_string())
    assert set(table["head"]) == {"linear", "cnn"} and len(cnn) == 10
    kept = cnn[cnn.coverage >= 0.2]
    assert kept["accuracy"].iloc[-1] > kept["accuracy"].iloc[0] and kept["threshold"].iloc[-1] >= 0.9
    assert (utk_run / "results/figures/attributes_abstention.png").stat().st_size > 10_000


@pytest.mark.slow
def test_privacy_table_on_real_faces(utk_run):
    """A mask hides race from the attacker trained on bare faces (the interval excludes 0), and
    an attacker trained on masked faces recovers part of it."""
    table = pd.read_csv(utk_run / "results/tables/attributes_privacy.csv")
    overall = table[(table.group_by == "all") & (table.model == "dlib_resnet") & (table.split == "random")]
    race = overall[overall.task == "race"].set_index(["mask", "attacker"])
    for mask in ("surgical_blue", "cloth_black"):
        assert race.loc[(mask, "bare_trained"), "ci_low"] > 0
        assert race.loc[(mask, "mask_trained"), "protection"] < race.loc[(mask, "bare_trained"), "protection"]
    groups = table[(table.group_by == "race") & (table.model == "dlib_resnet")]
    assert set(groups["group"]) == set(RACES)
    cnn = table[table.model == "cnn_dlib_resnet"]
    assert set(cnn["attacker"]) == {"mask_trained"} and set(cnn["reference_trained_on"]) == {"mixed"}
    assert (utk_run / "results/figures/attributes_privacy.png").stat().st_size > 10_000


@pytest.mark.slow
def test_utkface_mini_splits_cover_every_usable_face_once(utk_run):
    for strategy in ("random", "uniform"):
        split = pq.read_table(utk_run / f"results/utkface/splits/{strategy}.parquet").to_pandas()
        report = json.loads((utk_run / f"results/utkface/splits/{strategy}.json").read_text())
        assert split["image_id"].is_unique and len(split) == report["images"] == 1200 - report["unusable_images_left_out"]
        assert report["sizes"]["test"] == pytest.approx(0.2 * len(split), abs=2)
    uniform = json.loads((utk_run / "results/utkface/splits/uniform.json").read_text())
    for column in ("sex", "race"):
        overall = pd.Series(uniform["labels"]["train"][column]) + pd.Series(uniform["labels"]["val"][column]) \
            + pd.Series(uniform["labels"]["test"][column])
        test = pd.Series(uniform["labels"]["test"][column])
        # 70 joint sex x race x age-group strata are each rounded: within 2% (5 of 240 faces)
        assert ((test / test.sum() - overall / overall.sum()).abs() < 0.02).all(), column


@pytest.mark.slow
def test_real_embeddings_mask_costs_sex_accuracy_and_abstention_helps(utk_run):
    """A sex head trained on unmasked UTKFace-mini embeddings loses accuracy on the same test
    faces masked; abstaining on low-confidence faces raises accuracy on those it keeps."""
    root = utk_run / "results/utkface"
    split = pq.read_table(root / "splits/random.parquet").to_pandas().set_index("image_id")["split"]
    labels = pq.read_table(root / "index.parquet").to_pandas().set_index("image_id")["sex"]
    emb = {v: load_embeddings([str(root / f"embeddings/dlib_resnet/{v}.parquet")])
           for v in ("unmasked", "surgical_blue", "cloth_black")}
    ids = {s: [i for i in sorted(split.index[split == s]) if all(i in e for e in emb.values())]
           for s in ("train", "val", "test")}
    x = lambda v, s: np.stack([emb[v][i] for i in ids[s]])  # noqa: E731
    y = lambda s: labels.loc[ids[s]].to_numpy(dtype=object)  # noqa: E731
    head = attr.fit_head("sex", x("unmasked", "train"), y("train"), x("unmasked", "val"), y("val"), "linear", 1)
    accuracy = {}
    for variant in emb:
        prediction = attr.predict(head, x(variant, "test"))
        accuracy[variant] = float(np.mean(prediction.predicted == y("test")))
        curve = attr.coverage_curve(y("test"), prediction.predicted, prediction.confidence, [0.0, 0.9])
        assert 0.2 < curve[1]["coverage"] < 1.0
        assert curve[1]["accuracy"] > curve[0]["accuracy"], (variant, curve)
    print(f"UTKFace-mini sex accuracy, head trained on unmasked faces: {accuracy}")
    assert accuracy["unmasked"] > 0.85
    assert accuracy["surgical_blue"] < accuracy["unmasked"]
    assert accuracy["cloth_black"] < accuracy["unmasked"]


@pytest.mark.slow
def test_utkface_mini_run_is_complete_and_up_to_date(utk_run):
    proc = snakemake(utk_run, "-n", *UTK_TARGETS, "--configfile", "config/utkface.yaml", "config/utkface-mini.yaml",
                     "local.yaml")
    assert "Nothing to be done" in proc.stdout


def test_attribute_study_takes_only_models_with_embeddings_and_never_a_leaky_split():
    """Default models: those with embeddings (not ensembles); a head trained on the dataset may only
    be studied on the split it was trained with."""
    import copy

    import yaml

    from maskbench.attributes.settings import attribute_settings, check_attributes_config
    from maskbench.config import ConfigError
    from conftest import REPO

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["attributes"] = {"datasets": ["demo"], "splits": ["identity"]}
    assert "ensemble" not in attribute_settings(config)["models"]
    check_attributes_config(config)
    leaky = copy.deepcopy(config)
    leaky["attributes"]["splits"] = ["random"]
    with pytest.raises(ConfigError, match="'dlib_masked_head' was trained on 'demo'"):
        check_attributes_config(leaky)
    no_embeddings = copy.deepcopy(config)
    no_embeddings["attributes"]["models"] = ["ensemble"]
    with pytest.raises(ConfigError, match="no embeddings"):
        check_attributes_config(no_embeddings)


def test_wide_table_keeps_a_metric_that_is_missing_everywhere():
    """A task or variant without labelled test images has no value for a metric: its row is shown
    as missing, not dropped (pivot_table drops all-missing rows by default)."""
    from maskbench.stages.attributes import wide_table

    rows = [dict(dataset="d", model="m", head="linear", train_variant="unmasked", task="sex", metric=metric,
                 test_variant=variant, split="random", value=value, n=4)
            for variant in ("unmasked", "masked")
            for metric, value in (("accuracy", 0.75 if variant == "unmasked" else 0.5), ("balanced_accuracy", None))]
    table = wide_table(pd.DataFrame(rows), ["random"])
    assert table["metric"].tolist() == ["accuracy", "balanced_accuracy"]
    assert table[["unmasked/random", "masked/random"]].iloc[0].tolist() == [0.75, 0.5]
    assert table[["unmasked/random", "masked/random"]].iloc[1].isna().all()


def test_chance_is_the_train_majority_or_median_on_the_test_faces():
    """attributes.csv gave raw accuracies only: 52% on age groups reads otherwise beside the 39% of
    always answering the train part's most frequent group."""
    from maskbench.attributes.study import Study, chance_level

    labels = pd.DataFrame({"sex": ["male"] * 6 + ["female"] * 4, "race": ["white"] * 10,
                           "age": [20, 30, 40, 50, 60, 25, 35, 45, 55, 65], "age_group": [None] * 10},
                          index=[f"i{k}" for k in range(10)])
    study = Study(labels, {"train": ["i0", "i1", "i2", "i6", "i7"], "val": [], "test": ["i3", "i4", "i5", "i8", "i9"]},
                  ["i3", "i4", "i5", "i8", "i9"], [3, 12, 19, 30, 45, 60])
    sex = chance_level(study, "sex")  # train: 3 male, 2 female -> always male; test: 3 male of 5
    assert sex == {"accuracy": pytest.approx(0.6), "balanced_accuracy": pytest.approx(0.5)}
    age = chance_level(study, "age")  # train median 35; test ages 50 60 25 55 65
    assert age["mae"] == pytest.approx((15 + 25 + 10 + 20 + 30) / 5)
