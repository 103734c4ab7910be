"""Pair protocols: seeded, and free of leakage by construction and by check."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maskbench.io.manifests import PAIRS_SCHEMA
from maskbench.protocols.pairs import (
    ImagePair,
    ProtocolError,
    all_identities_pairs,
    check_pairs,
    dicta_pairs,
    lfw_view2_pairs,
    pairs_table,
    parse_lfw_pairs,
)


def make_images(sizes: list[int]) -> dict[str, str]:
    return {f"p{i:03d}/img_{k}.png": f"p{i:03d}" for i, n in enumerate(sizes) for k in range(n)}


def assert_invariants(pairs: list[ImagePair], images: dict[str, str]) -> None:
    for p in pairs:
        assert p.ref_image != p.probe_image
        assert (images[p.ref_image] == images[p.probe_image]) == p.genuine


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 6), min_size=3, max_size=25), seed=st.integers(0, 2**32))
def test_all_identities_invariants(sizes, seed):
    images = make_images(sizes)
    eligible = sum(n >= 2 for n in sizes)
    if eligible < 2:
        with pytest.raises(ProtocolError):
            all_identities_pairs(images, seed)
        return
    pairs = all_identities_pairs(images, seed, folds=3)
    assert len(pairs) == 2 * eligible
    assert Counter(p.genuine for p in pairs) == {True: eligible, False: eligible}
    assert_invariants(pairs, images)
    check_pairs(pairs, images)
    assert pairs == all_identities_pairs(images, seed, folds=3)  # seeded


def test_adding_an_identity_keeps_the_others_pairs():
    images = make_images([3, 4, 2, 5])
    before = {p.ref_image: p for p in all_identities_pairs(images, 7) if p.genuine}
    images.update({"zzz/img_0.png": "zzz", "zzz/img_1.png": "zzz"})
    after = {p.ref_image: p for p in all_identities_pairs(images, 7) if p.genuine}
    assert all(after[k] == v for k, v in before.items())


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(2, 6), min_size=4, max_size=20), seed=st.integers(0, 2**32))
def test_dicta_balanced_sample(sizes, seed):
    images = make_images(sizes)
    n = 2 * min(len(images) // 2, 20)
    pairs = dicta_pairs(images, seed, n_pairs=n)
    assert len(pairs) == n
    assert sum(p.genuine for p in pairs) == n // 2
    assert_invariants(pairs, images)
    assert pairs == dicta_pairs(images, seed, n_pairs=n)


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(2, 4), min_size=3, max_size=12), seed=st.integers(0, 2**32))
def test_dicta_never_lists_two_photos_twice(sizes, seed):
    """Where photo b drew a after a drew b, (a, b) and (b, a) were both in the pool: one comparison
    counted twice in the EER and its bootstrap."""
    images = make_images(sizes)
    n = 2 * (len(images) // 2)
    pairs = dicta_pairs(images, seed, n_pairs=n)
    keys = [frozenset((p.ref_image, p.probe_image)) for p in pairs]
    assert len(set(keys)) == len(keys)


def test_dicta_two_photos_a_person_give_one_genuine_pair_each():
    """FEI frontal's shape (two photos a person): one genuine pair a person, so at most n_pairs =
    2 x people, and asking for more says how many distinct pairs there are."""
    images = make_images([2] * 10)
    pairs = dicta_pairs(images, 0, n_pairs=20)
    assert sum(p.genuine for p in pairs) == 10
    assert len({images[p.ref_image] for p in pairs if p.genuine}) == 10
    with pytest.raises(ProtocolError, match="gives 10 and .* distinct"):
        dicta_pairs(images, 0, n_pairs=22)


def test_dicta_too_many_pairs_asked_is_a_clear_error():
    with pytest.raises(ProtocolError, match="lower protocols"):
        dicta_pairs(make_images([2, 2]), 0, n_pairs=1000)


def test_check_pairs_catches_each_violation():
    images = make_images([2, 2])
    a0, a1, b0 = "p000/img_0.png", "p000/img_1.png", "p001/img_0.png"
    with pytest.raises(ProtocolError, match="itself"):
        check_pairs([ImagePair(a0, a0, True, 0)], images)
    with pytest.raises(ProtocolError, match="two identities"):
        check_pairs([ImagePair(a0, b0, True, 0)], images)
    with pytest.raises(ProtocolError, match="shares an identity"):
        check_pairs([ImagePair(a0, a1, False, 0)], images)
    with pytest.raises(ProtocolError, match="not a usable"):
        check_pairs([ImagePair(a0, "ghost.png", False, 0)], images)


LFW_PAIRS = "2\t1\nAnn\t1\t2\nAnn\t1\tBob\t1\nBob\t1\t3\nCid\t2\tBob\t3\n"


def test_parse_lfw_pairs_folds_and_classes():
    rows = parse_lfw_pairs(LFW_PAIRS)
    assert rows == [
        ("Ann", 1, "Ann", 2, True, 0),
        ("Ann", 1, "Bob", 1, False, 0),
        ("Bob", 1, "Bob", 3, True, 1),
        ("Cid", 2, "Bob", 3, False, 1),
    ]
    with pytest.raises(ProtocolError, match="expected 4 pair lines"):
        parse_lfw_pairs("2\t1\nAnn\t1\t2\n")


def test_lfw_pairs_drop_and_count_unaligned_images():
    every = ["Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg", "Bob/Bob_0001.jpg", "Bob/Bob_0003.jpg", "Cid/Cid_0002.jpg"]
    usable = {i: i.split("/")[0] for i in every if i != "Cid/Cid_0002.jpg"}
    pairs, dropped = lfw_view2_pairs(usable, LFW_PAIRS, every)
    assert len(pairs) == 3 and dropped == {"image_not_aligned": 1}
    check_pairs(pairs, usable)


def test_pairs_table_schema_and_rows_per_comparison():
    images = make_images([2, 3, 2])
    pairs = all_identities_pairs(images, 1)
    table = pairs_table(pairs, [("unmasked", "unmasked"), ("unmasked", "surgical")])
    assert table.schema == PAIRS_SCHEMA
    assert table.num_rows == 2 * len(pairs)
    assert table["pair_id"].to_pylist() == list(range(table.num_rows))
    assert set(table["probe_variant"].to_pylist()) == {"unmasked", "surgical"}


def test_folds_go_by_identity_in_every_pair_protocol():
    """Before, all_identities dealt folds by rank and dicta1000 by row, so a person's genuine and
    impostor pairs (and an impostor's own pairs) sat in several folds."""
    images = make_images([4, 3, 5, 2, 4, 3, 5, 2, 3, 4, 5, 3])
    for pairs in (all_identities_pairs(images, 3, folds=4), dicta_pairs(images, 3, n_pairs=40, folds=4)):
        person_folds: dict[str, set[int]] = {}
        for p in pairs:
            if p.fold < 0:
                assert not p.genuine
                continue
            for image in (p.ref_image, p.probe_image):
                person_folds.setdefault(images[image], set()).add(p.fold)
        assert all(len(f) == 1 for f in person_folds.values()), person_folds
        assert len({f for fs in person_folds.values() for f in fs}) == 4
        assert sum(p.fold >= 0 and not p.genuine for p in pairs) > 0.8 * sum(not p.genuine for p in pairs)
        check_pairs(pairs, images)


def test_genuine_partner_never_from_the_same_group():
    images = {f"p{i}/v{v}/f{k}.jpg": f"p{i}" for i in range(6) for v in range(2) for k in range(3)}
    groups = {i: i.rsplit("/", 1)[0] for i in images}
    for pairs in (all_identities_pairs(images, 1, groups=groups), dicta_pairs(images, 1, n_pairs=30, groups=groups)):
        genuine = [p for p in pairs if p.genuine]
        assert genuine and all(groups[p.ref_image] != groups[p.probe_image] for p in genuine)
    same = [p for p in dicta_pairs(images, 1, n_pairs=30) if p.genuine and groups[p.ref_image] == groups[p.probe_image]]
    assert same  # without groups, frames of one video do pair up: what the group column prevents


@pytest.mark.parametrize("kind", ["all_identities", "dicta1000", "all_vs_all"])
def test_no_genuine_pair_compares_a_photo_with_a_copy_of_itself(tmp_path, kind):
    """A set that files one picture twice under a person (identical aligned chips) gave genuine
    pairs of the picture and its copy: a perfect score that says nothing of recognition."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from maskbench.io.chips import encode_chip
    from maskbench.stages.pairs import build_pairs

    rng = np.random.default_rng(0)
    images = {f"p{k}/img_{i}.png": f"p{k}" for k in range(6) for i in range(3)}
    chips = {i: encode_chip(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)) for i in images}
    copies = [("p0/img_0.png", "p0/img_1.png"), ("p3/img_1.png", "p3/img_2.png")]
    for a, b in copies:
        chips[b] = chips[a]
    pq.write_table(pa.table({"image_id": list(images), "identity": list(images.values()),
                             "status": ["ok"] * len(images), "chip": [chips[i] for i in images]}),
                   tmp_path / "aligned.parquet")
    (tmp_path / "acquired.json").write_text("{}")
    protocol = {"kind": kind, **({"n_pairs": 16} if kind == "dicta1000" else {})}
    report = build_pairs([str(tmp_path / "aligned.parquet")], protocol, [("unmasked", "unmasked")], 3,
                         str(tmp_path / "acquired.json"), str(tmp_path / "pairs.parquet"), str(tmp_path / "pairs.json"))
    pairs = pd.read_parquet(tmp_path / "pairs.parquet")
    joined = {frozenset(p) for p in zip(pairs["ref_image"], pairs["probe_image"])}
    assert not joined & {frozenset(c) for c in copies}
    assert pairs["genuine"].any() and report["copies_of_one_picture"] == {"groups": 2, "images": 4}
    assert "genuine_pairs_within_a_group" not in report  # the protocol's video rule, not the copies

    # the workflow finds the copies once per dataset (the copies stage): the same pairs, byte for byte
    from maskbench.stages.copies import write_copies

    assert write_copies([str(tmp_path / "aligned.parquet")], str(tmp_path / "copies.json"))["images"] == 4
    again = build_pairs([str(tmp_path / "aligned.parquet")], protocol, [("unmasked", "unmasked")], 3,
                        str(tmp_path / "acquired.json"), str(tmp_path / "again.parquet"), str(tmp_path / "again.json"),
                        copies_path=str(tmp_path / "copies.json"))
    assert again == report
    assert (tmp_path / "again.parquet").read_bytes() == (tmp_path / "pairs.parquet").read_bytes()


def test_copies_file_read_for_the_images_a_protocol_uses(tmp_path):
    """A group of copies counts within a protocol's images only where two of them are in it."""
    from maskbench.io.copies import read_copies

    (tmp_path / "copies.json").write_text('{"groups": [["a/1", "b/1", "c/1"], ["d/1", "d/2"]], "images": 5}')
    assert read_copies(tmp_path / "copies.json", ["a/1", "c/1", "d/1", "e/1"]) == [["a/1", "c/1"]]
    assert read_copies(tmp_path / "copies.json", ["d/2", "d/1", "b/1"]) == [["d/1", "d/2"]]
    assert read_copies(tmp_path / "copies.json", []) == []


def test_copies_in_two_videos_join_the_two_videos():
    """A copy moved from video B into A's group paired with B's other frames: the two groups are
    now one, and images without a group keep none."""
    from maskbench.protocols.pairs import with_copies_grouped

    groups = {"p/a1": "A", "p/a2": "A", "p/b1": "B", "p/b2": "B", "p/c1": "C", "p/x": None, "p/z": None}
    out = with_copies_grouped(groups, [["p/a1", "p/b1"], ["p/x", "p/y"]])
    assert out["p/z"] is None  # neither a copy nor in a group a copy joined
    assert out["p/a1"] == out["p/a2"] == out["p/b1"] == out["p/b2"] != out["p/c1"] == "C"
    assert out["p/x"] == out["p/y"] is not None and out["p/x"] not in {"A", "B", "C"}
    assert with_copies_grouped(None, []) is None and with_copies_grouped(groups, []) is groups
