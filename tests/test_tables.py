"""The configured tables: cells from metric files, n/a where a metric is not measurable,
intervals, several metrics per table, missing cells, and footnotes for models of unknown
training data."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from maskbench.reporting.tables import NOT_MEASURABLE, metric_table, provenance_footnotes, to_markdown, write_frame


def write_cells(root, values: dict[tuple[str, str], dict]) -> dict[tuple[str, str], str]:
    cells = {}
    for (dataset, model), metrics in values.items():
        path = root / f"{dataset}-{model}.json"
        path.write_text(json.dumps(metrics))
        cells[(dataset, model)] = str(path)
    return cells


VALUES = {
    ("lfw", "dlib"): {"eer": 0.0412345678, "eer_ci_low": 0.03, "eer_ci_high": 0.05,
                      "fnmr_at_fmr_1e-3": 0.2, "fnmr_at_fmr_1e-3_measurable": True},
    ("lfw", "head"): {"eer": 0.02, "fnmr_at_fmr_1e-3": None, "fnmr_at_fmr_1e-3_measurable": False},
    ("gt", "dlib"): {"eer": float("nan"), "eer_ci_low": None, "eer_ci_high": None, "fnmr_at_fmr_1e-3": 0.5},
    ("gt", "head"): {"eer": 0.1, "eer_ci_low": 0.08, "eer_ci_high": 0.125},
}


def test_cells_rows_columns_and_not_measurable(tmp_path):
    frame = metric_table(write_cells(tmp_path, VALUES), "fnmr_at_fmr_1e-3", ["lfw", "gt"], ["dlib", "head"])
    assert list(frame.index) == ["lfw", "gt"] and list(frame.columns) == ["dlib", "head"]
    assert frame.loc["lfw", "dlib"] == 0.2
    assert frame.loc["lfw", "head"] == NOT_MEASURABLE  # too few impostors: n/a, not a number
    assert frame.loc["gt", "head"] == NOT_MEASURABLE  # the metric is missing from the file: n/a


def test_interval_cells_and_rounding(tmp_path):
    frame = metric_table(write_cells(tmp_path, VALUES), "eer", ["lfw", "gt"], ["dlib", "head"], with_ci=True)
    assert frame.loc["lfw", "dlib"] == "0.0412 [0.0300, 0.0500]"
    assert frame.loc["gt", "head"] == "0.1000 [0.0800, 0.1250]"
    assert frame.loc["lfw", "head"] == 0.02  # no interval in the file: the value alone
    assert frame.loc["gt", "dlib"] == NOT_MEASURABLE  # NaN is never printed as a number
    plain = metric_table(write_cells(tmp_path, VALUES), "eer", ["lfw"], ["dlib"])
    assert plain.loc["lfw", "dlib"] == 0.041235  # six decimals


def test_several_metrics_make_model_metric_columns(tmp_path):
    frame = metric_table(write_cells(tmp_path, VALUES), ["eer", "fnmr_at_fmr_1e-3"], ["lfw", "gt"], ["dlib", "head"])
    assert list(frame.columns) == ["dlib:eer", "dlib:fnmr_at_fmr_1e-3", "head:eer", "head:fnmr_at_fmr_1e-3"]
    assert frame.loc["gt", "dlib:fnmr_at_fmr_1e-3"] == 0.5 and frame.loc["lfw", "head:eer"] == 0.02


def test_footnote_for_an_ensemble_normalised_on_pairs_that_may_share_tested_images(tmp_path):
    notes = provenance_footnotes({"dlib": [], "ens": ["dicta_cp"]},
                                 {"ens": {"lfw": "val_pairs", "gt": "val_pairs", "sof": "val_sof"}})
    assert list(notes) == ["ens"]
    text = notes["ens"]
    # both reasons, one per normalisation protocol with the datasets it touches
    assert "dicta_cp: training data not declared" in text
    assert "`val_pairs` pairs (no labels), which may share images with the tested pairs of lfw, gt" in text
    assert "`val_sof` pairs (no labels), which may share images with the tested pairs of sof" in text
    assert provenance_footnotes({"dlib": []}, {}) == {}


def test_a_missing_metric_file_is_an_error_naming_it(tmp_path):
    cells = write_cells(tmp_path, VALUES)
    cells[("gt", "head")] = str(tmp_path / "absent.json")
    with pytest.raises(FileNotFoundError, match="absent.json"):
        metric_table(cells, "eer", ["lfw", "gt"], ["dlib", "head"])


def test_csv_and_markdown_with_a_footnote_for_unknown_training_data(tmp_path):
    frame = metric_table(write_cells(tmp_path, VALUES), ["eer", "fnmr_at_fmr_1e-3"], ["lfw", "gt"], ["dlib", "head"])
    notes = provenance_footnotes({"dlib": [], "head": ["dicta_cp"]})
    assert list(notes) == ["head"] and "dicta_cp" in notes["head"]
    write_frame(frame, str(tmp_path / "t.csv"), "t: eer", footnotes=notes)
    back = pd.read_csv(tmp_path / "t.csv", index_col="dataset")
    assert list(back.columns) == list(frame.columns)  # the CSV keeps plain model names
    assert (tmp_path / "t.csv").read_text().splitlines()[2] == "gt,n/a,0.5,0.1,n/a"
    md = (tmp_path / "t.md").read_text().splitlines()
    assert md[0] == "# t: eer"
    assert md[2] == "| dataset | dlib:eer | dlib:fnmr_at_fmr_1e-3 | head:eer † | head:fnmr_at_fmr_1e-3 † |"
    assert md[-1].startswith("† head: dicta_cp: training data not declared")
    assert "†" not in to_markdown(frame, "t")  # nothing to footnote, no mark


def test_markdown_shows_cells_as_the_csv_does_and_empty_tables_are_written(tmp_path):
    """An all-number row printed its counts as floats (602.0) and a missing value as None or nan
    where the CSV is blank; a table without rows crashed (KeyError / IndexError)."""
    from maskbench.stages.tables import write_all_metrics, write_identification_table

    frame = pd.DataFrame({"dataset": ["a", "b"], "images": [602, 7], "rate": [0.5, float("nan")],
                          "note": [None, "x"]})
    write_frame(frame, str(tmp_path / "t.csv"), "t", index=False)
    md = (tmp_path / "t.md").read_text().splitlines()
    assert md[4] == "| a | 602 | 0.5 |  |" and md[5] == "| b | 7 |  | x |"
    write_all_metrics([], str(tmp_path / "all.csv"))
    write_identification_table([], str(tmp_path / "ident.csv"))
    assert (tmp_path / "all.csv").read_text().startswith("dataset,model,protocol,ref_variant,probe_variant")
    assert "No rows" in (tmp_path / "ident.md").read_text()


def test_a_configured_table_names_the_protocol_of_each_dataset(tmp_path):
    """benchmark2 (test_pairs) and view2 (lfw_view2) showed different EERs under one title: the
    Markdown title now says which pairs each row is of; the CSV keeps datasets x models."""
    from maskbench.stages.tables import write_metric_table

    paths = write_cells(tmp_path, VALUES)
    cells = [{"dataset": d, "model": m, "protocol": {"lfw": "test_pairs", "gt": "dicta1000"}[d], "path": p}
             for (d, m), p in paths.items()]
    spec = {"metric": ["eer", "fnmr_at_fmr_1e-3"], "ref_variant": "unmasked", "probe_variant": "surgical"}
    write_metric_table("t", spec, cells, {}, str(tmp_path / "t.csv"))
    title = (tmp_path / "t.md").read_text().splitlines()[0]
    assert title == "# t: eer, fnmr_at_fmr_1e-3, unmasked vs surgical; pairs: lfw test_pairs, gt dicta1000"
    assert pd.read_csv(tmp_path / "t.csv", index_col="dataset").columns.str.contains(":").all()
