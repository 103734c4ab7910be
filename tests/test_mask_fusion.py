"""Mask-aware fusion on small synthetic arrays: the mask classifier, the per-pair weighting, the
choice of its two weights on val, the workflow steps' files and the config checks."""

from __future__ import annotations

import copy
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import REPO

from maskbench.config import ConfigError, check_config, evaluable, trained_on, weights_chosen_on
from maskbench.evaluation.fusion import FusionError
from maskbench.io.manifests import SCORES_SCHEMA, embedding_schema
from maskbench.evaluation.mask_classifier import fit_mask_classifier, load_mask_classifier
from maskbench.stages.mask_aware import (
    ValComparison,
    choose_weights,
    fuse_mask_aware_step,
    mask_aware_fuse,
    select_weights_step,
    train_mask_classifier_step,
)

DIM = 16


def faces(rng, n, masked, shift=1.5):
    """Embeddings of n faces; a mask moves them along the first axis (as a mask moves a real
    embedding in a consistent direction), plus noise."""
    x = rng.normal(size=(n, DIM))
    if masked:
        x[:, 0] += shift
    return x


def labelled(rng, n):
    x = np.concatenate([faces(rng, n, False), faces(rng, n, True)])
    return x, np.r_[np.zeros(n, bool), np.ones(n, bool)]


def test_classifier_learns_the_mask_direction_and_is_calibrated_on_val(tmp_path):
    rng = np.random.default_rng(0)
    x, y = labelled(rng, 400)
    xv, yv = labelled(rng, 300)
    clf = fit_mask_classifier(x, y, xv, yv)
    xt, yt = labelled(rng, 300)
    p = clf.probability(xt)
    assert (clf.is_masked(xt) == yt).mean() > 0.7
    assert p[yt].mean() > 0.6 and p[~yt].mean() < 0.4
    # calibrated: in a band of predicted probability, about that share is masked
    band = (p > 0.3) & (p < 0.7)
    assert band.sum() > 50 and abs(yt[band].mean() - p[band].mean()) < 0.15
    assert clf.report["val"]["bare"] == clf.report["val"]["masked"] == 300
    clf.save(str(tmp_path / "c.json"))
    again = load_mask_classifier(str(tmp_path / "c.json"))
    np.testing.assert_array_equal(again.probability(xt), p)
    clf2 = fit_mask_classifier(x, y, xv, yv)
    clf2.save(str(tmp_path / "c2.json"))
    assert (tmp_path / "c.json").read_bytes() == (tmp_path / "c2.json").read_bytes()


def test_classifier_refuses_one_class_and_wrong_dims(tmp_path):
    rng = np.random.default_rng(1)
    x, y = labelled(rng, 20)
    with pytest.raises(ValueError, match="both bare and masked"):
        fit_mask_classifier(x, np.zeros(len(x), bool), x, y)
    clf = fit_mask_classifier(x, y, x, y)
    with pytest.raises(ValueError, match="16-d"):
        clf.probability(np.zeros((2, 8)))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a mask classifier"):
        load_mask_classifier(str(tmp_path / "bad.json"))


def test_fusion_weight_follows_the_probe():
    z_full, z_upper = np.array([1.0, 1.0, 1.0]), np.array([-1.0, -1.0, -1.0])
    fused = mask_aware_fuse(z_full, z_upper, np.array([0.0, 1.0, 0.5]), w_masked=0.0, w_unmasked=1.0)
    np.testing.assert_allclose(fused, [1.0, -1.0, 0.0])
    with pytest.raises(FusionError, match="w_masked"):
        mask_aware_fuse(z_full, z_upper, np.zeros(3), w_masked=1.5, w_unmasked=1.0)


def val_comparison(rng, name, masked, n_gen=300, n_imp=3000):
    """Full face: sharp on bare probes, poor on masked ones; upper face: middling on both."""
    gen = np.r_[np.ones(n_gen, bool), np.zeros(n_imp, bool)]
    sep_full, sep_upper = (0.8, 2.0) if masked else (3.5, 2.0)
    z_full = rng.normal(size=gen.size) + sep_full * gen
    z_upper = rng.normal(size=gen.size) + sep_upper * gen
    p = np.clip(rng.normal(0.95 if masked else 0.03, 0.03, gen.size), 0, 1)
    return ValComparison(name, z_full, z_upper, p, gen)


