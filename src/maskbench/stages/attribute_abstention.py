"""Abstention curves of every attribute run, embedding heads and the CNN alike, in one table.

A head may decline to answer when its confidence (the top class probability) is below a
threshold: the curve gives, per threshold, the share of test faces it still answers (coverage)
and its accuracy on them. The metrics files of heads and CNN share one format, so the table and
the figure (masked test faces, every run trained on the same variant side by side) take both.
"""

from __future__ import annotations

import json
from typing import Sequence

import pandas as pd

from maskbench.attributes import heads as attr
from maskbench.attributes.settings import POOLED
from maskbench.reporting.figure_files import save_figure

COLUMNS = ["dataset", "model", "head", "split", "train_variant", "task", "test_variant", "threshold", "kept",
           "coverage", "accuracy"]


def abstention_rows(entries: Sequence[dict[str, str]]) -> pd.DataFrame:
    """One row per run x head x class task x test variant x threshold, from the metrics files in
    ``entries`` (dataset, model, split, train_variant, path each)."""
    rows = []
    for e in entries:
        with open(e["path"], encoding="utf-8") as f:
            result = json.load(f)
        for head in result["head_kinds"]:
            for task in result["tasks"]:
                if attr.is_regression(task):
                    continue
                for variant in result["tested_as"]:
                    for point in result["heads"][head][task]["test"][variant]["coverage"]:
                        rows.append({"dataset": e["dataset"], "model": e["model"], "head": head, "split": e["split"],
                                     "train_variant": e["train_variant"], "task": task, "test_variant": variant,
                                     **{k: point[k] for k in ("threshold", "kept", "coverage", "accuracy")}})
    if not rows:
        raise ValueError(f"no classification task in the {len(entries)} attribute runs given: no abstention curve")
    return pd.DataFrame(rows, columns=COLUMNS)


def abstention_table(entries: Sequence[dict[str, str]], csv_path: str, figure_path: str) -> pd.DataFrame:
    """attributes_abstention.csv (+ .md) and a figure of the curves on the masked test faces."""
    from maskbench.reporting.tables import write_frame

    frame = abstention_rows(entries).round({"coverage": 6, "accuracy": 6})
    write_frame(frame, csv_path, "attribute abstention: accuracy on the faces kept at each confidence threshold",
                index=False)
    abstention_figure(frame, figure_path)
    return frame


def abstention_figure(frame: pd.DataFrame, path: str) -> None:
    """One panel per class task: accuracy against coverage on the masked test faces (every mask
    pooled; unmasked where a dataset has no mask), one line per model, head, split and train variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = frame[frame.test_variant == POOLED]
    if shown.empty:
        shown = frame
    tasks = [t for t in attr.TASKS if t in set(shown.task)]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
    keys = ["dataset", "model", "head", "split", "train_variant"]
    for ax, task in zip(axes[0], tasks):
        for key, curve in shown[shown.task == task].groupby(keys, sort=False):
            curve = curve[curve.accuracy.notna()]
            ax.plot(curve.coverage, curve.accuracy, marker="o", ms=3, label="/".join(str(k) for k in key[1:]))
        ax.set_title(task)
        ax.set_xlabel("coverage (faces kept)")
        ax.set_ylabel("accuracy on the faces kept")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    save_figure(fig, path, pdf=False)
