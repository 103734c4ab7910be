"""The attribute CNN on drawn demo faces whose "sex" is a visible feature (a magenta band across
the top of the chip, above where any mask reaches) while race and age are drawn at random: it
learns sex from unmasked and masked chips alike, picks each task's epoch on val, never reads a
test chip while training, writes the embedding heads' formats, and is deterministic on the CPU."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from snakemake.utils import validate

from conftest import REPO
from maskbench.attributes import heads as attr
from maskbench.io.atomic import write_table
from maskbench.attributes.cnn import (
    CNN_HEAD,
    AttributeNet,
    LabelledChips,
    TaskCoding,
    build_network,
    cached_outputs,
    load_attribute_cnn,
    network_outputs,
    train_attribute_cnn,
    val_cache,
)
from maskbench.stages.attributes_cnn import run_attributes_cnn, train_chipset
from maskbench.stages.attributes import PREDICTIONS_SCHEMA, attribute_figures, attributes_tables, run_attributes
from maskbench.attributes.settings import CnnSpec, attribute_settings, check_attributes_config
from maskbench.io.chips import encode_chip
from maskbench.config import ConfigError
from maskbench.faces.demo_chips import demo_chips, write_demo_shards
from maskbench.models.dlib_resnet import load_dlib_resnet
from maskbench.training.finetune import ChipSet
from maskbench.io.manifests import INDEX_SCHEMA, embedding_schema
from maskbench.protocols.splits import SPLITS_SCHEMA

torch.set_num_threads(1)

MASK = "surgical_blue"
BAND = (255, 0, 255)
# dlib's face ResNet from its shipped weights: a small backbone lr keeps it stable, the new
# outputs learn fast; three epochs of 8-chip batches learn the band
SPEC = {"arch": "dlib_resnet", "epochs": 3, "lr": 1e-4, "head_lr": 1e-2, "batch_size": 8}
TASKS = list(attr.TASKS)


def with_band(chip: np.ndarray, female: bool) -> np.ndarray:
    out = chip.copy()
    if female:
        out[:40] = BAND  # the top of the chip: forehead and hair, above any mask
    return out


def labelled_demo(root, n_people: int = 20, per_person: int = 4, seed: int = 3) -> dict:
    """Demo chips (unmasked and one mask) as the workflow lays them out, an index with sex (the
    band), race and age (random, so not learnable) and a split: 60% train, 15% val, 25% test."""
    rng = np.random.default_rng(seed)
    chips = demo_chips(n_people, per_person, [MASK], seed=seed)
    n = len(chips)
    sex = rng.choice(attr.SEX_CLASSES, n)
    race = rng.choice(attr.RACE_CLASSES, n)
    age = rng.integers(1, 90, n)
    chips = [dataclasses.replace(c, chip=with_band(c.chip, s == "female"),
                                 masked={MASK: with_band(c.masked[MASK], s == "female")}) for c, s in zip(chips, sex)]
    aligned, masked = write_demo_shards(chips, root, n_shards=2)
    ids = [c.image_id for c in chips]
    index = pa.Table.from_pydict(
        {"image_id": ids, "identity": [None] * n, "source_path": ids, "shard": [k % 2 for k in range(n)],
         "age": age.tolist(), "sex": sex.tolist(), "race": race.tolist(), "pose": [None] * n,
         "real_mask": [None] * n, "group": [None] * n},
        schema=INDEX_SCHEMA,
    )
    write_table(root / "index.parquet", index)
    part = np.array(["train"] * n, dtype=object)
    order = rng.permutation(n)
    part[order[: n // 4]] = "test"
    part[order[n // 4: n // 4 + int(0.15 * n)]] = "val"
    write_table(root / "split.parquet", pa.Table.from_pydict(
        {"image_id": ids, "identity": [None] * n, "split": part.tolist()}, schema=SPLITS_SCHEMA))
    return {"root": root, "aligned": aligned, "masked": masked, "ids": ids,
            "sex": dict(zip(ids, sex)), "split": dict(zip(ids, part)), "chips": chips}


def run(data: dict, out, train: str = "mixed", spec: dict | None = None, seed: int = 7, aligned=None) -> dict:
    train_on = ["unmasked", MASK] if train == "mixed" else [train]
    out.mkdir(parents=True, exist_ok=True)
    return run_attributes_cnn(
        str(data["root"] / "split.parquet"), str(data["root"] / "index.parquet"), aligned or data["aligned"],
        data["masked"], train, train_on, ["unmasked", MASK], TASKS, list(attr.DEFAULT_AGE_GROUPS),
        list(attr.DEFAULT_THRESHOLDS), spec or SPEC, seed, 1, str(out / "predictions.parquet"),
        str(out / "metrics.json"), str(out / "model.safetensors"), {"dataset": "demo", "model": "cnn_dlib_resnet",
                                                                    "split": "random"},
        timing_path=str(out / "timing.json"))


def outputs(out) -> list[bytes]:
    return [(out / name).read_bytes() for name in ("predictions.parquet", "metrics.json", "model.safetensors")]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    return labelled_demo(tmp_path_factory.mktemp("cnn_data"))


@pytest.fixture(scope="module")
def mixed(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("mixed")
    return run(data, out), out


ONE_EPOCH = {**SPEC, "epochs": 1}


@pytest.fixture(scope="module")
def one_epoch(data, tmp_path_factory):
    """A short run that the determinism and test-isolation runs are compared with."""
    out = tmp_path_factory.mktemp("one_epoch")
    run(data, out, spec=ONE_EPOCH)
    return out


# --- learning and selection ----------------------------------------------------------------------


def test_cnn_learns_the_visible_label_on_masked_and_unmasked_faces(mixed, data):
    result, out = mixed
    predictions = pq.read_table(out / "predictions.parquet").to_pandas()
    sex = predictions[predictions.task == "sex"]
    # accuracy recomputed from the prediction rows against the index labels
    truth = sex["image_id"].map(data["sex"])
    accuracy = (sex["predicted"] == truth).groupby(sex["variant"]).mean()
    print(f"CNN sex accuracy on held-out demo faces: {accuracy.to_dict()}")
    assert accuracy["unmasked"] >= 0.9 and accuracy[MASK] >= 0.9
    tests = result["heads"][CNN_HEAD]["sex"]["test"]
    assert tests["unmasked"]["accuracy"] == pytest.approx(accuracy["unmasked"])
    assert tests[MASK]["accuracy"] == pytest.approx(accuracy[MASK])
    assert tests["masked"]["accuracy"] == pytest.approx(accuracy[MASK])  # one mask type: pooled = it
    # race is drawn at random: nothing to learn, so no better than guessing far above chance
    race = result["heads"][CNN_HEAD]["race"]["test"]["unmasked"]["accuracy"]
    assert race < 0.6
    # the loss of the learnable task falls
    losses = [e["loss"]["sex"] for e in result["training"]["curve"]]
    assert losses[-1] < 0.5 * losses[0], losses


def test_each_task_keeps_its_best_val_epoch(mixed):
    result, _ = mixed
    curve = result["training"]["curve"]
    for task in TASKS:
        scores = [e["val"][task] for e in curve]
        best = int(np.argmin(scores) if attr.is_regression(task) else np.argmax(scores)) + 1  # first best
        entry = result["heads"][CNN_HEAD][task]
        assert entry["params"] == {"epoch": best}, (task, scores)
        assert entry["val_score"] == pytest.approx(scores[best - 1])
        assert entry["val_metric"] == ("mae" if task == "age" else "accuracy")


def test_mixed_training_shows_both_variants_and_one_variant_runs_show_only_it(mixed, data, tmp_path):
    result, _ = mixed
    shown = [e["variants"] for e in result["training"]["curve"]]
    n_train = sum(part == "train" for part in data["split"].values())
    assert all(set(v) == {"unmasked", MASK} and sum(v.values()) <= n_train for v in shown)
    assert all(sum(v.values()) >= n_train - 1 for v in shown)  # a last single-chip batch may be dropped
    # val rows: every val image under both variants
    n_val = sum(part == "val" for part in data["split"].values())
    assert result["heads"][CNN_HEAD]["sex"]["val_rows"] == 2 * n_val
    assert result["heads"][CNN_HEAD]["sex"]["train_rows"] == n_train

    one = run(data, tmp_path / "masked_only", train=MASK, spec=ONE_EPOCH)
    assert [set(e["variants"]) for e in one["training"]["curve"]] == [{MASK}]
    assert one["train_variant"] == MASK and one["train_on"] == [MASK]
    assert one["heads"][CNN_HEAD]["sex"]["val_rows"] == n_val


def test_train_chipset_takes_the_chips_of_its_variant():
    chip = {k: encode_chip(np.full((150, 150, 3), k, np.uint8)) for k in range(4)}
    unmasked = {f"i{k}": chip[k] for k in range(3)}
    masked = {MASK: {"i0": chip[3], "i2": chip[3]}}
    mixed = train_chipset(["i0", "i1", "i2"], "mixed", ["unmasked", MASK], (unmasked, masked))
    assert mixed.image_ids == ["i0", "i1", "i2"] and mixed.unmasked == [chip[0], chip[1], chip[2]]
    assert mixed.masked == {MASK: {0: chip[3], 2: chip[3]}}
    only = train_chipset(["i0", "i1", "i2"], MASK, [MASK], (unmasked, masked))
    assert only.image_ids == ["i0", "i2"] and only.unmasked == [chip[3], chip[3]] and only.masked == {}


# --- outputs -------------------------------------------------------------------------------------


def heads_run(data: dict, out) -> dict:
    """Linear heads on stand-in embeddings of the same images: the format the CNN must match."""
    rng = np.random.default_rng(0)
    paths = {}
    for variant in ("unmasked", MASK):
        table = pa.Table.from_pydict({"image_id": data["ids"], "status": ["ok"] * len(data["ids"]),
                                      "embedding": rng.normal(size=(len(data["ids"]), 8)).tolist()},
                                     schema=embedding_schema(8))
        paths[variant] = [str(out / f"{variant}.parquet")]
        write_table(paths[variant][0], table)
    return run_attributes(str(data["root"] / "split.parquet"), str(data["root"] / "index.parquet"), paths, "mixed",
                          ["unmasked", MASK], ["unmasked", MASK], TASKS, ["linear"], list(attr.DEFAULT_AGE_GROUPS),
                          list(attr.DEFAULT_THRESHOLDS), 7, str(out / "predictions.parquet"),
                          str(out / "metrics.json"), {"dataset": "demo", "model": "dlib_resnet", "split": "random"})


def keys(tree, depth: int = 3):
    """The nested key structure of a JSON tree, to ``depth`` levels."""
    if not isinstance(tree, dict) or depth == 0:
        return type(tree).__name__ if tree is not None else "float"
    return {k: keys(v, depth - 1) for k, v in tree.items()}


def test_predictions_and_metrics_have_the_heads_format(mixed, data, tmp_path):
    result, out = mixed
    heads = heads_run(data, tmp_path)
    cnn_table = pq.read_table(out / "predictions.parquet")
    heads_table = pq.read_table(tmp_path / "predictions.parquet")
    assert cnn_table.schema.equals(PREDICTIONS_SCHEMA) and heads_table.schema.equals(PREDICTIONS_SCHEMA)
    # the same (image, task, variant) rows with the same labels, only the head and predictions differ
    same = ["image_id", "task", "variant", "sex", "race", "age", "label"]
    assert cnn_table.select(same).equals(heads_table.select(same))
    assert set(cnn_table["head"].to_pylist()) == {CNN_HEAD}
    # metrics: the heads' keys, with head kind cnn and the training curve beside them
    assert set(result) - set(heads) == {"training"}
    for k in set(heads) - {"heads", "head_kinds", "model"}:
        assert result[k] == heads[k], k
    assert result["head_kinds"] == [CNN_HEAD]
    for task in TASKS:
        cnn, head = result["heads"][CNN_HEAD][task], heads["heads"]["linear"][task]
        assert set(cnn) == set(head)
        assert set(cnn["test"]) == set(head["test"]) == {"unmasked", MASK, "masked"}
        for variant in cnn["test"]:
            c, h = cnn["test"][variant], head["test"][variant]
            assert set(c) == set(h) and c["n"] == h["n"]
            if "coverage" in c:
                assert [p["threshold"] for p in c["coverage"]] == [p["threshold"] for p in h["coverage"]]
            assert keys(c["by_group"], 2) == keys(h["by_group"], 2)
    # confidences are the predicted class's probability
    sex = cnn_table.filter(pc.equal(cnn_table["task"], "sex")).to_pandas()
    assert ((sex["confidence"] >= 0.5) & (sex["confidence"] <= 1.0)).all()


def test_tables_and_figures_take_the_cnn_beside_the_heads(mixed, data, tmp_path):
    _, out = mixed
    heads_run(data, tmp_path)
    entries = [{"dataset": "demo", "model": "dlib_resnet", "split": "random", "train_variant": "mixed",
                "path": str(tmp_path / "metrics.json")},
               {"dataset": "demo", "model": "cnn_dlib_resnet", "split": "random", "train_variant": "mixed",
                "path": str(out / "metrics.json")}]
    table = attributes_tables(entries, ["random"], str(tmp_path / "attributes.csv"), str(tmp_path / "by_group.csv"))
    assert list(table["model"].unique()) == ["dlib_resnet", "cnn_dlib_resnet"]
    assert list(table.loc[table.model == "cnn_dlib_resnet", "head"].unique()) == [CNN_HEAD, "chance"]
    csv = pd.read_csv(tmp_path / "attributes.csv")
    row = csv[(csv.model == "cnn_dlib_resnet") & (csv.task == "sex") & (csv.metric == "accuracy")].iloc[0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert row["masked/random"] == pytest.approx(metrics["heads"][CNN_HEAD]["sex"]["test"]["masked"]["accuracy"])
    groups = pd.read_csv(tmp_path / "by_group.csv")
    assert set(groups.loc[groups.model == "cnn_dlib_resnet", "group_by"]) == {"sex", "race", "age_group"}
    pngs = [str(tmp_path / f"{k}.png") for k in ("confusion", "coverage", "age_error")]
    attribute_figures(str(out / "metrics.json"), *pngs)
    assert all((tmp_path / f"{k}.png").stat().st_size > 5000 for k in ("confusion", "coverage", "age_error"))



def test_abstention_table_holds_the_cnn_curves_beside_the_heads(mixed, data, tmp_path):
    """The CNN's accuracy-coverage points are those of its metrics file, beside the heads'; the
    sex curve on the masked faces keeps fewer faces as the threshold rises and gains accuracy on them."""
    from maskbench.stages.attribute_abstention import abstention_table

    _, out = mixed
    heads_run(data, tmp_path)
    entries = [{"dataset": "demo", "model": "dlib_resnet", "split": "random", "train_variant": "mixed",
                "path": str(tmp_path / "metrics.json")},
               {"dataset": "demo", "model": "cnn_dlib_resnet", "split": "random", "train_variant": "mixed",
                "path": str(out / "metrics.json")}]
    frame = abstention_table(entries, str(tmp_path / "abstention.csv"), str(tmp_path / "abstention.png"))
    thresholds = list(attr.DEFAULT_THRESHOLDS)
    cnn = frame[(frame["head"] == CNN_HEAD) & (frame.task == "sex") & (frame.test_variant == "masked")]
    assert cnn["threshold"].tolist() == thresholds
    metrics = json.loads((out / "metrics.json").read_text())["heads"][CNN_HEAD]["sex"]["test"]["masked"]
    assert cnn["kept"].tolist() == [p["kept"] for p in metrics["coverage"]]
    assert cnn["coverage"].is_monotonic_decreasing and cnn["coverage"].iloc[0] == 1.0
    answered = cnn[cnn.accuracy.notna()]
    assert answered["accuracy"].iloc[-1] >= answered["accuracy"].iloc[0]
    assert set(frame["head"]) == {"linear", CNN_HEAD} and "age" not in set(frame["task"])
    assert len(frame) == 2 * 3 * 3 * len(thresholds)  # runs x class tasks x (2 variants + pooled) x thresholds
    assert pd.read_csv(tmp_path / "abstention.csv").shape == frame.shape
    assert (tmp_path / "abstention.png").stat().st_size > 10_000


def test_checkpoint_reloads_to_the_same_predictions(mixed, data):
    _, out = mixed
    model = load_attribute_cnn(out / "model.safetensors")
    table = pq.read_table(out / "predictions.parquet").to_pandas()
    rows = table[(table.variant == MASK) & (table.task == "sex")]
    by_id = {c.image_id: c for c in data["chips"]}
    chips = [encode_chip(by_id[i].masked[MASK]) for i in rows["image_id"]]
    again = model.predict(LabelledChips(list(rows["image_id"]), [MASK] * len(rows), chips, {}), device="cpu")
    assert again["sex"].predicted.tolist() == rows["predicted"].tolist()
    np.testing.assert_allclose(again["sex"].confidence, rows["confidence"], rtol=1e-5)
    ages = table[(table.variant == MASK) & (table.task == "age")]
    np.testing.assert_allclose(again["age"].predicted, ages["predicted_age"], rtol=1e-5)


def test_val_score_is_the_selected_weights_accuracy_on_val_chips(mixed, data):
    """The recorded val score of sex, recomputed: the reloaded weights of the chosen epoch on
    every val image, unmasked and masked, against the index labels."""
    result, out = mixed
    model = load_attribute_cnn(out / "model.safetensors")
    val_ids = [c.image_id for c in data["chips"] if data["split"][c.image_id] == "val"]
    by_id = {c.image_id: c for c in data["chips"]}
    rows = [(i, v) for v in ("unmasked", MASK) for i in val_ids]
    chips = [encode_chip(by_id[i].chip if v == "unmasked" else by_id[i].masked[MASK]) for i, v in rows]
    predicted = model.predict(LabelledChips([i for i, _ in rows], [v for _, v in rows], chips, {}), device="cpu")
    accuracy = np.mean(predicted["sex"].predicted == np.array([data["sex"][i] for i, _ in rows]))
    assert result["heads"][CNN_HEAD]["sex"]["val_score"] == pytest.approx(accuracy)


def test_same_seed_same_bytes(one_epoch, data, tmp_path):
    run(data, tmp_path / "again", spec=ONE_EPOCH)
    assert outputs(tmp_path / "again") == outputs(one_epoch)


def test_training_never_reads_a_test_chip(one_epoch, data, tmp_path):
    """Test chips replaced by bytes that are no chip: training and selection run as before (the
    checkpoint is the same bytes), and only the test evaluation fails, naming the image."""
    broken = tmp_path / "broken"
    aligned, masked = [], {}
    test_ids = pa.array([i for i, part in data["split"].items() if part == "test"])
    for mask, path in [(None, p) for p in data["aligned"]] + [(m, p) for m, ps in data["masked"].items() for p in ps]:
        table = pq.read_table(path)
        garbage = pc.if_else(pc.is_in(table["image_id"], test_ids), pa.scalar(b"not a png", pa.binary()),
                             table["chip"])
        target = broken / path.split(str(data["root"]) + "/", 1)[1]
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.set_column(table.schema.get_field_index("chip"), "chip", garbage), target)
        (aligned if mask is None else masked.setdefault(mask, [])).append(str(target))
    data_broken = {**data, "masked": masked}
    with pytest.raises(ValueError, match=r"unmasked chip of person_\d+/.*neither a chip .* nor a PNG"):
        run(data_broken, tmp_path / "run", spec=ONE_EPOCH, aligned=aligned)
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == (one_epoch / "model.safetensors").read_bytes()
    assert not (tmp_path / "run" / "metrics.json").exists()


# --- frozen early blocks, cached features (the CPU setting) --------------------------------------

# the stem and 12 of the 14 residual blocks frozen: two blocks, the fc and the outputs train
FROZEN = {**SPEC, "frozen_blocks": 12, "epochs": 3, "lr": 1e-3, "head_lr": 1e-2}


@pytest.fixture(scope="module")
def frozen(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("frozen")
    return run(data, out, spec=FROZEN), out


def test_frozen_blocks_forward_equals_the_whole_network():
    torch.manual_seed(0)
    x = torch.randn(3, 3, 150, 150)
    whole = AttributeNet(load_dlib_resnet(), 128, {"sex": 2})
    split = AttributeNet(load_dlib_resnet(), 128, {"sex": 2}, frozen_blocks=10)
    split.heads.load_state_dict(whole.heads.state_dict())
    with torch.no_grad():
        assert torch.equal(split(x)["sex"], whole(x)["sex"])
        assert torch.equal(split.from_frozen(split.frozen_part(x))["sex"], whole(x)["sex"])
    assert split.frozen_part(x).shape == (3, 128, 8, 8)
    # only the 4 later blocks and the fc train: 4 x (2 convs + 2 affines) x 2 tensors + fc
    assert len(split.trainable()) == 4 * 8 + 1
    with pytest.raises(ValueError, match="dlib's face ResNet only"):
        AttributeNet(torch.nn.Linear(3, 3), 3, {"sex": 2}, frozen_blocks=2)


def test_frozen_blocks_learn_the_visible_label_and_keep_dlibs_weights(frozen):
    result, out = frozen
    tests = result["heads"][CNN_HEAD]["sex"]["test"]
    print(f"CNN with 12 frozen blocks, sex accuracy: {tests['unmasked']['accuracy']}, {tests[MASK]['accuracy']}")
    assert tests["unmasked"]["accuracy"] >= 0.9 and tests[MASK]["accuracy"] >= 0.9
    model = load_attribute_cnn(out / "model.safetensors")
    assert model.spec.frozen_blocks == 12
    dlib = {f"trunk.{k}": v for k, v in load_dlib_resnet().state_dict().items()}
    for state in model.states.values():
        frozen_keys = [k for k in dlib if k.startswith(("trunk.conv0", "trunk.affine0"))
                       or (k.startswith("trunk.blocks.") and int(k.split(".")[2]) < 12)]
        assert len(frozen_keys) == 2 + 2 + 12 * 8
        assert all(torch.equal(state[k], dlib[k]) for k in frozen_keys)
        assert not torch.equal(state["trunk.blocks.13.conv2.weight"], dlib["trunk.blocks.13.conv2.weight"])


def test_frozen_val_score_is_the_full_networks_accuracy_on_val_chips(frozen, data):
    """Val scores come from cached features; the reloaded network run on the chips agrees."""
    test_val_score_is_the_selected_weights_accuracy_on_val_chips(frozen, data)


def test_timing_is_reported_apart_from_the_metrics(frozen, data):
    result, out = frozen
    timing = json.loads((out / "timing.json").read_text())
    n_train = sum(part == "train" for part in data["split"].values())
    n_val = sum(part == "val" for part in data["split"].values())
    # every train chip (unmasked and masked) and its mirror image, and the val chips once
    assert timing["feature_cache"]["chips"] == n_train * 2 * 2 + n_val * 2
    assert [e["epoch"] for e in timing["epochs"]] == [1, 2, 3]
    assert all(e["seconds_per_1000_chips"] > 0 for e in timing["epochs"])
    assert timing["mean_seconds_per_epoch_per_1000_chips"] > 0 and timing["device"] == "cpu"
    assert "seconds" not in (out / "metrics.json").read_text()


def test_weight_average_is_what_val_scores_and_the_checkpoint_keeps(data, tmp_path):
    """With a cosine schedule, label smoothing, a weight average and mirrored scoring, the
    recorded val score (from cached features) is the saved (averaged) weights' accuracy on the val
    chips and their mirror images, and the band is still learned."""
    spec = {**FROZEN, "frozen_blocks": 13, "epochs": 2, "schedule": "cosine", "label_smoothing": 0.1, "ema": 0.5,
            "test_flip": True}
    result = run(data, tmp_path / "run", spec=spec)
    assert result["training"]["spec"]["ema"] == 0.5 and result["training"]["spec"]["test_flip"]
    assert result["heads"][CNN_HEAD]["sex"]["test"][MASK]["accuracy"] >= 0.9
    test_val_score_is_the_selected_weights_accuracy_on_val_chips((result, tmp_path / "run"), data)


def test_frozen_runs_are_deterministic(frozen, data, tmp_path):
    run(data, tmp_path / "again", spec=FROZEN)
    assert outputs(tmp_path / "again") == outputs(frozen[1])


def test_patience_stops_when_no_task_improves(data, tmp_path, monkeypatch):
    """Val scores scripted per epoch: sex improves at epoch 2, then nothing improves; patience 2
    stops after epoch 4 and each task keeps its best epoch."""
    import maskbench.attributes.cnn as cnn

    script = iter([{"sex": 0.6, "race": 0.3, "age": 10.0, "age_group": 0.4},
                   {"sex": 0.7, "race": 0.3, "age": 10.0, "age_group": 0.4},
                   {"sex": 0.7, "race": 0.2, "age": 11.0, "age_group": 0.4},
                   {"sex": 0.5, "race": 0.3, "age": 10.0, "age_group": 0.3}])
    monkeypatch.setattr(cnn, "val_scores", lambda *args: next(script))
    spec = {**FROZEN, "frozen_blocks": 13, "epochs": 6, "patience": 2}
    result = run(data, tmp_path / "run", spec=spec)
    assert [e["epoch"] for e in result["training"]["curve"]] == [1, 2, 3, 4]
    assert {t: e["params"]["epoch"] for t, e in result["heads"][CNN_HEAD].items()} == {
        "sex": 2, "race": 1, "age": 1, "age_group": 1}


def test_mirrored_scoring_is_the_mean_over_each_chip_and_its_mirror_image():
    """test_flip: a chip's outputs are the mean of the network's outputs on it and on its mirror
    image, computed from the chips or from the cached frozen blocks alike."""
    torch.manual_seed(0)
    coding = TaskCoding(("sex", "age"), {"sex": list(attr.SEX_CLASSES)}, 30.0, 10.0)
    network = build_network(CnnSpec.from_dict({"arch": "dlib_resnet", "frozen_blocks": 13, "test_flip": True}), coding)
    chips = [c.masked[MASK] for c in demo_chips(2, 3, [MASK], seed=1)]
    ids = [f"i{k}" for k in range(len(chips))]

    def labelled(images):
        return LabelledChips(ids, [MASK] * len(ids), [encode_chip(np.ascontiguousarray(c)) for c in images], {})

    cpu = torch.device("cpu")
    plain = network_outputs(network, labelled(chips), 4, cpu)
    mirror = network_outputs(network, labelled([c[:, ::-1] for c in chips]), 4, cpu)
    both = network_outputs(network, labelled(chips), 4, cpu, mirrored=True)
    cache = val_cache(network, labelled(chips), 4, cpu, mirrored=True)
    cached = cached_outputs(network, cache, [(MASK, k) for k in range(len(ids))], 4, cpu, mirrored=True)
    for task in coding.tasks:
        assert not np.allclose(plain[task], mirror[task], atol=1e-3)  # a face and its mirror image differ
        np.testing.assert_allclose(both[task], (plain[task] + mirror[task]) / 2, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(cached[task], both[task], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("task,rows,dims,noise", [("race", 80, 60, 2.0), ("age", 60, 100, 3.0)])
def test_linear_probe_chooses_as_the_linear_embedding_head(task, rows, dims, noise):
    """Epoch 0 starts from the linear head the embedding study would choose on val: the same
    strengths tried, the same one kept (few noisy rows, where strong regularisation wins)."""
    from maskbench.attributes.cnn import fit_probe

    rng = np.random.default_rng(5)
    x, x_val = rng.normal(size=(rows, dims)), rng.normal(size=(60, dims))
    signal = lambda z: z[:, 0] + noise * rng.normal(size=len(z))  # noqa: E731
    if task == "age":
        y, y_val = 40 + 10 * signal(x), 40 + 10 * signal(x_val)
    else:
        classes = np.array(attr.RACE_CLASSES[:3], dtype=object)
        y, y_val = classes[np.digitize(signal(x), [-1, 1])], classes[np.digitize(signal(x_val), [-1, 1])]
    probe, head = fit_probe(task, x, y, x_val, y_val), attr.fit_head(task, x, y, x_val, y_val)
    assert probe.params == head.params and probe.val_score == pytest.approx(head.val_score, abs=0.02)


def test_weight_average_follows_the_weights_and_swaps_back():
    """The moving average after steps w1, w2 from w0 is d^2 w0 + d(1-d) w1 + (1-d) w2; swapped()
    shows it and then restores the trained weights (integer buffers are left alone)."""
    from maskbench.attributes.cnn import WeightAverage

    module = torch.nn.Linear(2, 1)
    module.register_buffer("steps", torch.tensor(5))
    with torch.no_grad():
        module.weight.fill_(0.0)
    average = WeightAverage(module, 0.5)
    for value in (1.0, 3.0):
        with torch.no_grad():
            module.weight.fill_(value)
        average.update()
    with average.swapped():
        assert torch.allclose(module.weight, torch.full((1, 2), 0.25 * 0 + 0.25 * 1 + 0.5 * 3))
        assert int(module.steps) == 5
    assert torch.equal(module.weight, torch.full((1, 2), 3.0))


def test_label_smoothing_raises_the_loss_of_a_confident_right_answer():
    from maskbench.attributes.cnn import task_loss

    out, target = torch.tensor([[8.0, -8.0], [0.0, 0.0]]), torch.tensor([0, -100])
    plain, n = task_loss("sex", out, target)
    smoothed, _ = task_loss("sex", out, target, 0.1)
    assert n == 1 and float(plain) < 1e-6 < float(smoothed)


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec,message", [
    ({"arch": "vgg19"}, "'arch'.*use one of"),
    ({"arch": "dlib_resnet", "input_size": 64}, "'input_size' applies to resnet50 only"),
    ({"arch": "resnet50", "epochs": 0}, "'epochs'.*integer >= 1"),
    ({"arch": "resnet50", "head_lr": -1.0}, "'head_lr'.*> 0"),
    ({"arch": "resnet50", "epoch": 3}, r"unknown attributes.cnn keys \['epoch'\]"),
    ({"epochs": 3}, "'arch' is missing"),
    ({"arch": "resnet50", "frozen_blocks": 3}, "'frozen_blocks' applies to dlib_resnet only"),
    ({"arch": "dlib_resnet", "frozen_blocks": 15}, "'frozen_blocks'.*from 0 to 14"),
    ({"arch": "dlib_resnet", "patience": 0}, "'patience'.*>= 1"),
    ({"arch": "dlib_resnet", "linear_probe": True}, "'linear_probe' needs frozen_blocks"),
    ({"arch": "dlib_resnet", "schedule": "step"}, "'schedule'.*use one of"),
    ({"arch": "dlib_resnet", "label_smoothing": 1.0}, r"'label_smoothing'.*\[0, 1\)"),
    ({"arch": "dlib_resnet", "ema": 1.0}, r"'ema'.*\(0, 1\)"),
    ({"arch": "dlib_resnet", "test_flip": "yes"}, "'test_flip'.*true or false"),
])
def test_bad_specs_are_named(spec, message):
    with pytest.raises(ValueError, match=message):
        CnnSpec.from_dict(spec)


def test_config_checks_name_the_cnn_settings():
    config = yaml.safe_load((REPO / "config" / "utkface.yaml").read_text())
    check_attributes_config(config)
    settings = attribute_settings(config)["cnn"]
    # the CPU default: dlib's ResNet, 13 blocks frozen and cached, on the random split
    assert settings["model"] == "cnn_dlib_resnet" and settings["train_variants"] == ["unmasked", "surgical_blue", "mixed"]
    assert settings["threads"] == 2 and settings["splits"] == ["random"]
    assert not {"train_variants", "threads", "splits"} & set(settings["spec"])
    spec = CnnSpec.from_dict(settings["spec"])
    assert spec.arch == "dlib_resnet" and spec.frozen_blocks == 13 and spec.linear_probe

    def with_cnn(**cnn):
        return {**config, "attributes": {**config["attributes"], "cnn": {**config["attributes"]["cnn"], **cnn}}}

    with pytest.raises(ConfigError, match=r"attributes.cnn.train_variants: 'n95_white'"):
        check_attributes_config(with_cnn(train_variants=["n95_white"]))
    with pytest.raises(ConfigError, match="'input_size' applies to resnet50 only"):
        check_attributes_config(with_cnn(input_size=224))
    with pytest.raises(ConfigError, match="'frozen_blocks' applies to dlib_resnet only"):
        check_attributes_config(with_cnn(arch="resnet50"))
    with pytest.raises(ConfigError, match=r"attributes.cnn.splits: \['identity'\] are not among"):
        check_attributes_config(with_cnn(splits=["identity"]))
    assert attribute_settings(with_cnn(splits=None))["cnn"]["splits"] == ["random", "uniform"]
    clash = {**config, "models": {**config["models"], "cnn_dlib_resnet": config["models"]["dlib_resnet"]},
             "attributes": {**config["attributes"], "models": ["dlib_resnet", "cnn_dlib_resnet"]}}
    with pytest.raises(ConfigError, match="rename that model"):
        check_attributes_config(clash)
    assert attribute_settings({**config, "attributes": {**config["attributes"], "cnn": None}})["cnn"] is None


def test_schema_names_a_wrong_cnn_key():
    schema = str(REPO / "workflow" / "schemas" / "attributes.schema.yaml")
    config = yaml.safe_load((REPO / "config" / "utkface.yaml").read_text())
    validate({"attributes": config["attributes"]}, schema=schema)
    validate({"attributes": {"cnn": None}}, schema=schema)
    with pytest.raises(Exception, match="learning_rate"):
        validate({"attributes": {"cnn": {"arch": "resnet50", "learning_rate": 0.1}}}, schema=schema)
    with pytest.raises(Exception, match="vgg19"):
        validate({"attributes": {"cnn": {"arch": "vgg19"}}}, schema=schema)


def tiny_chips(n: int) -> ChipSet:
    chips = [encode_chip(np.full((150, 150, 3), 10 * k, np.uint8)) for k in range(n)]
    ids = [f"i{k}" for k in range(n)]
    return ChipSet(ids, ids, chips, {})


def test_a_task_with_one_class_or_no_label_cannot_be_learned():
    labels = {"sex": np.array(["male"] * 4, dtype=object), "age": np.array([10.0, math.nan, 30.0, 40.0])}
    with pytest.raises(attr.TaskError, match="'sex': the train split has fewer than 2 classes"):
        TaskCoding.fit(["sex"], attr.DEFAULT_AGE_GROUPS, labels)
    with pytest.raises(attr.TaskError, match="'race': no image of the train split has this label"):
        TaskCoding.fit(["race"], attr.DEFAULT_AGE_GROUPS, {"race": np.array([None] * 4, dtype=object)})
    coding = TaskCoding.fit(["age"], attr.DEFAULT_AGE_GROUPS, labels)
    assert coding.age_mean == pytest.approx(80 / 3) and coding.encode("age", labels["age"])[1].isnan()
    val = LabelledChips([], [], [], {"sex": np.array([], dtype=object)})
    with pytest.raises(attr.TaskError, match="unknown task 'gender'"):
        train_attribute_cnn(tiny_chips(4), {"gender": labels["sex"]}, val, CnnSpec.from_dict(SPEC), ["gender"],
                            attr.DEFAULT_AGE_GROUPS, 0)


def test_missing_mask_shards_and_foreign_checkpoints_are_named(data, tmp_path):
    with pytest.raises(ValueError, match=r"no masked chip shards given for \['surgical_blue'\]"):
        run({**data, "masked": {}}, tmp_path / "run")
    other = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(ValueError, match="not a maskbench attribute CNN checkpoint"):
        load_attribute_cnn(other)
    with pytest.raises(FileNotFoundError, match="re-run the attributes_cnn rule"):
        load_attribute_cnn(tmp_path / "missing.safetensors")


# --- the workflow --------------------------------------------------------------------------------


def labelled_face_folder(folder, n: int = 30, seed: int = 5) -> None:
    """Demo faces saved as UTKFace names them (``<age>_<sex>_<race>_<stamp>.jpg.chip.jpg``), with
    random labels: the rules need labels, not that they be learnable."""
    import cv2

    from maskbench.data.demo import demo_image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for k in range(n):
        rgb, _ = demo_image(seed, k, 0)
        name = f"{rng.integers(1, 90)}_{rng.integers(2)}_{rng.integers(5)}_2017{k:010d}.jpg.chip.jpg"
        cv2.imwrite(str(folder / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


@pytest.fixture(scope="module")
def workflow_run(tmp_path_factory):
    """A labelled demo folder through the workflow: acquire, align, mask, embed, split, the heads
    and the CNN, figures and tables (about a minute on two cores)."""
    from conftest import copy_workflow, snakemake

    work = copy_workflow(tmp_path_factory.mktemp("cnn_wf") / "wf")
    labelled_face_folder(work / "faces" / "UTKFace")
    config = yaml.safe_load((REPO / "config" / "utkface.yaml").read_text())
    config["datasets"]["utkface"].update(
        shards=1, masks=[MASK], files={"images": {"path": str(work / "faces"), "md5": None}})
    config["splits"] = {"ratios": {"train": 0.6, "val": 0.2, "test": 0.2}}
    config["attributes"].update(splits=["random"], train_variants=["unmasked"], cnn={
        "arch": "dlib_resnet", "epochs": 1, "lr": 1e-4, "head_lr": 1e-2, "batch_size": 8, "train_variants": ["mixed"]})
    (work / "faces.yaml").write_text(yaml.safe_dump(config))
    snakemake(work, "--cores", "2", "results/tables/attributes.csv", "--configfile", "faces.yaml")
    return work


@pytest.mark.slow
def test_workflow_files_the_cnn_beside_the_heads(workflow_run):
    table = pd.read_csv(workflow_run / "results/tables/attributes.csv")
    runs = table[["model", "head", "train_variant"]].drop_duplicates().values.tolist()
    assert runs == [["dlib_resnet", "linear", "unmasked"], ["dlib_resnet", "chance", "-"],
                    ["cnn_dlib_resnet", "cnn", "mixed"], ["cnn_dlib_resnet", "chance", "-"]]
    assert table[["unmasked/random", "masked/random", f"{MASK}/random"]].notna().all().all()
    run_dir = workflow_run / "results/utkface/attributes/cnn_dlib_resnet/random/mixed"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    row = table[(table.model == "cnn_dlib_resnet") & (table.task == "age") & (table.metric == "mae")].iloc[0]
    assert row["unmasked/random"] == pytest.approx(metrics["heads"]["cnn"]["age"]["test"]["unmasked"]["mae"], abs=1e-6)
    assert load_attribute_cnn(run_dir / "model.safetensors").best_epoch == {t: 1 for t in TASKS}
    figures = sorted(p.relative_to(workflow_run / "results/figures/attributes/utkface").parts[:3]
                     for p in (workflow_run / "results/figures/attributes").rglob("*.png"))
    assert sorted(set(figures)) == [("cnn_dlib_resnet", "random", "mixed"), ("dlib_resnet", "random", "unmasked")]
    assert len(figures) == 6
    assert (workflow_run / "results/benchmarks/attributes/utkface/cnn_dlib_resnet/random/mixed.tsv").is_file()
