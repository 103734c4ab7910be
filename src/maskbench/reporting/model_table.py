"""The ablation table: every model under every probe variant, the table a reader of a
masked-recognition paper wants first.

One row per (dataset, verification protocol, model, probe variant) of the comparisons with an
unmasked reference: EER and FNMR at FMR 1e-3 from the verification metrics (the EER of the pairs
scored; ``eer_with_fte`` counts the pairs a side failed to enrol, ``failed_to_enrol_pairs`` of them,
as the FNMR does: a mask whose faces are often not found looks better on ``eer`` alone), rank-1 from the
dataset's identification protocol where it has one (blank otherwise), and for trained models the
kept epoch and its validation EERs from the training report. These are all deterministic, so
the table has the same bytes for the same config; training wall time is not, and is written to
a separate table (:func:`training_time_table`).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from maskbench.reporting.tables import NOT_MEASURABLE

__all__ = ["COLUMNS", "model_table", "training_time_table", "model_figure"]

COLUMNS = ["dataset", "protocol", "model", "probe_variant", "eer", "eer_with_fte", "failed_to_enrol_pairs",
           "fnmr_at_fmr_1e-3", "rank_1", "identification_protocol", "kept_epoch", "epochs", "val_masked_eer",
           "val_unmasked_eer"]
TRAINING_COLUMNS = COLUMNS[COLUMNS.index("kept_epoch"):]


def _number(value: Any) -> Any:
    if value is None or value == "":
        return ""
    if value == NOT_MEASURABLE:
        return NOT_MEASURABLE
    value = float(value)
    return NOT_MEASURABLE if not math.isfinite(value) else round(value, 6)


def _measured(value: Any) -> Any:
    """A verification metric: null in the metrics file means not measurable (``n/a``)."""
    return NOT_MEASURABLE if value is None else _number(value)


def _training(report_path: str) -> dict[str, Any]:
    with open(report_path, encoding="utf-8") as f:
        report = json.load(f)
    epochs = report.get("train", {}).get("epochs", report.get("spec", {}).get("epochs"))
    unmasked = report.get("best_val_unmasked_eer")
    return {"kept_epoch": report["best_epoch"], "epochs": epochs, "val_masked_eer": _number(report.get("best_val_eer")),
            "val_unmasked_eer": _number(unmasked)}


def model_table(metric_entries: list[dict[str, str]], identification_entries: list[dict[str, str]],
                training_reports: dict[str, str]) -> pd.DataFrame:
    """The table from per-comparison metrics files (``{dataset, model, protocol, comparison,
    path}``), identification results (``{dataset, model, protocol, path}``) and training reports
    (model -> report path). Comparisons whose reference is not unmasked are left out."""
    rank1: dict[tuple[str, str, str], tuple[str, Any]] = {}
    for e in sorted(identification_entries, key=lambda e: (e["dataset"], e["protocol"])):
        with open(e["path"], encoding="utf-8") as f:
            result = json.load(f)
        if result.get("gallery_variant", "unmasked") != "unmasked":
            continue  # [real, real] searches a real-masked gallery: not this table's unmasked reference
        key = (e["dataset"], e["model"], result["probe_variant"])
        rank1.setdefault(key, (e["protocol"], result["closed_set"].get("rank_1")))  # first protocol by name
    trained = {model: _training(path) for model, path in training_reports.items()}
    rows = []
    for e in metric_entries:
        ref, probe = e["comparison"].split("-vs-")
        if ref != "unmasked":
            continue
        with open(e["path"], encoding="utf-8") as f:
            values = json.load(f)
        protocol, rank = rank1.get((e["dataset"], e["model"], probe), ("", ""))
        training = trained.get(e["model"], {})
        rows.append({"dataset": e["dataset"], "protocol": e["protocol"], "model": e["model"], "probe_variant": probe,
                     "eer": _measured(values.get("eer")),
                     "eer_with_fte": _measured(values.get("eer_with_fte", values.get("eer"))),
                     "failed_to_enrol_pairs": int(values.get("n_failure_to_enrol_genuine", 0)
                                                  + values.get("n_failure_to_enrol_impostor", 0)),
                     "fnmr_at_fmr_1e-3": _measured(values.get("fnmr_at_fmr_1e-3")),
                     "rank_1": _number(rank), "identification_protocol": protocol,
                     **{k: training.get(k, "") for k in TRAINING_COLUMNS}})
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if frame.empty:
        return frame
    # unmasked first, then the mask types by name; models in config order (stable sort)
    frame["_unmasked"] = frame["probe_variant"] != "unmasked"
    frame = frame.sort_values(["dataset", "protocol", "_unmasked", "probe_variant"], kind="stable")
    return frame.drop(columns="_unmasked").reset_index(drop=True)


def training_time_table(benchmarks: dict[str, str]) -> pd.DataFrame:
    """Wall time of each training job, read from Snakemake's benchmark file (``s`` column, the
    last run): measured, so it changes from run to run; blank where the file is missing (a model
    trained elsewhere)."""
    rows = []
    for model, path in benchmarks.items():
        seconds: Any = ""
        if Path(path).is_file():
            with open(path, encoding="utf-8", newline="") as f:
                records = list(csv.DictReader(f, delimiter="\t"))
            if records and records[-1].get("s") not in (None, "", "NA"):
                seconds = round(float(records[-1]["s"]), 1)
        rows.append({"model": model, "train_wall_seconds": seconds, "source": path})
    return pd.DataFrame(rows, columns=["model", "train_wall_seconds", "source"])


def model_figure(frame: pd.DataFrame, png_path: str) -> None:
    """Grouped bars: EER of each model per probe variant, one panel per (dataset, protocol).
    Writes the PNG and a PDF beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from maskbench.reporting.figure_files import save_figure

    panels = list(dict.fromkeys(zip(frame["dataset"], frame["protocol"]))) or [("", "")]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8.6, 3.2 * len(panels)), dpi=120, squeeze=False)
    for ax, (dataset, protocol) in zip(axes[:, 0], panels):
        part = frame[(frame["dataset"] == dataset) & (frame["protocol"] == protocol)]
        variants = list(dict.fromkeys(part["probe_variant"]))
        models = list(dict.fromkeys(part["model"]))
        width = 0.8 / max(1, len(models))
        for k, model in enumerate(models):
            rows = part[part["model"] == model].set_index("probe_variant")
            heights = [float(rows.at[v, "eer"]) if v in rows.index and rows.at[v, "eer"] not in ("", NOT_MEASURABLE)
                       else np.nan for v in variants]
            ax.bar(np.arange(len(variants)) + (k - (len(models) - 1) / 2) * width, heights, width, label=model)
        ax.set_xticks(np.arange(len(variants)), variants, rotation=20, fontsize=8)
        ax.set_ylabel("EER (unmasked reference)")
        ax.set_title(f"{dataset}: {protocol}" if dataset else "no comparison with an unmasked reference")
        ax.grid(True, axis="y", alpha=0.3)
        if models:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)
    fig.tight_layout()
    save_figure(fig, png_path)
