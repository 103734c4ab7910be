"""Loading a fine-tuned backbone: the network rebuilt from its checkpoint's own metadata.

The embed stage needs this without the training code (:mod:`maskbench.training.finetune` writes
these checkpoints), so it lives with the models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from maskbench.io.checkpoints import read_checkpoint_metadata
from maskbench.models.backbones import ARCHS, Backbone, build_backbone
from maskbench.models.upper_face import with_region

CHECKPOINT_FORMAT = "maskbench.finetuned/1"


def with_projection(trunk: Backbone, dim: int | None) -> Backbone:
    """The trunk followed by a linear projection to ``dim`` (the trunk itself when ``dim`` is its own)."""
    if dim is None or dim == trunk.dim:
        return trunk
    module = nn.Sequential(trunk.module, nn.Linear(trunk.dim, dim))
    return Backbone(module, trunk.input_size, trunk.mean, trunk.std, dim, trunk.arch)


def read_metadata(path: str | Path) -> dict[str, Any]:
    meta = read_checkpoint_metadata(path, CHECKPOINT_FORMAT, "maskbench fine-tuned checkpoint",
                                    "check the model's 'checkpoint:' path")
    if meta.get("arch") not in ARCHS:
        raise ValueError(f"{path}: unknown architecture {meta.get('arch')!r}")
    return meta


def load_finetuned(path: str | Path) -> Backbone:
    """The network a fine-tuning run saved, rebuilt from the checkpoint's own metadata (CPU, eval)."""
    meta = read_metadata(path)
    spec: dict[str, Any] = {"arch": meta["arch"], "pretrained": False}
    if meta["arch"] != "dlib_resnet":
        spec["input_size"] = int(meta["input_size"])
    with torch.random.fork_rng(devices=[]):  # the random init is overwritten; keep the caller's stream
        trunk = build_backbone(spec)
    backbone = with_region(with_projection(trunk, meta["projection"]), meta.get("region", "full"), meta.get("cut"))
    backbone.module.load_state_dict(load_file(str(path)), strict=True)
    backbone.mean = tuple(float(v) for v in meta["mean"])
    backbone.std = tuple(float(v) for v in meta["std"])
    backbone.module.eval()
    return backbone