def test_weights_chosen_on_val_help_masked_probes_and_keep_bare_ones():
    rng = np.random.default_rng(2)
    bare = val_comparison(rng, "unmasked-vs-unmasked", False)
    masked = [val_comparison(rng, f"unmasked-vs-m{k}", True) for k in range(2)]
    choice = choose_weights(bare, masked, step=0.1, tolerance=0.002)
    assert choice.w_masked < 0.5 and choice.w_masked < choice.w_unmasked  # masked probes lean on the upper face
    assert choice.val_unmasked_eer <= choice.full_val_unmasked_eer + 0.002 + 1e-12
    assert choice.val_masked_eer <= min(choice.full_val_masked_eer, choice.upper_val_masked_eer)
    assert choice.val_masked_eer < choice.full_val_masked_eer - 0.05
    # a zero tolerance and an unhelpful upper face leave the full-face member alone
    useless = [ValComparison(c.name, c.z_full, rng.normal(size=c.genuine.size), c.p_masked, c.genuine) for c in masked]
    bare_useless = ValComparison(bare.name, bare.z_full, rng.normal(size=bare.genuine.size), bare.p_masked, bare.genuine)
    plain = choose_weights(bare_useless, useless, step=0.25, tolerance=0.0)
    assert plain.val_unmasked_eer <= plain.full_val_unmasked_eer
    assert plain.w_unmasked == 1.0
    with pytest.raises(ValueError, match="divide 1"):
        choose_weights(bare, masked, step=0.3)


def test_a_val_comparison_counts_pairs_it_could_not_score_and_names_itself():
    """Pairs a member could not score are failures to enrol in the weight search's EER: a
    comparison whose genuine pairs mostly failed scored 0 on the few left and pulled the mean."""
    rng = np.random.default_rng(5)
    c = val_comparison(rng, "unmasked-vs-m0", True, n_gen=100, n_imp=400)
    failed = c.z_upper.copy()
    failed[:90] = np.nan  # 90 of 100 genuine pairs unscored
    mostly_failed = ValComparison(c.name, c.z_full, failed, c.p_masked, c.genuine)
    for w in (0.0, 0.5, 1.0):
        assert mostly_failed.eer(w, w) > max(0.45, c.eer(w, w) + 0.05)
    none_left = ValComparison(c.name, c.z_full, np.where(c.genuine, np.nan, c.z_upper), c.p_masked, c.genuine)
    with pytest.raises(FusionError, match="unmasked-vs-m0: 0 genuine"):
        none_left.eer(0.5, 0.5)


def scores_file(path, probes, genuine, scores, status=None):
    n = len(probes)
    status = status or ["ok"] * n
    ok = np.array([s == "ok" for s in status])
    table = pa.Table.from_pydict(
        {"pair_id": list(range(n)), "ref_image": [f"ref{i}" for i in range(n)], "probe_image": list(probes),
         "genuine": list(map(bool, genuine)), "fold": [0] * n,
         "score": pa.array(np.where(ok, scores, 0.0), mask=~ok), "status": status},
        schema=SCORES_SCHEMA)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return str(path)


def embedding_file(path, vectors):
    ids = sorted(vectors)
    table = pa.Table.from_pydict(
        {"image_id": ids, "status": ["ok"] * len(ids), "embedding": [vectors[i].astype(np.float32).tolist() for i in ids]},
        schema=embedding_schema(DIM))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return str(path)


