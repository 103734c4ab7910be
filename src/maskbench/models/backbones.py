"""Feature networks and their input preprocessing, behind one ``Backbone`` record.

Every backbone maps uint8 RGB chips to an N x dim float32 feature: the chips are resized to the
network's input size and normalised per channel as ``(pixel - mean) / std`` (pixel units 0-255),
then run through ``module``. Supported architectures:

* ``dlib_resnet``: the torch port of dlib's face ResNet (150 px, 128-d raw descriptor); its own
  preprocessing, ``(pixel - channel_means) / 256``, is the mean/std pair here.
* ``resnet50``, ``vgg19``, ``mobilenet_v2``: torchvision's ImageNet classifiers with the classifier
  removed, so the feature is the penultimate layer (see ``TORCHVISION_ARCHS``); 224 px input and
  ImageNet mean/std, as the networks were trained.

ImageNet weights are never downloaded: they are read from a ``weights`` path or torch's hub cache,
and a missing file fails with the URL to fetch and where to put it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import torch
import torchvision
from torch import nn

from maskbench.models.dlib_resnet import INPUT_SIZE as DLIB_INPUT_SIZE
from maskbench.models.dlib_resnet import DlibResNet, load_dlib_resnet

ARCHS = ("dlib_resnet", "resnet50", "vgg19", "mobilenet_v2")
IMAGENET_SIZE = 224
IMAGENET_MEAN = tuple(255.0 * v for v in (0.485, 0.456, 0.406))
IMAGENET_STD = tuple(255.0 * v for v in (0.229, 0.224, 0.225))
_BACKBONE_KEYS = {"arch", "pretrained", "weights", "input_size"}


@dataclass(frozen=True)
class _TorchvisionArch:
    """How to build one torchvision network and cut it at its penultimate layer."""

    build: Callable[[], nn.Module]
    weights: Any  # torchvision's IMAGENET1K_V1 enum member (file name and URL)
    dim: int
    feature: str  # what the feature is, for docs and reports

    def cut(self, model: nn.Module) -> nn.Module:
        if isinstance(model, torchvision.models.ResNet):
            model.fc = nn.Identity()  # avgpool output
        elif isinstance(model, torchvision.models.MobileNetV2):
            model.classifier = nn.Identity()  # global average pool of the last 1280-channel conv
        elif isinstance(model, torchvision.models.VGG):
            model.classifier = model.classifier[:5]  # fc6, ReLU, Dropout, fc7, ReLU
        else:  # pragma: no cover - the table below only holds the three
            raise TypeError(f"no feature cut for {type(model).__name__}")
        return model


TORCHVISION_ARCHS: dict[str, _TorchvisionArch] = {
    "resnet50": _TorchvisionArch(
        torchvision.models.resnet50, torchvision.models.ResNet50_Weights.IMAGENET1K_V1, 2048,
        "2048-d global average pool before fc"),
    "vgg19": _TorchvisionArch(
        torchvision.models.vgg19, torchvision.models.VGG19_Weights.IMAGENET1K_V1, 4096,
        "4096-d fc7 after its ReLU (dropout is off in eval mode)"),
    "mobilenet_v2": _TorchvisionArch(
        torchvision.models.mobilenet_v2, torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1, 1280,
        "1280-d global average pool before the classifier"),
}


@dataclass
class Backbone:
    """A feature network and the preprocessing it expects (mean/std in pixel units 0-255)."""

    module: nn.Module
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    dim: int
    arch: str

    def preprocess(self, chips: np.ndarray, flip: np.ndarray | None = None) -> torch.Tensor:
        """uint8 RGB chips N x H x W x 3 -> normalised float32 N x 3 x S x S (CPU).

        ``flip``: optional boolean per chip; those are mirrored left-right (augmentation).
        """
        arr = np.asarray(chips)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[3] != 3:
            raise ValueError(f"expected uint8 RGB chips of shape (N, H, W, 3), got {arr.dtype} {arr.shape}")
        if flip is not None:
            arr = np.stack([c[:, ::-1] if f else c for c, f in zip(arr, flip)]) if len(arr) else arr
        arr = resize_chips(arr, self.input_size)
        # normalised in place, in the chips' channels-last layout (as dlib_resnet.preprocess)
        x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).to(torch.float32)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1)
        return x.sub_(mean).div_(std)


def resize_chips(chips: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize to size x size (a no-op when the chips already have that size)."""
    if chips.shape[1:3] == (size, size):
        return chips
    out = np.empty((len(chips), size, size, 3), dtype=np.uint8)
    for i, chip in enumerate(chips):
        out[i] = cv2.resize(chip, (size, size), interpolation=cv2.INTER_LINEAR)
    return out


