"""Verification metrics per demographic group: checked against counting per group with numpy,
through the metrics stage and its long table, at start-up, and through the workflow on a tiny
CelebA-layout set of drawn faces."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from conftest import REPO, copy_workflow, snakemake
from maskbench.evaluation import metrics
from maskbench.attributes.labels import DEFAULT_AGE_GROUPS, age_group
from maskbench.config import ConfigError, check_config
from maskbench.evaluation.group_metrics import (
    ACROSS_GROUPS, EXCLUDED, NO_GENUINE, NO_IMPOSTOR, OK, UNKNOWN, by_group_table, metrics_by_group,
)
from maskbench.io.manifests import INDEX_SCHEMA, SCORES_SCHEMA
from maskbench.stages.metrics import compute_metrics, write_metrics

# ---------------------------------------------------------------------------------------------
# a small population: 12 people, 3 images each; "asian" has one person (no impostor pairs), the
# third image of people 0-3 is of a 70-year-old (the 61+ group: impostor pairs only); one image
# lacks its sex and one scored image is missing from the index.

N_PEOPLE, PER_PERSON = 12, 3
SEX = ["male", "female"]
RACE = ["white"] * 6 + ["black"] * 5 + ["asian"]


def population():
    rows = []
    for p in range(N_PEOPLE):
        for j in range(PER_PERSON):
            rows.append({"image_id": f"p{p:02d}/{j}.png", "identity": f"p{p:02d}", "source_path": f"p{p:02d}/{j}.png",
                         "shard": 0, "age": 70 if (j == 2 and p < 4) else 20 + p + j,
                         "sex": None if (p, j) == (5, 0) else SEX[p % 2], "race": RACE[p], "pose": None,
                         "real_mask": None, "group": None})
    return pd.DataFrame(rows)


def all_pairs(index: pd.DataFrame, seed: int = 0, unscored: int = 9, ghost: bool = True) -> pd.DataFrame:
    """Every pair of images (plus pairs with an image absent from the index), seeded scores with
    ties (one decimal), a few pairs without a score."""
    rng = np.random.default_rng(seed)
    images = list(index["image_id"]) + (["ghost.png"] if ghost else [])
    identity = dict(zip(index["image_id"], index["identity"])) | {"ghost.png": "ghost"}
    ref, probe = zip(*itertools.combinations(images, 2))
    genuine = np.array([identity[a] == identity[b] for a, b in zip(ref, probe)])
    score = np.round(np.where(genuine, rng.normal(2.0, 1.0, genuine.size), rng.normal(0.0, 1.0, genuine.size)), 1)
    status = np.array(["ok"] * genuine.size, dtype=object)
    status[rng.choice(genuine.size, unscored, replace=False)] = "missing_embedding"
    return pd.DataFrame({"ref_image": ref, "probe_image": probe, "genuine": genuine,
                         "score": np.where(status == "ok", score, np.nan), "status": status})


def label_of(index: pd.DataFrame, attribute: str, bounds=DEFAULT_AGE_GROUPS) -> dict:
    """image -> group label, the plain way."""
    if attribute == "age_group":
        return {i: (None if a is None or a != a else age_group(a, bounds)) for i, a in zip(index.image_id, index.age)}
    return {i: (v if isinstance(v, str) else None) for i, v in zip(index.image_id, index[attribute])}


def expected_group(labels: dict, a: str, b: str) -> str:
    la, lb = labels.get(a), labels.get(b)
    if la is None or lb is None:
        return UNKNOWN
    return la if la == lb else ACROSS_GROUPS


def brute_threshold(candidates: np.ndarray, impostor: np.ndarray, target: float) -> float:
    """The lowest candidate threshold whose FMR on ``impostor`` does not exceed ``target``."""
    cands = np.unique(np.concatenate([candidates, [np.inf]]))
    return min(t for t in cands if np.mean(impostor >= t) <= target)


def brute_fnmr_at_fmr(gen: np.ndarray, imp: np.ndarray, target: float) -> float:
    t = brute_threshold(np.concatenate([gen, imp]), imp, target)
    return float(np.mean(gen < t))


def check_rows(rows, pairs, index, attributes, targets=(1e-2,), base_impostor=None, bounds=DEFAULT_AGE_GROUPS):
    """Every row against counting per group in plain Python and numpy."""
    ok = (pairs.status == "ok").to_numpy()
    gen_all = pairs.genuine.to_numpy()
    score = np.where(ok, pairs.score.to_numpy(), -np.inf)  # a failure to enrol: rejected at every threshold
    all_scores = score[ok]
    global_t = {t: brute_threshold(all_scores, score[~gen_all], t) for t in targets}
    nist_t = {} if base_impostor is None else {
        t: brute_threshold(np.concatenate([base_impostor, all_scores]), base_impostor, t) for t in targets}
    by_key = {(r["attribute"], r["group"]): r for r in rows}
    assert len(by_key) == len(rows)
    for attribute in attributes:
        labels = label_of(index, attribute, bounds)
        group = np.array([expected_group(labels, a, b) for a, b in zip(pairs.ref_image, pairs.probe_image)])
        assert {g for (a, g) in by_key if a == attribute} == set(group) | {ACROSS_GROUPS}
        total = 0
        for g in set(group):
            row = by_key[(attribute, g)]
            member = group == g
            gen, imp = score[member & ok & gen_all], score[member & ok & ~gen_all]
            assert (row["n_genuine"], row["n_impostor"], row["n_unscored"]) == (
                gen.size, imp.size, int((member & ~ok).sum()))
            total += row["n_genuine"] + row["n_impostor"] + row["n_unscored"]
            if g == ACROSS_GROUPS:
                assert row["status"] == EXCLUDED and "eer" not in row
                continue
            gen_f, imp_f = score[member & gen_all], score[member & ~gen_all]  # failures included (-inf)
            assert (row["n_failure_to_enrol_genuine"], row["n_failure_to_enrol_impostor"]) == (
                gen_f.size - gen.size, imp_f.size - imp.size)
            if gen.size and imp.size:
                assert row["status"] == OK
                assert row["eer"] == metrics.eer(gen, imp).eer
                assert row["auc"] == pytest.approx(roc_auc_score(np.r_[np.ones(gen.size), np.zeros(imp.size)],
                                                                 np.r_[gen, imp]), abs=1e-12)
            else:
                assert row["eer"] is None and row["auc"] is None
            if gen_f.size and imp_f.size:  # FNMR counts the group's failures to enrol as non-matches
                for target, key in ((1e-2, "fnmr_at_fmr_1e-2"), (1e-3, "fnmr_at_fmr_1e-3")):
                    measurable = imp_f.size >= 1 / target
                    assert row[f"{key}_measurable"] is measurable
                    assert row[key] == (pytest.approx(brute_fnmr_at_fmr(gen_f, imp_f, target)) if measurable else None)
            else:
                assert row["status"] in (NO_IMPOSTOR, NO_GENUINE) and row["fnmr_at_fmr_1e-2"] is None
            for prefix, thresholds in (("global", global_t), ("nist", nist_t)):
                for target, t in thresholds.items():
                    key = f"{prefix}_fnmr_at_fmr_{target:.0e}".replace("e-0", "e-")
                    assert row[key] == (pytest.approx(np.mean(gen_f < t)) if gen_f.size else None)
                    # a group with fewer than 1/target impostor pairs cannot show that FMR: n/a
                    enough = imp_f.size and imp_f.size >= 1 / target
                    assert row[f"{key}_fmr"] == (pytest.approx(np.mean(imp_f >= t)) if enough else None)
            if base_impostor is None:
                assert not any(k.startswith("nist_") for k in row)
        assert total == len(pairs)  # every pair accounted for, once per attribute


# ---------------------------------------------------------------------------------------------
# the library


def test_every_group_matches_counting_per_group():
    index = population()
    pairs = all_pairs(index)
    rows = metrics_by_group(pairs, index, ["sex", "race", "age_group"], targets=[1e-2, 0.1])
    check_rows(rows, pairs, index, ["sex", "race", "age_group"], targets=(1e-2, 0.1))
    order = [(r["attribute"], r["group"]) for r in rows]
    assert order[:4] == [("sex", "male"), ("sex", "female"), ("sex", UNKNOWN), ("sex", ACROSS_GROUPS)]
    assert [g for a, g in order if a == "race"] == ["white", "black", "asian", UNKNOWN, ACROSS_GROUPS]
    ages = [g for a, g in order if a == "age_group"]
    assert ages == sorted(set(ages) - {UNKNOWN, ACROSS_GROUPS}, key=lambda g: int(g.split("-")[0].rstrip("+"))) \
        + [UNKNOWN, ACROSS_GROUPS]


def test_a_group_without_impostor_pairs_is_na_not_a_crash():
    index = population()
    rows = metrics_by_group(all_pairs(index), index, ["race"])
    asian = next(r for r in rows if r["group"] == "asian")  # one person: genuine pairs only
    assert asian["status"] == NO_IMPOSTOR and asian["n_impostor"] == 0 and asian["n_genuine"] > 0
    assert asian["eer"] is None and asian["fnmr_at_fmr_1e-2"] is None
    assert asian["fnmr_at_fmr_1e-2_measurable"] is False
    assert asian["global_fnmr_at_fmr_1e-2"] is not None and asian["global_fnmr_at_fmr_1e-2_fmr"] is None


def test_a_group_whose_genuine_pairs_all_failed_to_enrol_shows_it():
    """Every female genuine pair failed (no face found): the row said 'no genuine pairs' and gave no
    FNMR, hiding the group a system fails most; it is every genuine pair a non-match."""
    index = population()
    pairs = all_pairs(index, unscored=0)
    sex = dict(zip(index.image_id, index.sex))
    female = pairs.ref_image.map(sex).eq("female") & pairs.probe_image.map(sex).eq("female") & pairs.genuine
    pairs.loc[female, "status"], pairs.loc[female, "score"] = "missing_embedding", np.nan
    row = next(r for r in metrics_by_group(pairs, index, ["sex"], targets=[0.1]) if r["group"] == "female")
    assert row["status"] == "every genuine pair failed to enrol" and row["n_genuine"] == 0
    assert row["n_failure_to_enrol_genuine"] == int(female.sum()) > 0
    assert row["global_fnmr_at_fmr_1e-1"] == 1.0 and row["eer"] is None


def test_a_group_without_genuine_pairs_is_na_not_a_crash():
    index = population()
    rows = metrics_by_group(all_pairs(index), index, ["age_group"])
    old = next(r for r in rows if r["group"] == "61+")  # one image each of four people
    assert old["status"] == NO_GENUINE and old["n_genuine"] == 0 and old["n_impostor"] + old["n_unscored"] == 6
    assert old["eer"] is None and old["auc"] is None
    assert old["global_fnmr_at_fmr_1e-2"] is None
    assert old["global_fnmr_at_fmr_1e-2_fmr"] is None  # 6 impostor pairs cannot show an FMR of 1e-2
    wide = next(r for r in metrics_by_group(all_pairs(index), index, ["age_group"], targets=[0.1])
                if r["group"] == "61+")
    assert wide["global_fnmr_at_fmr_1e-1_fmr"] is None  # nor of 0.1: 10 are needed
    # genuine pairs of one person split across age groups are counted, in no group
    across = next(r for r in rows if r["group"] == ACROSS_GROUPS)
    assert across["n_genuine"] > 0


def test_missing_attributes_make_the_unknown_group():
    index = population()
    pairs = all_pairs(index)
    rows = {r["group"]: r for r in metrics_by_group(pairs, index, ["sex"])}
    unknown_image = "p05/0.png"
    has_unknown = pairs.ref_image.isin([unknown_image, "ghost.png"]) | pairs.probe_image.isin([unknown_image, "ghost.png"])
    u = rows[UNKNOWN]
    assert u["n_genuine"] + u["n_impostor"] + u["n_unscored"] == int(has_unknown.sum())
    assert u["n_genuine"] == int((has_unknown & pairs.genuine & (pairs.status == "ok")).sum()) == 2
    assert sum(r["n_genuine"] + r["n_impostor"] + r["n_unscored"] for r in rows.values()) == len(pairs)


def test_per_person_attribute_keeps_every_genuine_pair_in_its_group():
    """Sex and race are per person here: no genuine pair is across groups (the NIST convention
    then only removes impostor pairs across groups)."""
    index = population()
    index.loc[index.image_id == "p05/0.png", "sex"] = "female"
    pairs = all_pairs(index, ghost=False)
    for attribute in ("sex", "race"):
        rows = metrics_by_group(pairs, index, [attribute])
        across = next(r for r in rows if r["group"] == ACROSS_GROUPS)
        assert across["n_genuine"] == 0 and across["n_impostor"] > 0
        assert sum(r["n_genuine"] for r in rows) == int((pairs.genuine & (pairs.status == "ok")).sum())


# ---------------------------------------------------------------------------------------------
# the metrics stage and the long table


def write_scores(path: Path, pairs: pd.DataFrame) -> str:
    ok = (pairs.status == "ok").to_numpy()
    table = pa.Table.from_pydict(
        {"pair_id": np.arange(len(pairs)), "ref_image": pairs.ref_image.tolist(),
         "probe_image": pairs.probe_image.tolist(), "genuine": pairs.genuine.to_numpy(),
         "fold": np.zeros(len(pairs), np.int16),
         "score": pa.array(np.nan_to_num(pairs.score.to_numpy()), mask=~ok), "status": pairs.status.tolist()},
        schema=SCORES_SCHEMA)
    pq.write_table(table, path)
    return str(path)


def write_index(path: Path, index: pd.DataFrame) -> str:
    pq.write_table(pa.Table.from_pandas(index, schema=INDEX_SCHEMA, preserve_index=False), path)
    return str(path)


def test_metrics_file_has_by_group_with_the_nist_threshold_of_all_unmasked_impostors(tmp_path):
    index = population()
    masked, unmasked = all_pairs(index, seed=1), all_pairs(index, seed=2, unscored=0)
    scores = write_scores(tmp_path / "masked.parquet", masked)
    baseline = write_scores(tmp_path / "unmasked.parquet", unmasked)
    index_path = write_index(tmp_path / "index.parquet", index)
    out = compute_metrics(scores, baseline, {"nist_fmr": [0.05, 0.2]}, index_path=index_path,
                          group_by=["sex", "age_group"], age_groups=[30, 60])
    base_imp = unmasked.score[~unmasked.genuine].to_numpy()
    check_rows(out["by_group"], masked, index, ["sex", "age_group"], targets=(0.05, 0.2), base_impostor=base_imp,
               bounds=[30, 60])
    assert [r["group"] for r in out["by_group"] if r["attribute"] == "age_group"] == [
        "0-30", "31-60", "61+", UNKNOWN, ACROSS_GROUPS]  # the configured bins, in age order
    # the whole comparison's keys are unchanged by grouping
    plain = compute_metrics(scores, baseline, {"nist_fmr": [0.05, 0.2]})
    assert {k: v for k, v in out.items() if k != "by_group"} == plain and "by_group" not in plain


def test_grouping_without_the_index_is_a_named_error(tmp_path):
    scores = write_scores(tmp_path / "s.parquet", all_pairs(population()))
    with pytest.raises(ValueError, match="index"):
        compute_metrics(scores, group_by=["sex"])


def test_long_table_rows_and_na_cells(tmp_path):
    index = population()
    index_path = write_index(tmp_path / "index.parquet", index)
    entries = []
    for model, seed in (("m2", 3), ("m1", 4)):
        scores = write_scores(tmp_path / f"{model}.parquet", all_pairs(index, seed=seed))
        path = tmp_path / f"{model}.json"
        write_metrics(scores, str(path), index_path=index_path, group_by=["race"])
        entries.append({"dataset": "celeba", "model": model, "protocol": "p", "comparison": "unmasked-vs-unmasked",
                        "path": str(path)})
    frame = by_group_table(entries)
    assert list(frame.columns[:8]) == ["dataset", "model", "protocol", "ref_variant", "probe_variant",
                                       "attribute", "group", "status"]
    assert list(frame.model) == ["m1"] * 5 + ["m2"] * 5  # sorted by model, groups in their order
    assert list(frame.group[:5]) == ["white", "black", "asian", UNKNOWN, ACROSS_GROUPS]
    for model in ("m1", "m2"):
        stored = json.loads((tmp_path / f"{model}.json").read_text())["by_group"]
        shown = frame[frame.model == model].to_dict("records")
        for row, want in zip(shown, stored):
            assert row["n_genuine"] == want["n_genuine"] and row["status"] == want["status"]
            want_eer = want.get("eer")
            assert row["eer"] == ("n/a" if want_eer is None else want_eer)
        asian = next(r for r in shown if r["group"] == "asian")
        assert asian["fnmr_at_fmr_1e-2"] == "n/a" and asian["eer"] == "n/a"
    assert not any(c.endswith("_measurable") for c in frame.columns)
    assert by_group_table([]).empty


# ---------------------------------------------------------------------------------------------
# start-up checks


def base_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


@pytest.mark.parametrize("layout, options, group_by, message", [
    ("folder", {}, ["sex"], r"datasets\.people\.group_by: the 'folder' layout gives no 'sex'"),
    ("celeba", {}, ["sex"], r"datasets\.people\.group_by: sex comes from CelebA's list_attr_celeba\.txt; "
                            r"set datasets\.people\.index_options\.attribute_file"),
    ("celeba", {"attribute_file": "a.txt"}, ["sex", "race"], r"gives no 'race' \(it gives: sex\)"),
])
def test_an_attribute_the_layout_lacks_fails_at_start_up(layout, options, group_by, message):
    config = base_config()
    config["datasets"]["people"] = {"layout": layout, "shards": 1, "protocols": ["test_pairs"], "group_by": group_by,
                                    "index_options": options, "files": {"images": {"path": "x"}}}
    with pytest.raises(ConfigError, match=message):
        check_config(config)
    config["datasets"]["people"]["group_by"] = [g for g in group_by if g == "sex"]
    if layout == "celeba" and options:
        check_config(config)  # sex from the attribute file is fine


def test_grouping_a_set_without_pairs_fails_at_start_up():
    config = base_config()
    config["datasets"]["utk"] = {"layout": "utkface", "shards": 1, "protocols": [], "group_by": ["age_group"],
                                 "files": {"images": {"path": "x"}}}
    with pytest.raises(ConfigError, match=r"datasets\.utk\.group_by: 'utk' has no verification protocol"):
        check_config(config)


def test_paper_config_groups_celeba_by_sex():
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    celeba = config["datasets"]["celeba"]
    assert celeba["group_by"] == ["sex"] and celeba["index_options"]["attribute_file"] == "list_attr_celeba.txt"
    check_config(config)


# ---------------------------------------------------------------------------------------------
# the workflow on a tiny CelebA-layout set of drawn faces

N_IDS, N_IMAGES, SEED = 20, 4, 7
UNANNOTATED = N_IDS - 1  # the last person's images are missing from list_attr_celeba.txt


def fabricate_celeba(root: Path) -> tuple[Path, Path]:
    """img_align_celeba_png/NNNNNN.png drawn with maskbench.data.demo, identity_CelebA.txt,
    list_attr_celeba.txt (Male: even people 1, odd -1) and the drawing's landmarks."""
    from maskbench.data.demo import demo_image, encode_png, landmark_header

    images = root / "celeba"
    (images / "img_align_celeba_png").mkdir(parents=True)
    ids, attrs, marks = [], [], [landmark_header()]
    names = ["5_o_Clock_Shadow", "Bald", "Male", "Young"]
    for p in range(N_IDS):
        for j in range(N_IMAGES):
            stem = f"{p * N_IMAGES + j + 1:06d}"
            rgb, points = demo_image(SEED, p, j, size=250)
            (images / "img_align_celeba_png" / f"{stem}.png").write_bytes(encode_png(rgb))
            ids.append(f"{stem}.jpg {1000 + p}")
            if p != UNANNOTATED:
                attrs.append(f"{stem}.jpg -1  1 {' 1' if p % 2 == 0 else '-1'}  1")
            marks.append(f"{stem}.png," + ",".join(f"{v:.3f}" for v in points.reshape(-1)))
    (images / "identity_CelebA.txt").write_text("\n".join(ids) + "\n")
    (images / "list_attr_celeba.txt").write_text(f"{len(attrs)}\n{' '.join(names)}\n" + "\n".join(attrs) + "\n")
    landmarks = root / "landmarks.csv"
    landmarks.write_text("\n".join(marks) + "\n")
    return images, landmarks


