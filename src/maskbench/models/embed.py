"""Face embedding backends behind one interface: chips in, float32 vectors out.

``dlib_resnet`` is dlib's face descriptor network (128-d). Its reference backend is dlib itself;
the ``torch`` backend runs the same weights in torch (see ``dlib_resnet``), faster and trainable.

``torchvision`` (vgg19, mobilenet_v2, resnet50 with ImageNet weights: the DICTA 2021 benchmark-1
baselines), ``dicta_checkpoint`` (the DICTA 2021 released ResNet-50 models) and ``finetuned`` (a
model written by :mod:`maskbench.training.finetune`, loaded by :mod:`maskbench.models.finetuned`) run a :class:`maskbench.models.backbones.Backbone`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import cv2
import numpy as np

from maskbench.io.model_files import model_path

if TYPE_CHECKING:
    from maskbench.models.backbones import Backbone


class Embedder(Protocol):
    dim: int

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """chips: N x H x W x 3 uint8 RGB -> N x dim float32."""


def _to_size(chips: np.ndarray, size: int) -> np.ndarray:
    if chips.shape[1:3] == (size, size):
        return chips
    return np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_LINEAR) for c in chips])


class DlibReferenceEmbedder:
    """dlib's own ``face_recognition_model_v1`` on 150 px chips."""

    dim = 128

    def __init__(self, batch_size: int = 64, threads: int = 1, jitter: int = 0) -> None:
        import dlib

        from maskbench.models.jitter import check_jitter

        # dlib's num_jitters: its crops come from the model's one generator, not seeded per chip, so a
        # chip's vector depends on the chips before it (a reference for tests; the workflow refuses it)
        self.jitter = check_jitter(jitter)
        self._model = dlib.face_recognition_model_v1(str(model_path("face_recognition_resnet")))
        self.batch_size = batch_size

    def embed(self, chips: np.ndarray) -> np.ndarray:
        chips = _to_size(chips, 150)
        out = np.empty((len(chips), self.dim), dtype=np.float32)
        for start in range(0, len(chips), self.batch_size):
            batch = [np.ascontiguousarray(c) for c in chips[start : start + self.batch_size]]
            vectors = self._model.compute_face_descriptor(batch, self.jitter)
            out[start : start + len(batch)] = np.asarray([np.asarray(v) for v in vectors], dtype=np.float32)
        return out


class DlibTorchEmbedder:
    """The same network with the weights read from dlib's file, run in torch (about 14x faster
    per core than dlib, and agreeing with it to 5e-7 per component)."""

    dim = 128

    def __init__(self, batch_size: int = 64, threads: int = 1, cache_dir: str | None = None,
                 jitter: int = 0) -> None:
        from maskbench.models.dlib_resnet import DlibResNetEmbedder
        from maskbench.models.jitter import check_jitter

        self.jitter = check_jitter(jitter)  # >= 2: mean of that many jittered crops (models/jitter.py)
        self._embedder = DlibResNetEmbedder(cache_dir=cache_dir)
        self.batch_size = batch_size
        self.threads = threads

    def embed(self, chips: np.ndarray) -> np.ndarray:
        if self.jitter:
            return self._embedder.embed_jittered(_to_size(chips, 150), self.jitter,
                                                 batch_size=self.batch_size, threads=self.threads)
        return self._embedder.embed_chips(_to_size(chips, 150), batch_size=self.batch_size, threads=self.threads)


class BackboneEmbedder:
    """Any :class:`~maskbench.models.backbones.Backbone` in eval mode, batched, on CUDA if available.

    By default it runs a snapshot of the backbone's module (dlib's network affine-folded, as
    ``DlibTorchEmbedder``), so later training of the module is not seen; ``snapshot=False`` uses
    the module itself (for a backbone built just for this embedder: no second copy in memory).
    """

    def __init__(self, backbone: "Backbone", batch_size: int = 64, threads: int = 1,
                 device: str = "auto", snapshot: bool = True) -> None:
        import copy

        from maskbench.models.dlib_resnet import DlibResNet, fold_affine, resolve_device

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.backbone = backbone
        self.dim = backbone.dim
        self.batch_size = batch_size
        self.threads = threads
        self.device = resolve_device(device)
        module = backbone.module
        if isinstance(module, DlibResNet):
            module = fold_affine(module)  # always a copy
        elif snapshot:
            module = copy.deepcopy(module)
        self._module = module.eval().requires_grad_(False).to(self.device)

    def embed(self, chips: np.ndarray) -> np.ndarray:
        import torch

        from maskbench.models.dlib_resnet import torch_threads

        chips = np.asarray(chips)
        if chips.ndim == 3:
            chips = chips[None]
        out = [np.zeros((0, self.dim), dtype=np.float32)]
        with torch_threads(self.threads), torch.inference_mode():
            for start in range(0, len(chips), self.batch_size):
                x = self.backbone.preprocess(chips[start : start + self.batch_size]).to(self.device)
                out.append(self._module(x).float().cpu().numpy())
        return np.concatenate(out)


def _required(model: dict[str, Any], key: str) -> Any:
    if model.get(key) in (None, ""):
        raise ValueError(f"model kind {model['kind']!r} needs the key {key!r}")
    return model[key]


def make_embedder(model: dict[str, Any], threads: int = 1, cache_dir: str | None = None) -> Embedder:
    """The embedder of a model config entry (``kind`` and its keys; see the module docstring)."""
    kind = model.get("kind")
    batch_size = model.get("batch_size", 64)
    if kind == "dlib_resnet":
        jitter = model.get("jitter", 0)
        if model.get("backend", "torch") == "dlib":
            if jitter:
                raise ValueError("jitter with backend: dlib: dlib draws its crops from one generator per process, "
                                 "so a chip's vector would depend on the chips embedded before it; use backend: "
                                 "torch (dlib's crops, seeded by each chip's bytes)")
            return DlibReferenceEmbedder(batch_size=batch_size, threads=threads)
        return DlibTorchEmbedder(batch_size=batch_size, threads=threads, cache_dir=cache_dir, jitter=jitter)
    if kind == "torchvision":
        from maskbench.models.backbones import TORCHVISION_ARCHS, build_backbone

        arch = _required(model, "arch")
        if arch not in TORCHVISION_ARCHS:
            raise ValueError(f"torchvision model arch {arch!r} is not supported; known: {sorted(TORCHVISION_ARCHS)}")
        backbone = build_backbone({"arch": arch, "weights": model.get("weights")})
        return BackboneEmbedder(backbone, batch_size=batch_size, threads=threads, snapshot=False)
    if kind == "dicta_checkpoint":
        from maskbench.models.backbones import torchvision_backbone
        from maskbench.models.dicta_checkpoints import load_resnet50_state

        state = load_resnet50_state(_required(model, "checkpoint"))
        backbone = torchvision_backbone("resnet50", state, headless=True)
        return BackboneEmbedder(backbone, batch_size=batch_size, threads=threads, snapshot=False)
    if kind == "finetuned":
        from maskbench.models.finetuned import load_finetuned

        backbone = load_finetuned(_required(model, "checkpoint"))
        return BackboneEmbedder(backbone, batch_size=batch_size, threads=threads, snapshot=False)
    raise ValueError(
        f"unknown model kind {kind!r}; known: dlib_resnet, torchvision, dicta_checkpoint, finetuned"
    )