def test_workflow_steps_train_choose_and_fuse_with_statuses(tmp_path):
    rng = np.random.default_rng(3)
    people = [f"p{k:02d}" for k in range(30)]
    images = [f"{p}/{j}.png" for p in people for j in range(4)]
    part = {p: "train" if k < 15 else "val" if k < 22 else "test" for k, p in enumerate(people)}
    split = tmp_path / "results/d/splits/identity.parquet"
    split.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pydict({"image_id": images, "identity": [i.split("/")[0] for i in images],
                                         "split": [part[i.split("/")[0]] for i in images]}), split)
    emb = {}
    for variant, masked in (("unmasked", False), ("m1", True)):
        vectors = dict(zip(images, faces(rng, len(images), masked, shift=3.0)))
        emb[variant] = [embedding_file(tmp_path / f"results/d/embeddings/base/{variant}.parquet", vectors)]
    clf_path = str(tmp_path / "clf.json")
    # real-masked photos (here drawn like the synthetic ones) are checked on train and val people only
    real_ids = [f"{p}/real.png" for p in people]
    real = [embedding_file(tmp_path / "results/d/embeddings/base/real.parquet",
                           dict(zip(real_ids, faces(rng, len(real_ids), True, shift=3.0))))]
    pq.write_table(pa.Table.from_pydict({"image_id": images + real_ids,
                                         "identity": [i.split("/")[0] for i in images + real_ids],
                                         "split": [part[i.split("/")[0]] for i in images + real_ids]}), split)
    clf = train_mask_classifier_step({"d": emb}, {"d": str(split)}, 1.0, "base", clf_path, real_embeddings={"d": real})
    assert clf.report["train"]["bare"] == clf.report["train"]["masked"] == 60  # 15 people x 4 images: no real one
    assert clf.report["val"]["bare"] == 28 and clf.report["val"]["masked_called_masked"] > 0.9
    assert clf.report["real"]["d"]["photos"] == 22 and clf.report["real"]["d"]["masked_called_masked"] > 0.9
    assert json.loads((tmp_path / "clf.json").read_text())["report"]["real"] == clf.report["real"]

    val_images = [i for i in images if part[i.split("/")[0]] == "val"]
    probes = val_images * 3
    genuine = rng.random(len(probes)) < 0.2
    member = {}
    for comparison, masked in (("unmasked-vs-unmasked", False), ("unmasked-vs-m1", True)):
        full = rng.normal(size=len(probes)) + (0.7 if masked else 3.0) * genuine
        upper = rng.normal(size=len(probes)) + 2.0 * genuine
        member[comparison] = [scores_file(tmp_path / f"s/full/val/{comparison}.parquet", probes, genuine, full),
                              scores_file(tmp_path / f"s/upper/val/{comparison}.parquet", probes, genuine, upper)]
    weights_path = str(tmp_path / "weights.json")
    choice = select_weights_step(member, member["unmasked-vs-unmasked"], clf_path, emb, weights_path, 0.1, 0.002)
    saved = json.loads((tmp_path / "weights.json").read_text())
    assert saved["w_masked"] == choice.w_masked < choice.w_unmasked == saved["w_unmasked"]
    assert saved["val_mean_p_masked"]["unmasked-vs-m1"] > 0.8
    assert saved["val_mean_p_masked"]["unmasked-vs-unmasked"] < 0.2

    # fuse one comparison: a missing member score and a probe without a base embedding are kept, named
    probes_t = val_images[:6] + ["nobody/0.png"]
    gen_t = [True, False, True, False, True, False, True]
    full_t = scores_file(tmp_path / "t/full.parquet", probes_t, gen_t, np.arange(7.0),
                         status=["ok"] * 5 + ["no_embedding", "ok"])
    upper_t = scores_file(tmp_path / "t/upper.parquet", probes_t, gen_t, np.arange(7.0))
    out = tmp_path / "t/fused.parquet"
    counts = fuse_mask_aware_step([full_t, upper_t], ["full", "upper"], member["unmasked-vs-unmasked"], weights_path,
                                  clf_path, emb["m1"], str(out))
    fused = pq.read_table(out).to_pandas()
    assert counts == {"pairs": 7, "fused": 5, "missing_member_score": 1, "no_mask_probability": 1}
    assert list(fused.status) == ["ok"] * 5 + ["missing_member_score", "no_mask_probability"]
    assert fused.score[:5].notna().all() and fused.score[5:].isna().all()
    with pytest.raises(FusionError, match="same pairs"):
        fuse_mask_aware_step([full_t, scores_file(tmp_path / "t/other.parquet", probes_t[::-1], gen_t, np.zeros(7))],
                             ["full", "upper"], member["unmasked-vs-unmasked"], weights_path, clf_path, emb["m1"],
                             str(tmp_path / "t/x.parquet"))


def demo_config():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["protocols"]["val_pairs"]["comparisons"] = [["unmasked", "unmasked"], ["unmasked", "masked"]]
    config["models"]["aware"] = {"kind": "ensemble", "members": ["dlib_resnet", "dlib_masked_head"],
                                 "normalise_on": "val_pairs", "mask_aware": {"base": "dlib_resnet", "datasets": ["demo"]}}
    return config


