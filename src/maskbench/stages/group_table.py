"""The per-group table stage: verification metrics per demographic group of every comparison."""

from __future__ import annotations

from typing import Mapping, Sequence

from maskbench.evaluation.group_metrics import by_group_table
from maskbench.reporting.tables import write_frame


def write_metrics_by_group(entries: Sequence[Mapping[str, str]], csv_path: str) -> None:
    write_frame(by_group_table(entries), csv_path, "metrics by group", index=False)
