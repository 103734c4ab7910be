"""The privacy table: accuracy lost (MAE added) when the test faces are masked, for an attacker
trained on bare faces and one trained on masked faces, with paired bootstrap intervals, per mask
type and per demographic group; checked on prediction files whose answers are set by hand."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from maskbench.attributes import heads as attr
from maskbench.io.atomic import write_table
from maskbench.attributes.privacy import choose_runs, paired_bootstrap, privacy_table, write_privacy
from maskbench.stages.attributes import PREDICTIONS_SCHEMA

MASKS = ["surgical_blue", "cloth_black"]


def test_paired_bootstrap_by_hand():
    out = paired_bootstrap([1, 1, 1, 0], [1, 0, 0, 0], regression=False, seed=3, n_boot=500, min_n=1,
                           min_discordant=1)
    assert out["n"] == 4 and out["reference"] == 0.75 and out["attacked"] == 0.25 and out["protection"] == 0.5
    assert 0.0 <= out["ci_low"] < 0.5 < out["ci_high"] <= 1.0  # per-image differences are 0 or 1
    assert paired_bootstrap([1, 1, 1, 0], [1, 0, 0, 0], False, 3, 500, min_n=1, min_discordant=1) == out  # seeded
    # 21 faces, one scored differently: [0, 0] read "no protection, no doubt"; too few differences
    one = paired_bootstrap(np.r_[np.ones(20), 0], np.r_[np.ones(20), 1], False, 1, 500)
    assert one["n"] == 21 and one["ci_low"] is None and one["ci_high"] is None
    # four faces are too few for an interval (it would read [0, 0] for four equal differences)
    few = paired_bootstrap([1, 1, 0, 0], [1, 1, 0, 0], False, 3, 500)
    assert few["protection"] == 0.0 and few["ci_low"] is None and few["ci_high"] is None
    # paired: the same shift on every image leaves no doubt
    same = paired_bootstrap(np.ones(50), np.zeros(50), False, 1, 200)
    assert same["ci_low"] == same["ci_high"] == 1.0
    # age: errors added, in years
    age = paired_bootstrap([2.0, 4.0], [5.0, 9.0], regression=True, seed=0, n_boot=100, min_n=1, min_discordant=1)
    assert age["protection"] == 4.0 and 3.0 <= age["ci_low"] <= age["ci_high"] <= 5.0
    assert paired_bootstrap([], [], False, 0)["protection"] is None
    with pytest.raises(ValueError, match="differ in length"):
        paired_bootstrap([1, 0], [1], False, 0)


def test_attackers_are_the_bare_run_and_the_run_on_that_mask_or_mixed():
    assert choose_runs(["unmasked", "surgical_blue", "mixed"], "surgical_blue") == {
        "reference": "unmasked", "bare_trained": "unmasked", "mask_trained": "surgical_blue"}
    assert choose_runs(["unmasked", "surgical_blue", "mixed"], "cloth_black")["mask_trained"] == "mixed"
    assert choose_runs(["mixed"], "cloth_black") == {"reference": "mixed", "bare_trained": None,
                                                     "mask_trained": "mixed"}
    assert choose_runs(["surgical_blue"], "surgical_blue")["reference"] is None


def predictions(n: int, accuracy: dict[str, float], age_error: dict[str, float], seed: int = 0) -> pa.Table:
    """Rows of one run: per variant, the first ``accuracy * n`` images right on sex, the rest
    wrong; predicted age off by ``age_error`` years. Image k is female when k is odd."""
    cols: dict[str, list] = {name: [] for name in PREDICTIONS_SCHEMA.names}
    ids = [f"img{k:03d}" for k in range(n)]
    sex = ["female" if k % 2 else "male" for k in range(n)]
    race = [attr.RACE_CLASSES[k % 5] for k in range(n)]
    age = [20 + k % 40 for k in range(n)]
    for variant in ["unmasked", *MASKS]:
        right = int(round(accuracy[variant] * n))
        predicted = [s if k < right else ("male" if s == "female" else "female") for k, s in enumerate(sex)]
        for task in ("sex", "age"):
            cols["image_id"] += ids
            cols["head"] += ["linear"] * n
            cols["task"] += [task] * n
            cols["variant"] += [variant] * n
            cols["sex"] += sex
            cols["race"] += race
            cols["age"] += age
            cols["label"] += sex if task == "sex" else [None] * n
            cols["predicted"] += predicted if task == "sex" else [None] * n
            cols["confidence"] += [0.9] * n if task == "sex" else [None] * n
            cols["predicted_age"] += [None] * n if task == "sex" else [a + age_error[variant] for a in age]
    return pa.Table.from_pydict(cols, schema=PREDICTIONS_SCHEMA)


def test_privacy_table_from_prediction_files(tmp_path):
    n = 200
    runs = {
        "unmasked": predictions(n, {"unmasked": 0.9, "surgical_blue": 0.6, "cloth_black": 0.5},
                                {"unmasked": 5.0, "surgical_blue": 8.0, "cloth_black": 9.0}),
        "surgical_blue": predictions(n, {"unmasked": 0.7, "surgical_blue": 0.8, "cloth_black": 0.6},
                                     {"unmasked": 9.0, "surgical_blue": 6.0, "cloth_black": 8.0}),
        "mixed": predictions(n, {"unmasked": 0.85, "surgical_blue": 0.75, "cloth_black": 0.7},
                             {"unmasked": 5.5, "surgical_blue": 6.5, "cloth_black": 7.0}),
    }
    entries = []
    for train, table in runs.items():
        path = tmp_path / f"{train}.parquet"
        write_table(path, table)
        entries.append({"dataset": "utk", "model": "m", "split": "random", "train_variant": train, "path": str(path)})
    table = privacy_table(entries, {"utk": MASKS}, ["sex", "age"], list(attr.DEFAULT_AGE_GROUPS), seed=1, n_boot=200)
    overall = table[table.group_by == "all"].set_index(["task", "mask", "attacker"])
    expect = {("sex", "surgical_blue", "bare_trained"): (0.9, 0.6, "unmasked"),
              ("sex", "surgical_blue", "mask_trained"): (0.9, 0.8, "surgical_blue"),
              ("sex", "cloth_black", "bare_trained"): (0.9, 0.5, "unmasked"),
              ("sex", "cloth_black", "mask_trained"): (0.9, 0.7, "mixed")}
    for key, (reference, attacked, trained_on) in expect.items():
        row = overall.loc[key]
        assert row["reference"] == pytest.approx(reference) and row["attacked"] == pytest.approx(attacked)
        assert row["protection"] == pytest.approx(reference - attacked)
        assert row["ci_low"] <= row["protection"] <= row["ci_high"]
        assert row["attacker_trained_on"] == trained_on and row["reference_trained_on"] == "unmasked"
        assert row["n"] == n
    assert overall.loc[("age", "cloth_black", "mask_trained"), "protection"] == pytest.approx(2.0)
    assert overall.loc[("age", "surgical_blue", "bare_trained"), "metric"] == "mae"
    # per group: the groups of each grouping cover every test face once; a task is never broken down
    # by its own attribute (accuracy within a true class is its recall, not what a mask hides)
    groups = table[(table.task == "sex") & (table["mask"] == "surgical_blue") & (table.attacker == "bare_trained")]
    assert set(groups.group_by) == {"all", "race", "age_group"}
    assert set(table.loc[table.task == "age", "group_by"]) == {"all", "sex", "race"}
    for group_by in ("race", "age_group"):
        assert groups.loc[groups.group_by == group_by, "n"].sum() == n
    age_rows = table[(table.task == "age") & (table["mask"] == "surgical_blue") & (table.attacker == "bare_trained")]
    assert list(age_rows.loc[age_rows.group_by == "sex", "group"]) == ["male", "female"]
    # every age group has its row; those without a test face (ages here are 20-59) say n = 0
    ages = groups[groups.group_by == "age_group"].set_index("group")
    assert list(ages.index) == attr.age_group_names(attr.DEFAULT_AGE_GROUPS)
    empty = ages[ages["n"] == 0]
    assert len(empty) >= 2 and empty["protection"].isna().all()
    assert ages.loc[ages["n"] > 0, "protection"].notna().all()

    csv, png = tmp_path / "privacy.csv", tmp_path / "privacy.png"
    write_privacy(entries, {"utk": MASKS}, ["sex", "age"], list(attr.DEFAULT_AGE_GROUPS), 1, 200, str(csv), str(png))
    assert csv.read_bytes() == write_again(entries, tmp_path)  # seeded: same bytes
    assert (tmp_path / "privacy.md").is_file() and png.stat().st_size > 10_000


def write_again(entries, tmp_path) -> bytes:
    csv = tmp_path / "again.csv"
    write_privacy(entries, {"utk": MASKS}, ["sex", "age"], list(attr.DEFAULT_AGE_GROUPS), 1, 200, str(csv),
                  str(tmp_path / "again.png"))
    return csv.read_bytes()
