"""The contact sheet of real-masked photos beside synthetic masked chips of the same people, and
the score that chooses the realistic rendering preset."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from maskbench.io.chips import encode_chip
from maskbench.stages.contact_sheet import REAL_ROW, sheet_cells, write_contact_sheet
from maskbench.io.manifests import ALIGNED_SCHEMA, MASKED_SCHEMA
from maskbench.faces.masks import MaskSpec
from maskbench.faces.realism_score import realism_distance
from maskbench.faces.rendering_presets import RENDERING_PRESETS


def _chip(value):
    return encode_chip(np.full((20, 20, 3), value, np.uint8))


def _shards(tmp_path):
    # ann: bare 10, real 11; bob: bare 20 (not aligned: no_face), real 21; cat: bare only (30)
    aligned = [
        {"image_id": "ann/1", "identity": "ann", "status": "ok", "chip": _chip(10), "real_mask": False},
        {"image_id": "ann/2", "identity": "ann", "status": "ok", "chip": _chip(11), "real_mask": True},
        {"image_id": "bob/1", "identity": "bob", "status": "no_face", "chip": None, "real_mask": False},
        {"image_id": "bob/2", "identity": "bob", "status": "fallback", "chip": _chip(21), "real_mask": True},
        {"image_id": "cat/1", "identity": "cat", "status": "ok", "chip": _chip(30), "real_mask": False},
    ]
    a = tmp_path / "aligned.parquet"
    pq.write_table(pa.Table.from_pylist(aligned, schema=ALIGNED_SCHEMA), a)
    masked = [
        {"image_id": "ann/1", "status": "masked", "chip": _chip(100)},
        {"image_id": "ann/2", "status": "real_mask", "chip": None},
        {"image_id": "bob/1", "status": "not_aligned", "chip": None},
        {"image_id": "bob/2", "status": "real_mask", "chip": None},
        {"image_id": "cat/1", "status": "masked", "chip": _chip(101)},
    ]
    m = tmp_path / "masked.parquet"
    pq.write_table(pa.Table.from_pylist(masked, schema=MASKED_SCHEMA), m)
    return [str(a)], {"surgical_blue": [str(m)]}


def test_columns_are_the_people_with_real_masks(tmp_path):
    aligned, masked = _shards(tmp_path)
    cells = sheet_cells(aligned, masked)
    assert list(cells) == [REAL_ROW, "surgical_blue"]
    assert [int(c[0, 0, 0]) for c in cells[REAL_ROW]] == [11, 21]  # ann, bob; cat has no real mask
    ann, bob = cells["surgical_blue"]
    assert int(ann[0, 0, 0]) == 100 and bob is None  # bob's bare photo was not aligned: a blank cell
    assert len(sheet_cells(aligned, masked, people=1)[REAL_ROW]) == 1


def test_sheet_png_has_a_row_per_kind(tmp_path):
    aligned, masked = _shards(tmp_path)
    out = tmp_path / "figures" / "sheet.png"
    counts = write_contact_sheet(aligned, masked, str(out))
    assert counts == {REAL_ROW: 2, "surgical_blue": 1}
    img = cv2.imread(str(out))
    assert img.shape[0] == 2 * 96 and img.shape[1] == 120 + 2 * 96


def test_no_real_masked_photo_is_an_error(tmp_path):
    table = pa.Table.from_pylist([{"image_id": "a/1", "identity": "a", "status": "ok", "chip": _chip(1),
                                   "real_mask": False}], schema=ALIGNED_SCHEMA)
    pq.write_table(table, tmp_path / "a.parquet")
    with pytest.raises(ValueError, match="no aligned real-masked photo"):
        sheet_cells([str(tmp_path / "a.parquet")], {})


def test_realism_distance_sums_log_ratios_and_the_found_gap():
    real = {"blur_ratio": 1.0, "noise_ratio": 0.9, "contrast": 0.8, "rel_luminance": 1.2}
    assert realism_distance(real, real, 0.7, 0.7)["score"] == 0
    synthetic = {**real, "blur_ratio": 0.5, "contrast": 1.6}
    d = realism_distance(real, synthetic, 0.7, 0.9)
    assert d["blur_ratio"] == pytest.approx(math.log(2)) and d["contrast"] == pytest.approx(math.log(2))
    assert d["score"] == pytest.approx(2 * math.log(2) + 0.2)
    assert math.isinf(realism_distance(real, {**real, "noise_ratio": float("nan")}, 0.7, 0.7)["score"])
    with pytest.raises(ValueError, match="share"):
        realism_distance(real, real, 1.5, 0.7)


def test_rendering_preset_fills_in_what_the_mask_type_leaves_unset():
    base = {"shape": "surgical", "color": "#1ca0f4"}
    spec = MaskSpec.from_dict({**base, "rendering": "realistic", "fit_jitter": 0.0})
    for key, value in RENDERING_PRESETS["realistic"].items():
        assert getattr(spec, key) == (0.0 if key == "fit_jitter" else value), key
    assert MaskSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="rendering"):
        MaskSpec.from_dict({**base, "rendering": "cinematic"})
