"""The index stage: one Parquet table of a dataset's images, from where acquire put them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from maskbench.io.readers import load_acquired

log = logging.getLogger(__name__)


def index_dataset(
    acquired_json: str,
    layout: str,
    images_key: str,
    n_shards: int,
    options: dict[str, Any],
    table_path: str,
    report_path: str,
) -> None:
    from maskbench.data.index import build_index, write_index

    acquired = load_acquired(acquired_json)
    if images_key not in acquired:
        raise KeyError(f"{acquired_json} has no {images_key!r} entry; re-run acquire for this dataset")
    root = Path(acquired[images_key]["path"])
    table, report = build_index(layout, root, n_shards, dict(options or {}))
    if table.num_rows == 0:
        raise ValueError(
            f"no images found for layout {layout!r} under {root}: check the dataset's files entry "
            "in the config (path or url) and the layout"
        )
    log.info("indexed %d images of %s identities", table.num_rows, report.get("identities"))
    write_index(table, report, table_path, report_path)
