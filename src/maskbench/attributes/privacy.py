"""What a mask hides, per attribute: how much less an attacker infers from a masked face.

The reference is what can be inferred from the bare face: the model trained on unmasked faces,
tested on the unmasked test faces (a model trained on masked and unmasked faces mixed when no
unmasked-trained run exists). Two attackers then see the same test faces masked:

* ``bare_trained`` (a): the model trained on bare faces, unaware of masks;
* ``mask_trained`` (b): a model trained on masked faces: the run trained on that very mask type
  when there is one, else the run trained on every mask type mixed with bare faces.

Protection = reference accuracy - attacker accuracy on the masked faces (points of accuracy lost),
or attacker MAE - reference MAE for age (years of error added). Both are measured on the same
test images (paired), so the interval is a paired bootstrap over test images (seeded), computed
for every mask type, over all faces and within each sex, race and age group (but the task's own:
see OWN_GROUP).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from maskbench.attributes import heads as attr
from maskbench.attributes.labels import ordered_groups
from maskbench.config import UNMASKED
from maskbench.seeds import item_seed

MIXED = "mixed"
ATTACKERS = ("bare_trained", "mask_trained")
GROUP_COLUMNS = ("sex", "race", "age_group")
DEFAULT_BOOTSTRAP = 1000
DEFAULT_CONFIDENCE = 0.95
# fewer paired test faces get no interval: resampling a handful of 0/1 differences gives
# degenerate percentiles (e.g. [0, 0] on four faces, read as "no protection, no doubt")
MIN_INTERVAL_FACES = 20
# nor do fewer faces whose two scores differ: with one of 21 faces changed the percentiles were
# [0, 0] whatever the group's size (the interval is of the differences, not of the faces)
MIN_DISCORDANT_FACES = 5
# a task's own attribute: accuracy within one true class is that class's recall, which a model
# biased toward one answer on masked faces raises for that class ("masks make men's sex easier to
# read"); those rows say nothing of privacy and are left out
OWN_GROUP = {"sex": "sex", "race": "race", "age_group": "age_group", "age": "age_group"}


def per_image_scores(predictions: pd.DataFrame, task: str, variant: str) -> pd.Series:
    """image_id -> 1/0 correct (classes) or absolute error in years (age) under one test variant."""
    rows = predictions[(predictions["task"] == task) & (predictions["variant"] == variant)]
    if attr.is_regression(task):
        values = (rows["predicted_age"].astype(float) - rows["age"].astype(float)).abs()
    else:
        values = (rows["predicted"] == rows["label"]).astype(float)
    return pd.Series(values.to_numpy(), index=rows["image_id"].to_numpy())


def paired_bootstrap(reference: np.ndarray, attacked: np.ndarray, regression: bool, seed: int,
                     n_boot: int = DEFAULT_BOOTSTRAP, confidence: float = DEFAULT_CONFIDENCE,
                     min_n: int = MIN_INTERVAL_FACES,
                     min_discordant: int = MIN_DISCORDANT_FACES) -> dict[str, Any]:
    """Protection (reference - attacked accuracy, or attacked - reference MAE) on paired per-image
    scores, with a percentile interval from resampling images (the same draw for both sides) when
    there are at least ``min_n`` of them and ``min_discordant`` whose two scores differ."""
    reference, attacked = np.asarray(reference, float), np.asarray(attacked, float)
    if reference.shape != attacked.shape:
        raise ValueError(f"paired scores differ in length: {len(reference)} vs {len(attacked)}")
    n = len(reference)
    diff = attacked - reference if regression else reference - attacked
    out: dict[str, Any] = {"n": n, "reference": None, "attacked": None, "protection": None,
                           "ci_low": None, "ci_high": None}
    if n == 0:
        return out
    out.update(reference=float(reference.mean()), attacked=float(attacked.mean()), protection=float(diff.mean()))
    if n_boot > 0 and n >= min_n and np.count_nonzero(diff) >= min_discordant:
        rng = np.random.default_rng(seed)
        means = np.empty(n_boot)
        for start in range(0, n_boot, 100):  # blocks of draws keep memory at 100 x n
            idx = rng.integers(0, n, size=(min(100, n_boot - start), n))
            means[start:start + len(idx)] = diff[idx].mean(axis=1)
        alpha = (1 - confidence) / 2
        out["ci_low"], out["ci_high"] = (float(v) for v in np.quantile(means, [alpha, 1 - alpha]))
    return out


def choose_runs(train_variants: Sequence[str], mask: str) -> dict[str, str | None]:
    """Which train variant is the reference and each attacker, for one mask type."""
    reference = UNMASKED if UNMASKED in train_variants else (MIXED if MIXED in train_variants else None)
    mask_trained = mask if mask in train_variants else (MIXED if MIXED in train_variants else None)
    return {"reference": reference, "bare_trained": UNMASKED if UNMASKED in train_variants else None,
            "mask_trained": mask_trained}


def privacy_rows(runs: dict[str, pd.DataFrame], masks: Sequence[str], tasks: Sequence[str],
                 age_groups: Sequence[int], key: dict[str, Any], seed: int, n_boot: int = DEFAULT_BOOTSTRAP,
                 confidence: float = DEFAULT_CONFIDENCE) -> list[dict[str, Any]]:
    """Rows of the privacy table for one (dataset, model, head, split): ``runs`` maps a train
    variant to its prediction rows (PREDICTIONS_SCHEMA, one head)."""
    rows: list[dict[str, Any]] = []
    for mask in masks:
        chosen = choose_runs(list(runs), mask)
        if chosen["reference"] is None:
            continue
        ref = runs[chosen["reference"]]
        for task in tasks:
            regression = attr.is_regression(task)
            reference = per_image_scores(ref, task, UNMASKED)
            info = ref[(ref["task"] == task) & (ref["variant"] == UNMASKED)].set_index("image_id")
            groups = {c: info[c] for c in ("sex", "race")}
            groups["age_group"] = info["age"].map(lambda a: None if pd.isna(a) else attr.age_group(a, age_groups))
            for attacker in ATTACKERS:
                train = chosen[attacker]
                if train is None:
                    continue
                attacked = per_image_scores(runs[train], task, mask)
                ids = reference.index.intersection(attacked.index).sort_values()
                selections = [("all", "all", np.ones(len(ids), bool))]
                for column in (c for c in GROUP_COLUMNS if c != OWN_GROUP.get(task)):
                    values = groups[column].reindex(ids).astype(object).to_numpy()
                    for group in _ordered(column, values, age_groups):
                        selections.append((column, group, values == group))
                for group_by, group, keep in selections:
                    sel = ids[keep]
                    stats = paired_bootstrap(reference.loc[sel].to_numpy(), attacked.loc[sel].to_numpy(), regression,
                                             item_seed(seed, "privacy", *[str(v) for v in key.values()], mask, task,
                                                       attacker, group_by, group), n_boot, confidence)
                    rows.append({**key, "task": task, "metric": "mae" if regression else "accuracy", "mask": mask,
                                 "attacker": attacker, "attacker_trained_on": train,
                                 "reference_trained_on": chosen["reference"], "group_by": group_by, "group": group,
                                 **stats})
    return rows


def _ordered(column: str, values: np.ndarray, age_groups: Sequence[int]) -> list[str]:
    present = {str(v) for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))}
    return ordered_groups(column, present, attr.age_group_names(age_groups))


def privacy_table(entries: Sequence[dict[str, str]], masks: dict[str, Sequence[str]], tasks: Sequence[str],
                  age_groups: Sequence[int], seed: int, n_boot: int = DEFAULT_BOOTSTRAP,
                  confidence: float = DEFAULT_CONFIDENCE) -> pd.DataFrame:
    """The long privacy table from the prediction files in ``entries`` (dataset, model, split,
    train_variant, path); ``masks``: dataset -> its mask types."""
    by_run: dict[tuple, dict[str, pd.DataFrame]] = {}
    for e in entries:
        table = pq.read_table(e["path"]).to_pandas()
        for head, rows in table.groupby("head", sort=False):
            by_run.setdefault((e["dataset"], e["model"], head, e["split"]), {})[e["train_variant"]] = rows
    rows: list[dict[str, Any]] = []
    for (dataset, model, head, split), runs in by_run.items():
        key = {"dataset": dataset, "model": model, "head": head, "split": split}
        rows += privacy_rows(runs, masks[dataset], tasks, age_groups, key, seed, n_boot, confidence)
    columns = ["dataset", "model", "head", "split", "task", "metric", "mask", "attacker", "attacker_trained_on",
               "reference_trained_on", "group_by", "group", "n", "reference", "attacked", "protection",
               "ci_low", "ci_high"]
    return pd.DataFrame(rows, columns=columns)


def privacy_figure(table: pd.DataFrame, png_path: str) -> None:
    """Protection per task (panels) and mask type, both attackers side by side, with the
    bootstrap interval, over all test faces; one row of panels per (dataset, model, head, split)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from maskbench.reporting.figure_files import save_figure

    overall = table[table["group_by"] == "all"]
    keys = list(dict.fromkeys(map(tuple, overall[["dataset", "model", "head", "split"]].to_numpy())))
    tasks = [t for t in attr.TASKS if t in set(overall["task"])]
    fig, axes = plt.subplots(max(len(keys), 1), max(len(tasks), 1), squeeze=False,
                             figsize=(3.0 * max(len(tasks), 1), 2.6 * max(len(keys), 1)), dpi=100)
    colours = {"bare_trained": "#4477aa", "mask_trained": "#ee6677"}
    for r, key in enumerate(keys):
        rows = overall[(overall[["dataset", "model", "head", "split"]] == list(key)).all(axis=1)]
        for c, task in enumerate(tasks):
            ax = axes[r][c]
            part = rows[rows["task"] == task]
            masks = list(dict.fromkeys(part["mask"]))
            for k, attacker in enumerate(ATTACKERS):
                sel = part[part["attacker"] == attacker].set_index("mask").reindex(masks)
                if sel["protection"].isna().all():
                    continue
                x = np.arange(len(masks)) + (k - 0.5) * 0.38
                low = (sel["protection"] - sel["ci_low"]).to_numpy(float)
                high = (sel["ci_high"] - sel["protection"]).to_numpy(float)
                ax.bar(x, sel["protection"], 0.36, yerr=np.vstack([low, high]), capsize=2,
                       color=colours[attacker], label=attacker.replace("_", " "))
            ax.axhline(0, color="black", lw=0.6)
            ax.set_xticks(np.arange(len(masks)), masks, rotation=20, fontsize=6)
            unit = "years of MAE added" if attr.is_regression(task) else "accuracy lost"
            ax.set_ylabel(unit, fontsize=7)
            ax.set_title(f"{task}: {' '.join(key[1:])}", fontsize=7)
            ax.legend(fontsize=6)
    fig.suptitle("what a mask hides (paired bootstrap intervals)", fontsize=8)
    save_figure(fig, png_path, pdf=False)


def write_privacy(entries: Sequence[dict[str, str]], masks: dict[str, Sequence[str]], tasks: Sequence[str],
                  age_groups: Sequence[int], seed: int, n_boot: int, csv_path: str, png_path: str) -> pd.DataFrame:
    """attributes_privacy.csv (with a Markdown copy) and its figure."""
    from maskbench.reporting.tables import write_frame

    table = privacy_table(entries, masks, tasks, age_groups, seed, n_boot)
    table = table.round({c: 6 for c in ("reference", "attacked", "protection", "ci_low", "ci_high")})
    write_frame(table, csv_path, "what a mask hides: accuracy lost (MAE added) for an attacker trained on bare "
                "or on masked faces, paired bootstrap intervals (none under "
                f"{MIN_INTERVAL_FACES} faces)", index=False)
    privacy_figure(table, png_path)
    return table
