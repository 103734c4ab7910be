"""The upper-face model: the chip above the nose bridge, placed from the landmarks, through
fine-tuning and back from its checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors import safe_open

from maskbench.models.backbones import build_backbone
from maskbench.faces.demo_chips import demo_chips
from maskbench.models.embed import BackboneEmbedder, make_embedder
from maskbench.training.finetune import FinetuneSpec
from maskbench.models.upper_face import NOSE_BRIDGE, UpperFaceBackbone, blank_below, cut_fraction, with_region

from test_finetune import dataset, part_of, run_step  # noqa: F401  (the 7-person demo shards fixture)


def test_cut_line_is_the_median_nose_bridge_height():
    lm = np.zeros((3, 68, 2), np.float32)
    lm[:, :, 1] = 40.0
    lm[:, NOSE_BRIDGE, 1] = [70.0, 75.0, 90.0]
    assert cut_fraction(list(lm), 150) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="landmarks"):
        cut_fraction([], 150)
    lm[:, NOSE_BRIDGE, 1] = 5.0
    with pytest.raises(ValueError, match="not aligned face chips"):
        cut_fraction(list(lm), 150)


def test_blank_below_keeps_the_upper_rows_only():
    chips = np.random.default_rng(0).integers(0, 256, (2, 10, 10, 3), dtype=np.uint8)
    out = blank_below(chips, 0.4, (10.4, 20.6, 300.0))
    np.testing.assert_array_equal(out[:, :4], chips[:, :4])
    assert (out[:, 4:] == np.array([10, 21, 255], np.uint8)).all()
    assert chips is not out and not np.array_equal(chips[:, 4:], out[:, 4:])


def test_a_mask_below_the_cut_changes_nothing_the_upper_face_model_sees():
    chips = demo_chips(2, 1, ["surgical_blue"], seed=3)
    cut = cut_fraction([c.landmarks for c in chips], 150)
    upper = with_region(build_backbone({"arch": "dlib_resnet"}), "upper", cut)
    assert isinstance(upper, UpperFaceBackbone)
    bare = BackboneEmbedder(upper).embed(np.stack([c.chip for c in chips]))
    masked = BackboneEmbedder(upper).embed(np.stack([c.masked["surgical_blue"] for c in chips]))
    full = BackboneEmbedder(build_backbone({"arch": "dlib_resnet"}))
    full_gap = np.abs(full.embed(np.stack([c.chip for c in chips])) -
                      full.embed(np.stack([c.masked["surgical_blue"] for c in chips]))).max()
    assert np.abs(bare - masked).max() < 0.1 * full_gap  # the mask is (almost) entirely below the line


def test_upper_face_finetune_writes_its_cut_and_reloads(dataset, tmp_path):  # noqa: F811
    spec = {"arch": "dlib_resnet", "region": "upper", "loss": {"kind": "supcon"}, "epochs": 1, "batch_size": 8,
            "lr": 1e-4}
    run_step(dataset, tmp_path, spec, seed=4)
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["maskbench"])
    lm = [c.landmarks for c in dataset["chips"] if part_of(c.identity) == "train"]
    assert meta["region"] == "upper" and meta["cut"] == pytest.approx(cut_fraction(lm, 150))
    model = make_embedder({"kind": "finetuned", "checkpoint": str(tmp_path / "model.safetensors")})
    chips = np.stack([c.chip for c in dataset["chips"][:2]])
    lowered = chips.copy()
    lowered[:, int(round(meta["cut"] * 150)) + 1:] = 0  # what is below the line never matters
    np.testing.assert_array_equal(model.embed(chips), model.embed(lowered))
    with pytest.raises(ValueError, match="region"):
        FinetuneSpec.from_dict({"arch": "dlib_resnet", "loss": {"kind": "supcon"}, "region": "lower"})
