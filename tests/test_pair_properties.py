"""Invariants of every protocol's manifests over random identity layouts (hypothesis), through
the stage functions that write them: no image with itself or its own masked copy, impostors
never share an identity (genuine pairs always do), every image is a usable image of the split
part, the report's counts are the manifest's, and the same seed gives the same bytes."""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maskbench.io.atomic import write_table
from maskbench.stages.identify import build_identification
from maskbench.protocols.pairs import ProtocolError
from maskbench.stages.pairs import build_pairs
from maskbench.protocols.splits import identity_split, split_table

COMPARISONS = [("unmasked", "unmasked"), ("unmasked", "surgical"), ("surgical", "surgical")]
RATIOS = {"train": 0.4, "val": 0.2, "test": 0.4}
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def datasets(draw):
    """(usable image -> identity or None, unusable image ids, seed, use an identity split?)."""
    sizes = draw(st.lists(st.integers(1, 5), min_size=2, max_size=10))
    images: dict[str, str | None] = {
        f"id{i:02d}/img_{k}.jpg": f"id{i:02d}" for i, n in enumerate(sizes) for k in range(n)
    }
    images.update({f"none/img_{k}.jpg": None for k in range(draw(st.integers(0, 2)))})
    unusable = [f"id00/failed_{k}.jpg" for k in range(draw(st.integers(0, 2)))]
    return images, unusable, draw(st.integers(0, 2**32 - 1)), draw(st.booleans())


def write_inputs(folder: Path, images: dict, unusable: list[str], seed: int, use_split: bool):
    """The aligned shard, the split manifest (or None) and the images the protocol may use."""
    ids = list(images) + unusable
    pq.write_table(pa.table({
        "image_id": ids,
        "identity": [images.get(i, "id00") for i in ids],
        "status": ["ok"] * len(images) + ["no_face"] * len(unusable),
    }), folder / "aligned.parquet")
    if not use_split:
        return str(folder / "aligned.parquet"), None, images
    split = identity_split(images, RATIOS, seed)
    write_table(folder / "split.parquet", split_table(split, images))
    part = {i: v for i, v in images.items() if split.assignment[i] == "test"}
    return str(folder / "aligned.parquet"), str(folder / "split.parquet"), part


