"""The manifest readers (maskbench.io.readers) and the checkpoint metadata reader (maskbench.io.checkpoints)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from maskbench.io.checkpoints import read_checkpoint_metadata, safetensors_metadata
from maskbench.io.manifests import embedding_schema
from maskbench.io.readers import (
    embedding_matrix,
    inside,
    load_embeddings,
    read_aligned,
    read_shard,
    read_split,
    split_parts,
)


def _aligned(tmp_path, name, rows, real=None):
    data = {"image_id": [r[0] for r in rows], "identity": [r[1] for r in rows], "status": [r[2] for r in rows]}
    if real is not None:
        data["real_mask"] = real
    path = tmp_path / name
    pq.write_table(pa.table(data), path)
    return str(path)


def test_aligned_shards_give_identities_usable_images_and_real_masks(tmp_path):
    old = _aligned(tmp_path, "a.parquet", [("a/1", "a", "ok"), ("a/2", "a", "no_face")])  # before real_mask existed
    new = _aligned(tmp_path, "b.parquet", [("b/1", "b", "fallback"), ("b/2", "b", "ok"), ("b/3", None, "error"),
                                           ("b/4", "b", "no_face")], real=[True, False, None, True])
    aligned = read_aligned([old, new])
    assert aligned.every == ["a/1", "a/2", "b/1", "b/2", "b/3", "b/4"]
    assert aligned.identity == {"a/1": "a", "a/2": "a", "b/1": "b", "b/2": "b", "b/3": None, "b/4": "b"}
    assert aligned.usable == {"a/1": "a", "b/1": "b", "b/2": "b"}
    assert aligned.real_masked == {"b/1"}  # b/4 is real-masked but not usable
    assert aligned.unusable == 3
    assert read_shard(old, ["image_id"], optional=["real_mask"]).column_names == ["image_id"]
    assert read_shard(new, ["image_id"], optional=["real_mask"]).column_names == ["image_id", "real_mask"]


def test_split_manifest_gives_part_and_identity(tmp_path):
    path = tmp_path / "split.parquet"
    pq.write_table(pa.table({"image_id": ["c", "a", "b", "d"], "identity": ["x", "y", None, "x"],
                             "split": ["test", "train", "train", "val"]}), path)
    assert read_split(path) == {"c": ("test", "x"), "a": ("train", "y"), "b": ("train", None), "d": ("val", "x")}
    assert split_parts(path) == {"train": ["a", "b"], "val": ["d"], "test": ["c"]}
    assert split_parts(path, ("val",)) == {"val": ["d"]}


def _embeddings(tmp_path, name, ids, statuses, dim):
    rng = np.random.default_rng(len(ids))
    vectors = [rng.normal(size=dim).astype(np.float32).tolist() if s == "ok" else None for s in statuses]
    path = tmp_path / name
    pq.write_table(pa.Table.from_pydict({"image_id": ids, "status": statuses, "embedding": vectors},
                                        schema=embedding_schema(dim)), path)
    return str(path), vectors


def test_embeddings_keep_ok_rows_as_float32_and_refuse_mixed_widths(tmp_path):
    a, va = _embeddings(tmp_path, "a.parquet", ["a1", "a2"], ["ok", "not_embedded"], 4)
    b, vb = _embeddings(tmp_path, "b.parquet", ["b1"], ["ok"], 4)
    vectors = load_embeddings([a, b])
    assert sorted(vectors) == ["a1", "b1"]
    assert all(v.dtype == np.float32 for v in vectors.values())
    np.testing.assert_array_equal(vectors["b1"], np.asarray(vb[0], np.float32))
    ids, matrix = embedding_matrix([a, b])
    assert ids.to_pylist() == ["a1", "b1"] and matrix.dtype == np.float64
    assert embedding_matrix([a, b], float64_up_to=0)[1].dtype == np.float32
    c, _ = _embeddings(tmp_path, "c.parquet", ["c1"], ["ok"], 3)
    with pytest.raises(ValueError, match="embeddings of width 3, other shards have 4"):
        load_embeddings([a, c])
    assert load_embeddings([]) == {}


def test_image_paths_may_not_leave_the_dataset_folder(tmp_path):
    assert inside(tmp_path, "x/y.jpg") == tmp_path / "x" / "y.jpg"
    for bad in ("../y.jpg", "/etc/passwd"):
        with pytest.raises(ValueError, match="escapes the dataset folder"):
            inside(tmp_path, bad)


def test_checkpoint_metadata_is_read_without_torch_and_checked(tmp_path):
    path = tmp_path / "model.safetensors"
    meta = {"format": "maskbench.thing/1", "dim": 8}
    save_file({"w": np.zeros(3, np.float32)}, str(path), metadata={"maskbench": json.dumps(meta), "other": "x"})
    with safe_open(str(path), framework="numpy") as f:
        assert safetensors_metadata(path) == f.metadata()
    assert read_checkpoint_metadata(path, "maskbench.thing/1", "maskbench thing", "make one") == meta
    with pytest.raises(ValueError, match=r"is not a maskbench thing \(format 'maskbench.thing/1', expected 'other/1'\)"):
        read_checkpoint_metadata(path, "other/1", "maskbench thing", "make one")
    with pytest.raises(FileNotFoundError, match="maskbench thing .*missing.safetensors not found: make one"):
        read_checkpoint_metadata(tmp_path / "missing.safetensors", "x", "maskbench thing", "make one")
    bare = tmp_path / "bare.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(bare))
    with pytest.raises(ValueError, match="format None"):
        read_checkpoint_metadata(bare, "x", "maskbench thing", "make one")
    for junk in (b"\x10\x00\x00\x00\x00\x00\x00\x00not json", b"\x01\x02", b"\xff" * 8 + b"{}"):
        (tmp_path / "junk").write_bytes(junk)
        with pytest.raises(ValueError, match="is not a maskbench thing"):
            read_checkpoint_metadata(tmp_path / "junk", "x", "maskbench thing", "make one")
