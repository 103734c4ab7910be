"""The figure stage: ROC, DET and score histograms, the mask-effect bars and training curves."""

from __future__ import annotations

import json
from typing import Mapping, Sequence

from maskbench.reporting.figures import (det_figure, mask_effect_figure, roc_figure, score_histograms,
                                         with_curve_data)
from maskbench.reporting.training_figures import training_curve_figure


def curve_figures(curves: Sequence[Mapping[str, str]], dataset: str, roc_path: str, det_path: str,
                  hist_path: str) -> None:
    """ROC, DET and score-histogram figures of one dataset (``dataset``: its name and the protocol shown);
    each score file is read, and its error rates computed, once for the three."""
    curves = with_curve_data(list(curves))
    roc_figure(curves, f"ROC: {dataset}", roc_path)
    det_figure(curves, f"DET: {dataset}", det_path)
    score_histograms(curves, f"Genuine and impostor scores: {dataset}", hist_path)


def mask_effect(rows: Sequence[Mapping[str, str]], dataset: str, png_path: str) -> None:
    """Bar chart of EER per variant comparison and model for one dataset."""
    with_eer = []
    for row in rows:
        with open(row["path"], encoding="utf-8") as f:
            with_eer.append({**row, "eer": json.load(f)["eer"]})
    mask_effect_figure(with_eer, f"What each mask costs: {dataset}", png_path)


def training_figure(curve_path: str, report_path: str, model: str, png_path: str) -> None:
    """Loss and validation EER per epoch of one trained model, its kept epoch marked."""
    with open(report_path, encoding="utf-8") as f:
        report = json.load(f)
    training_curve_figure(curve_path, f"training of {model}", png_path,
                          kept_epoch=report["best_epoch"], unmasked_limit=report.get("unmasked_limit"))
