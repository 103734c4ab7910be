"""The DICTA 2021 released ResNet-50 checkpoints, read into a plain torchvision state dict.

The released files were saved from ``nn.DataParallel`` (keys ``module.*``) or from a MoCo
training (``module.encoder_q.*`` for the query encoder, beside ``module.encoder_k.*`` and the
queue), sometimes wrapped as ``{"state_dict": ...}`` with the epoch and optimizer beside it. Only
the ResNet-50 trunk is kept: the classifier or MoCo projection head (``fc.*``), the key encoder and
the queue are dropped, and every remaining trunk key is checked against torchvision's ResNet-50 so
a truncated or foreign file fails here, naming the keys, instead of giving wrong embeddings.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
import torchvision

PREFIXES = ("module.encoder_q.", "module.", "encoder_q.")  # longest first
# MoCo training state that is not part of the query encoder's trunk.
_MOCO_EXTRA = ("module.encoder_k.", "encoder_k.", "module.queue", "queue")
_OPTIONAL = ("num_batches_tracked",)  # BatchNorm counters: unused in eval, absent in old files


def resnet50_trunk_shapes() -> dict[str, torch.Size]:
    """Key -> shape of torchvision's ResNet-50 without fc (built on the meta device: no memory)."""
    with torch.device("meta"):
        model = torchvision.models.resnet50()
    return {k: v.shape for k, v in model.state_dict().items() if not k.startswith("fc.")}


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"DICTA checkpoint {path} not found: check the model's 'checkpoint:' path")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"{path} holds objects other than tensors and plain containers, so it is not loaded "
            f"(weights_only). Re-save only its state dict: torch.save(ckpt['state_dict'], 'out.pth'). "
            f"Detail: {str(exc).splitlines()[0]}"
        ) from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise ValueError(f"{path} is not a state dict (got {type(obj).__name__})")
    return obj


def _strip(key: str) -> str:
    for prefix in PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def load_resnet50_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The ResNet-50 trunk (no fc) of a released checkpoint, keys as torchvision names them.

    Raises ValueError listing the missing, unexpected and wrongly shaped keys.
    """
    path = Path(path)
    raw = _read(path)
    moco = any(k.startswith(("module.encoder_q.", "encoder_q.")) for k in raw)
    state: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, value in raw.items():
        if moco and key.startswith(_MOCO_EXTRA):
            continue
        if moco and not key.startswith(("module.encoder_q.", "encoder_q.")):
            unexpected.append(key)
            continue
        name = _strip(key)
        if name.startswith("fc."):  # classifier or MoCo projection head
            continue
        if not isinstance(value, torch.Tensor):
            unexpected.append(key)
            continue
        state[name] = value
    expected = resnet50_trunk_shapes()
    unexpected += sorted(k for k in state if k not in expected)
    missing = sorted(k for k in expected if k not in state and not k.endswith(_OPTIONAL))
    wrong = sorted(f"{k} {tuple(state[k].shape)} (expected {tuple(s)})"
                   for k, s in expected.items() if k in state and state[k].shape != s)
    if missing or unexpected or wrong:
        parts = [f"{len(missing)} missing keys: {_listing(missing)}" if missing else "",
                 f"{len(unexpected)} unexpected keys: {_listing(unexpected)}" if unexpected else "",
                 f"{len(wrong)} keys of the wrong shape: {_listing(wrong)}" if wrong else ""]
        raise ValueError(f"{path} is not a ResNet-50 checkpoint: " + "; ".join(p for p in parts if p))
    for key in expected:  # fill absent BatchNorm counters so the state loads strictly
        if key not in state:
            state[key] = torch.zeros((), dtype=torch.long)
    return {k: state[k].to(torch.float32) if state[k].is_floating_point() else state[k] for k in expected}


def _listing(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")
