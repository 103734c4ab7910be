"""Heads compared on embeddings: the ordinal head on ordered targets, and the comparison table of
heads x features (whole chip, upper face) x train -> test variant on synthetic embeddings whose
"upper face" keeps the labels a mask hides from the whole chip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from maskbench.attributes import heads as attr
from maskbench.io.atomic import write_table
from maskbench.stages.attribute_heads import compare_heads, heads_table
from maskbench.attributes.settings import heads_settings
from maskbench.attributes.ordinal import OrdinalClassifier, fit_ordinal_head
from maskbench.io.manifests import embedding_schema
from test_attributes import synthetic, write_synthetic_dataset


def split(n):
    return slice(0, int(0.6 * n)), slice(int(0.6 * n), int(0.75 * n)), slice(int(0.75 * n), n)


def test_ordinal_age_head_reads_age_and_age_group_probabilities_are_a_distribution():
    x, _, sex, race, age = synthetic(900, 4)
    tr, va, te = split(900)
    head = fit_ordinal_head("age", x[tr], age[tr].astype(float), x[va], age[va].astype(float), seed=1)
    predicted = attr.predict(head, x[te]).predicted
    baseline = np.mean(np.abs(age[te] - age[te].mean()))
    assert np.mean(np.abs(predicted - age[te])) < 0.5 * baseline and head.kind == "ordinal"
    groups = attr.task_target("age_group", sex, race, age)
    head = fit_ordinal_head("age_group", x[tr], groups[tr], x[va], groups[va], seed=1)
    assert head.classes == attr.age_group_names()
    proba = head.model.predict_proba(x[te])
    assert np.allclose(proba.sum(axis=1), 1.0) and (proba >= 0).all()
    prediction = attr.predict(head, x[te])
    assert np.mean(prediction.predicted == groups[te]) > 0.4  # 7 classes, chance 1/7
    assert prediction.confidence is not None
    with pytest.raises(attr.TaskError, match="not 'sex'"):
        fit_ordinal_head("sex", x[tr], sex[tr], x[va], sex[va])
    with pytest.raises(attr.TaskError, match=r"\['old'\]"):
        OrdinalClassifier(["young", "middle"]).fit(x[:3], np.array(["young", "middle", "old"], dtype=object))


def write_upper_features(root, n=400, seed=1):
    """'Upper-face' embeddings: the same faces' labels kept under the mask (a mask does not reach them)."""
    x, _, _, _, _ = synthetic(n, seed)
    rng = np.random.default_rng(seed + 1)
    ids = [f"UTKFace/{k:04d}.jpg" for k in range(n)]
    paths = {}
    for variant in ("unmasked", "surgical"):
        noisy = x + rng.normal(scale=0.3, size=x.shape)
        table = pa.Table.from_pydict({"image_id": ids, "status": ["ok"] * n,
                                      "embedding": [row.tolist() for row in noisy.astype(np.float32)]},
                                     schema=embedding_schema(x.shape[1]))
        paths[variant] = [str(root / f"upper-{variant}.parquet")]
        write_table(paths[variant][0], table)
    return paths


def test_heads_table_compares_heads_and_features_per_train_and_test_variant(tmp_path):
    full = write_synthetic_dataset(tmp_path)
    upper = write_upper_features(tmp_path)
    meta = {"dataset": "syn", "model": "m", "split": "random"}
    rows = compare_heads(str(tmp_path / "split.parquet"), str(tmp_path / "index.parquet"),
                         {"full": full, "upper": upper}, {"unmasked": ["unmasked"], "mixed": ["unmasked", "surgical"]},
                         ["surgical"], list(attr.TASKS), ["linear", "ordinal"], list(attr.DEFAULT_AGE_GROUPS), 5,
                         str(tmp_path / "heads.json"), meta)
    frame = pd.DataFrame(rows).set_index(["head", "features", "train_variant", "test_variant"])
    assert len(frame) == 2 * 2 * 2 * 2
    # the mask hides sex from the whole chip, not from the upper face
    assert frame.loc[("linear", "full", "unmasked", "unmasked"), "sex"] > 0.9
    assert frame.loc[("linear", "full", "unmasked", "masked"), "sex"] < 0.7
    assert frame.loc[("linear", "upper", "unmasked", "masked"), "sex"] > 0.9
    ordinal = frame.loc[("ordinal", "upper", "mixed", "masked")]
    assert ordinal["sex"] is None or np.isnan(ordinal["sex"])  # ordinal: age and age group only
    assert ordinal["age"] < frame.loc[("ordinal", "full", "mixed", "masked"), "age"]
    assert json.loads((tmp_path / "heads.json").read_text())["rows"] == json.loads(json.dumps(rows))
    table = heads_table([str(tmp_path / "heads.json")], str(tmp_path / "attributes_heads.csv"))
    assert list(table.columns[-4:]) == ["sex accuracy", "race accuracy", "age mae", "age_group accuracy"]
    csv = pd.read_csv(tmp_path / "attributes_heads.csv")
    assert len(csv) == 16 and csv["n"].nunique() == 1
    assert (tmp_path / "attributes_heads.md").read_text().startswith("# attribute heads")


def test_heads_settings_follow_the_cnn_splits():
    assert heads_settings({"splits": ["random", "uniform"], "cnn": None})["splits"] == ["random"]
    assert heads_settings({"splits": ["uniform", "random"], "cnn": {"splits": ["random"]}})["splits"] == ["random"]
    assert heads_settings({"splits": ["random"], "cnn": None})["heads"] == ["linear", "mlp", "ordinal"]


def test_upper_face_embeddings_barely_see_the_mask(tmp_path):
    """dlib's embedding of the chip blanked below the nose: one 128-d row per chip, and a masked
    chip's upper-face embedding lies far closer to its unmasked one than the whole chips' do."""
    from maskbench.stages.attribute_upper_embeddings import upper_face_embeddings
    from maskbench.models.embed import DlibTorchEmbedder
    from maskbench.io.readers import load_embeddings
    from test_attributes_cnn import MASK, labelled_demo

    data = labelled_demo(tmp_path, n_people=6, per_person=2)
    split = str(tmp_path / "split.parquet")
    upper = {}
    for variant, masked in (("unmasked", []), (MASK, data["masked"][MASK])):
        out = tmp_path / f"upper-{variant}.parquet"
        report = upper_face_embeddings(data["aligned"], masked, split, str(out))
        assert report["chips"] == len(data["ids"]) and 0.3 < report["cut"] < 0.7
        upper[variant] = load_embeddings([str(out)])
    assert sorted(upper[MASK]) == sorted(data["ids"]) and upper[MASK][data["ids"][0]].shape == (128,)
    whole = DlibTorchEmbedder()
    chips = data["chips"]
    full_gap = np.linalg.norm(whole.embed(np.stack([c.chip for c in chips]))
                              - whole.embed(np.stack([c.masked[MASK] for c in chips])), axis=1)
    upper_gap = np.array([np.linalg.norm(upper["unmasked"][c.image_id] - upper[MASK][c.image_id]) for c in chips])
    print(f"unmasked-to-masked embedding distance: whole chip {full_gap.mean():.3f}, upper face {upper_gap.mean():.3f}")
    assert upper_gap.mean() < 0.5 * full_gap.mean()
