"""Fine-tuning on masked + unmasked chips: data mixing, validation pairs, outputs, reload, determinism."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
from safetensors import safe_open

from maskbench.models.backbones import build_backbone
from maskbench.io.chips import encode_chip
from maskbench.faces.demo_chips import demo_chips, write_demo_shards
from maskbench.models.embed import BackboneEmbedder, make_embedder
from maskbench.training import finetune as finetune_module
from maskbench.io.manifests import CURVE_SCHEMA
from maskbench.variants import UNMASKED
from maskbench.training.finetune import (
    ChipSet,
    FinetuneSpec,
    _labels,
    build_model,
    draw_variants,
    epoch_batches,
    finetune,
    make_optimizer,
    save_checkpoint,
    train_epoch,
    unmasked_val_pairs,
    val_pairs,
)
from maskbench.io.readers import read_chips
from maskbench.stages.finetune import build_chipset, finetune_step, read_split_parts
from maskbench.training.losses import make_loss
from maskbench.protocols.splits import SPLITS_SCHEMA

torch.set_num_threads(1)

MASKS = ["n95_white", "surgical_blue"]
PARTS = {"train": range(0, 4), "val": range(4, 6), "test": range(6, 7)}
RESNET_SMALL = {"arch": "resnet50", "pretrained": False, "input_size": 32, "dim": 16}


def part_of(identity: str) -> str:
    k = int(identity.split("_")[1])
    return next(p for p, r in PARTS.items() if k in r)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict:
    """7 demo people x 4 images, two masks, in 2 shards; test-part chips are not valid chips, so any
    attempt to decode them fails the run."""
    root = tmp_path_factory.mktemp("finetune_data")
    chips = demo_chips(7, 4, MASKS, seed=1)
    aligned, masked = write_demo_shards(chips, root, n_shards=2)
    test_ids = pa.array([c.image_id for c in chips if part_of(c.identity) == "test"])
    for path in aligned + [p for paths in masked.values() for p in paths]:
        table = pq.read_table(path)
        is_test = pc.is_in(table["image_id"], test_ids)
        garbage = pa.array([b"not a png"] * table.num_rows, pa.binary())
        table = table.set_column(table.schema.get_field_index("chip"), "chip",
                                 pc.if_else(is_test, garbage, table["chip"]))
        pq.write_table(table, path)
    split = root / "split.parquet"
    pq.write_table(pa.Table.from_pydict(
        {"image_id": [c.image_id for c in chips], "identity": [c.identity for c in chips],
         "split": [part_of(c.identity) for c in chips]}, schema=SPLITS_SCHEMA), split)
    return {"aligned": aligned, "masked": masked, "split": str(split), "chips": chips}


def chipsets(dataset: dict) -> tuple[ChipSet, ChipSet]:
    parts, _ = read_split_parts(dataset["split"])
    unmasked, masked = read_chips(dataset["aligned"], dataset["masked"], set(parts["train"]) | set(parts["val"]))
    return build_chipset(parts["train"], unmasked, masked), build_chipset(parts["val"], unmasked, masked)


def run_step(dataset: dict, out: Path, spec: dict, seed: int) -> dict:
    return finetune_step(dataset["aligned"], dataset["masked"], dataset["split"], spec, seed, 1,
                         str(out / "model.safetensors"), str(out / "curve.parquet"), str(out / "report.json"))


# --- data mixing ---------------------------------------------------------------------------------


def test_only_train_and_val_chips_are_read(dataset) -> None:
    train, val = chipsets(dataset)
    assert {part_of(i) for i in train.identities} == {"train"}
    assert {part_of(i) for i in val.identities} == {"val"}
    assert len(train) == 16 and len(val) == 8
    for data in (train, val):
        assert sorted(data.masked) == MASKS
        assert all(len(data.masked[m]) == len(data) for m in MASKS)
    by_id = {c.image_id: c for c in dataset["chips"]}
    i = 5
    np.testing.assert_array_equal(train.chip(i, UNMASKED), by_id[train.image_ids[i]].chip)
    np.testing.assert_array_equal(train.chip(i, "n95_white"), by_id[train.image_ids[i]].masked["n95_white"])


def toy_chipset(n: int, missing: dict[str, set[int]]) -> ChipSet:
    """Chips of one colour per image; mask m is absent for the images in missing[m]."""
    chip = [encode_chip(np.full((150, 150, 3), k, np.uint8)) for k in range(n)]
    masked = {m: {i: chip[i] for i in range(n) if i not in gone} for m, gone in missing.items()}
    return ChipSet([f"img{k:02d}" for k in range(n)], [f"p{k // 3}" for k in range(n)], chip, masked)


def test_variants_are_per_image_and_seeded() -> None:
    data = toy_chipset(12, {"a": {0, 1}, "b": {1, 2, 3}})
    for epoch in (1, 2):
        chosen, flips = draw_variants(data, epoch, seed=4, flip=True)
        assert all(v in data.variants(i) for i, v in enumerate(chosen))
        assert chosen[1] == UNMASKED  # image 1 has no masked chip
        again = draw_variants(data, epoch, seed=4, flip=True)
        assert again[0] == chosen and np.array_equal(again[1], flips)
    # an image's draw does not depend on the other images: a subset draws the same for it
    subset = ChipSet(data.image_ids[6:], data.identities[6:], data.unmasked[6:],
                     {m: {i - 6: c for i, c in v.items() if i >= 6} for m, v in data.masked.items()})
    assert draw_variants(subset, 3, 4, True)[0] == draw_variants(data, 3, 4, True)[0][6:]
    seen = [draw_variants(data, e, 4, True) for e in range(1, 40)]
    assert {v for chosen, _ in seen for v in chosen} == {UNMASKED, "a", "b"}
    assert 0.3 < np.mean([f.mean() for _, f in seen]) < 0.7
    assert not any(f.any() for f in [draw_variants(data, e, 4, False)[1] for e in range(1, 5)])
    assert [draw_variants(data, e, 5, True)[0] for e in range(1, 5)] != [s[0] for s in seen[:4]]


def test_batches_cover_every_image_once_with_runs_of_one_person() -> None:
    labels = np.repeat(np.arange(7), [5, 4, 4, 1, 3, 6, 2])
    batches = epoch_batches(labels, epoch=2, seed=9, batch_size=8, per_identity=2)
    order = np.concatenate(batches)
    assert sorted(order.tolist()) == list(range(len(labels)))
    assert [len(b) for b in batches[:-1]] == [8] * (len(batches) - 1)
    # the sequence is made of runs of one person (up to 2 images; a run of 1 ends a person's images)
    runs = [len(list(g)) for _, g in itertools.groupby(labels[order])]
    assert sum(runs) == len(labels) and max(runs) <= 4  # two runs of one person may touch
    pairs_in_batches = sum(len(b) - len(np.unique(labels[b])) for b in batches)
    assert pairs_in_batches >= 10  # a plain shuffle of 25 images of 7 people rarely gives this many
    assert [b.tolist() for b in batches] == [b.tolist() for b in epoch_batches(labels, 2, 9, 8, 2)]
    assert [b.tolist() for b in batches] != [b.tolist() for b in epoch_batches(labels, 3, 9, 8, 2)]


def test_val_pairs_match_brute_force() -> None:
    data = toy_chipset(9, {"a": {0}, "b": set()})
    pairs = val_pairs(data, seed=1, n_impostors=40, max_genuine=10_000)
    expected_genuine = {(r, p) for r in range(9) for p, (img, _) in enumerate(pairs.probes)
                        if data.identities[r] == data.identities[img] and r != img}
    assert {tuple(x) for x in pairs.genuine.tolist()} == expected_genuine
    assert len(pairs.probes) == 8 + 9
    impostors = [tuple(x) for x in pairs.impostor.tolist()]
    assert len(impostors) == len(set(impostors)) == 40
    assert all(data.identities[r] != data.identities[pairs.probes[p][0]] for r, p in impostors)
    everything = val_pairs(data, seed=1, n_impostors=10_000, max_genuine=5)
    n_impostor_cells = sum(data.identities[r] != data.identities[img] for r in range(9) for img, _ in pairs.probes)
    assert len(everything.impostor) == n_impostor_cells and len(everything.genuine) == 5
    assert {tuple(x) for x in everything.genuine.tolist()} <= expected_genuine


# --- training ------------------------------------------------------------------------------------


def easy_chipset() -> ChipSet:
    """Four people, each a distinct colour with pixel noise: trivially separable."""
    rng = np.random.default_rng(0)
    colours = [(220, 40, 40), (40, 200, 60), (40, 60, 220), (230, 230, 40)]
    chips, ids, people = [], [], []
    for p, colour in enumerate(colours):
        for j in range(3):
            chip = np.clip(np.array(colour) + rng.normal(0, 20, (150, 150, 3)), 0, 255).astype(np.uint8)
            chips.append(encode_chip(chip))
            ids.append(f"p{p}/{j}")
            people.append(f"p{p}")
    return ChipSet(ids, people, chips, {})


def test_training_lowers_the_loss_on_an_easy_set() -> None:
    data = easy_chipset()
    spec = FinetuneSpec.from_dict({"arch": "dlib_resnet", "loss": {"kind": "supcon"}, "lr": 1e-5,
                                   "batch_size": 12, "flip": False})
    backbone = build_model(spec)
    labels, names = _labels(data)
    loss_fn = make_loss(spec.loss, backbone.dim, len(names))
    with torch.no_grad():  # the first epoch's loss is taken before its step: compute it independently
        x = backbone.preprocess(np.stack([data.chip(i, UNMASKED) for i in range(len(data))]))
        before = float(loss_fn(backbone.module(x), torch.from_numpy(labels)))
    optimizer = make_optimizer(spec, list(backbone.module.parameters()))
    losses = [train_epoch(backbone, loss_fn, optimizer, data, labels, spec, e, 0, torch.device("cpu")).loss
              for e in range(1, 5)]
    assert losses[0] == pytest.approx(before, rel=1e-5)
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.75 * losses[0]


@pytest.mark.parametrize("arch", [{"arch": "dlib_resnet"}, RESNET_SMALL], ids=["dlib_resnet", "resnet50"])
def test_finetuned_model_reloads_with_the_same_embeddings(dataset, tmp_path, arch: dict, monkeypatch) -> None:
    train, val = chipsets(dataset)
    # val says epoch 1 is better masked and no worse unmasked, so the trained weights are kept
    eers = iter([(0.4, 0.05), (0.3, 0.05)])
    monkeypatch.setattr(finetune_module, "val_eers", lambda *args: next(eers))
    spec = FinetuneSpec.from_dict({**arch, "loss": {"kind": "supcon"}, "epochs": 1, "batch_size": 8,
                                   "lr": 1e-4})
    result = finetune(train, val, spec, seed=2, threads=1)
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, result, spec, seed=2)
    chips = np.stack([val.chip(i, v) for i in range(3) for v in (UNMASKED, "surgical_blue")])
    in_memory = BackboneEmbedder(result.backbone, batch_size=4).embed(chips)
    reloaded = make_embedder({"kind": "finetuned", "checkpoint": str(path), "batch_size": 4})
    embeddings = reloaded.embed(chips)
    dim = 128 if arch["arch"] == "dlib_resnet" else 16
    assert reloaded.dim == dim and embeddings.shape == (6, dim) and embeddings.dtype == np.float32
    np.testing.assert_array_equal(embeddings, in_memory)
    np.testing.assert_array_equal(embeddings, reloaded.embed(chips))
    if arch["arch"] == "dlib_resnet":  # the weights moved away from dlib's
        start = BackboneEmbedder(build_backbone({"arch": "dlib_resnet"})).embed(chips)
        assert np.abs(start - embeddings).max() > 1e-4


def test_pretrained_start_is_kept_unless_a_later_epoch_keeps_unmasked_accuracy(dataset, monkeypatch) -> None:
    train, val = chipsets(dataset)
    spec = FinetuneSpec.from_dict({"arch": "dlib_resnet", "loss": {"kind": "supcon"}, "epochs": 2, "batch_size": 8,
                                   "lr": 1e-4})
    # epoch 1: much better masked, 0.003 worse unmasked; epoch 2: better masked, 0.002 worse unmasked
    eers = iter([(0.4, 0.050), (0.2, 0.053), (0.3, 0.052)])
    monkeypatch.setattr(finetune_module, "val_eers", lambda *args: next(eers))
    result = finetune(train, val, spec, seed=2, threads=1)
    assert result.best_epoch == 2 and result.report["unmasked_limit"] == pytest.approx(0.052)
    assert [r["val_unmasked_eer"] for r in result.curve] == [0.050, 0.053, 0.052]
    eers = iter([(0.4, 0.050), (0.2, 0.053), (0.3, 0.0521)])  # nothing within the limit: the start is kept
    result = finetune(train, val, spec, seed=2, threads=1)
    assert result.best_epoch == 0 and result.best_val_eer == 0.4
    chips = np.stack([val.chip(i, v) for i in range(2) for v in (UNMASKED, "surgical_blue")])
    start = BackboneEmbedder(build_backbone({"arch": "dlib_resnet"})).embed(chips)
    np.testing.assert_array_equal(BackboneEmbedder(result.backbone).embed(chips), start)


def test_a_pretrained_trunk_under_a_random_projection_is_not_the_start_it_is_held_to(dataset, monkeypatch) -> None:
    """With ``dim:`` a pretrained trunk gets a projection drawn at random: epoch 0 is then neither
    the pretrained network nor a candidate, and the unmasked limit is the trunk's own val EER."""
    train, val = chipsets(dataset)
    spec = FinetuneSpec.from_dict({**RESNET_SMALL, "pretrained": True, "loss": {"kind": "supcon"}, "epochs": 2,
                                   "batch_size": 8})
    original = finetune_module.build_model
    monkeypatch.setattr(finetune_module, "build_model", lambda s, cache_dir=None: original(s, cache_dir, False))
    calls = []

    def fake_val_eers(backbone, *args):
        calls.append(backbone.dim)
        if backbone.dim != 16:  # the trunk alone: 0.05 unmasked, limit 0.052
            return 0.5, 0.050
        return {1: (0.1, 0.060), 3: (0.3, 0.060), 4: (0.4, 0.051)}[len(calls)]  # epoch 0, (trunk), 1, 2

    monkeypatch.setattr(finetune_module, "val_eers", fake_val_eers)
    result = finetune(train, val, spec, seed=2, threads=1)
    assert calls == [16, 2048, 16, 16]
    assert result.report["unmasked_limit"] == pytest.approx(0.052)
    # epoch 0 has the lowest masked EER but is a random projection: never kept; epoch 2 meets the limit
    assert result.best_epoch == 2 and result.report["unmasked_constraint_met"] is True
    calls.clear()
    monkeypatch.setattr(finetune_module, "val_eers", lambda backbone, *args: (
        calls.append(backbone.dim) or ((0.5, 0.050) if backbone.dim != 16 else (0.1, 0.060))))
    result = finetune(train, val, spec, seed=2, threads=1)  # nothing within the limit: a trained epoch still
    assert result.best_epoch == 1 and result.report["unmasked_constraint_met"] is False