def tiny_config(images: Path, landmarks: Path) -> dict:
    base = base_config()
    return {
        "seed": base["seed"], "align": base["align"], "masks": {"surgical_blue": base["masks"]["surgical_blue"]},
        "evaluation": {**base["evaluation"], "bootstrap": 0},
        "datasets": {"celeba": {
            "layout": "celeba", "shards": 1, "protocols": ["pairs"], "group_by": ["sex"],
            "files": {"images": {"path": str(images), "sha256": None},
                      "landmarks": {"path": str(landmarks), "sha256": None}},
            "index_options": {"identity_file": "identity_CelebA.txt", "attribute_file": "list_attr_celeba.txt"}}},
        "protocols": {"pairs": {"kind": "all_vs_all", "comparisons": [["unmasked", "unmasked"], ["unmasked", "masked"]]}},
        "models": {"dlib_resnet": {"kind": "dlib_resnet", "backend": "torch", "score": "neg_l2", "batch_size": 32}},
        "tables": {},
    }


@pytest.mark.slow
def test_workflow_writes_metrics_by_group_for_a_celeba_layout_set(tmp_path):
    images, landmarks = fabricate_celeba(tmp_path / "data")
    work = copy_workflow(tmp_path / "wf")
    (work / "tiny.yaml").write_text(yaml.safe_dump(tiny_config(images, landmarks)))
    snakemake(work, "all", "--cores", "2", "--configfile", "tiny.yaml")

    index = pq.read_table(work / "results/celeba/index.parquet").to_pylist()
    sex = {r["image_id"]: r["sex"] for r in index}
    assert {s: list(sex.values()).count(s) for s in set(sex.values())} == {"male": 40, "female": 36, None: 4}
    assert [sex[f"{p * N_IMAGES + 1:06d}.png"] for p in range(4)] == ["male", "female", "male", "female"]
    assert sex[f"{UNANNOTATED * N_IMAGES + 1:06d}.png"] is None

    table = pd.read_csv(work / "results/tables/metrics_by_group.csv", keep_default_na=False)
    print(table.to_string())
    assert set(table.probe_variant) == {"unmasked", "surgical_blue"}
    assert (work / "results/tables/metrics_by_group.md").read_text().startswith("# metrics by group")
    for probe, rows in table.groupby("probe_variant"):
        scores = pd.read_parquet(work / f"results/celeba/scores/dlib_resnet/pairs/unmasked-vs-{probe}.parquet")
        group = np.array([expected_group(sex, a, b) for a, b in zip(scores.ref_image, scores.probe_image)])
        ok = (scores.status == "ok").to_numpy()
        gen = scores.genuine.to_numpy()
        assert list(rows.group) == ["male", "female", UNKNOWN, ACROSS_GROUPS]
        assert list(rows.attribute) == ["sex"] * 4 and set(rows.model) == {"dlib_resnet"}
        for row in rows.to_dict("records"):
            member = group == row["group"]
            assert (row["n_genuine"], row["n_impostor"], row["n_unscored"]) == (
                int((member & ok & gen).sum()), int((member & ok & ~gen).sum()), int((member & ~ok).sum()))
            if row["group"] in ("male", "female"):
                g, i = scores.score[member & ok & gen].to_numpy(), scores.score[member & ok & ~gen].to_numpy()
                assert row["status"] == OK and float(row["eer"]) == pytest.approx(metrics.eer(g, i).eer)
                assert float(row["fnmr_at_fmr_1e-2"]) == pytest.approx(brute_fnmr_at_fmr(g, i, 1e-2))
                assert row["fnmr_at_fmr_1e-3"] == "n/a"  # < 1000 same-sex impostor pairs
        assert rows.n_genuine.sum() + rows.n_impostor.sum() + rows.n_unscored.sum() == len(scores)
        nist = rows.set_index("group")["nist_fnmr_at_fmr_1e-2"]
        assert (nist[["male", "female"]] != "n/a").all() == (probe != "unmasked")
    whole = json.loads((work / "results/celeba/metrics/dlib_resnet/pairs/unmasked-vs-unmasked.json").read_text())
    assert math.isfinite(whole["eer"]) and "by_group" in whole
    assert "by_group" not in pd.read_csv(work / "results/tables/all_metrics.csv").columns
