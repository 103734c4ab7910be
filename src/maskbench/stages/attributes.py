"""Stage runners of the attribute study: heads, tables and figures (splits: stages/split.py)."""

from __future__ import annotations

import json
import logging
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from maskbench.attributes import heads as attr
from maskbench.attributes.labels import ordered_groups
from maskbench.io.atomic import write_json, write_table
from maskbench.config import UNMASKED
from maskbench.io.readers import load_embeddings, split_parts
from maskbench.attributes.settings import POOLED
from maskbench.attributes.study import (
    PREDICTIONS_SCHEMA,
    Study,
    chance_level,
    evaluate_variants,
    headlines,
    read_labels,
    result_header,
    val_metric,
)
from maskbench.reporting.figure_files import save_figure
from maskbench.seeds import item_seed

log = logging.getLogger(__name__)

CHANCE = "chance"  # attributes.csv rows of the train part's majority class (median age) on the test faces
NOT_TRAINED = "-"  # their train_variant: no model is trained for them

# ----------------------------------------------------------------------------------------------
# attribute stage


def _matrix(vectors: dict[str, np.ndarray], ids: Sequence[str]) -> np.ndarray:
    if not ids:
        dim = len(next(iter(vectors.values()))) if vectors else 0
        return np.zeros((0, dim), dtype=np.float32)
    return np.stack([vectors[i] for i in ids]).astype(np.float32)


