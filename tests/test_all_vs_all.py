"""all_vs_all pairs (blocks, sampling, splits) and the streaming score stage, checked against
plain itertools / numpy computations on small sets."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from maskbench.protocols.all_vs_all import prepare, reference_blocks, write_all_vs_all
from maskbench.io.manifests import PAIRS_SCHEMA, SCORES_SCHEMA, embedding_schema
from maskbench.protocols.pairs import ProtocolError
from maskbench.stages.pairs import build_pairs
from maskbench.stages.score import score_comparison
from maskbench.protocols.splits import SPLITS_SCHEMA

COMPARISONS = [("unmasked", "unmasked"), ("unmasked", "surgical")]


def layout(sizes: list[int], no_identity: int = 0) -> dict[str, str | None]:
    images = {f"id{i:02d}/img_{k}.png": f"id{i:02d}" for i, n in enumerate(sizes) for k in range(n)}
    images.update({f"zz_unknown/img_{k}.png": None for k in range(no_identity)})
    return images


def write_aligned(path, images: dict[str, str | None], unusable: tuple[str, ...] = ()) -> str:
    ids = list(images) + list(unusable)
    table = pa.table({
        "image_id": ids,
        "identity": [images.get(i, "id00") for i in ids],
        "status": ["ok"] * len(images) + ["no_face"] * len(unusable),
    })
    pq.write_table(table, path)
    return str(path)


def write_embeddings(path, ids: list[str], rng: np.random.Generator, dim: int = 6) -> dict[str, np.ndarray]:
    vectors = rng.normal(size=(len(ids), dim)).astype(np.float32)
    table = pa.Table.from_pydict({"image_id": ids, "status": ["ok"] * len(ids), "embedding": vectors.tolist()},
                                 schema=embedding_schema(dim))
    pq.write_table(table, path)
    return dict(zip(ids, vectors))


def brute_force_pairs(images: dict[str, str | None]) -> list[tuple[str, str, bool]]:
    ids = sorted(i for i, v in images.items() if v is not None)
    return [(a, b, images[a] == images[b]) for a, b in itertools.combinations(ids, 2)]


def test_reference_blocks_cover_every_row_once():
    for n, rows in [(1, 4), (2, 1), (10, 7), (37, 100), (50, 10_000)]:
        blocks = list(reference_blocks(n, rows))
        assert [a for a, _ in blocks] == [0] + [b for _, b in blocks[:-1]]
        assert blocks[-1][1] == n
        for a, b in blocks:  # at most `rows` pairs (or one reference), and no room for the next
            pairs = sum(n - 1 - i for i in range(a, b))
            assert pairs <= rows or b - a == 1
            assert b == n or pairs + (n - 1 - b) > rows


def test_manifest_equals_itertools_combinations(tmp_path):
    images = layout([3, 1, 4, 2, 5], no_identity=2)
    prepared = prepare(images, seed=3, folds=4)
    report = write_all_vs_all(prepared, COMPARISONS, tmp_path / "p.parquet", block_rows=9)
    table = pq.read_table(tmp_path / "p.parquet")
    assert table.schema == PAIRS_SCHEMA
    assert pq.ParquetFile(tmp_path / "p.parquet").num_row_groups > 2 * len(COMPARISONS)
    expected = brute_force_pairs(images)
    rows = table.to_pylist()
    assert [r["pair_id"] for r in rows] == list(range(len(expected) * len(COMPARISONS)))
    ids = sorted(i for i, v in images.items() if v is not None)
    for c, (ref_variant, probe_variant) in enumerate(COMPARISONS):
        part = rows[c * len(expected):(c + 1) * len(expected)]
        assert [(*sorted((r["ref_image"], r["probe_image"])), r["genuine"]) for r in part] == expected
        assert {(r["ref_variant"], r["probe_variant"]) for r in part} == {(ref_variant, probe_variant)}
        # the same reference/probe direction in every comparison
        assert [(r["ref_image"], r["probe_image"]) for r in part] == [(r["ref_image"], r["probe_image"])
                                                                     for r in rows[:len(expected)]]
    assert set(ids) <= {r["ref_image"] for r in rows} | {r["probe_image"] for r in rows}
    n_gen = sum(g for _, _, g in expected)
    assert n_gen == sum(math.comb(n, 2) for n in [3, 1, 4, 2, 5])
    assert (report["genuine"], report["impostor"]) == (n_gen, len(expected) - n_gen)
    assert report["per_comparison"] == {f"{r}-vs-{p}": {"genuine": n_gen, "impostor": len(expected) - n_gen}
                                        for r, p in COMPARISONS}
    assert report["dropped"] == {"no_identity": 2}
    assert report["rows"] == table.num_rows


def test_block_size_changes_row_groups_not_rows(tmp_path):
    prepared = prepare(layout([4, 3, 6, 2]), seed=1, max_impostors=40)
    write_all_vs_all(prepared, COMPARISONS, tmp_path / "a.parquet", block_rows=5)
    write_all_vs_all(prepared, COMPARISONS, tmp_path / "b.parquet", block_rows=1000)
    assert pq.read_table(tmp_path / "a.parquet").equals(pq.read_table(tmp_path / "b.parquet"))


def test_max_impostors_samples_impostors_keeps_every_genuine(tmp_path):
    images = layout([6] * 40)  # 240 images: 600 genuine, 28,080 impostor pairs
    full = set(brute_force_pairs(images))
    impostors = sum(not g for _, _, g in full)
    target = 3000
    report = write_all_vs_all(prepare(images, seed=5, max_impostors=target), COMPARISONS[:1], tmp_path / "s.parquet")
    table = pq.read_table(tmp_path / "s.parquet")
    kept = {(*sorted(p[:2]), p[2]) for p in
            zip(table["ref_image"].to_pylist(), table["probe_image"].to_pylist(), table["genuine"].to_pylist())}
    assert kept <= full
    assert {p for p in full if p[2]} <= kept  # all genuine pairs
    p = target / impostors
    sd = math.sqrt(impostors * p * (1 - p))
    assert abs(report["impostor"] - target) < 5 * sd
    assert report["impostor"] == sum(not g for _, _, g in kept)
    assert report["impostors_before_sampling"] == impostors
    # another seed, another sample of about the same size
    write_all_vs_all(prepare(images, seed=6, max_impostors=target), COMPARISONS[:1], tmp_path / "t.parquet")
    other = pq.read_table(tmp_path / "t.parquet")
    assert set(zip(other["ref_image"].to_pylist(), other["probe_image"].to_pylist())) != {k[:2] for k in kept}


def test_too_few_identities_is_a_clear_error():
    with pytest.raises(ProtocolError, match=">= 2 identities"):
        prepare(layout([5]), seed=0)
    with pytest.raises(ProtocolError, match="genuine pairs"):
        prepare(layout([1, 1, 1]), seed=0)


def write_split(path, assignment: dict[str, str], images: dict[str, str | None]) -> str:
    ids = sorted(assignment)
    pq.write_table(pa.Table.from_pydict(
        {"image_id": ids, "identity": [images.get(i) for i in ids], "split": [assignment[i] for i in ids]},
        schema=SPLITS_SCHEMA), path)
    return str(path)


def test_split_restricts_every_kind_to_its_part(tmp_path):
    images = layout([3, 4, 2, 5, 3, 4])
    aligned = write_aligned(tmp_path / "aligned.parquet", images)
    test_people = {"id01", "id03", "id04"}
    assignment = {i: "test" if v in test_people else "train" for i, v in images.items()}
    split = write_split(tmp_path / "split.parquet", assignment, images)
    for kind, extra in [("all_vs_all", {}), ("all_identities", {}), ("dicta1000", {"n_pairs": 6})]:
        protocol = {"kind": kind, "split": {"strategy": "identity", "part": "test"}, **extra}
        report = build_pairs([aligned], protocol, COMPARISONS, 7, "unused.json", tmp_path / f"{kind}.parquet",
                             tmp_path / f"{kind}.json", split_path=split)
        table = pq.read_table(tmp_path / f"{kind}.parquet")
        used = set(table["ref_image"].to_pylist()) | set(table["probe_image"].to_pylist())
        assert used and {images[i] for i in used} <= test_people, kind
        assert report["split"] == {"strategy": "identity", "part": "test", "usable_images_in_part": 12,
                                   "usable_images_left_out": 9}
        assert json.loads((tmp_path / f"{kind}.json").read_text())["split"] == report["split"]
    with pytest.raises(ProtocolError, match="pass its manifest"):
        build_pairs([aligned], {"kind": "all_vs_all", "split": {"strategy": "identity", "part": "test"}},
                    COMPARISONS, 7, "unused.json", tmp_path / "x.parquet", tmp_path / "x.json")


def test_lfw_view2_split_drops_and_counts_pairs_outside_the_part(tmp_path):
    every = ["Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg", "Bob/Bob_0001.jpg", "Bob/Bob_0003.jpg", "Cid/Cid_0002.jpg"]
    images = {i: i.split("/")[0] for i in every}
    aligned = write_aligned(tmp_path / "aligned.parquet", images)
    (tmp_path / "pairs.txt").write_text("2\t1\nAnn\t1\t2\nAnn\t1\tBob\t1\nBob\t1\t3\nCid\t2\tBob\t3\n")
    (tmp_path / "acquired.json").write_text(json.dumps({"pairs": {"path": str(tmp_path / "pairs.txt")}}))
    split = write_split(tmp_path / "split.parquet",
                        {i: "test" if images[i] in ("Bob", "Cid") else "train" for i in every}, images)
    protocol = {"kind": "lfw_view2", "split": {"strategy": "identity", "part": "test"}}
    report = build_pairs([aligned], protocol, COMPARISONS, 0, str(tmp_path / "acquired.json"),
                         tmp_path / "p.parquet", tmp_path / "p.json", split_path=split)
    assert report["dropped"] == {"image_not_in_split": 2}
    assert report["image_pairs"] == 2


def test_lfw_view2_keeps_a_pair_whose_photo_was_not_aligned_as_a_failure_to_enrol(tmp_path):
    """LFW classifies every listed pair: one with a photo the aligner could not use stays in the
    manifest, unscored, and the metrics count it (it was dropped, leaving fewer, unequal folds)."""
    from maskbench.stages.metrics import compute_metrics

    every = ["Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg", "Bob/Bob_0001.jpg", "Bob/Bob_0003.jpg", "Cid/Cid_0002.jpg"]
    pq.write_table(pa.table({"image_id": every, "identity": [i.split("/")[0] for i in every],
                             "status": ["ok"] * 4 + ["no_face"]}), tmp_path / "aligned.parquet")
    (tmp_path / "pairs.txt").write_text("2\t1\nAnn\t1\t2\nAnn\t1\tBob\t1\nBob\t1\t3\nCid\t2\tBob\t3\n")
    (tmp_path / "acquired.json").write_text(json.dumps({"pairs": {"path": str(tmp_path / "pairs.txt")}}))
    report = build_pairs([str(tmp_path / "aligned.parquet")], {"kind": "lfw_view2"}, COMPARISONS[:1], 0,
                         str(tmp_path / "acquired.json"), tmp_path / "p.parquet", tmp_path / "p.json")
    assert report["image_pairs"] == 4 and report["dropped"] == {} and report["pairs_with_an_unaligned_image"] == 1
    embeddings = tmp_path / "unmasked.parquet"
    write_embeddings(embeddings, every[:4], np.random.default_rng(0))
    counts = score_comparison(str(tmp_path / "p.parquet"), "unmasked-vs-unmasked", {"unmasked": [str(embeddings)]},
                              "cosine", str(tmp_path / "s.parquet"))
    assert counts == {"pairs": 4, "scored": 3, "missing_embedding": 1}
    metrics = compute_metrics(str(tmp_path / "s.parquet"))
    assert (metrics["n_failure_to_enrol_genuine"], metrics["n_failure_to_enrol_impostor"]) == (0, 1)


# ----------------------------------------------------------------------------------------------
# streaming scores


def direct_scores(rows: list[dict], ref_emb: dict, probe_emb: dict, kind: str) -> list[float | None]:
    out = []
    for r in rows:
        a, b = ref_emb.get(r["ref_image"]), probe_emb.get(r["probe_image"])
        if a is None or b is None:
            out.append(None)
            continue
        a, b = a.astype(np.float64), b.astype(np.float64)
        if kind == "cosine":
            out.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
        else:
            d = float(np.sqrt(((a - b) ** 2).sum()))
            out.append(-d if kind == "neg_l2" else 1 / (1 + d))
    return out


@pytest.mark.parametrize("kind", ["neg_l2", "inv_l2", "cosine"])
def test_streamed_scores_equal_a_per_pair_computation(tmp_path, kind):
    images = layout([3, 5, 2, 4, 6])
    ids = sorted(images)
    write_all_vs_all(prepare(images, seed=2, folds=2), COMPARISONS, tmp_path / "p.parquet", block_rows=11)
    rng = np.random.default_rng(0)
    unmasked = write_embeddings(tmp_path / "u0.parquet", ids[:10], rng)
    unmasked.update(write_embeddings(tmp_path / "u1.parquet", ids[10:], rng))
    surgical = write_embeddings(tmp_path / "s.parquet", ids[3:-2], rng)  # masking failed on five images
    paths = {"unmasked": [str(tmp_path / "u0.parquet"), str(tmp_path / "u1.parquet")],
             "surgical": [str(tmp_path / "s.parquet")]}
    counts = score_comparison(str(tmp_path / "p.parquet"), "unmasked-vs-surgical", paths, kind,
                              str(tmp_path / "s_small.parquet"), batch_rows=7)
    score_comparison(str(tmp_path / "p.parquet"), "unmasked-vs-surgical", paths, kind, str(tmp_path / "s_big.parquet"))
    small = pq.read_table(tmp_path / "s_small.parquet")
    assert small.schema == SCORES_SCHEMA
    assert small.equals(pq.read_table(tmp_path / "s_big.parquet"))
    pairs = pq.read_table(tmp_path / "p.parquet").to_pylist()
    wanted = [r for r in pairs if r["probe_variant"] == "surgical"]
    rows = small.to_pylist()
    assert [r["pair_id"] for r in rows] == [r["pair_id"] for r in wanted]
    expected = direct_scores(wanted, unmasked, surgical, kind)
    got = [r["score"] for r in rows]
    assert [g is None for g in got] == [e is None for e in expected]
    np.testing.assert_allclose([g for g in got if g is not None], [e for e in expected if e is not None],
                               rtol=1e-6, atol=1e-9)
    assert [r["status"] for r in rows] == ["missing_embedding" if e is None else "ok" for e in expected]
    assert counts == {"pairs": len(wanted), "scored": sum(e is not None for e in expected),
                      "missing_embedding": sum(e is None for e in expected)}
    assert 0 < counts["missing_embedding"] < counts["pairs"]


def test_scoring_a_comparison_the_manifest_lacks_fails_and_writes_nothing(tmp_path):
    images = layout([2, 2, 3])
    write_all_vs_all(prepare(images, seed=0), COMPARISONS[:1], tmp_path / "p.parquet")
    write_embeddings(tmp_path / "e.parquet", sorted(images), np.random.default_rng(1))
    paths = {"unmasked": [str(tmp_path / "e.parquet")], "n95": [str(tmp_path / "e.parquet")]}
    with pytest.raises(ValueError, match="no pairs for unmasked-vs-n95"):
        score_comparison(str(tmp_path / "p.parquet"), "unmasked-vs-n95", paths, "neg_l2", str(tmp_path / "s.parquet"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.parquet", "p.parquet"]
    with pytest.raises(ValueError, match="no embedding files given"):
        score_comparison(str(tmp_path / "p.parquet"), "unmasked-vs-unmasked", {}, "neg_l2", str(tmp_path / "s.parquet"))


def _identity(image: str) -> str:
    return image.split("/")[0]


def test_folds_go_by_identity_no_person_in_two_folds(tmp_path):
    images = layout([3, 4, 2, 5, 3, 4, 2, 3, 5, 2])
    write_all_vs_all(prepare(images, seed=11, folds=5), COMPARISONS[:1], tmp_path / "f.parquet")
    rows = pq.read_table(tmp_path / "f.parquet").to_pylist()
    folds_of_person: dict[str, set[int]] = {}
    for r in rows:
        if r["fold"] >= 0:
            for image in (r["ref_image"], r["probe_image"]):
                folds_of_person.setdefault(_identity(image), set()).add(r["fold"])
        else:  # between folds: impostors only, of two people dealt to different folds
            assert not r["genuine"]
    assert len(folds_of_person) == 10
    assert all(len(f) == 1 for f in folds_of_person.values()), folds_of_person
    assert {f for fs in folds_of_person.values() for f in fs} == set(range(5))
    assert any(r["fold"] == -1 for r in rows) and any(r["fold"] >= 0 and not r["genuine"] for r in rows)


def test_masked_probe_assignment_does_not_follow_name_order(tmp_path):
    """The old rule (lower-sorted image = reference) never made a person's first image a masked
    probe; a seeded coin per pair does, in both directions, the same way on every run."""
    images = layout([4] * 12)
    write_all_vs_all(prepare(images, seed=2, folds=1), COMPARISONS[1:], tmp_path / "m.parquet")
    rows = pq.read_table(tmp_path / "m.parquet").to_pylist()
    forward = sum(r["ref_image"] < r["probe_image"] for r in rows)
    assert 0.4 < forward / len(rows) < 0.6
    probes = {r["probe_image"] for r in rows}
    assert "id00/img_0.png" in probes and "id11/img_3.png" in {r["ref_image"] for r in rows}
    write_all_vs_all(prepare(images, seed=2, folds=1), COMPARISONS[1:], tmp_path / "n.parquet")
    assert pq.read_table(tmp_path / "m.parquet").equals(pq.read_table(tmp_path / "n.parquet"))


def test_genuine_pairs_never_within_one_group_unless_asked(tmp_path):
    # two videos per person, three frames each: frames of one video are near-duplicates
    images = {f"p{i}/v{v}/f{k}.jpg": f"p{i}" for i in range(4) for v in range(2) for k in range(3)}
    groups = {i: i.rsplit("/", 1)[0] for i in images}
    report = write_all_vs_all(prepare(images, seed=0, groups=groups), COMPARISONS[:1], tmp_path / "g.parquet")
    rows = pq.read_table(tmp_path / "g.parquet").to_pylist()
    genuine = [r for r in rows if r["genuine"]]
    assert genuine and all(groups[r["ref_image"]] != groups[r["probe_image"]] for r in genuine)
    assert report["genuine"] == 4 * 3 * 3  # per person: 3 x 3 frames across its two videos
    assert report["dropped"]["same_group_genuine"] == 4 * 2 * 3
    allowed = write_all_vs_all(prepare(images, seed=0, groups=groups, same_group_genuine=True),
                               COMPARISONS[:1], tmp_path / "h.parquet")
    assert allowed["genuine"] == 4 * 15


def test_pairs_stage_reads_groups_from_the_index(tmp_path):
    """YouTube Faces frames: the index's group (the video) keeps genuine pairs across videos in
    every kind of protocol, unless the protocol allows same-group pairs."""
    images = {f"p{i}/v{v}/f{k}.jpg": f"p{i}" for i in range(5) for v in range(2) for k in range(3)}
    aligned = write_aligned(tmp_path / "aligned.parquet", images)
    ids = sorted(images)
    pq.write_table(pa.table({"image_id": ids, "group": [i.rsplit("/", 1)[0] for i in ids]}), tmp_path / "index.parquet")
    for kind, extra in [("all_vs_all", {}), ("all_identities", {}), ("dicta1000", {"n_pairs": 20})]:
        for allowed in (False, True):
            protocol = {"kind": kind, **extra, **({"same_group_genuine": True} if allowed else {})}
            build_pairs([aligned], protocol, COMPARISONS[:1], 3, "unused.json", tmp_path / "p.parquet",
                        tmp_path / "p.json", index_path=str(tmp_path / "index.parquet"))
            rows = pq.read_table(tmp_path / "p.parquet").to_pylist()
            same_video = [r for r in rows if r["genuine"]
                          and r["ref_image"].rsplit("/", 1)[0] == r["probe_image"].rsplit("/", 1)[0]]
            assert bool(same_video) == allowed, (kind, allowed)
