"""The realism stage: real masks beside synthetic ones, and unmasked -> real per kind of real mask."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from maskbench.data.index import mfr2_mask_types
from maskbench.reporting.realism import by_type_rows, realism_figure, realism_rows
from maskbench.reporting.tables import write_frame
from maskbench.io.readers import load_acquired


def write_realism(entries: Sequence[Mapping[str, str]], labelled: Mapping[str, Mapping[str, Any]],
                  evaluation: Mapping[str, Any], csv_path: str, png_path: str, by_type_path: str) -> None:
    """The realism table and figure, and the breakdown by kind of real mask where the set labels
    them (``labelled``: dataset -> its acquired.json, images entry and index options)."""
    frame = realism_rows(entries, evaluation)
    write_frame(frame, csv_path, "realism: unmasked reference vs real and synthetic masks", index=False)
    realism_figure(frame, png_path)
    types = {
        dataset: mfr2_mask_types(Path(load_acquired(spec["acquired"])[spec["images"]]["path"]), spec["options"])
        for dataset, spec in labelled.items()
    }
    by_type = by_type_rows(entries, types, evaluation)
    write_frame(by_type, by_type_path, "realism by kind of real mask: unmasked reference vs real", index=False)