def imagenet_weights_path(arch: str) -> Path:
    """Where torch's hub cache keeps torchvision's IMAGENET1K_V1 file for ``arch``."""
    weights = TORCHVISION_ARCHS[arch].weights
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def load_imagenet_state(arch: str, weights: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The ImageNet state dict of ``arch`` from ``weights`` or the hub cache; never downloads."""
    info = TORCHVISION_ARCHS[arch].weights
    path = Path(weights) if weights is not None else imagenet_weights_path(arch)
    if not path.is_file():
        raise FileNotFoundError(
            f"ImageNet weights for {arch} not found: {path}. Fetch {info.url} and save it as {path}, "
            f"or set the model's 'weights:' key to the downloaded .pth file (nothing is downloaded at run time)."
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return state


def torchvision_backbone(arch: str, state: dict[str, torch.Tensor] | None, input_size: int = IMAGENET_SIZE,
                         headless: bool = False) -> Backbone:
    """A torchvision network cut at its penultimate layer, with ``state`` loaded (None: random init).

    ``headless``: ``state`` has no classifier (it is loaded after the cut), as feature checkpoints.
    """
    info = TORCHVISION_ARCHS[arch]
    model = info.build()
    if state is not None and not headless:
        _load_state(model, state, arch)
    model = info.cut(model)
    if state is not None and headless:
        _load_state(model, state, arch)
    return Backbone(model, input_size, IMAGENET_MEAN, IMAGENET_STD, info.dim, arch)


def _load_state(model: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{what} weights do not fit the network: missing keys {result.missing_keys[:10]}, "
            f"unexpected keys {result.unexpected_keys[:10]}"
        )


def dlib_backbone(model: DlibResNet) -> Backbone:
    """dlib's network with its own preprocessing (channel means from the weights, scale 1/256)."""
    means = tuple(float(v) for v in model.channel_means.detach().cpu())
    return Backbone(model, DLIB_INPUT_SIZE, means, (256.0, 256.0, 256.0), 128, "dlib_resnet")


def build_backbone(spec: dict[str, Any], cache_dir: str | Path | None = None) -> Backbone:
    """A backbone from ``{arch, pretrained (default true), weights (path), input_size}``.

    ``dlib_resnet`` starts from dlib's shipped weights (cached as safetensors under ``cache_dir``);
    torchvision archs from their ImageNet weights (``weights`` or the hub cache). With
    ``pretrained: false`` the network is randomly initialised (seed torch first for repeatability).
    """
    unknown = sorted(set(spec) - _BACKBONE_KEYS)
    if unknown:
        raise ValueError(f"unknown backbone keys {unknown}; known: {sorted(_BACKBONE_KEYS)}")
    arch = spec.get("arch")
    if arch not in ARCHS:
        raise ValueError(f"unknown backbone arch {arch!r}; known: {list(ARCHS)}")
    pretrained = spec.get("pretrained", True)
    if not isinstance(pretrained, bool):
        raise ValueError(f"backbone key 'pretrained': {pretrained!r} must be true or false")
    if arch == "dlib_resnet":
        if spec.get("input_size", DLIB_INPUT_SIZE) != DLIB_INPUT_SIZE:
            raise ValueError(f"dlib_resnet takes {DLIB_INPUT_SIZE} px chips; drop 'input_size'")
        if spec.get("weights") is not None:
            raise ValueError("dlib_resnet reads dlib's own model file; drop 'weights'")
        return dlib_backbone(load_dlib_resnet(cache_dir) if pretrained else DlibResNet())
    input_size = spec.get("input_size", IMAGENET_SIZE)
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 32:
        raise ValueError(f"backbone key 'input_size': {input_size!r} must be an integer >= 32")
    state = load_imagenet_state(arch, spec.get("weights")) if pretrained else None
    return torchvision_backbone(arch, state, input_size)
