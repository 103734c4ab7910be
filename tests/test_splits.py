"""Split strategies: every image once, no person in two identity splits, stratification, the
per-identity rule, and determinism (same seed, same bytes; input order does not matter)."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from maskbench.io.atomic import write_table
from maskbench.protocols.splits import SPLITS_SCHEMA, Split, check_split, make_split, merge_rare_strata, per_identity_split, split_table
from maskbench.protocols.split_spec import SPLIT_NAMES, STRATEGIES, SplitError

RATIOS = {"train": 0.7, "val": 0.1, "test": 0.2}
SEXES = ("male", "female")
RACES = ("white", "black", "asian", "indian", "others")


@st.composite
def datasets(draw, max_images=120, min_images=0):
    """(image -> identity or None, labels frame): people with 1-6 images, some without identity."""
    n = draw(st.integers(min_images, max_images))
    people = draw(st.integers(1, max(1, n)))
    identities, rows = {}, []
    for k in range(n):
        image_id = f"img/{k:04d}.jpg"
        anonymous = draw(st.booleans()) and draw(st.booleans()) and draw(st.booleans())
        identities[image_id] = None if anonymous else f"person_{draw(st.integers(0, people - 1)):03d}"
        rows.append({"image_id": image_id, "sex": draw(st.sampled_from(SEXES)),
                     "race": draw(st.sampled_from(RACES)),
                     "age_group": draw(st.sampled_from(["0-3", "20-30", "61+"]))})
    labels = pd.DataFrame(rows, columns=["image_id", "sex", "race", "age_group"]).set_index("image_id")
    return identities, labels


def _by_split(split: Split) -> dict[str, list[str]]:
    out = defaultdict(list)
    for image_id, name in split.assignment.items():
        out[name].append(image_id)
    return out


@settings(max_examples=60, deadline=None)
@given(data=datasets(), seed=st.integers(0, 2**31), strategy=st.sampled_from(["identity", "uniform", "random"]))
def test_every_image_exactly_once(data, seed, strategy):
    identities, labels = data
    if strategy == "identity" and identities and all(v is None for v in identities.values()):
        with pytest.raises(SplitError, match="identity labels"):
            make_split(strategy, identities, labels, RATIOS, ["sex", "race", "age_group"], seed)
        return
    split = make_split(strategy, identities, labels, RATIOS, ["sex", "race", "age_group"], seed)
    table = split_table(split, identities)
    ids = table["image_id"].to_pylist()
    assert ids == sorted(identities) and len(set(ids)) == len(ids)
    assert set(table["split"].to_pylist()) <= set(SPLIT_NAMES)
    assert table.schema.equals(SPLITS_SCHEMA)


@settings(max_examples=60, deadline=None)
@given(data=datasets(), seed=st.integers(0, 2**31))
def test_identity_split_puts_each_person_in_one_split(data, seed):
    identities, labels = data
    if identities and all(v is None for v in identities.values()):  # e.g. UTKFace: no people to keep apart
        with pytest.raises(SplitError, match="identity needs identity labels"):
            make_split("identity", identities, labels, RATIOS, [], seed)
        return
    split = make_split("identity", identities, labels, RATIOS, [], seed)
    where = defaultdict(set)
    for image_id, name in split.assignment.items():
        if identities[image_id] is not None:
            where[identities[image_id]].add(name)
    assert all(len(names) == 1 for names in where.values())
    # sizes follow the ratios up to one person's images
    biggest = max(Counter(identities[i] or i for i in identities).values(), default=0)
    sizes = Counter(split.assignment.values())
    for name in SPLIT_NAMES:
        assert abs(sizes[name] - RATIOS[name] * len(identities)) <= biggest + 1


@settings(max_examples=40, deadline=None)
@given(data=datasets(max_images=600, min_images=300), seed=st.integers(0, 2**31))
def test_uniform_split_keeps_label_distribution(data, seed):
    """Stratified on sex x race: each value's count per split is within 2 per joint stratum (+1)
    of its share; a random split offers no such bound."""
    identities, labels = data
    strata = merge_rare_strata(list(labels[["sex", "race"]].itertuples(index=False, name=None)), 11)
    assume(not any("*" in s for s in strata))  # the bound below is for unmerged strata
    split = make_split("uniform", identities, labels, RATIOS, ["sex", "race"], seed)
    parts = _by_split(split)
    for column, values in (("sex", SEXES), ("race", RACES)):
        overall = Counter(labels[column])
        for value in values:
            n_strata = len({s for s in strata if value in s.split("|")})
            for name in SPLIT_NAMES:
                count = Counter(labels.loc[parts[name], column])[value]
                assert abs(count - RATIOS[name] * overall[value]) <= 2 * n_strata + 1, (column, value, name)


def test_uniform_split_is_tighter_than_random():
    rng = np.random.default_rng(5)
    ids = [f"{k:05d}" for k in range(1000)]
    labels = pd.DataFrame({"sex": rng.choice(SEXES, 1000, p=[0.8, 0.2]),
                           "race": rng.choice(RACES, 1000, p=[0.5, 0.2, 0.15, 0.1, 0.05])}, index=ids)
    identities = {i: None for i in ids}

    def worst(strategy, seed):
        parts = _by_split(make_split(strategy, identities, labels, RATIOS, ["sex", "race"], seed))
        errors = []
        for column in ("sex", "race"):
            overall = labels[column].value_counts(normalize=True)
            for name in SPLIT_NAMES:
                share = labels.loc[parts[name], column].value_counts(normalize=True)
                errors += [abs(share.get(v, 0.0) - p) for v, p in overall.items()]
        return max(errors)

    uniform = max(worst("uniform", s) for s in range(5))
    random_ = np.mean([worst("random", s) for s in range(5)])
    assert uniform < 0.02
    assert uniform < random_


@settings(max_examples=60, deadline=None)
@given(data=datasets(max_images=40), seed=st.integers(0, 2**31),
       ratios=st.sampled_from([RATIOS, {"train": 0.5, "val": 0.0, "test": 0.5},
                               {"train": 0.9, "val": 0.05, "test": 0.05}]))
def test_uniform_split_never_fails_on_rare_strata(data, seed, ratios):
    identities, labels = data
    split = make_split("uniform", identities, labels, ratios, ["sex", "race", "age_group"], seed)
    assert set(split.assignment) == set(identities)
    if ratios["val"] == 0:
        assert "val" not in split.assignment.values()


@settings(max_examples=60, deadline=None)
@given(keys=st.lists(st.tuples(st.sampled_from("ab"), st.sampled_from("xyz")), min_size=0, max_size=80),
       min_count=st.integers(2, 12))
def test_merged_strata_are_large_enough(keys, min_count):
    strata = merge_rare_strata(keys, min_count)
    assert len(strata) == len(keys)
    if len(keys) >= min_count:
        assert min(Counter(strata).values()) >= min_count
    # a row keeps a prefix of its own key, but for fewer than min_count left-overs
    def own(key, stratum):
        prefix = [p for p in stratum.split("|") if p != "*"]
        return list(key[: len(prefix)]) == prefix
    assert sum(not own(k, s) for k, s in zip(keys, strata)) < min_count


@settings(max_examples=60, deadline=None)
@given(data=datasets(), seed=st.integers(0, 2**31))
def test_per_identity_rule(data, seed):
    identities, labels = data
    if all(v is None for v in identities.values()):
        with pytest.raises(SplitError, match="identity labels"):
            per_identity_split(identities, seed)
        return
    split = make_split("per_identity", identities, labels, RATIOS, [], seed)
    people = defaultdict(list)
    for image_id, identity in identities.items():
        if identity is None:
            assert split.assignment[image_id] == "train"
        else:
            people[identity].append(split.assignment[image_id])
    two_image_people = []
    for identity in sorted(people):
        names = Counter(people[identity])
        if len(people[identity]) >= 3:
            assert names["val"] == 1 and names["test"] == 1
        elif len(people[identity]) == 2:
            assert names["train"] == 1
            two_image_people.append("val" if names["val"] else "test")
        else:
            assert names == Counter(["train"])
    assert two_image_people == ["val" if k % 2 == 0 else "test" for k in range(len(two_image_people))]


@settings(max_examples=30, deadline=None)
@given(data=datasets(), seed=st.integers(0, 2**31), strategy=st.sampled_from(STRATEGIES))
def test_same_seed_gives_the_same_split_whatever_the_input_order(data, seed, strategy):
    identities, labels = data
    if strategy in ("identity", "per_identity") and all(v is None for v in identities.values()):
        return  # refused (test_every_image_exactly_once)
    first = make_split(strategy, identities, labels, RATIOS, ["sex", "race"], seed)
    items = list(identities.items())
    random.Random(seed).shuffle(items)
    shuffled = dict(items)
    second = make_split(strategy, shuffled, labels.sample(frac=1.0, random_state=seed % 1000), RATIOS,
                        ["sex", "race"], seed)
    assert first.assignment == second.assignment


def test_same_seed_gives_byte_identical_files_and_another_seed_differs(tmp_path):
    identities = {f"p{k // 3:03d}/{k:04d}.jpg": f"p{k // 3:03d}" for k in range(300)}
    labels = pd.DataFrame({"sex": [SEXES[k % 2] for k in range(300)], "race": [RACES[k % 5] for k in range(300)]},
                          index=list(identities))
    for strategy in STRATEGIES:
        paths = []
        for run, seed in enumerate((7, 7, 8)):
            split = make_split(strategy, identities, labels, RATIOS, ["sex", "race"], seed)
            paths.append(tmp_path / f"{strategy}-{run}.parquet")
            write_table(paths[-1], split_table(split, identities))
        assert paths[0].read_bytes() == paths[1].read_bytes(), strategy
        assert pq.read_table(paths[0]).to_pylist() != pq.read_table(paths[2]).to_pylist(), strategy


def test_invariant_checks_reject_leaks_and_gaps():
    identities = {"a1": "a", "a2": "a", "b1": "b"}
    with pytest.raises(SplitError, match="more than one split"):
        check_split(Split("identity", {"a1": "train", "a2": "test", "b1": "val"}), identities)
    with pytest.raises(SplitError, match="left out"):
        check_split(Split("random", {"a1": "train", "a2": "test"}), identities)
    with pytest.raises(SplitError, match="unknown split names"):
        check_split(Split("random", {"a1": "train", "a2": "test", "b1": "holdout"}), identities)


def test_ratios_are_checked():
    with pytest.raises(SplitError, match="sum to 1"):
        make_split("random", {"a": None}, pd.DataFrame(index=["a"]), {"train": 0.7, "val": 0.2, "test": 0.2}, [], 1)
    with pytest.raises(SplitError, match="no label column"):
        make_split("uniform", {"a": None}, pd.DataFrame(index=["a"]), RATIOS, ["sex"], 1)


@pytest.mark.parametrize("strategy", ["random", "uniform"])
def test_copies_of_one_picture_stay_in_one_part(strategy):
    """The same picture filed under two names (UTKFace has such copies) goes to one part; the
    report counts the groups and the moves, and other images stay where they were."""
    identities = {f"img/{k:03d}.jpg": None for k in range(200)}
    labels = pd.DataFrame({"sex": [SEXES[k % 2] for k in range(200)], "race": [RACES[k % 5] for k in range(200)]},
                          index=sorted(identities))
    plain = make_split(strategy, identities, labels, RATIOS, ["sex", "race"], 7)
    # copies chosen to straddle parts: each group mixes a train image with a test one
    train = sorted(i for i, s in plain.assignment.items() if s == "train")
    test = sorted(i for i, s in plain.assignment.items() if s == "test")
    groups = [sorted([train[k], test[k]]) for k in range(5)]
    split = make_split(strategy, identities, labels, RATIOS, ["sex", "race"], 7, duplicates=groups)
    for group in groups:
        assert {split.assignment[i] for i in group} == {plain.assignment[group[0]]}
    assert split.notes["duplicate_groups"] == 5 and split.notes["duplicates_moved"] == 5
    copies = {i for g in groups for i in g}
    assert all(split.assignment[i] == s for i, s in plain.assignment.items() if i not in copies)


def test_identical_chips_are_found_across_shards_among_usable_images(tmp_path):
    import pyarrow as pa

    from maskbench.io.duplicates import duplicate_chips

    shards = []
    for k, rows in enumerate([[("a", b"x"), ("b", b"y"), ("c", None)], [("d", b"x"), ("e", b"y"), ("f", b"z")]]):
        path = tmp_path / f"shard-{k}.parquet"
        pq.write_table(pa.table({"image_id": [r[0] for r in rows], "chip": [r[1] for r in rows]}), path)
        shards.append(str(path))
    assert duplicate_chips(shards, ["a", "b", "c", "d", "e", "f"]) == [["a", "d"], ["b", "e"]]
    assert duplicate_chips(shards, ["a", "b", "d", "f"]) == [["a", "d"]]  # e is not usable


def test_per_identity_counts_the_copies_it_parts_and_unknown_copies_are_refused():
    """per_identity sends one image of a person to val and one to test by design: copies of one
    picture it parts are counted, not moved; a copy outside the split is a clear error."""
    identities = {f"p{k // 3}/{k % 3}.jpg": f"p{k // 3}" for k in range(30)}
    labels = pd.DataFrame(index=sorted(identities))
    plain = make_split("per_identity", identities, labels, RATIOS, [], 3)
    parted = [["p0/0.jpg", "p0/1.jpg"]] if plain.assignment["p0/0.jpg"] != plain.assignment["p0/1.jpg"] else []
    split = make_split("per_identity", identities, labels, RATIOS, [], 3, duplicates=[["p0/0.jpg", "p0/1.jpg"]])
    assert split.assignment == plain.assignment
    assert split.notes["duplicate_groups"] == 1 and split.notes["duplicate_groups_across_parts"] == len(parted)
    with pytest.raises(SplitError, match="not among the split's images"):
        make_split("random", identities, labels, RATIOS, [], 3, duplicates=[["p0/0.jpg", "nowhere.jpg"]])


def test_a_part_the_people_do_not_reach_is_named_and_a_protocol_on_it_says_so(tmp_path):
    """Two people with five photos each cannot fill train, val and test: the split names the empty
    part, and a pair protocol on it says the part is empty (it blamed a mismatched split before)."""
    from maskbench.protocols.pairs import ProtocolError, restrict_to_split

    identities = {f"p{k}/img_{i}.png": f"p{k}" for k in range(2) for i in range(5)}
    split = make_split("identity", identities, pd.DataFrame(), RATIOS, (), seed=0)
    assert split.notes["empty_parts"] == ["test"]
    write_table(tmp_path / "identity.parquet", split_table(split, identities))
    protocol = {"split": {"strategy": "identity", "part": "test"}}
    with pytest.raises(ProtocolError, match="part 'test' of the split is empty"):
        restrict_to_split(identities, protocol, str(tmp_path / "identity.parquet"))
    assert "empty_parts" not in make_split("identity", {f"p{k}/a.png": f"p{k}" for k in range(20)},
                                           pd.DataFrame(), RATIOS, (), seed=0).notes


def test_split_stage_reads_the_datasets_copies_file_and_splits_as_from_the_chips(tmp_path):
    """The workflow finds copies of one picture once per dataset (the copies stage); the split stage
    reads that file and writes the same split, byte for byte, as finding them from the chips."""
    import pyarrow as pa

    from maskbench.io.chips import encode_chip
    from maskbench.stages.copies import write_copies
    from maskbench.stages.split import build_split

    rng = np.random.default_rng(0)
    images = {f"p{k}/img_{i}.png": f"p{k}" for k in range(10) for i in range(4)}
    chips = {i: encode_chip(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)) for i in images}
    for a, b in [("p0/img_0.png", "p0/img_1.png"), ("p3/img_1.png", "p7/img_2.png")]:
        chips[b] = chips[a]
    aligned = str(tmp_path / "aligned.parquet")
    pq.write_table(pa.table({"image_id": list(images), "identity": list(images.values()),
                             "status": ["ok"] * len(images), "chip": [chips[i] for i in images]}), aligned)
    pq.write_table(pa.table({"image_id": list(images), "sex": [None] * len(images), "race": [None] * len(images),
                             "age": pa.array([None] * len(images), pa.float64())}), tmp_path / "index.parquet")
    write_copies([aligned], str(tmp_path / "copies.json"))
    ratios = {"train": 0.5, "val": 0.25, "test": 0.25}
    reports = []
    for name, copies in (("chips", None), ("file", str(tmp_path / "copies.json"))):
        out = str(tmp_path / name)
        reports.append(build_split(str(tmp_path / "index.parquet"), [aligned], "random", ratios, [], [30], 7,
                                   f"{out}.parquet", f"{out}.json", copies_path=copies))
    assert reports[0] == reports[1] and reports[0]["notes"]["duplicate_groups"] == 2
    assert (tmp_path / "chips.parquet").read_bytes() == (tmp_path / "file.parquet").read_bytes()
    # the file is what the split reads: a group it names (and the chips do not) is kept together too
    (tmp_path / "more.json").write_text(json.dumps({"groups": [["p0/img_0.png", "p0/img_1.png"],
                                                               ["p3/img_1.png", "p7/img_2.png"],
                                                               ["p1/img_0.png", "p2/img_3.png"]]}))
    report = build_split(str(tmp_path / "index.parquet"), [aligned], "random", ratios, [], [30], 7,
                         str(tmp_path / "more.parquet"), str(tmp_path / "more.json.out"),
                         copies_path=str(tmp_path / "more.json"))
    parts = pq.read_table(tmp_path / "more.parquet").to_pandas().set_index("image_id")["split"]
    assert report["notes"]["duplicate_groups"] == 3 and parts["p1/img_0.png"] == parts["p2/img_3.png"]