def test_unmasked_val_pairs_match_brute_force() -> None:
    data = ChipSet([f"i{k}" for k in range(9)], list("aaabbbcdd"), [b""] * 9)
    pairs = unmasked_val_pairs(data, seed=1, n_impostors=1000, max_genuine=1000)
    genuine = {(i, j) for i in range(9) for j in range(i + 1, 9) if data.identities[i] == data.identities[j]}
    impostor = {(i, j) for i in range(9) for j in range(i + 1, 9) if data.identities[i] != data.identities[j]}
    assert set(map(tuple, pairs.genuine.tolist())) == genuine and len(pairs.genuine) == 7
    assert set(map(tuple, pairs.impostor.tolist())) == impostor and len(pairs.impostor) == len(impostor)
    few = unmasked_val_pairs(data, seed=1, n_impostors=5, max_genuine=3)
    assert len(few.genuine) == 3 and len(few.impostor) == 5 and set(map(tuple, few.impostor.tolist())) <= impostor


def test_finetune_step_writes_model_curve_and_report(dataset, tmp_path) -> None:
    spec = {**RESNET_SMALL, "loss": {"kind": "arcface"}, "epochs": 2, "batch_size": 8, "lr": 1e-3,
            "optimizer": "sgd", "val_impostors": 30}
    report = run_step(dataset, tmp_path, spec, seed=3)
    curve = pq.read_table(tmp_path / "curve.parquet")
    assert curve.schema.equals(CURVE_SCHEMA)
    rows = curve.to_pylist()
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert rows[0]["loss"] is None and all(np.isfinite(r["loss"]) for r in rows[1:])
    assert all(0 <= r["val_eer"] <= 1 for r in rows)
    best = min(rows[1:], key=lambda r: (r["val_eer"], r["epoch"]))  # not pretrained: epoch 0 never kept
    assert all(0 <= r["val_unmasked_eer"] <= 1 for r in rows)
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert report["best_epoch"] == best["epoch"] and report["best_val_eer"] == best["val_eer"]
    assert report["train"] == {"images": 16, "identities": 4, "masked_chips": {m: 16 for m in MASKS}}
    assert report["val"]["images"] == 8 and report["val"]["impostor_pairs"] == 30  # of 2 x 4 x 8
    assert report["val"]["genuine_pairs"] == 2 * 4 * 3 * len(MASKS)  # 2 people, 4 refs x 3 other images x masks
    assert sum(report["epochs"][0]["variants"].values()) == 16
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["maskbench"])
        assert "1.weight" in f.keys()  # the projection head
    assert (meta["arch"], meta["dim"], meta["projection"], meta["input_size"]) == ("resnet50", 16, 16, 32)
    assert meta["best_epoch"] == best["epoch"] and meta["spec"]["loss"] == {"kind": "arcface"}