def test_weights_chosen_on_a_datasets_val_pairs_are_tested_only_on_its_test_part():
    """The weights are chosen by EER on the tested dataset's val pairs (labels used), so even a
    dataset the classifier never saw is tested only on the test part of that split."""
    config = demo_config()
    config["datasets"]["other"] = copy.deepcopy(config["datasets"]["demo"])
    config["models"]["aware"]["mask_aware"]["datasets"] = ["other"]
    config["models"]["dlib_masked_head"]["train"]["datasets"] = ["other"]  # nothing learnt on demo
    config["protocols"]["open"] = {"kind": "all_vs_all", "comparisons": [["unmasked", "masked"]]}
    config["datasets"]["demo"]["protocols"].append("open")
    assert "demo" not in trained_on(config, "aware")
    assert weights_chosen_on(config, "aware", "open") == ("identity", "val")
    assert evaluable(config, "aware", "demo", "test_pairs") and not evaluable(config, "aware", "demo", "open")
    # a plain ensemble's z-normalisation uses no labels: no such restriction
    assert weights_chosen_on(config, "ensemble", "open") is None
    config["tables"]["leaky"] = {"metric": "eer", "ref_variant": "unmasked", "probe_variant": "surgical_blue",
                                 "models": ["aware"], "datasets": ["demo"], "protocol": {"demo": "open"}}
    with pytest.raises(ConfigError, match=r"'aware' chooses its mask-aware weights on val pairs of 'demo'"):
        check_config(config)


def test_config_checks_name_what_is_wrong():
    config = demo_config()
    check_config(config)
    assert trained_on(config, "aware") == {"demo": "identity"}
    assert evaluable(config, "aware", "demo", "test_pairs")
    bad = copy.deepcopy(config)
    bad["models"]["aware"]["members"].append("dlib_masked_head_2")
    bad["models"]["dlib_masked_head_2"] = bad["models"]["dlib_masked_head"]
    with pytest.raises(ConfigError, match="two members"):
        check_config(bad)
    bad = copy.deepcopy(config)
    bad["models"]["aware"]["mask_aware"]["base"] = "ensemble"
    with pytest.raises(ConfigError, match="mask_aware.base"):
        check_config(bad)
    bad = copy.deepcopy(config)
    bad["models"]["aware"]["mask_aware"]["select_on"] = "test_pairs"
    with pytest.raises(ConfigError, match="never chosen on test pairs"):
        check_config(bad)
    bad = copy.deepcopy(config)
    bad["protocols"]["val_pairs"]["comparisons"] = [["unmasked", "unmasked"]]
    with pytest.raises(ConfigError, match=r"\[unmasked, masked\]"):
        check_config(bad)


def test_a_mask_type_the_members_hold_out_stays_unseen_by_the_classifier_and_the_weights(tmp_path):
    """The default config's head holds cloth_black out; a mask-aware ensemble over it learnt its
    classifier and chose its weights on cloth_black too, so its 'unseen mask' numbers were not."""
    from conftest import snakemake

    from maskbench.config import mask_aware_masks

    config = demo_config()
    assert mask_aware_masks(config, "aware", "demo") == ["surgical_blue", "n95_white"]
    untrained = copy.deepcopy(config)
    untrained["models"]["aware"]["members"] = ["dlib_resnet", "ensemble"]
    untrained["models"]["ensemble"] = {"kind": "ensemble", "members": ["dlib_resnet"]}
    assert mask_aware_masks(untrained, "aware", "demo") == list(config["masks"])
    config["datasets"]["demo"]["generate"]["real_masks"] = 1  # real-masked photos: checked by the classifier
    (tmp_path / "aware.yaml").write_text(yaml.safe_dump(config))
    planned = snakemake(REPO, "-n", "results/demo/fusion/aware/test_pairs.json", "--directory",
                        str(tmp_path / "work"), "--configfile", str(tmp_path / "aware.yaml")).stdout
    blocks = planned.split("\n\n")
    for rule in ("train_mask_classifier", "mask_aware_weights"):
        block = next(b for b in blocks if f"rule {rule}:" in b)
        assert "surgical_blue" in block and "cloth_black" not in block, block
        if rule == "train_mask_classifier":
            assert "results/demo/embeddings/dlib_resnet/real.parquet" in block
