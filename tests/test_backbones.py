"""Backbones and the model kinds beyond dlib: torchvision ImageNet baselines and DICTA checkpoints."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor

from maskbench.models.backbones import IMAGENET_SIZE, TORCHVISION_ARCHS, build_backbone, imagenet_weights_path
from maskbench.models.dicta_checkpoints import load_resnet50_state
from maskbench.models.embed import BackboneEmbedder, DlibTorchEmbedder, make_embedder

torch.set_num_threads(1)

# The layer each arch's feature must come from, named as torchvision's graph names it.
PENULTIMATE = {"resnet50": "flatten", "mobilenet_v2": "flatten", "vgg19": "classifier.4"}
WEIGHT_ENUMS = {
    "resnet50": torchvision.models.ResNet50_Weights.IMAGENET1K_V1,
    "vgg19": torchvision.models.VGG19_Weights.IMAGENET1K_V1,
    "mobilenet_v2": torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1,
}


def chips(n: int, size: int = 150, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def random_model(arch: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return getattr(torchvision.models, arch)().eval()


def reference_features(model: torch.nn.Module, arch: str, batch: np.ndarray) -> np.ndarray:
    """Penultimate features computed independently: torchvision's feature extractor on chips
    resized with cv2 and normalised with torchvision's own ImageNet transform constants."""
    resized = np.stack([cv2.resize(c, (IMAGENET_SIZE, IMAGENET_SIZE), interpolation=cv2.INTER_LINEAR)
                        if c.shape[0] != IMAGENET_SIZE else c for c in batch])
    x = torch.from_numpy(resized).permute(0, 3, 1, 2).float() / 255.0
    t = WEIGHT_ENUMS[arch].transforms()
    x = torchvision.transforms.functional.normalize(x, t.mean, t.std)
    extractor = create_feature_extractor(model, return_nodes={PENULTIMATE[arch]: "feat"}).eval()
    with torch.no_grad():
        return extractor(x)["feat"].numpy()


@pytest.fixture(scope="module")
def imagenet_files(tmp_path_factory) -> dict[str, tuple[Path, torch.nn.Module]]:
    """Randomly initialised networks saved as torchvision's ImageNet files are (full state dicts)."""
    root = tmp_path_factory.mktemp("imagenet")
    out = {}
    for k, arch in enumerate(TORCHVISION_ARCHS):
        model = random_model(arch, seed=k)
        path = root / f"{arch}.pth"
        torch.save(model.state_dict(), path)
        out[arch] = (path, model)
    return out


# --- torchvision kind ------------------------------------------------------------------------------


@pytest.mark.parametrize("arch, dim", [("resnet50", 2048), ("mobilenet_v2", 1280), ("vgg19", 4096)])
def test_torchvision_kind_gives_the_penultimate_layer(imagenet_files, arch: str, dim: int) -> None:
    path, model = imagenet_files[arch]
    embedder = make_embedder({"kind": "torchvision", "arch": arch, "weights": str(path), "batch_size": 2})
    batch = chips(3)
    first = embedder.embed(batch)
    assert embedder.dim == dim
    assert first.shape == (3, dim) and first.dtype == np.float32
    np.testing.assert_array_equal(first, embedder.embed(batch))  # deterministic, batching included
    np.testing.assert_allclose(first, reference_features(model, arch, batch), rtol=1e-4, atol=1e-4)
    if arch == "vgg19":
        assert (first >= 0).all()  # fc7 after its ReLU


