"""Projection head: starts as the base model, round-trips through safetensors, learns to undo a
synthetic "mask", selects its best val epoch, and its workflow stages read and write manifests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from maskbench.evaluation import metrics

from maskbench.training import train_head
from maskbench.training.heads import ProjectionHead, head_bytes, load_head, save_head
from maskbench.io.manifests import embedding_schema
from maskbench.protocols.splits import SPLITS_SCHEMA
from maskbench.training.train_head import (EmbeddingSet, IdentityBatchSampler, embed_with_head, masked_probe_pairs,
                                  train_projection_head)
from maskbench.io.manifests import CURVE_SCHEMA
from maskbench.stages.train import (project_embeddings, read_parts,
                                  train_head_step)
from maskbench.reporting.training_figures import training_curve_figure

torch.set_num_threads(1)

DIM = 24
MASKS = ("surgical", "cloth")


def _corruptions(seed: int = 0) -> dict[str, np.ndarray]:
    """Each mask type: a fixed random low-rank linear corruption (what a mask hides is replaced by
    a mix of the rest), identical for every face."""
    rng = np.random.default_rng(seed)
    return {m: np.eye(DIM) + 2.0 * rng.normal(size=(DIM, 4)) @ rng.normal(size=(4, DIM)) / np.sqrt(DIM)
            for m in MASKS}


def synthetic(n_ids: int, images: int, seed: int, prefix: str, masks=MASKS) -> EmbeddingSet:
    """Identities as random centres; images = centre + noise; masked = corruption(image) + noise."""
    rng = np.random.default_rng(seed)
    corrupt = _corruptions()
    vec, img, ident, var = [], [], [], []
    for i in range(n_ids):
        centre = rng.normal(size=DIM)
        for j in range(images):
            x = centre + 0.6 * rng.normal(size=DIM)
            rows = [("unmasked", x)] + [(m, corrupt[m] @ x + 0.2 * rng.normal(size=DIM)) for m in masks]
            for variant, v in rows:
                vec.append(v)
                img.append(f"{prefix}{i}/{j}.jpg")
                ident.append(f"{prefix}{i}")
                var.append(variant)
    return EmbeddingSet(np.array(vec, np.float32), img, ident, var)


# the synthetic "mask" mixes every coordinate, so undoing it must move unmasked faces too: these
# tests of learning let the unmasked val EER rise by 0.05 (the real-face test keeps 0.002)
FAST = {"loss": {"kind": "triplet", "mining": "semi_hard"}, "epochs": 8, "hidden": 64,
        "identities_per_batch": 16, "batches_per_epoch": 10, "lr": 3e-3, "unmasked_weight": 0.0,
        "unmasked_tolerance": 0.05}


@pytest.fixture(scope="module")
def problem():
    return synthetic(60, 3, 1, "t"), synthetic(30, 3, 2, "v")


@pytest.fixture(scope="module")
def trained(problem):
    train, val = problem
    return train_projection_head(train, val, FAST, seed=5)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


# ---------------------------------------------------------------------------------------------
# head


@pytest.mark.parametrize("out_dim", [DIM, DIM + 8])
def test_untrained_head_keeps_base_similarities(out_dim):
    x = np.random.default_rng(0).normal(size=(10, DIM)).astype(np.float32) * 3
    head = ProjectionHead(DIM, out_dim, hidden=16).eval()
    with torch.no_grad():
        y = head(torch.tensor(x)).numpy()
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(y @ y.T, _cosine(x, x), atol=1e-6)


def test_reducing_head_starts_at_the_principal_subspace():
    x = np.random.default_rng(1).normal(size=(200, DIM)) * np.linspace(3, 0.1, DIM)
    head = ProjectionHead(DIM, 5, hidden=16)
    head.init_skip(x)
    w = head.skip.weight.detach().double().numpy()
    np.testing.assert_allclose(w @ w.T, np.eye(5), atol=1e-6)
    _, _, vt = np.linalg.svd(x / np.linalg.norm(x, axis=1, keepdims=True), full_matrices=False)
    np.testing.assert_allclose(w.T @ w, vt[:5].T @ vt[:5], atol=1e-5)  # same subspace


def test_head_round_trip_and_deterministic_bytes(tmp_path, trained):
    head = trained.head
    meta = {"base_model": "dlib", "train": FAST}
    save_head(tmp_path / "a.safetensors", head, meta)
    save_head(tmp_path / "b.safetensors", head, meta)
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    loaded, loaded_meta = load_head(tmp_path / "a.safetensors")
    assert loaded_meta == json.loads(json.dumps(meta))
    assert loaded.architecture() == {"in_dim": DIM, "out_dim": DIM, "hidden": 64}
    x = torch.tensor(np.random.default_rng(2).normal(size=(7, DIM)), dtype=torch.float32)
    head.eval()
    with torch.no_grad():
        assert torch.equal(head(x), loaded(x))
    assert head_bytes(loaded, meta) == (tmp_path / "a.safetensors").read_bytes()


def test_load_head_refuses_other_files(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="not a projection head file"):
        load_head(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json")
    with pytest.raises(ValueError, match="not a projection head file"):
        load_head(tmp_path / "junk.safetensors")


# ---------------------------------------------------------------------------------------------
# sampler and val pairs


def test_batches_mix_masked_and_unmasked_of_distinct_identities(problem):
    train, _ = problem
    a = IdentityBatchSampler(train, 8, 4, seed=3)
    b = IdentityBatchSampler(train, 8, 4, seed=3)
    seen = set()
    for _ in range(20):
        idx, labels = a.batch()
        idx_b, _ = b.batch()
        assert np.array_equal(idx, idx_b)  # seeded
        assert idx.size == 32 and len(set(labels.tolist())) == 8
        for label in set(labels.tolist()):
            rows = idx[labels == label]
            variants = [train.variant[i] for i in rows]
            assert variants.count("unmasked") == 2 and len(rows) == 4
            assert len(set(rows.tolist())) == 4  # no repeats while the pool lasts
            assert {train.identity[i] for i in rows} == {a.names[label]}
            seen.add(label)
    assert seen == set(range(60))  # every identity visited


def test_single_image_identities_give_positives():
    data = synthetic(5, 1, 0, "s", masks=("surgical",))
    idx, labels = IdentityBatchSampler(data, 5, 2, seed=0).batch()
    for label in range(5):
        rows = idx[labels == label]
        assert sorted(data.variant[i] for i in rows) == ["surgical", "unmasked"]
        assert len({data.image_id[i] for i in rows}) == 1  # one image, its two variants


def test_val_pairs_follow_the_masked_probe_protocol(problem):
    _, val = problem
    pairs = masked_probe_pairs(val, seed=0)
    n_genuine = 0
    for r in range(len(val)):
        for p in range(len(val)):
            n_genuine += (val.variant[r] == "unmasked" and val.variant[p] != "unmasked"
                          and val.identity[r] == val.identity[p] and val.image_id[r] != val.image_id[p])
    assert pairs.n_genuine == n_genuine == 30 * 3 * 2 * 2  # 3 refs x (2 other images x 2 masks)
    n_refs, n_probes = 90, 180
    assert pairs.n_impostor == min(20 * n_genuine, n_refs * n_probes - 30 * 3 * 6)
    for r, p, g in zip(pairs.ref, pairs.probe, pairs.genuine):
        assert val.variant[r] == "unmasked" and val.variant[p] in MASKS
        assert (val.identity[r] == val.identity[p]) == g
        assert val.image_id[r] != val.image_id[p]
    assert len(set(zip(pairs.ref.tolist(), pairs.probe.tolist()))) == pairs.ref.size
    again = masked_probe_pairs(val, seed=0)
    assert np.array_equal(again.ref, pairs.ref) and np.array_equal(again.probe, pairs.probe)


# ---------------------------------------------------------------------------------------------
# training


def test_training_lowers_val_masked_probe_eer(problem, trained):
    _, val = problem
    curve = trained.curve
    assert list(curve.columns) == ["epoch", "loss", "val_eer", "val_genuine", "val_impostor", "val_unmasked_eer"]
    assert curve["epoch"].tolist() == list(range(FAST["epochs"] + 1))
    assert np.isnan(curve["loss"][0]) and curve["loss"][1:].notna().all()
    base = trained.meta["base_val_eer"]
    assert curve["val_eer"][0] == pytest.approx(base, abs=1e-3)  # untrained head = base model
    assert trained.meta["best_val_eer"] < 0.6 * base
    limit = trained.meta["base_val_unmasked_eer"] + 0.05
    allowed = curve[curve["val_unmasked_eer"] <= limit]
    assert trained.best_epoch == int(allowed["val_eer"].idxmin()) > 0
    assert trained.meta["best_val_unmasked_eer"] <= limit and trained.meta["unmasked_constraint_met"]
    # recompute the kept head's EER independently from the same pairs
    pairs = masked_probe_pairs(val, seed=5)
    with torch.no_grad():
        y = trained.head.eval()(torch.tensor(val.vectors)).double().numpy()
    scores = np.einsum("ij,ij->i", y[pairs.ref], y[pairs.probe])
    kept = metrics.eer(scores[pairs.genuine], scores[~pairs.genuine]).eer
    assert kept == pytest.approx(curve["val_eer"][trained.best_epoch], abs=1e-9)
    assert curve["val_genuine"][0] == pairs.n_genuine and curve["val_impostor"][0] == pairs.n_impostor


def test_under_a_distance_the_untrained_head_scores_as_its_base(problem):
    """Scored with neg_l2 (dlib's score), the base's val EER is that of its raw embeddings, as the
    tables report it, and epoch 0 (the untrained head, its output at the input's length) is
    exactly the base: the unmasked limit is the base's reported EER plus the tolerance."""
    from maskbench.evaluation.scoring import pair_scores

    train, val = problem
    scaled = EmbeddingSet(val.vectors * np.linspace(0.5, 2.0, len(val.vectors), dtype=np.float32)[:, None],
                          val.image_id, val.identity, val.variant)  # lengths that carry information
    result = train_projection_head(train, scaled, {**FAST, "epochs": 1}, seed=5, score="neg_l2")
    pairs = masked_probe_pairs(scaled, seed=5)
    raw = pair_scores(scaled.vectors[pairs.ref], scaled.vectors[pairs.probe], "neg_l2")
    base = metrics.eer(raw[pairs.genuine], raw[~pairs.genuine]).eer
    assert result.meta["base_val_eer"] == pytest.approx(base, abs=1e-12)
    assert result.curve["val_eer"][0] == pytest.approx(base, abs=1e-12)
    cosine = train_projection_head(train, scaled, {**FAST, "epochs": 1}, seed=5)
    assert cosine.meta["base_val_eer"] != pytest.approx(base, abs=1e-3)  # lengths ignored: another EER
    untrained = ProjectionHead(DIM, DIM, FAST["hidden"])
    np.testing.assert_allclose(embed_with_head(untrained, scaled.vectors, keep_norm=True), scaled.vectors, atol=1e-5)


@pytest.mark.parametrize("loss", [{"kind": "supcon"}, {"kind": "arcface", "scale": 16.0, "margin": 0.2},
                                  {"kind": "triplet"}])
def test_every_loss_trains(problem, loss):
    train, val = problem
    result = train_projection_head(train, val, {**FAST, "loss": loss, "epochs": 6}, seed=1)
    assert result.meta["best_val_eer"] < 0.9 * result.meta["base_val_eer"]


def test_training_is_deterministic(problem, trained):
    train, val = problem
    again = train_projection_head(train, val, FAST, seed=5)
    assert head_bytes(again.head, {}) == head_bytes(trained.head, {})
    assert again.curve["val_eer"].tolist() == trained.curve["val_eer"].tolist()
    other = train_projection_head(train, val, {**FAST, "epochs": 1}, seed=6)
    assert head_bytes(other.head, {}) != head_bytes(trained.head, {})


def test_best_epoch_ties_go_to_the_earliest_and_epoch_0_is_the_base(problem, monkeypatch):
    train, val = problem
    # (masked, unmasked) of the base, then epochs 0..3
    eers = iter([0.30, 0.05, 0.30, 0.05, 0.35, 0.05, 0.30, 0.05, 0.40, 0.05])
    monkeypatch.setattr(train_head, "pair_eer", lambda embedded, pairs, **_: next(eers))
    result = train_projection_head(train, val, {**FAST, "epochs": 3}, seed=1)
    assert result.best_epoch == 0
    x = val.vectors[:20]
    with torch.no_grad():
        y = result.head(torch.tensor(x)).numpy()
    np.testing.assert_allclose(y @ y.T, _cosine(x, x), atol=1e-6)  # the untrained head came back


def test_epoch_choice_never_gives_away_unmasked_accuracy(problem, monkeypatch):
    train, val = problem
    # (masked, unmasked) of the base, then epochs 0..4: epoch 2 is best masked but 0.003 worse unmasked,
    # epoch 3 is within the 0.002 tolerance, epoch 4 better on both but its masked EER is NaN (diverged)
    eers = iter([0.30, 0.050, 0.30, 0.050, 0.25, 0.051, 0.10, 0.053, 0.20, 0.052, float("nan"), 0.04])
    monkeypatch.setattr(train_head, "pair_eer", lambda embedded, pairs, **_: next(eers))
    result = train_projection_head(train, val, {**FAST, "epochs": 4, "unmasked_tolerance": 0.002}, seed=1)
    assert result.best_epoch == 3
    assert result.curve["val_unmasked_eer"].tolist() == [0.050, 0.051, 0.053, 0.052, 0.04]
    assert result.meta["unmasked_limit"] == pytest.approx(0.052)
    eers = iter([0.30, 0.050, 0.30, 0.050, 0.25, 0.051, 0.10, 0.053, 0.20, 0.052])
    wide = train_projection_head(train, val, {**FAST, "epochs": 3, "unmasked_tolerance": 0.01}, seed=1)
    assert wide.best_epoch == 2


def test_choose_epoch_rules():
    from maskbench.training.selection import choose_epoch

    # no unmasked pairs on val: masked EER alone
    unchecked = choose_epoch([0, 1, 2], [0.3, 0.2, 0.25], [None] * 3, None, 0.002)
    assert unchecked.epoch == 1 and unchecked.constraint_met is None  # no limit: not checked, not passed
    assert choose_epoch([0, 1], [float("nan")] * 2, [0.1, 0.2], None, 0.002).constraint_met is None
    # nothing within the limit (a reducing head's epoch 0 is not its base): lowest unmasked, flagged
    choice = choose_epoch([0, 1, 2], [0.3, 0.2, 0.25], [0.09, 0.08, 0.07], 0.05, 0.002)
    assert (choice.epoch, choice.constraint_met) == (2, False)
    # a non-candidate epoch 0 (a randomly initialised backbone) is never kept
    assert choose_epoch([0, 1], [0.1, 0.2], [0.05, 0.05], 0.05, 0.0, candidates=[False, True]).epoch == 1
    with pytest.raises(ValueError, match="unmasked_tolerance"):
        choose_epoch([0], [0.1], [0.1], 0.1, -1)
    with pytest.raises(ValueError, match="unmasked_tolerance"):
        train_head.resolve_spec({"loss": {"kind": "supcon"}, "unmasked_tolerance": "x"}, 8)


def test_unmasked_val_pairs_each_pair_once(problem):
    _, val = problem
    pairs = train_head.unmasked_pairs(val, seed=3)
    variant = np.array(val.variant)
    assert (variant[pairs.ref] == "unmasked").all() and (variant[pairs.probe] == "unmasked").all()
    ident = np.array(val.identity)
    assert (ident[pairs.ref] == ident[pairs.probe]).tolist() == pairs.genuine.tolist()
    assert (pairs.ref < pairs.probe).all()  # never an image with itself, each unordered pair once
    assert len(set(zip(pairs.ref.tolist(), pairs.probe.tolist()))) == pairs.ref.size
    assert pairs.n_genuine == 30 * 3  # 30 people x C(3, 2)
    assert 0 < pairs.n_impostor <= 20 * pairs.n_genuine
    assert train_head.unmasked_pairs(synthetic(4, 1, 0, "u"), seed=3) is None  # nobody has two images


def test_training_errors(problem):
    train, val = problem
    one = synthetic(1, 3, 0, "o")
    with pytest.raises(ValueError, match="at least 2 identities"):
        train_projection_head(one, val, FAST, seed=0)
    single_images = synthetic(4, 1, 0, "u")  # no identity has two images: no genuine pair
    with pytest.raises(ValueError, match="val has no genuine masked-probe pair"):
        train_projection_head(train, single_images, FAST, seed=0)
    with pytest.raises(ValueError, match=r"unknown train option\(s\) \['epoch'\]"):
        train_projection_head(train, val, {**FAST, "epoch": 3}, seed=0)
    with pytest.raises(ValueError, match="val 12"):
        train_projection_head(train, EmbeddingSet(np.zeros((1, 12)), ["a"], ["b"], ["unmasked"]), FAST, seed=0)
    with pytest.raises(ValueError, match="not finite"):
        EmbeddingSet(np.full((1, 3), np.nan), ["a"], ["b"], ["unmasked"])


# ---------------------------------------------------------------------------------------------
# workflow stages over Parquet manifests


def _write_dataset(root: Path, dataset: str, data_by_part: dict[str, EmbeddingSet],
                   nan_part: str | None = None, failed: tuple[str, ...] = ()) -> tuple[dict[str, list[str]], str]:
    """Embedding shards (2 per variant) and an identity split file, as the workflow lays them out.
    Vectors of ``nan_part`` are written as NaN (reading them would fail); ``failed`` images get a
    non-ok status."""
    rows, split = [], {}
    for part, data in data_by_part.items():
        for i in range(len(data)):
            vec = data.vectors[i] if part != nan_part else np.full(data.dim, np.nan, np.float32)
            rows.append((data.image_id[i], data.variant[i], vec))
            split[data.image_id[i]] = (data.identity[i], part)
    shard_of = {image_id: k % 2 for k, image_id in enumerate(sorted(split))}
    paths: dict[str, list[str]] = {}
    for variant in sorted({r[1] for r in rows}):
        for shard in range(2):
            chosen = [r for r in rows if r[1] == variant and shard_of[r[0]] == shard]
            path = root / "results" / dataset / "embeddings" / "base" / variant / f"shard-{shard}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            status = ["failed" if r[0] in failed else "ok" for r in chosen]
            pq.write_table(pa.Table.from_pydict(
                {"image_id": [r[0] for r in chosen], "status": status,
                 "embedding": [None if s != "ok" else r[2].tolist() for r, s in zip(chosen, status)]},
                schema=embedding_schema(DIM)), path)
            paths.setdefault(variant, []).append(str(path))
    split_path = root / "results" / dataset / "splits" / "identity.parquet"
    split_path.parent.mkdir(parents=True, exist_ok=True)
    ids = sorted(split)
    pq.write_table(pa.Table.from_pydict({"image_id": ids, "identity": [split[i][0] for i in ids],
                                         "split": [split[i][1] for i in ids]}, schema=SPLITS_SCHEMA), split_path)
    return paths, str(split_path)


def test_read_parts_selects_a_part_and_keeps_datasets_apart(tmp_path):
    a = {"train": synthetic(3, 2, 0, "p", masks=("surgical",)), "val": synthetic(2, 2, 1, "q", masks=("surgical",))}
    b = {"train": synthetic(2, 2, 2, "p", masks=("surgical",))}  # the same identity names as dataset a
    paths_a, split_a = _write_dataset(tmp_path, "one", a, failed=("p0/0.jpg",))
    paths_b, split_b = _write_dataset(tmp_path, "two", b)
    single = read_parts(paths_a, [split_a], ["train"])["train"]
    assert len(single) == 3 * 2 * 2 - 2  # the failed image's two variants are gone
    assert "p0/0.jpg" not in single.image_id and set(single.identity) == {"p0", "p1", "p2"}
    expected = {(i, v): a["train"].vectors[k] for k, (i, v) in enumerate(zip(a["train"].image_id, a["train"].variant))}
    for k, key in enumerate(zip(single.image_id, single.variant)):
        np.testing.assert_array_equal(single.vectors[k], expected[key])
    both = read_parts([paths_a, paths_b], [split_a, split_b], ["train"], datasets=["one", "two"])["train"]
    assert len(both) == len(single) + 2 * 2 * 2
    assert len(set(both.identity)) == 5  # "p0" of each dataset stays two people
    assert {i.split("/")[0] for i in both.identity} == {"one", "two"}
    with pytest.raises(ValueError, match="name their datasets"):
        read_parts([paths_a, paths_b], [split_a, split_b], ["train"])  # never guessed from paths


def test_train_head_step_writes_head_curve_and_report(tmp_path, problem):
    train, val = problem
    test = synthetic(5, 2, 9, "x")
    paths, split = _write_dataset(tmp_path, "syn", {"train": train, "val": val, "test": test}, nan_part="test")
    out = tmp_path / "out"
    spec = {**FAST, "epochs": 2, "datasets": ["syn"], "variants": ["masked"]}
    report = train_head_step([paths], [split], ["syn"], spec, "base", 3, 1, str(out / "head.safetensors"),
                             str(out / "curve.parquet"), str(out / "report.json"))
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report))
    assert report["images"]["train"]["images"] == 180 and report["images"]["val"]["identities"] == 30
    assert report["images"]["train"]["by_variant"]["surgical"] == {"images": 180, "identities": 60}
    assert "test" not in report["images"]  # test vectors are NaN: reading them would have failed
    curve = pq.read_table(out / "curve.parquet")
    assert curve.schema == CURVE_SCHEMA and curve.num_rows == 3
    assert report["best_val_eer"] == min(curve["val_eer"].to_pylist())
    head, meta = load_head(out / "head.safetensors")
    assert meta["base_model"] == "base" and meta["datasets"] == ["syn"] and meta["train"]["loss"]["margin"] == 0.2
    assert report["unmasked_limit"] == pytest.approx(report["base_val_unmasked_eer"] + FAST["unmasked_tolerance"])
    assert curve["val_unmasked_eer"].to_pylist()[report["best_epoch"]] <= report["unmasked_limit"]
    training_curve_figure(str(out / "curve.parquet"), "syn", str(out / "curve.png"),
                          unmasked_limit=report["unmasked_limit"])
    first = (out / "curve.png").read_bytes()
    assert first[:4] == b"\x89PNG" and (out / "curve.pdf").read_bytes()[:4] == b"%PDF"
    training_curve_figure(str(out / "curve.parquet"), "syn", str(out / "curve.png"),
                          unmasked_limit=report["unmasked_limit"])
    assert (out / "curve.png").read_bytes() == first