def test_same_seed_gives_identical_checkpoint_bytes(dataset, tmp_path) -> None:
    spec = {**RESNET_SMALL, "loss": {"kind": "triplet"}, "epochs": 1, "batch_size": 8, "val_impostors": 100}
    runs = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        out = tmp_path / name
        run_step(dataset, out, spec, seed)
        runs[name] = ((out / "model.safetensors").read_bytes(),
                      (out / "curve.parquet").read_bytes(),
                      (out / "report.json").read_bytes())
    assert runs["a"][0] == runs["b"][0]
    assert runs["a"][1] == runs["b"][1] and runs["a"][2] == runs["b"][2]
    assert runs["a"][0] != runs["c"][0]


def test_bad_specs_are_named(dataset, tmp_path, monkeypatch) -> None:
    with pytest.raises(ValueError, match=r"unknown finetune keys \['lr_decay'\]"):
        FinetuneSpec.from_dict({"arch": "dlib_resnet", "loss": {"kind": "supcon"}, "lr_decay": 0.1})
    with pytest.raises(ValueError, match="'vgg19' cannot be fine-tuned"):
        FinetuneSpec.from_dict({"arch": "vgg19", "loss": {"kind": "supcon"}})
    with pytest.raises(ValueError, match="drop 'dim'"):
        FinetuneSpec.from_dict({"arch": "dlib_resnet", "loss": {"kind": "supcon"}, "dim": 64})
    with pytest.raises(ValueError, match=r"has no option\(s\) \['margin'\]"):
        FinetuneSpec.from_dict({"arch": "dlib_resnet", "loss": {"kind": "supcon", "margin": 0.3}})
    with pytest.raises(ValueError, match="'loss' is missing"):
        FinetuneSpec.from_dict({"arch": "resnet50"})
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match="resnet50-0676ba61.pth"):
        run_step(dataset, tmp_path, {"arch": "resnet50", "loss": {"kind": "supcon"}}, seed=0)
    assert not (tmp_path / "model.safetensors").exists()


def test_without_masked_val_pairs_the_choice_only_moves_forward():
    """Val without masked-probe pairs: the latest epoch within the unmasked limit is kept. After
    every epoch the choice is that epoch or the previous choice (training keeps one saved state);
    an epoch past the limit once made it fall back to an epoch whose state was gone."""
    from maskbench.training.finetune import _choose

    spec = FinetuneSpec.from_dict({"arch": "dlib_resnet", "loss": {"kind": "supcon"}, "unmasked_tolerance": 0.002})
    unmasked = [0.1, 0.101, 0.3, 0.1015, 0.25]  # epoch 0 = the pretrained network; limit 0.102
    curve, chosen = [], []
    for epoch, value in enumerate(unmasked):
        curve.append({"epoch": epoch, "val_eer": None, "val_unmasked_eer": value})
        choice = _choose(curve, spec, unmasked[0], start_is_base=True)
        assert choice.epoch in (epoch, chosen[-1] if chosen else 0)
        assert choice.masked_eer is None and choice.constraint_met
        chosen.append(choice.epoch)
    assert chosen == [0, 1, 1, 3, 3]