def _stack(embeddings: dict[str, dict[str, np.ndarray]], variants: Sequence[str],
           ids: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Rows of every variant for the images it has (a mask may have failed on an image)."""
    blocks, row_ids = [], []
    for v in variants:
        have = [i for i in ids if i in embeddings[v]]
        blocks.append(_matrix(embeddings[v], have))
        row_ids += have
    return np.concatenate(blocks) if blocks else np.zeros((0, 0), np.float32), row_ids


def _run_task(study: Study, head_kind: str, task: str, train_on: Sequence[str], test_on: Sequence[str],
              thresholds: Sequence[float], seed: int, columns: dict[str, list]) -> dict[str, Any]:
    """Fit one head for one task, test it on every variant and on the masks pooled."""
    x_train, rows_train = _stack(study.embeddings, train_on, study.labelled(task, study.by_split["train"]))
    x_val, rows_val = _stack(study.embeddings, train_on, study.labelled(task, study.by_split["val"]))
    head = attr.fit_head(task, x_train, study.target(task, rows_train), x_val, study.target(task, rows_val),
                         head_kind, item_seed(seed, "attributes", task, head_kind))
    tested = study.labelled(task, study.test_ids)
    predictions = {v: attr.predict(head, _matrix(study.embeddings[v], tested)) for v in test_on}
    return {"params": head.params, "val_score": head.val_score, "val_metric": val_metric(task),
            "train_rows": len(rows_train), "val_rows": len(rows_val),
            "test": evaluate_variants(study, head_kind, task, tested, predictions, thresholds, columns)}


def run_attributes(split_path: str, index_path: str, embedding_paths: dict[str, list[str]], train: str,
                   train_on: Sequence[str], test_on: Sequence[str], tasks: Sequence[str], heads: Sequence[str],
                   age_groups: Sequence[int], thresholds: Sequence[float], seed: int,
                   predictions_path: str, metrics_path: str, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train each head on the train split of ``train_on`` variants, select it on their val split,
    and test it on the same test images under every ``test_on`` variant (paired: only images
    embedded in every test variant are tested), plus every mask variant pooled as `masked`."""
    embeddings = {v: load_embeddings(paths) for v, paths in embedding_paths.items()}
    by_split = split_parts(split_path)
    test_ids = [i for i in by_split["test"] if all(i in embeddings[v] for v in test_on)]
    study = Study(read_labels(index_path, age_groups), by_split, test_ids, age_groups, embeddings)
    result = result_header(meta, train, train_on, test_on, tasks, heads, seed, age_groups, study)
    result["chance"] = {task: chance_level(study, task) for task in tasks}
    columns: dict[str, list] = {name: [] for name in PREDICTIONS_SCHEMA.names}
    from threadpoolctl import threadpool_limits

    # BLAS on one thread: the sums of several threads round differently, and the bytes (an MAE's
    # last digits, a coverage count at a threshold) followed the thread count of the machine
    with threadpool_limits(1):
        for head_kind in heads:
            result["heads"][head_kind] = {}
            for task in tasks:
                entry = _run_task(study, head_kind, task, train_on, test_on, thresholds, seed, columns)
                result["heads"][head_kind][task] = entry
                log.info("%s/%s: %s", head_kind, task, headlines(task, entry["test"]))
    write_table(predictions_path, pa.Table.from_pydict(columns, schema=PREDICTIONS_SCHEMA))
    write_json(metrics_path, result)
    return result


# ----------------------------------------------------------------------------------------------
# tables


def _metric_names(task: str) -> tuple[str, ...]:
    return ("mae", "rmse") if attr.is_regression(task) else ("accuracy", "balanced_accuracy")


def long_results(entries: Sequence[dict[str, str]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(headline metrics, per-group metrics), one row per value, from the metrics files listed in
    ``entries`` (each with dataset, model, split, train_variant and path)."""
    rows, group_rows, chance_seen = [], [], set()
    for e in entries:
        with open(e["path"], encoding="utf-8") as f:
            result = json.load(f)
        key = {"dataset": e["dataset"], "model": e["model"], "train_variant": e["train_variant"], "split": e["split"]}
        for head in result["head_kinds"]:
            for task in result["tasks"]:
                for variant in result["tested_as"]:
                    metrics = result["heads"][head][task]["test"][variant]
                    for metric in _metric_names(task):
                        rows.append({**key, "head": head, "task": task, "metric": metric,
                                     "test_variant": variant, "value": metrics[metric], "n": metrics["n"]})
                    metric = "mae" if attr.is_regression(task) else "accuracy"
                    for group_by, per in metrics["by_group"].items():
                        for group in ordered_groups(group_by, per, result["age_groups"]):
                            values = per.get(group, {"n": 0, metric: None})
                            group_rows.append({**key, "head": head, "task": task, "test_variant": variant,
                                               "group_by": group_by, "group": group, "n": values["n"],
                                               "metric": metric, "value": values[metric]})
        # the level a head must beat: once per (dataset, model, split), not per trained run
        chance_key = {**key, "train_variant": NOT_TRAINED}
        if tuple(chance_key.values()) not in chance_seen:
            chance_seen.add(tuple(chance_key.values()))
            for task, chance in (result.get("chance") or {}).items():
                for variant in result["tested_as"] if chance else ():
                    rows += [{**chance_key, "head": CHANCE, "task": task, "metric": metric, "test_variant": variant,
                              "value": chance[metric], "n": None} for metric in _metric_names(task)]
    return pd.DataFrame(rows), pd.DataFrame(group_rows)


def _in_order(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Rows sorted by ``columns``, each in the order its values first appear (config order), tasks
    in TASKS order, chance rows after the heads."""
    rank = {c: {v: k for k, v in enumerate(attr.TASKS if c == "task" else dict.fromkeys(frame[c]))} for c in columns}
    if "head" in rank and CHANCE in rank["head"]:  # after the heads it is the level of
        rank["head"][CHANCE] = len(rank["head"])
    return frame.sort_values(list(columns), key=lambda col: col.map(rank[col.name]), kind="stable")


def wide_table(long: pd.DataFrame, splits: Sequence[str]) -> pd.DataFrame:
    """Rows (dataset, model, head, train variant, task, metric); columns `<test variant>/<split>`,
    split by split, unmasked then every mask pooled (`masked`) then each mask type."""
    keys = ["dataset", "model", "head", "train_variant", "task", "metric"]
    long = long.assign(column=long["test_variant"] + "/" + long["split"])
    frame = long.pivot_table(index=keys, columns="column", values="value", aggfunc="first", sort=False)
    # pivot_table drops a row or column whose values are all missing: they stay, shown as missing
    frame = frame.reindex(index=pd.MultiIndex.from_frame(long[keys].drop_duplicates()),
                          columns=pd.Index(dict.fromkeys(long["column"]), name=frame.columns.name))
    variants = list(dict.fromkeys(long["test_variant"]))
    ordered = sorted(variants, key=lambda v: (v != UNMASKED, v != POOLED))
    columns = [f"{v}/{s}" for s in splits for v in ordered if f"{v}/{s}" in frame.columns]
    frame = _in_order(frame[columns].reset_index(), keys)
    return frame.round(6).reset_index(drop=True)


def attributes_tables(entries: Sequence[dict[str, str]], splits: Sequence[str], csv_path: str,
                      by_group_path: str) -> pd.DataFrame:
    """attributes.csv (wide) and attributes_by_group.csv (long), each with a Markdown copy."""
    from maskbench.reporting.tables import write_frame

    long, groups = long_results(entries)
    table = wide_table(long, splits)
    write_frame(table, csv_path, "attributes: sex, race, age, age group from (masked) faces", index=False)
    groups = _in_order(groups, ["dataset", "model", "head", "train_variant", "split", "task", "test_variant",
                                "group_by"]).round({"value": 6})
    write_frame(groups, by_group_path, "attributes by sex and race group", index=False)
    return table


# ----------------------------------------------------------------------------------------------
# figures

def attribute_figures(metrics_path: str, confusion_png: str, coverage_png: str, age_error_png: str) -> None:
    """Confusion matrices (row-normalised), accuracy-coverage curves and age error by age group of
    the first head of one metrics file, one panel or line per test variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(metrics_path, encoding="utf-8") as f:
        result = json.load(f)
    head = result["head_kinds"][0]
    tasks = result["heads"][head]
    title = f"{result.get('dataset', '')} {result.get('model', '')}, {result.get('split', '')} split, " \
            f"trained on {result['train_variant']} ({head})"
    class_tasks = [t for t in result["tasks"] if not attr.is_regression(t)]
    variants = result["tested_as"]

    fig, axes = plt.subplots(max(len(class_tasks), 1), max(len(variants), 1), squeeze=False,
                             figsize=(2.6 * max(len(variants), 1), 2.6 * max(len(class_tasks), 1)), dpi=100)
    for r, task in enumerate(class_tasks):
        for c, variant in enumerate(variants):
            m = tasks[task]["test"][variant]
            matrix = np.asarray(m["confusion"], dtype=float)
            norm = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
            ax = axes[r][c]
            ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
            ax.set_xticks(range(len(m["classes"])), m["classes"], rotation=90, fontsize=6)
            ax.set_yticks(range(len(m["classes"])), m["classes"], fontsize=6)
            ax.set_title(f"{task} / {variant}: {m['accuracy']:.3f}" if m["accuracy"] is not None else task, fontsize=7)
    fig.suptitle(title, fontsize=8)
    save_figure(fig, confusion_png, pdf=False)

    fig, axes = plt.subplots(1, max(len(class_tasks), 1), squeeze=False, figsize=(3.2 * max(len(class_tasks), 1), 3.0),
                             dpi=100)
    for c, task in enumerate(class_tasks):
        ax = axes[0][c]
        for variant in variants:
            curve = [p for p in tasks[task]["test"][variant]["coverage"] if p["accuracy"] is not None]
            ax.plot([p["coverage"] for p in curve], [p["accuracy"] for p in curve], marker="o", ms=3, label=variant)
        ax.set_xlabel("coverage (faces kept)")
        ax.set_ylabel("accuracy on kept faces")
        ax.set_title(task, fontsize=8)
        ax.set_xlim(0, 1.02)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=8)
    save_figure(fig, coverage_png, pdf=False)

    fig, ax = plt.subplots(figsize=(6.0, 3.2), dpi=100)
    if "age" in tasks:
        names = result["age_groups"]
        width = 0.8 / max(len(variants), 1)
        for k, variant in enumerate(variants):
            per = tasks["age"]["test"][variant]["by_group"]["age_group"]
            ax.bar(np.arange(len(names)) + k * width, [per.get(n, {}).get("mae", np.nan) for n in names], width,
                   label=variant)
        ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names)
        ax.set_xlabel("true age group")
        ax.set_ylabel("age MAE (years)")
        ax.legend(fontsize=6)
    ax.set_title(title, fontsize=8)
    save_figure(fig, age_error_png, pdf=False)
