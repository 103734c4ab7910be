"""The score-file stage: scores exchanged with other tools (Bob's 4/5 columns, CSV)."""

from __future__ import annotations

from typing import Sequence

from maskbench.io.score_files import export_score_file, import_score_file


def import_scores_step(scores_path: str, fmt: str, out_path: str, pairs_path: str | None,
                       comparison: str) -> dict:
    """Import a score file made elsewhere as a scores Parquet file (CSV files are matched to
    ``pairs_path``; Bob files carry their own labels)."""
    return import_score_file(scores_path, fmt, out_path, pairs_path=pairs_path, comparison=comparison)


def export_scores_step(scores_path: str, aligned_paths: Sequence[str], out_path: str, columns: int) -> dict:
    """Export one scores Parquet file in Bob's 4- or 5-column text format."""
    return export_score_file(scores_path, list(aligned_paths), out_path, columns=columns)
