"""The embed stage's table: statuses per chip, vectors exact, and the same bytes as a table built
row by row from Python lists (the output format must not depend on how it is assembled)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import maskbench.stages.embed as stage
from maskbench.io.atomic import write_table
from maskbench.io.chips import decode_chip, decode_chips, encode_chip
from maskbench.io.manifests import embedding_schema


class FakeEmbedder:
    """A vector from each chip's pixels; a NaN for the chip whose first pixel is 13."""

    dim = 4

    def embed(self, chips: np.ndarray) -> np.ndarray:
        out = chips.reshape(len(chips), -1)[:, :4].astype(np.float32) / 7.0
        out[chips[:, 0, 0, 0] == 13, 1] = np.nan
        return out


def chips_table(path, pixels: list[int], statuses: list[str]) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    images = []
    for p in pixels:
        img = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
        img[0, 0, 0] = p
        images.append(img)
    write_table(path, pa.table({"image_id": [f"id{k}" for k in range(len(pixels))], "status": statuses,
                                "chip": [encode_chip(i) for i in images]}))
    return images


def test_embed_chips_statuses_vectors_and_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(stage, "make_embedder", lambda model, threads, cache_dir: FakeEmbedder())
    statuses = ["ok", "no_face", "masked", "ok", "fallback"]
    images = chips_table(tmp_path / "chips.parquet", [1, 2, 13, 4, 5], statuses)
    counts = stage.embed_chips(str(tmp_path / "chips.parquet"), {"kind": "fake"}, 1, str(tmp_path / "emb.parquet"))
    assert counts == {"non_finite": 1, "not_embedded": 1, "ok": 3}
    got = pq.read_table(tmp_path / "emb.parquet")
    assert got["status"].to_pylist() == ["ok", "not_embedded", "non_finite", "ok", "ok"]
    vectors = got["embedding"].to_pylist()
    assert vectors[1] is None and vectors[2] is None
    for k in (0, 3, 4):
        assert np.array_equal(np.float32(vectors[k]), FakeEmbedder().embed(images[k][None])[0])
    # The same content built from Python lists, as a reader would expect: identical bytes.
    reference = pa.Table.from_pydict({"image_id": got["image_id"].to_pylist(), "status": got["status"].to_pylist(),
                                      "embedding": vectors}, schema=embedding_schema(4))
    write_table(tmp_path / "ref.parquet", reference)
    assert (tmp_path / "ref.parquet").read_bytes() == (tmp_path / "emb.parquet").read_bytes()


def test_a_chip_that_does_not_decode_gets_a_status_and_the_others_are_embedded(tmp_path, monkeypatch):
    """A truncated chip, a masked row without a chip and a chip of another size: each recorded as
    undecodable; the rest of the shard is embedded as it would be without them."""
    monkeypatch.setattr(stage, "make_embedder", lambda model, threads, cache_dir: FakeEmbedder())
    images = chips_table(tmp_path / "chips.parquet", [1, 2, 3, 4, 5], ["ok"] * 5)
    table = pq.read_table(tmp_path / "chips.parquet")
    chips = table["chip"].to_pylist()
    chips[1] = chips[1][:-10]
    chips[2] = None
    chips[3] = encode_chip(np.zeros((10, 20, 3), np.uint8))
    write_table(tmp_path / "bad.parquet", table.set_column(2, "chip", pa.array(chips, pa.binary())))
    counts = stage.embed_chips(str(tmp_path / "bad.parquet"), {"kind": "fake"}, 1, str(tmp_path / "emb.parquet"))
    assert counts == {"ok": 2, "undecodable": 3}
    got = pq.read_table(tmp_path / "emb.parquet")
    assert got["status"].to_pylist() == ["ok", "undecodable", "undecodable", "undecodable", "ok"]
    vectors = got["embedding"].to_pylist()
    assert vectors[1] is None and vectors[2] is None and vectors[3] is None
    for k in (0, 4):
        assert np.array_equal(np.float32(vectors[k]), FakeEmbedder().embed(images[k][None])[0])


def test_embed_chips_reads_every_shard_of_a_variant_in_order(tmp_path, monkeypatch):
    """One job embeds all shards of a variant: rows in shard order, the same vectors as one
    shard at a time, and an empty shard list is refused rather than written as an empty table."""
    monkeypatch.setattr(stage, "make_embedder", lambda model, threads, cache_dir: FakeEmbedder())
    chips_table(tmp_path / "a.parquet", [1, 2], ["ok", "ok"])
    write_table(tmp_path / "b.parquet", pq.read_table(tmp_path / "a.parquet").set_column(
        0, "image_id", pa.array(["id7", "id8"])))
    counts = stage.embed_chips([str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")], {"kind": "fake"}, 1,
                               str(tmp_path / "both.parquet"))
    assert counts == {"ok": 4}
    both = pq.read_table(tmp_path / "both.parquet")
    assert both["image_id"].to_pylist() == ["id0", "id1", "id7", "id8"]
    stage.embed_chips([str(tmp_path / "b.parquet")], {"kind": "fake"}, 1, str(tmp_path / "b_only.parquet"))
    assert both.slice(2).equals(pq.read_table(tmp_path / "b_only.parquet"))
    with pytest.raises(ValueError, match="no chip shard"):
        stage.embed_chips([], {"kind": "fake"}, 1, str(tmp_path / "none.parquet"))


def test_decode_chips_equals_one_by_one_and_is_lossless():
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (30, 30, 3), dtype=np.uint8) for _ in range(3)]
    data = [encode_chip(i) for i in images]
    batch = decode_chips(data)
    assert batch.shape == (3, 30, 30, 3)
    assert np.array_equal(batch, np.stack([decode_chip(d) for d in data]))
    assert np.array_equal(batch, np.stack(images))
    with pytest.raises(ValueError, match="differ in size"):
        decode_chips([data[0], encode_chip(images[0][:10])])


def test_a_shard_of_png_chips_from_an_older_run_gives_the_same_table(tmp_path, monkeypatch):
    import cv2

    monkeypatch.setattr(stage, "make_embedder", lambda model, threads, cache_dir: FakeEmbedder())
    images = chips_table(tmp_path / "new.parquet", [1, 2, 13], ["ok", "ok", "ok"])
    png = [cv2.imencode(".png", cv2.cvtColor(i, cv2.COLOR_RGB2BGR))[1].tobytes() for i in images]
    old = pq.read_table(tmp_path / "new.parquet")
    write_table(tmp_path / "old.parquet", old.set_column(old.schema.get_field_index("chip"), "chip",
                                                         pa.array(png, pa.binary())))
    for name in ("new", "old"):
        stage.embed_chips(str(tmp_path / f"{name}.parquet"), {"kind": "fake"}, 1, str(tmp_path / f"{name}_emb.parquet"))
    assert (tmp_path / "old_emb.parquet").read_bytes() == (tmp_path / "new_emb.parquet").read_bytes()
