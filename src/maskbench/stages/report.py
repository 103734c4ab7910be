"""The report stage: every table and figure the workflow writes from metrics, scores and summaries.

Rules hand these functions what to read as structured inputs (dicts keyed by dataset, model,
comparison or mask type); nothing here infers a dataset or a model from a file's path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from maskbench.data.index import mfr2_mask_types
from maskbench.evaluation.group_metrics import by_group_table
from maskbench.io.summaries import coverage_row
from maskbench.reporting.figures import det_figure, mask_effect_figure, roc_figure, score_histograms
from maskbench.reporting.model_table import model_figure, model_table, training_time_table
from maskbench.reporting.realism import by_type_rows, realism_figure, realism_rows
from maskbench.reporting.tables import (identification_rows, long_metrics, metric_table, provenance_footnotes,
                                        write_frame)
from maskbench.reporting.training_figures import training_curve_figure
from maskbench.stages.index import load_acquired


def _load_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_coverage(summaries: Mapping[str, Mapping[str, Any]], csv_path: str) -> None:
    """The coverage table: per dataset (``{"aligned": summary, "masked": {mask: summary}}``), how
    many images were aligned and masked by each mask type."""
    rows = [coverage_row(dataset, _load_json(files["aligned"]),
                         {m: _load_json(p) for m, p in files["masked"].items()})
            for dataset, files in summaries.items()]
    write_frame(pd.DataFrame(rows), csv_path, "coverage", index=False)


def write_metric_table(name: str, spec: Mapping[str, Any], cells: Sequence[Mapping[str, str]],
                       unknown: Mapping[str, Any], csv_path: str) -> None:
    """One configured table (rows datasets, columns models); ``cells`` are ``{dataset, model, path}``."""
    by_cell = {(c["dataset"], c["model"]): c["path"] for c in cells}
    datasets = list(dict.fromkeys(c["dataset"] for c in cells))
    models = list(dict.fromkeys(c["model"] for c in cells))
    frame = metric_table(by_cell, spec["metric"], datasets, models, spec.get("with_ci", False))
    title = f"{name}: {spec['metric']}, {spec['ref_variant']} vs {spec['probe_variant']}"
    write_frame(frame, csv_path, title, footnotes=provenance_footnotes(dict(unknown)))


def write_all_metrics(entries: Sequence[Mapping[str, str]], csv_path: str) -> None:
    """Every metric of every comparison as one long table."""
    write_frame(long_metrics(entries), csv_path, "all metrics", index=False)


def write_metrics_by_group(entries: Sequence[Mapping[str, str]], csv_path: str) -> None:
    """Verification metrics per demographic group of every comparison as one long table."""
    write_frame(by_group_table(entries), csv_path, "metrics by group", index=False)


def write_identification_table(entries: Sequence[Mapping[str, str]], csv_path: str) -> None:
    """Every identification result (rank-k, FNIR at FPIR) as one long table."""
    write_frame(identification_rows(entries), csv_path, "identification", index=False)


def write_models_table(metrics: Sequence[Mapping[str, str]], identification: Sequence[Mapping[str, str]],
                       reports: Mapping[str, str], csv_path: str, png_path: str) -> None:
    """The ablation table (every model x probe variant) and its figure."""
    frame = model_table(metrics, identification, dict(reports))
    write_frame(frame, csv_path, "models", index=False)
    model_figure(frame, png_path)


def write_training_time(benchmarks: Mapping[str, str], csv_path: str) -> None:
    """Wall time of each training job, from Snakemake's benchmark files (measured: not byte-stable)."""
    write_frame(training_time_table(dict(benchmarks)), csv_path, "training wall time (s)", index=False)


def curve_figures(curves: Sequence[Mapping[str, str]], dataset: str, roc_path: str, det_path: str,
                  hist_path: str) -> None:
    """ROC, DET and score-histogram figures of one dataset."""
    roc_figure(curves, f"ROC: {dataset}", roc_path)
    det_figure(curves, f"DET: {dataset}", det_path)
    score_histograms(curves, f"Genuine and impostor scores: {dataset}", hist_path)


def mask_effect(rows: Sequence[Mapping[str, str]], dataset: str, png_path: str) -> None:
    """Bar chart of EER per variant comparison and model for one dataset."""
    with_eer = [{**row, "eer": _load_json(row["path"])["eer"]} for row in rows]
    mask_effect_figure(with_eer, f"What each mask costs: {dataset}", png_path)


def training_figure(curve_path: str, report_path: str, model: str, png_path: str) -> None:
    """Loss and validation EER per epoch of one trained model, its kept epoch marked."""
    report = _load_json(report_path)
    training_curve_figure(curve_path, f"training of {model}", png_path,
                          kept_epoch=report["best_epoch"], unmasked_limit=report.get("unmasked_limit"))


def write_realism(entries: Sequence[Mapping[str, str]], labelled: Mapping[str, Mapping[str, Any]],
                  evaluation: Mapping[str, Any], csv_path: str, png_path: str, by_type_path: str) -> None:
    """The realism table and figure (real masks beside synthetic ones), and unmasked -> real per
    kind of real mask where the set labels them (``labelled``: dataset -> acquired, images, options)."""
    frame = realism_rows(entries, evaluation)
    write_frame(frame, csv_path, "realism: unmasked reference vs real and synthetic masks", index=False)
    realism_figure(frame, png_path)
    types = {
        dataset: mfr2_mask_types(Path(load_acquired(spec["acquired"])[spec["images"]]["path"]), spec["options"])
        for dataset, spec in labelled.items()
    }
    by_type = by_type_rows(entries, types, evaluation)
    write_frame(by_type, by_type_path, "realism by kind of real mask: unmasked reference vs real", index=False)
