"""The .dat reader and the torch port of dlib's face ResNet: format, parity, training, cache."""

from __future__ import annotations

import copy
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from maskbench.models import dlib_dat
from maskbench.models.dlib_dat import DatReader, parse_dat, read_dat
from maskbench.models.dlib_resnet import (
    DlibResNet,
    DlibResNetEmbedder,
    add_prev,
    cache_file,
    embed_chips,
    fold_affine,
    load_dlib_resnet,
    preprocess,
)
from maskbench.io.model_files import model_path

LFW_TARBALL = Path("lfw-mini") / "lfw-deepfunneled-mini.tgz"
MAX_PARITY_CHIPS = 500
N_PARAMS = 5_614_592


def dint(value: int) -> bytes:
    """dlib's integer encoding, to build test inputs: control byte then little-endian magnitude."""
    magnitude = abs(value)
    body = magnitude.to_bytes(max(1, (magnitude.bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if value < 0 else 0)]) + body


def dtensor(arr: np.ndarray) -> bytes:
    """A resizable_tensor record: version 2, 4-d shape, raw float32."""
    shape = arr.reshape((1,) * (4 - arr.ndim) + arr.shape).shape
    return dint(2) + b"".join(dint(s) for s in shape) + arr.astype("<f4").tobytes()


@pytest.fixture(scope="module")
def dat_path() -> Path:
    return model_path("face_recognition_resnet")


@pytest.fixture(scope="module")
def model() -> DlibResNet:
    return load_dlib_resnet()


def random_chips(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 150, 150, 3), dtype=np.uint8)


# --- primitive decoders ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, value",
    [
        (b"\x01\x00", 0),
        (b"\x01\x02", 2),
        (b"\x81\x1c", -28),
        (b"\x02\x34\x12", 0x1234),
        (b"\x82\x00\x01", -256),
        (b"\x08" + b"\xff" * 7 + b"\x7f", 2**63 - 1),
        (b"\x88" + b"\x00" * 7 + b"\x80", -(2**63)),
    ],
)
def test_read_int(data: bytes, value: int) -> None:
    r = DatReader(data)
    assert r.read_int() == value
    assert r.at_end()


def test_int_encoder_matches_literal_bytes() -> None:
    assert dint(2) == b"\x01\x02" and dint(-28) == b"\x81\x1c" and dint(0) == b"\x01\x00"


def test_reads_advance_through_a_sequence() -> None:
    r = DatReader(dint(5) + dint(-300) + b"\x01\x05hello" + b"1" + b"0")
    assert (r.read_int(), r.read_int(), r.read_string(), r.read_bool(), r.read_bool()) == (
        5,
        -300,
        "hello",
        True,
        False,
    )
    assert r.at_end()


@pytest.mark.parametrize(
    "data, value",
    [
        (b"\x03\x0a\xd7\xa3\x81\x1c", np.float32(0.04)),  # the file's loss margin
        (b"\x03\x9a\x99\x99\x81\x18", np.float32(0.6)),  # and its distance threshold
        (dint(-3) + dint(-1), -1.5),  # the mantissa carries the sign
        (dint(5) + dint(3), 40.0),
        (dint(0) + dint(0), 0.0),
        (dint(0) + dint(32000), np.inf),
        (dint(0) + dint(32001), -np.inf),
    ],
)
def test_read_float_details(data: bytes, value: float) -> None:
    r = DatReader(data)
    assert r.read_float() == value
    assert r.at_end()


def test_read_float_nan_and_old_text_format() -> None:
    assert np.isnan(DatReader(dint(0) + dint(32002)).read_float())
    with pytest.raises(ValueError, match="old-style text float at byte offset 0"):
        DatReader(b" 1.5").read_float()


def test_read_tensor_is_a_zero_copy_view() -> None:
    values = np.arange(6, dtype=np.float32).reshape(1, 2, 1, 3) - 2.5
    data = dint(7) + dtensor(values)
    r = DatReader(data)
    r.read_int()
    arr = r.read_tensor()
    np.testing.assert_array_equal(arr, values)
    assert arr.dtype == np.float32 and np.shares_memory(arr, np.frombuffer(data, np.uint8))
    assert r.at_end()