def test_imagenet_weights_come_from_the_hub_cache(imagenet_files, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    expected = tmp_path / "hub" / "checkpoints" / Path(WEIGHT_ENUMS["resnet50"].url).name
    assert imagenet_weights_path("resnet50") == expected
    expected.parent.mkdir(parents=True)
    path, model = imagenet_files["resnet50"]
    expected.write_bytes(path.read_bytes())
    batch = chips(2, seed=3)
    from_hub = make_embedder({"kind": "torchvision", "arch": "resnet50"}).embed(batch)
    np.testing.assert_allclose(from_hub, reference_features(model, "resnet50", batch), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch", sorted(WEIGHT_ENUMS))
def test_missing_imagenet_weights_name_the_file_and_url(tmp_path, monkeypatch, arch: str) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    url = WEIGHT_ENUMS[arch].url
    with pytest.raises(FileNotFoundError) as info:
        make_embedder({"kind": "torchvision", "arch": arch})
    message = str(info.value)
    assert Path(url).name in message and url in message
    assert str(tmp_path / "hub" / "checkpoints") in message and "weights:" in message
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        build_backbone({"arch": arch, "weights": str(tmp_path / "nowhere.pth")})


def test_bad_model_configs_are_named() -> None:
    with pytest.raises(ValueError, match="unknown model kind 'resnet'"):
        make_embedder({"kind": "resnet"})
    with pytest.raises(ValueError, match="'alexnet' is not supported"):
        make_embedder({"kind": "torchvision", "arch": "alexnet"})
    with pytest.raises(ValueError, match="needs the key 'checkpoint'"):
        make_embedder({"kind": "dicta_checkpoint"})
    with pytest.raises(ValueError, match="unknown backbone keys"):
        build_backbone({"arch": "resnet50", "pretrained": False, "depth": 50})


# --- dlib arch --------------------------------------------------------------------------------------


def test_dlib_backbone_matches_the_dlib_torch_embedder() -> None:
    backbone = build_backbone({"arch": "dlib_resnet"})
    assert (backbone.input_size, backbone.dim) == (150, 128)
    batch = chips(3, seed=5)
    ours = BackboneEmbedder(backbone, batch_size=2).embed(batch)
    reference = DlibTorchEmbedder(batch_size=64).embed(batch)
    assert ours.shape == (3, 128) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-5)
    # preprocessing as dlib_resnet.preprocess: (pixel - channel mean) / 256
    expected = (batch.astype(np.float32) - np.asarray(backbone.mean, np.float32)) / 256.0
    np.testing.assert_array_equal(backbone.preprocess(batch).permute(0, 2, 3, 1).numpy(), expected)


def test_preprocess_flip_mirrors_only_the_flagged_chips() -> None:
    backbone = build_backbone({"arch": "resnet50", "pretrained": False, "input_size": 150})
    batch = chips(2, seed=7)
    x = backbone.preprocess(batch, flip=np.array([True, False]))
    plain = backbone.preprocess(batch)
    torch.testing.assert_close(x[0], plain[0].flip(-1))
    torch.testing.assert_close(x[1], plain[1])


# --- DICTA checkpoints -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dicta_model() -> torch.nn.Module:
    return random_model("resnet50", seed=11)


def save_variants(model: torch.nn.Module, root: Path) -> dict[str, Path]:
    """The same weights in the released formats: DataParallel (fc dropped), MoCo with its projection
    head, key encoder and queue (wrapped with training state), and a plain dict with fc present."""
    state = model.state_dict()
    trunk = {k: v for k, v in state.items() if not k.startswith("fc.")}
    module = {f"module.{k}": v for k, v in trunk.items()}
    moco = {f"module.encoder_q.{k}": v for k, v in trunk.items()}
    moco.update({"module.encoder_q.fc.0.weight": torch.randn(2048, 2048),
                 "module.encoder_q.fc.0.bias": torch.zeros(2048),
                 "module.encoder_q.fc.2.weight": torch.randn(128, 2048),
                 "module.encoder_q.fc.2.bias": torch.zeros(128),
                 "module.encoder_k.conv1.weight": torch.randn(64, 3, 7, 7), "module.queue": torch.randn(128, 16),
                 "module.queue_ptr": torch.zeros(1, dtype=torch.long)})
    files = {"module": (module, False), "moco": (moco, True), "plain_with_fc": (dict(state), False),
             "module_wrapped": (module, True)}
    out = {}
    for name, (sd, wrap) in files.items():
        path = root / f"{name}.pth"
        torch.save({"state_dict": sd, "epoch": 90, "arch": "resnet50"} if wrap else sd, path)
        out[name] = path
    return out


def test_dicta_formats_load_identically(dicta_model, tmp_path) -> None:
    paths = save_variants(dicta_model, tmp_path)
    expected = {k: v for k, v in dicta_model.state_dict().items() if not k.startswith("fc.")}
    batch = chips(2, seed=13)
    reference = reference_features(dicta_model, "resnet50", batch)
    embeddings = {}
    for name, path in paths.items():
        state = load_resnet50_state(path)
        assert set(state) == set(expected), name
        for key, value in expected.items():
            assert torch.equal(state[key], value), (name, key)
        embedder = make_embedder({"kind": "dicta_checkpoint", "checkpoint": str(path), "batch_size": 1})
        embeddings[name] = embedder.embed(batch)
        assert embeddings[name].shape == (2, 2048) and embedder.dim == 2048
    for name in paths:
        np.testing.assert_array_equal(embeddings[name], embeddings["module"])
    np.testing.assert_allclose(embeddings["module"], reference, rtol=1e-4, atol=1e-4)


def test_dicta_checkpoint_errors_name_the_keys(dicta_model, tmp_path) -> None:
    state = {f"module.{k}": v for k, v in dicta_model.state_dict().items()}
    missing = dict(state)
    del missing["module.layer3.2.conv2.weight"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"1 missing keys: layer3\.2\.conv2\.weight"):
        load_resnet50_state(tmp_path / "missing.pth")

    extra = dict(state, **{"module.layer5.0.conv1.weight": torch.zeros(1)})
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"unexpected keys: layer5\.0\.conv1\.weight"):
        load_resnet50_state(tmp_path / "extra.pth")

    wrong = dict(state, **{"module.conv1.weight": torch.zeros(64, 3, 3, 3)})
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match=r"conv1\.weight \(64, 3, 3, 3\) \(expected \(64, 3, 7, 7\)\)"):
        load_resnet50_state(tmp_path / "wrong.pth")

    torch.save({"state_dict": state, "args": argparse.Namespace(lr=0.1)}, tmp_path / "pickled.pth")
    with pytest.raises(ValueError, match="Re-save only its state dict"):
        load_resnet50_state(tmp_path / "pickled.pth")

    with pytest.raises(FileNotFoundError, match="absent.pth"):
        load_resnet50_state(tmp_path / "absent.pth")


def test_dicta_checkpoint_without_batchnorm_counters_loads(dicta_model, tmp_path) -> None:
    state = {k: v for k, v in dicta_model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pth")
    loaded = load_resnet50_state(tmp_path / "old.pth")
    assert torch.equal(loaded["layer1.0.bn1.running_var"], state["layer1.0.bn1.running_var"])
    assert loaded["bn1.num_batches_tracked"].item() == 0
