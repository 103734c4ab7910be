"""The table stage: the coverage table, configured metric tables and the long tables of every
metric and identification result.

Rules hand these functions what to read as structured inputs (dicts keyed by dataset, model or
mask type); nothing here infers a dataset or a model from a file's path.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import pandas as pd

from maskbench.reporting.coverage import coverage_row
from maskbench.reporting.tables import (identification_rows, long_metrics, metric_table, provenance_footnotes,
                                        write_frame)


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
                       unknown: Mapping[str, Any], csv_path: str,
                       normalised_on: Mapping[str, Mapping[str, str]] | None = None) -> None:
    """One configured table (rows datasets, columns models); ``cells`` are ``{dataset, model, path}``
    and the ``protocol`` whose pairs the cell reports, named per dataset in the Markdown title (two
    tables of one comparison on different protocols give different numbers). ``unknown`` and
    ``normalised_on`` are footnoted per model (see provenance_footnotes)."""
    by_cell = {(c["dataset"], c["model"]): c["path"] for c in cells}
    datasets = list(dict.fromkeys(c["dataset"] for c in cells))
    models = list(dict.fromkeys(c["model"] for c in cells))
    frame = metric_table(by_cell, spec["metric"], datasets, models, spec.get("with_ci", False))
    metric = spec["metric"] if isinstance(spec["metric"], str) else ", ".join(spec["metric"])
    title = f"{name}: {metric}, {spec['ref_variant']} vs {spec['probe_variant']}"
    protocols = {c["dataset"]: c["protocol"] for c in cells if c.get("protocol")}
    if protocols:
        title += "; pairs: " + ", ".join(f"{d} {p}" for d, p in protocols.items())
    notes = provenance_footnotes(dict(unknown), {m: dict(by) for m, by in (normalised_on or {}).items()})
    write_frame(frame, csv_path, title, footnotes=notes)


def write_all_metrics(entries: Sequence[Mapping[str, str]], csv_path: str) -> None:
    """Every metric of every comparison as one long table."""
    write_frame(long_metrics(entries), csv_path, "all metrics", index=False)


def write_identification_table(entries: Sequence[Mapping[str, str]], csv_path: str) -> None:
    """Every identification result (rank-k, FNIR at FPIR) as one long table."""
    write_frame(identification_rows(entries), csv_path, "identification", index=False)