def test_read_alias_tensor_has_shape_only() -> None:
    r = DatReader(dint(1) + dint(1) + dint(32) + dint(1) + dint(1))
    assert r.read_alias_tensor() == (1, 32, 1, 1)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x02\x01", "truncated integer .* at byte offset 1"),
        (b"\x10\x01", "invalid integer control byte 0x10 at byte offset 0"),
        (b"\x09" + b"\x00" * 9, "invalid integer control byte 0x09 at byte offset 0"),
        (b"", "truncated integer .* at byte offset 0"),
    ],
)
def test_bad_ints_name_the_offset(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DatReader(data).read_int()


def test_truncated_tensor_and_string_name_the_offset() -> None:
    tensor = dtensor(np.ones(4, np.float32))
    message = r"truncated tensor data \(need 16 bytes, 12 left\) at byte offset 10"
    with pytest.raises(ValueError, match=message):
        DatReader(tensor[:-4]).read_tensor()
    with pytest.raises(ValueError, match="tensor version 3, expected 2 at byte offset 0"):
        DatReader(dint(3) + tensor[2:]).read_tensor()
    with pytest.raises(ValueError, match="truncated string .* at byte offset 2"):
        DatReader(b"\x01\x05abc").read_string()


# --- the real file --------------------------------------------------------------------------------


def test_parse_real_file(dat_path: Path) -> None:
    net = read_dat(dat_path)
    names = [r.name for r in net.layers]
    assert len(names) == 130
    assert {n: names.count(n) for n in set(names)} == {
        "con_4": 29, "affine_": 29, "relu_": 29, dlib_dat.TAG_OR_SKIP: 22,
        "add_prev_": 14, "avg_pool_2": 5, "max_pool_2": 1, "fc_2": 1,
    }  # fmt: skip
    assert sum(a.size for r in net.layers for a in r.params.values()) == N_PARAMS
    assert net.loss == "loss_metric_2" and net.input_size == (150, 150)
    np.testing.assert_allclose(net.channel_means, (122.782, 117.001, 104.298), atol=1e-4)
    first, fc = net.layers[0], net.layers[-1]
    assert first.params["weight"].shape == (32, 3, 7, 7) and first.geometry["stride_y"] == 2
    assert fc.params["weight"].shape == (256, 128) and fc.geometry["bias_mode"] == 1


@pytest.mark.parametrize("keep", [100, 300, 1_000_000, 22_466_065])
def test_truncated_file_gives_clear_error(dat_path: Path, tmp_path: Path, keep: int) -> None:
    cut = tmp_path / "cut.dat"
    cut.write_bytes(dat_path.read_bytes()[:keep])
    with pytest.raises(ValueError, match=rf"cut\.dat: .*truncated .* at byte offset \d+"):
        read_dat(cut)


def test_trailing_bytes_are_rejected(dat_path: Path) -> None:
    with pytest.raises(ValueError, match="3 unexpected trailing bytes at byte offset 22466066"):
        parse_dat(dat_path.read_bytes() + b"abc")


def test_unknown_layer_is_rejected(dat_path: Path) -> None:
    data = bytearray(dat_path.read_bytes())
    first_layer = 334  # the first con_4 name
    data[first_layer + 2 : first_layer + 7] = b"cpn_4"
    with pytest.raises(ValueError, match="unsupported layer 'cpn_4' at byte offset 334"):
        parse_dat(data)


# --- model pieces ---------------------------------------------------------------------------------


def test_add_prev_zero_pads_at_the_high_end() -> None:
    a = torch.arange(18, dtype=torch.float32).view(1, 2, 3, 3)
    b = torch.full((1, 4, 4, 4), 100.0)
    out = add_prev(a, b)
    assert out.shape == (1, 4, 4, 4)
    torch.testing.assert_close(out[:, :2, :3, :3], a + 100)
    assert (out[:, 2:] == 100).all()  # channels only b has
    assert (out[:, :, 3] == 100).all() and (out[:, :, :, 3] == 100).all()  # last row and column
    torch.testing.assert_close(add_prev(b, a), out)


def test_preprocess_matches_dlib_input_layer(model: DlibResNet) -> None:
    chip = np.empty((150, 150, 3), np.uint8)
    chip[..., 0], chip[..., 1], chip[..., 2] = 255, 0, 128
    x = model.preprocess(chip)
    assert x.shape == (1, 3, 150, 150) and x.dtype == torch.float32
    means = model.channel_means.tolist()
    expected = [(255 - means[0]) / 256, (0 - means[1]) / 256, (128 - means[2]) / 256]
    assert x[0, :, 7, 9].tolist() == pytest.approx(expected, abs=1e-7)
    torch.testing.assert_close(preprocess(chip, model.channel_means), x, rtol=0, atol=0)


def test_preprocess_keeps_the_chips_channels_last_layout(model: DlibResNet) -> None:
    """The convolutions run in the layout they are given, and their rounding depends on it: the
    stored embeddings were made from channels-last inputs (a permuted view of N x H x W x 3)."""
    chips = random_chips(2)
    x = model.preprocess(chips)
    assert x.is_contiguous(memory_format=torch.channels_last)
    means = model.channel_means.view(1, 3, 1, 1)
    reference = (torch.from_numpy(chips).permute(0, 3, 1, 2).to(torch.float32) - means) / 256.0
    assert torch.equal(x, reference)
    with torch.inference_mode():
        assert torch.equal(model(x), model(reference))


@pytest.mark.parametrize(
    "bad", [np.zeros((2, 150, 150, 3), np.float32), np.zeros((2, 112, 112, 3), np.uint8)]
)
def test_preprocess_rejects_wrong_input(model: DlibResNet, bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="expected uint8 RGB chips"):
        model.preprocess(bad)


def test_fold_affine_keeps_outputs_and_original(model: DlibResNet) -> None:
    x = model.preprocess(random_chips(3))
    folded = fold_affine(model)
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), model(x), rtol=0, atol=1e-5)
    assert sum(p.numel() for p in model.parameters()) == N_PARAMS
    assert not any(p.requires_grad for p in folded.parameters())