def test_train_head_step_refuses_identity_leakage(tmp_path, problem):
    train, val = problem
    leaked = EmbeddingSet(val.vectors[:3], ["extra.jpg"] * 3, [train.identity[0]] * 3, val.variant[:3])
    merged = EmbeddingSet(np.vstack([val.vectors, leaked.vectors]), val.image_id + leaked.image_id,
                          val.identity + leaked.identity, val.variant + leaked.variant)
    paths, split = _write_dataset(tmp_path, "syn", {"train": train, "val": merged})
    with pytest.raises(ValueError, match=r"identity 't0' of dataset 'syn' is in both train and val"):
        train_head_step([paths], [split], ["syn"], FAST, "base", 0, 1, str(tmp_path / "h"), str(tmp_path / "c"),
                        str(tmp_path / "r"))
    assert not (tmp_path / "h").exists()


def test_project_embeddings(tmp_path, trained):
    head_path = tmp_path / "head.safetensors"
    save_head(head_path, trained.head, {"base_model": "base"})
    x = np.random.default_rng(0).normal(size=(4, DIM)).astype(np.float32)
    base = tmp_path / "base.parquet"
    pq.write_table(pa.Table.from_pydict(
        {"image_id": ["a", "b", "c", "d"], "status": ["ok", "not_embedded", "ok", "non_finite"],
         "embedding": [x[0].tolist(), None, x[2].tolist(), None]}, schema=embedding_schema(DIM)), base)
    counts = project_embeddings(str(base), str(head_path), str(tmp_path / "out.parquet"), threads=1)
    assert counts == {"non_finite": 1, "not_embedded": 1, "ok": 2}
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.schema == embedding_schema(DIM)
    assert out["status"].to_pylist() == ["ok", "not_embedded", "ok", "non_finite"]
    emb = out["embedding"].to_pylist()
    assert emb[1] is None and emb[3] is None
    with torch.no_grad():
        expected = trained.head.eval()(torch.tensor(x[[0, 2]])).numpy()
    # the head's direction at the base embedding's length
    expected = expected * np.linalg.norm(x[[0, 2]], axis=1, keepdims=True)
    np.testing.assert_allclose(np.array([emb[0], emb[2]]), expected, rtol=1e-6, atol=1e-6)
    wrong = tmp_path / "wrong.parquet"
    pq.write_table(pa.Table.from_pydict({"image_id": ["a"], "status": ["ok"], "embedding": [[0.0] * 5]},
                                        schema=embedding_schema(5)), wrong)
    with pytest.raises(ValueError, match="dim 5, but head"):
        project_embeddings(str(wrong), str(head_path), str(tmp_path / "o2.parquet"), threads=1)


