"""The papers' tables (CSV, and Markdown beside them) from per-comparison metric files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from maskbench.io.atomic import write_text

NOT_MEASURABLE = "n/a"


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return NOT_MEASURABLE
    return round(float(value), 6)


def _cell_text(values: dict, metric: str, with_ci: bool) -> Any:
    cell = _cell(values.get(metric))
    low, high = values.get(f"{metric}_ci_low"), values.get(f"{metric}_ci_high")
    if with_ci and cell != NOT_MEASURABLE and low is not None and high is not None:
        return f"{cell:.4f} [{low:.4f}, {high:.4f}]"
    return cell


def metric_table(cells: dict[tuple[str, str], str], metric: str | list[str], datasets: list[str],
                 models: list[str], with_ci: bool = False) -> pd.DataFrame:
    """Rows: datasets; columns: models (``model:metric`` for several metrics); cells read from
    each (dataset, model) metrics file.

    A metric a file marks as not measurable (too few impostor pairs for the target FMR) is
    written as ``n/a`` instead of a number that means nothing; ``with_ci`` appends the bootstrap
    interval where the metrics file has one.
    """
    metric_list = [metric] if isinstance(metric, str) else list(metric)
    data = {}
    for model in models:
        loaded = []
        for dataset in datasets:
            with open(cells[(dataset, model)], encoding="utf-8") as f:
                loaded.append(json.load(f))
        for m in metric_list:
            name = model if len(metric_list) == 1 else f"{model}:{m}"
            data[name] = [_cell_text(values, m, with_ci) for values in loaded]
    return pd.DataFrame(data, index=pd.Index(datasets, name="dataset"))


FOOTNOTE_MARK = "†"


def provenance_footnotes(unknown: dict[str, list[str]],
                         normalised_on: dict[str, dict[str, str]] | None = None) -> dict[str, str]:
    """model -> footnote for each model whose training data (its own or a member's) is unknown, or
    whose score normalisation (``normalised_on``: model -> {dataset: protocol}) used pairs that may
    share images with the tested ones."""
    notes: dict[str, list[str]] = {}
    for model, behind in unknown.items():
        if behind:
            notes.setdefault(model, []).append(f"{', '.join(behind)}: training data not declared (`trained_on`); "
                                               "its people may overlap the tested ones")
    for model, by_dataset in (normalised_on or {}).items():
        for protocol in dict.fromkeys(by_dataset.values()):
            datasets = [d for d, p in by_dataset.items() if p == protocol]
            notes.setdefault(model, []).append(
                f"z-normalised with the mean and spread of its members' scores on `{protocol}` pairs (no labels), "
                f"which may share images with the tested pairs of {', '.join(datasets)}")
    return {model: "; ".join(texts) for model, texts in notes.items()}


def _md_text(value: Any) -> str:
    """A cell as the CSV shows it: blank for a missing value (None and NaN printed as words)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def to_markdown(frame: pd.DataFrame, title: str, footnotes: dict[str, str] | None = None) -> str:
    """A Markdown table; a column of a model in ``footnotes`` (``model`` or ``model:metric``) is
    marked and its note follows the table."""
    footnotes = footnotes or {}
    marked = [f"{c} {FOOTNOTE_MARK}" if str(c).split(":")[0] in footnotes else str(c) for c in frame.columns]
    header = "| " + " | ".join([frame.index.name or "", *marked]) + " |"
    rule = "|" + "---|" * (len(frame.columns) + 1)
    lines = [f"# {title}", "", header, rule]
    # object rows: iterrows() of an all-number row gives floats (a count of 602 printed 602.0)
    for name, row in frame.astype(object).iterrows():
        lines.append("| " + " | ".join([str(name), *(_md_text(v) for v in row.tolist())]) + " |")
    if frame.empty:
        lines += ["", "No rows: nothing of this kind was configured or evaluable."]
    shown = [m for m in footnotes if any(str(c).split(":")[0] == m for c in frame.columns)]
    if shown:
        lines += [""] + [f"{FOOTNOTE_MARK} {m}: {footnotes[m]}" for m in shown]
    return "\n".join(lines) + "\n"


def write_frame(frame: pd.DataFrame, csv_path: str, title: str, index: bool = True,
                footnotes: dict[str, str] | None = None) -> None:
    """CSV plus a Markdown copy beside it (with ``footnotes`` per model), both written atomically."""
    write_text(csv_path, frame.to_csv(index=index, lineterminator="\n"))
    shown = frame if index or not len(frame.columns) else frame.set_index(frame.columns[0])
    write_text(str(Path(csv_path).with_suffix(".md")), to_markdown(shown, title, footnotes))


def long_metrics(entries: list[dict[str, str]]) -> pd.DataFrame:
    """Every metric of every (dataset, model, protocol, comparison), one row each."""
    rows = []
    for e in entries:
        with open(e["path"], encoding="utf-8") as f:
            values = json.load(f)
        # nested entries (the operating point's confusion matrix and report) stay in the JSON
        values = {k: v for k, v in values.items() if not isinstance(v, (dict, list))}
        ref, probe = e["comparison"].split("-vs-")
        rows.append({"dataset": e["dataset"], "model": e["model"], "protocol": e["protocol"],
                     "ref_variant": ref, "probe_variant": probe, **values})
    frame = pd.DataFrame(rows, columns=None if rows else ["dataset", "model", "protocol", "ref_variant",
                                                           "probe_variant"])
    return frame.sort_values(["dataset", "protocol", "ref_variant", "probe_variant", "model"], kind="stable")


def identification_rows(entries: list[dict[str, str]]) -> pd.DataFrame:
    """One row per (dataset, protocol, probe variant, model): rank-k accuracies, and FNIR at each
    FPIR target for open-set protocols (``n/a`` where too few non-mated searches exist). With a
    ``[real, real]`` result a ``gallery_variant`` column tells it from ``[unmasked, real]``."""
    rows, galleries = [], []
    for e in entries:
        with open(e["path"], encoding="utf-8") as f:
            result = json.load(f)
        row = {"dataset": e["dataset"], "protocol": e["protocol"], "probe_variant": result["probe_variant"],
               "model": e["model"], "mated_searches": result["counts"]["mated_searches"],
               "non_mated_searches": result["counts"]["non_mated_searches"],
               # searches that could not run (no embedding for the probe or the mate): in the rates
               "failed_searches": (result["counts"]["mated_searches_failed"]
                                   + result["counts"]["non_mated_searches_failed"])}
        row.update({k: v for k, v in result["closed_set"].items() if k.startswith("rank_")})
        for point in (result.get("open_set") or {}).get("points", []):
            key = f"fnir_at_fpir_{point['fpir_target']:g}"
            row[key] = point["fnir"] if point["measurable"] else NOT_MEASURABLE
        rows.append(row)
        galleries.append(result.get("gallery_variant", "unmasked"))
    frame = pd.DataFrame(rows, columns=None if rows else ["dataset", "protocol", "probe_variant", "model"])
    if frame.empty:
        return frame
    if set(galleries) == {"unmasked"}:  # no [real, real]: the table as it always was
        return frame.sort_values(["dataset", "protocol", "probe_variant", "model"], kind="stable")
    frame.insert(2, "gallery_variant", galleries)
    return frame.sort_values(["dataset", "protocol", "gallery_variant", "probe_variant", "model"], kind="stable")