def test_embedder_is_batch_size_invariant_and_restores_threads(model: DlibResNet) -> None:
    chips = random_chips(5, seed=1)
    embedder = DlibResNetEmbedder(model, device="cpu")
    threads_before = torch.get_num_threads()
    small = embedder.embed_chips(chips, batch_size=2, threads=1)
    assert torch.get_num_threads() == threads_before
    whole = embedder.embed_chips(chips, batch_size=64)
    assert small.shape == (5, 128) and small.dtype == np.float32
    np.testing.assert_allclose(small, whole, rtol=0, atol=1e-6)
    assert embedder.embed_chips(chips[:0]).shape == (0, 128)
    np.testing.assert_allclose(embedder.embed_chips(chips[3]), whole[3:4], rtol=0, atol=1e-6)
    np.testing.assert_allclose(embed_chips(chips, device="cpu"), whole, rtol=0, atol=1e-6)


# --- parity with dlib on real aligned faces -------------------------------------------------------


def shared_data_dir() -> Path | None:
    """The shared fixture folder beside the repo, else $MASKBENCH_SHARED_DATA."""
    beside = Path(__file__).resolve().parents[2] / "shared" / "data"
    if (beside / LFW_TARBALL).is_file():
        return beside
    env = os.environ.get("MASKBENCH_SHARED_DATA")
    return Path(env) if env and (Path(env) / LFW_TARBALL).is_file() else None


def aligned_lfw_chips(tarball: Path, limit: int) -> np.ndarray:
    """150 px chips as dlib's face recognition pipeline makes them, read from the tar in memory."""
    from maskbench.faces.align import FaceAligner
    from maskbench.io.images import iter_tar_images

    aligner = FaceAligner(upsample=0)
    chips = []
    for _, rgb in iter_tar_images(tarball):
        result = aligner.align(rgb)
        if result.status == "ok":
            chips.append(result.chip)
        if len(chips) == limit:
            break
    return np.stack(chips)


@pytest.fixture(scope="module")
def lfw_chips() -> np.ndarray:
    data = shared_data_dir()
    if data is None:
        pytest.skip(f"{LFW_TARBALL} not found beside the repo nor in $MASKBENCH_SHARED_DATA")
    return aligned_lfw_chips(data / LFW_TARBALL, MAX_PARITY_CHIPS)


