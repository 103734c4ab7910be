"""The model-comparison stage: the ablation table and figure, and the training wall times."""

from __future__ import annotations

from typing import Mapping, Sequence

from maskbench.reporting.model_table import model_figure, model_table, training_time_table
from maskbench.reporting.tables import write_frame


def write_models_table(metrics: Sequence[Mapping[str, str]], identification: Sequence[Mapping[str, str]],
                       reports: Mapping[str, str], csv_path: str, png_path: str) -> None:
    """The ablation table (every model x probe variant) and its figure."""
    frame = model_table(metrics, identification, dict(reports))
    write_frame(frame, csv_path, "models", index=False)
    model_figure(frame, png_path)


def write_training_time(benchmarks: Mapping[str, str], csv_path: str) -> None:
    """Wall time of each training job, from Snakemake's benchmark files (measured: not byte-stable)."""
    write_frame(training_time_table(dict(benchmarks)), csv_path, "training wall time (s)", index=False)