def protocol_for(kind: str, use_split: bool, images: dict) -> dict:
    protocol: dict = {"kind": kind, "folds": 3}
    if kind == "dicta1000":
        protocol["n_pairs"] = 2 * max(1, min(len(images) // 2, 10))
    if kind == "all_vs_all" and len(images) > 8:
        protocol["max_impostors"] = 10
    if use_split:
        protocol["split"] = {"strategy": "identity", "part": "test"}
    return protocol


def buildable(kind: str, images: dict, n_pairs: int | None = None) -> bool | None:
    """Whether the layout has what the protocol needs (the condition its ProtocolError names);
    None where that depends on the draws (dicta1000 keeps distinct pairs only: between half and
    all of the per-image draws)."""
    sizes = Counter(v for v in images.values() if v is not None)
    if kind == "all_identities":
        return len(sizes) >= 2 and sum(n >= 2 for n in sizes.values()) >= 2
    if kind == "all_vs_all":
        return len(sizes) >= 2 and any(n >= 2 for n in sizes.values())
    if kind == "dicta1000":
        genuine = sum(n for n in sizes.values() if n >= 2)
        impostor = sum(sizes.values()) if len(sizes) >= 2 else 0
        if min(genuine, impostor) < n_pairs // 2:
            return False
        return True if min(-(-genuine // 2), -(-impostor // 2)) >= n_pairs // 2 else None
    raise AssertionError(kind)


def check_manifest(table: pa.Table, report: dict, images: dict, n_comparisons: int) -> None:
    rows = table.to_pylist()
    assert report["rows"] == len(rows) == report["image_pairs"] * n_comparisons
    for r in rows:
        assert r["ref_image"] != r["probe_image"]  # never itself, never its own masked copy
        assert r["ref_image"] in images and r["probe_image"] in images  # usable, in the part
        same = images[r["ref_image"]] == images[r["probe_image"]] and images[r["ref_image"]] is not None
        assert r["genuine"] == same
    per_comparison = Counter((r["ref_variant"], r["probe_variant"], r["genuine"]) for r in rows)
    for name, counts in report["per_comparison"].items():
        ref, probe = name.split("-vs-")
        assert per_comparison[(ref, probe, True)] == counts["genuine"]
        assert per_comparison[(ref, probe, False)] == counts["impostor"]
    first = [r for r in rows if (r["ref_variant"], r["probe_variant"]) == COMPARISONS[0]]
    per_fold = Counter((str(r["fold"]), "genuine" if r["genuine"] else "impostor") for r in first)
    assert {(f, c): n for f, v in report["per_fold"].items() for c, n in v.items() if n} == dict(per_fold)
    assert [r["pair_id"] for r in rows] == list(range(len(rows)))


@pytest.mark.parametrize("kind", ["all_identities", "dicta1000", "all_vs_all"])
@SETTINGS
@given(data=datasets())
def test_verification_manifest_invariants(kind, data):
    images, unusable, seed, use_split = data
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        aligned, split, usable = write_inputs(folder, images, unusable, seed, use_split)
        protocol = protocol_for(kind, use_split, usable)

        def build(name: str) -> dict:
            return build_pairs([aligned], protocol, COMPARISONS, seed, "unused.json", folder / f"{name}.parquet",
                               folder / f"{name}.json", split_path=split)

        can = bool(usable) and buildable(kind, usable, protocol.get("n_pairs"))
        if can is False:
            with pytest.raises(ProtocolError):
                build("a")
            return
        try:
            report = build("a")
        except ProtocolError as exc:
            assert can is None and "distinct" in str(exc), exc
            return
        check_manifest(pq.read_table(folder / "a.parquet"), report, usable, len(COMPARISONS))
        if kind == "all_vs_all" and "max_impostors" not in protocol:
            ids = [i for i, v in usable.items() if v is not None]
            assert report["image_pairs"] == math.comb(len(ids), 2)
        build("b")
        assert (folder / "a.parquet").read_bytes() == (folder / "b.parquet").read_bytes()
        assert (folder / "a.json").read_bytes() == (folder / "b.json").read_bytes()


@SETTINGS
@given(data=datasets(), gallery_size=st.integers(1, 2), unknown=st.sampled_from([0.0, 0.25, 0.5]),
       too_few=st.sampled_from(["left_out", "unknown"]))
def test_identification_manifest_invariants(data, gallery_size, unknown, too_few):
    images, unusable, seed, use_split = data
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        aligned, split, usable = write_inputs(folder, images, unusable, seed, use_split)
        protocol = {"kind": "identification", "gallery_size": gallery_size, "unknown_fraction": unknown,
                    "too_few_images": too_few}
        if use_split:
            protocol["split"] = {"strategy": "identity", "part": "test"}

        def build(name: str) -> dict:
            return build_identification([aligned], protocol, seed, str(folder / f"{name}_g.parquet"),
                                        str(folder / f"{name}_p.parquet"), str(folder / f"{name}.json"), split)

        sizes = Counter(v for v in usable.values() if v is not None)
        eligible = sum(n > gallery_size for n in sizes.values())
        n_unknown = max(1, math.floor(unknown * eligible + 0.5)) if unknown else 0
        if not usable or eligible - n_unknown < 2:
            with pytest.raises(ProtocolError):
                build("a")
            return
        report = build("a")
        gallery = pq.read_table(folder / "a_g.parquet").to_pylist()
        probes = pq.read_table(folder / "a_p.parquet").to_pylist()
        enrolled = Counter(g["identity"] for g in gallery)
        assert set(enrolled.values()) == {gallery_size}
        assert len(enrolled) == report["enrolled_identities"] == eligible - n_unknown
        gallery_images = {g["image_id"] for g in gallery}
        for p in probes:
            assert p["image_id"] not in gallery_images  # never searched against its own copy
            assert p["mated"] == (p["identity"] in enrolled)
        for row in gallery + probes:
            assert usable[row["image_id"]] == row["identity"]  # usable, in the part, right identity
        assert report["mated_probes"] == sum(p["mated"] for p in probes)
        assert report["non_mated_probes"] == sum(not p["mated"] for p in probes)
        unknown_people = {p["identity"] for p in probes if not p["mated"]}
        few = {n for n, k in sizes.items() if k <= gallery_size}
        assert unknown_people & few == (few if too_few == "unknown" else set())
        assert len(unknown_people - few) == n_unknown
        assert sum(not p["mated"] for p in probes) == sum(v in unknown_people for v in usable.values())
        build("b")
        for suffix in ("_g.parquet", "_p.parquet", ".json"):
            assert (folder / f"a{suffix}").read_bytes() == (folder / f"b{suffix}").read_bytes()