def test_workflow_scripts_run_with_snakemake_inputs(tmp_path, problem, monkeypatch):
    """The thin scripts, run as Snakemake would (a `snakemake` object in their globals)."""
    import runpy
    from types import SimpleNamespace

    train, val = problem
    monkeypatch.chdir(tmp_path)
    paths, split = _write_dataset(Path("."), "syn", {"train": train, "val": val})
    scripts = Path(__file__).resolve().parents[1] / "workflow" / "scripts"
    out = Path("results/models/proj")
    train_job = SimpleNamespace(
        input=SimpleNamespace(embeddings=[p for v in paths.values() for p in v], splits=[split]),
        params=SimpleNamespace(spec={**FAST, "epochs": 1, "datasets": ["syn"]}, base="base", datasets=["syn"], seed=0,
                               score="neg_l2", base_score="neg_l2",
                               torch_threads=1, embeddings=[{v: list(p) for v, p in paths.items()}]),
        threads=1, log=[str(out / "train.log")],
        output=SimpleNamespace(model=str(out / "head.safetensors"), curve=str(out / "curve.parquet"),
                               report=str(out / "report.json")))
    runpy.run_path(str(scripts / "train_head.py"), init_globals={"snakemake": train_job})
    assert json.loads((out / "report.json").read_text())["datasets"] == ["syn"]
    figure_job = SimpleNamespace(input=SimpleNamespace(curve=str(out / "curve.parquet"),
                                                       report=str(out / "report.json")),
                                 wildcards=SimpleNamespace(model="proj"), log=[str(out / "figure.log")],
                                 output=[str(out / "curve.png")])
    runpy.run_path(str(scripts / "training_figure.py"), init_globals={"snakemake": figure_job})
    assert (out / "curve.png").is_file() and (out / "curve.pdf").is_file()
    project_job = SimpleNamespace(
        input=SimpleNamespace(base=paths["surgical"][0], head=str(out / "head.safetensors")),
        threads=1, log=[str(out / "project.log")], output=[str(out / "shard-0.parquet")])
    runpy.run_path(str(scripts / "project.py"), init_globals={"snakemake": project_job})
    projected = pq.read_table(out / "shard-0.parquet")
    assert projected["image_id"].to_pylist() == pq.read_table(paths["surgical"][0])["image_id"].to_pylist()