@pytest.fixture(scope="module")
def dlib_descriptors(lfw_chips: np.ndarray, dat_path: Path) -> np.ndarray:
    import dlib

    net = dlib.face_recognition_model_v1(str(dat_path))
    return np.array(net.compute_face_descriptor(list(lfw_chips)), dtype=np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return (a64 * b64).sum(1) / np.linalg.norm(a64, axis=1) / np.linalg.norm(b64, axis=1)


@pytest.mark.realdata
@pytest.mark.parametrize("path", ["embedder", "trainable_module"])
def test_parity_with_dlib(
    path: str, model: DlibResNet, lfw_chips: np.ndarray, dlib_descriptors: np.ndarray
) -> None:
    assert len(lfw_chips) >= 400  # the fixture has 602 images; most have a detectable face
    if path == "embedder":
        ours = DlibResNetEmbedder(model, device="cpu").embed_chips(lfw_chips)
    else:
        with torch.inference_mode():
            batches = np.array_split(lfw_chips, 8)
            ours = torch.cat([model(model.preprocess(c)) for c in batches]).numpy()
    diff, cos = np.abs(ours - dlib_descriptors).max(), cosine(ours, dlib_descriptors).min()
    print(f"{path}: {len(lfw_chips)} chips, max abs diff {diff:.3g}, min cosine {cos:.15f}")
    assert diff < 1e-4
    assert cos > 0.99999
    # dlib's descriptors are not L2-normalised; ours must not be either
    norms = np.linalg.norm(ours, axis=1), np.linalg.norm(dlib_descriptors, axis=1)
    np.testing.assert_allclose(*norms, rtol=1e-5)


# --- fine-tuning ----------------------------------------------------------------------------------


def test_gradients_reach_every_parameter(model: DlibResNet) -> None:
    trainable = copy.deepcopy(model).train()
    x = trainable.preprocess(random_chips(2, seed=2))
    trainable(x).pow(2).sum().backward()
    params = dict(trainable.named_parameters())
    assert sum(p.numel() for p in params.values()) == N_PARAMS
    for name, p in params.items():
        assert p.requires_grad and p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_sgd_steps_change_weights_and_lower_loss(model: DlibResNet) -> None:
    torch.manual_seed(0)
    trainable = copy.deepcopy(model).train()
    x = trainable.preprocess(random_chips(4, seed=3))
    target = torch.randn(4, 128) * 0.1
    optimizer = torch.optim.SGD(trainable.parameters(), lr=0.05)

    def loss() -> torch.Tensor:
        return torch.nn.functional.mse_loss(trainable(x), target)

    losses = []
    for _ in range(4):
        optimizer.zero_grad()
        value = loss()
        value.backward()
        optimizer.step()
        losses.append(value.item())
    with torch.no_grad():
        final = loss().item()
    assert final < 0.7 * losses[0], (losses, final)
    assert not torch.equal(trainable.fc.weight, model.fc.weight)
    assert not torch.equal(trainable.conv0.weight, model.conv0.weight)


# --- safetensors cache ----------------------------------------------------------------------------


def test_cache_is_written_once_and_read_back(
    tmp_path: Path, dat_path: Path, model: DlibResNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_dlib_resnet(cache_dir=tmp_path, dat_path=dat_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1
    assert files[0].startswith("dlib_resnet-") and files[0].endswith(".safetensors")

    def no_parsing(*args, **kwargs):
        raise AssertionError("the .dat was parsed although a cache exists")

    monkeypatch.setattr(dlib_dat, "read_dat", no_parsing)
    second = load_dlib_resnet(cache_dir=tmp_path, dat_path=dat_path)
    x = model.preprocess(random_chips(2, seed=4))
    with torch.inference_mode():
        expected = model(x)
        assert torch.equal(first(x), expected) and torch.equal(second(x), expected)
    assert all(p.requires_grad for p in second.parameters())
    assert sorted(p.name for p in tmp_path.iterdir()) == files  # no temp files left behind


def test_corrupt_cache_is_rebuilt(
    tmp_path: Path, dat_path: Path, model: DlibResNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    cached = cache_file(tmp_path, hashlib.sha256(dat_path.read_bytes()).hexdigest())
    cached.write_bytes(struct.pack("<Q", 10**6) + b"{not json")
    rebuilt = load_dlib_resnet(cache_dir=tmp_path, dat_path=dat_path)
    x = model.preprocess(random_chips(1, seed=5))
    with torch.inference_mode():
        assert torch.equal(rebuilt(x), model(x))
    monkeypatch.setattr(dlib_dat, "read_dat", None)  # the rewritten cache must now be used
    reloaded = load_dlib_resnet(cache_dir=tmp_path, dat_path=dat_path)
    with torch.inference_mode():
        assert torch.equal(reloaded(x), model(x))


def test_cache_is_the_same_bytes_every_time(tmp_path: Path, dat_path: Path) -> None:
    """Made twice from the same .dat, the cache is byte-identical (no metadata in hash order)."""
    first = load_dlib_resnet(cache_dir=tmp_path / "a", dat_path=dat_path)
    load_dlib_resnet(cache_dir=tmp_path / "b", dat_path=dat_path)
    (a,), (b,) = (list((tmp_path / d).iterdir()) for d in ("a", "b"))
    assert a.read_bytes() == b.read_bytes()
    assert first is not None
