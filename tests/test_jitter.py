"""Test-time jitter of dlib's face ResNet: dlib's crops, seeded per chip, averaged like num_jitters."""

from __future__ import annotations

import dlib
import numpy as np
import pytest

from maskbench.faces.demo_chips import aligned_demo_chip
from maskbench.models import jitter as J
from maskbench.models.dlib_resnet import embed_chips
from maskbench.models.embed import DlibReferenceEmbedder, make_embedder


@pytest.fixture(scope="module")
def chips() -> np.ndarray:
    return np.stack([aligned_demo_chip(7, identity, image)[0] for identity in range(3) for image in range(2)])


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def dlib_crop(chip: np.ndarray, row: np.ndarray) -> np.ndarray:
    """dlib's own cut of one jitter crop, from the box jitter_image builds for these draws."""
    side = chip.shape[0] - 2 * J.SHRINK
    box = int(side / row[2])
    left = 75 + int(round(row[0] * side)) - box // 2
    top = 75 + int(round(row[1] * side)) - box // 2
    rect = dlib.drectangle(dlib.rectangle(left, top, left + box - 1, top + box - 1))
    crop = np.asarray(dlib.extract_image_chip(chip, dlib.chip_details(rect, dlib.chip_dims(150, 150), float(row[3]))))
    return crop[:, ::-1] if row[4] > 0.5 else crop


def test_crops_are_cut_as_dlib_cuts_them(chips: np.ndarray) -> None:
    params = J.draw_params(np.random.default_rng(3), 12)
    params[0, :4] = [0.0, 0.0, 0.99999, 0.0]  # the plain box, no rotation
    params[1, 3], params[2, 3] = np.deg2rad(3.0), np.deg2rad(-3.0)  # the largest rotations
    ours = J.cut_crops(np.repeat(chips[:1], len(params), axis=0), params)
    ours = ours.permute(0, 2, 3, 1).numpy().astype(int)
    for k, row in enumerate(params):
        diff = np.abs(ours[k] - dlib_crop(chips[0], row).astype(int))
        assert diff.max() <= 1, k  # float rounding before dlib's truncation to uint8
        assert (diff > 0).mean() < 0.01, k


def test_jitter_zero_is_todays_vector(chips: np.ndarray) -> None:
    plain = make_embedder({"kind": "dlib_resnet"}).embed(chips)
    zero = make_embedder({"kind": "dlib_resnet", "jitter": 0}).embed(chips)
    assert np.array_equal(plain, zero)
    assert np.array_equal(zero, embed_chips(chips, device="cpu"))


def test_jitter_is_seeded_per_chip_and_close_to_the_plain_vector(chips: np.ndarray) -> None:
    plain = make_embedder({"kind": "dlib_resnet"}).embed(chips)
    first = make_embedder({"kind": "dlib_resnet", "jitter": 6}).embed(chips)
    again = make_embedder({"kind": "dlib_resnet", "jitter": 6}).embed(chips)
    assert np.array_equal(first, again)
    assert not np.allclose(first, plain, atol=1e-3)  # the crops did move the vectors
    assert (cosine(first, plain) > 0.95).all()
    # a chip draws the same crops wherever it stands in a batch
    alone = J.jitter_crops(chips[3:4], 6)
    assert np.array_equal(J.jitter_crops(chips, 6)[18:24].numpy(), alone.numpy())
    reordered = make_embedder({"kind": "dlib_resnet", "jitter": 6, "batch_size": 5}).embed(chips[::-1])[::-1]
    np.testing.assert_allclose(reordered, first, atol=1e-5)  # the network's batch-size float noise only
    # distinct chips draw distinct crops
    assert not np.array_equal(J.draw_params(J.chip_rng(chips[0]), 6), J.draw_params(J.chip_rng(chips[1]), 6))


def test_jitter_averages_like_dlibs_num_jitters(chips: np.ndarray) -> None:
    ours = make_embedder({"kind": "dlib_resnet", "jitter": 8}).embed(chips[:2])
    theirs = DlibReferenceEmbedder(jitter=8).embed(chips[:2])
    plain = make_embedder({"kind": "dlib_resnet"}).embed(chips[:2])
    # different random crops, same distribution: much closer to each other than to the plain vector
    assert (np.linalg.norm(ours - theirs, axis=1) < np.linalg.norm(ours - plain, axis=1)).all()


@pytest.mark.parametrize("bad", [1, -2, 2.5, True, "10"])
def test_bad_jitter_is_refused(bad) -> None:
    with pytest.raises(ValueError, match="jitter"):
        make_embedder({"kind": "dlib_resnet", "jitter": bad})


def test_jitter_with_dlibs_own_network_is_refused() -> None:
    """dlib's crops follow the chips embedded before (0.019 apart for one chip, alone or in its shard)."""
    with pytest.raises(ValueError, match="backend: torch"):
        make_embedder({"kind": "dlib_resnet", "backend": "dlib", "jitter": 4})


@pytest.mark.parametrize("model, ok", [
    ({"kind": "dlib_resnet", "jitter": 10}, True),
    ({"kind": "dlib_resnet", "jitter": 0}, True),
    ({"kind": "dlib_resnet", "jitter": 1}, False),  # dlib would silently treat it as none
    ({"kind": "torchvision", "arch": "resnet50", "jitter": 10}, False),  # only dlib's ResNet jitters
    ({"kind": "dlib_resnet", "backend": "dlib", "jitter": 10}, False),  # dlib's crops are not seeded per chip
    ({"kind": "dlib_resnet", "backend": "dlib"}, True),
])
def test_config_schema_checks_jitter(model, ok) -> None:
    import jsonschema
    import yaml

    from conftest import REPO

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    model_schema = schema["properties"]["models"]["additionalProperties"]
    errors = list(jsonschema.Draft202012Validator(model_schema).iter_errors(model))
    assert (not errors) == ok, [e.message for e in errors]