def test_training_figure_without_any_val_eer(tmp_path):
    """A fine-tuning run whose val part gave no pairs has no EER: the figure still draws, unmarked."""
    import pyarrow as pa

    curve = tmp_path / "curve.parquet"
    pq.write_table(pa.table({"epoch": pa.array([0, 1, 2], pa.int32()), "loss": [None, 0.9, 0.7],
                             "val_eer": pa.array([None, None, None], pa.float64())}), curve)
    training_curve_figure(str(curve), "no val", str(tmp_path / "c.png"), kept_epoch=2)
    assert (tmp_path / "c.png").stat().st_size > 0 and (tmp_path / "c.pdf").stat().st_size > 0


def test_unmasked_drift_term_is_zero_for_the_base_and_grows_as_unmasked_faces_move():
    x = torch.tensor(np.random.default_rng(0).normal(size=(6, DIM)), dtype=torch.float32)
    bare = torch.tensor([True, True, True, False, False, True])
    with torch.no_grad():  # values only: float() of a tensor that needs grad warns
        head = ProjectionHead(DIM, DIM, 16).eval()
        assert float(train_head.unmasked_similarity_drift(head(x), x, bare)) == pytest.approx(0.0, abs=1e-6)
        moved = torch.nn.functional.normalize(head(x) + 0.5 * torch.roll(head(x), 1, dims=1), dim=1)
        assert float(train_head.unmasked_similarity_drift(moved, x, bare)) > 0.01
        assert float(train_head.unmasked_similarity_drift(moved, x, torch.tensor([True] + [False] * 5))) == 0.0
        reduced = ProjectionHead(DIM, 8, 16).eval()
        reduced.init_skip(x.numpy())
        assert float(train_head.unmasked_similarity_drift(reduced(x), x, bare)) > 0  # a smaller space: similarities
