"""The ablation table from per-comparison metrics, identification results and training reports."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from maskbench.reporting.model_table import COLUMNS, model_figure, model_table, training_time_table
from maskbench.reporting.tables import write_frame


def _json(path: Path, value: dict) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))
    return str(path)


def _inputs(tmp_path: Path):
    metrics, ident = [], []
    for model, base in (("base", 0.1), ("head", 0.05)):
        for comparison, extra in (("unmasked-vs-unmasked", 0.0), ("unmasked-vs-surgical", 0.1),
                                  ("surgical-vs-surgical", 0.2)):
            path = _json(tmp_path / f"m/{model}/{comparison}.json",
                         {"eer": base + extra, "fnmr_at_fmr_1e-3": None if model == "head" else 0.5, "n_genuine": 3})
            metrics.append({"dataset": "d", "model": model, "protocol": "pairs", "comparison": comparison,
                            "path": path})
        for variant, rank in (("unmasked", 0.9), ("surgical", 0.4)):
            for protocol, shift in (("search_b", 0.0), ("search_a", 0.05)):
                ident.append({"dataset": "d", "model": model, "protocol": protocol,
                              "path": _json(tmp_path / f"i/{model}/{protocol}/{variant}.json",
                                            {"probe_variant": variant, "closed_set": {"rank_1": rank + shift}})})
    metrics.append({"dataset": "d", "model": "fused", "protocol": "pairs", "comparison": "unmasked-vs-surgical",
                    "path": _json(tmp_path / "m/fused.json", {"eer": 0.12})})
    report = _json(tmp_path / "r/head.json", {"best_epoch": 3, "train": {"epochs": 5}, "best_val_eer": 0.2,
                                              "best_val_unmasked_eer": 0.04})
    return metrics, ident, {"head": report}


def test_one_row_per_model_and_probe_variant_with_an_unmasked_reference(tmp_path):
    frame = model_table(*_inputs(tmp_path))
    assert list(frame.columns) == COLUMNS
    assert list(zip(frame.model, frame.probe_variant)) == [
        ("base", "unmasked"), ("head", "unmasked"), ("base", "surgical"), ("head", "surgical"), ("fused", "surgical")]
    rows = frame.set_index(["model", "probe_variant"])
    assert rows.loc[("head", "surgical"), "eer"] == 0.15
    assert rows.loc[("head", "surgical"), "fnmr_at_fmr_1e-3"] == "n/a"  # not measurable, never blank or 0
    # rank-1 from the first identification protocol by name, which is named
    assert rows.loc[("base", "surgical"), "rank_1"] == 0.45
    assert rows.loc[("base", "surgical"), "identification_protocol"] == "search_a"
    assert rows.loc[("fused", "surgical"), "rank_1"] == "" and rows.loc[("base", "unmasked"), "kept_epoch"] == ""
    assert rows.loc[("head", "unmasked"), ["kept_epoch", "epochs", "val_masked_eer", "val_unmasked_eer"]].tolist() == [
        3, 5, 0.2, 0.04]


def test_table_and_figure_bytes_are_reproducible(tmp_path):
    out = []
    for k in range(2):
        frame = model_table(*_inputs(tmp_path))
        write_frame(frame, str(tmp_path / f"t{k}/models.csv"), "models", index=False)
        model_figure(frame, str(tmp_path / f"t{k}/models.png"))
        out.append([(tmp_path / f"t{k}" / n).read_bytes() for n in ("models.csv", "models.md", "models.png")])
    assert out[0] == out[1]
    assert pd.read_csv(tmp_path / "t0/models.csv").shape == (5, len(COLUMNS))


def test_training_time_comes_from_the_benchmark_file(tmp_path):
    bench = tmp_path / "head.tsv"
    bench.write_text("s\th:m:s\tmax_rss\n12.345\t0:00:12\t100\n")
    frame = training_time_table({"head": str(bench), "elsewhere": str(tmp_path / "missing.tsv")})
    assert frame.set_index("model")["train_wall_seconds"].to_dict() == {"head": 12.3, "elsewhere": ""}


def test_failures_to_enrol_are_beside_the_eer_and_a_real_gallery_never_fills_rank_1(tmp_path):
    """`eer` is of the pairs scored: a mask whose faces are often not found looked better on it
    alone; and a [real, real] search (probe variant `real` too) took the [unmasked, real] row's
    rank-1 where it came first."""
    path = _json(tmp_path / "m.json", {"eer": 0.157, "eer_with_fte": 0.312, "fnmr_at_fmr_1e-3": 0.86,
                                       "n_failure_to_enrol_genuine": 30, "n_failure_to_enrol_impostor": 4})
    metrics = [{"dataset": "d", "model": "m", "protocol": "p", "comparison": "unmasked-vs-real", "path": path}]
    ident = [{"dataset": "d", "model": "m", "protocol": protocol,
              "path": _json(tmp_path / f"{protocol}.json", {"probe_variant": "real", "gallery_variant": gallery,
                                                         "closed_set": {"rank_1": rank}})}
             for protocol, gallery, rank in (("a_search", "real", 0.1), ("b_search", "unmasked", 0.7))]
    row = model_table(metrics, ident, {}).iloc[0]
    assert (row["eer"], row["eer_with_fte"], row["failed_to_enrol_pairs"]) == (0.157, 0.312, 34)
    assert (row["rank_1"], row["identification_protocol"]) == (0.7, "b_search")
