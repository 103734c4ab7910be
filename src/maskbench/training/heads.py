"""A projection head over a pretrained model's embeddings, and its safetensors files.

The head starts as the base embedding itself (up to scale), so training can only move away from
it where that helps, and model selection on val can always fall back to it. Files hold tensors
and a JSON description only (no pickle), with the same bytes for the same weights.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors
from torch import nn

from maskbench.io.atomic import write_bytes
from maskbench.io.checkpoints import META_KEY as _META_KEY
from maskbench.io.checkpoints import read_checkpoint_metadata

__all__ = ["ProjectionHead", "load_head", "save_head", "HEAD_FORMAT"]

HEAD_FORMAT = "maskbench.projection_head/1"


class ProjectionHead(nn.Module):
    """``normalize(skip(x) + residual(x))`` on L2-normalised input ``x``.

    ``skip`` is a bias-free linear map initialised to the identity (``out_dim == in_dim``), to
    zero-padding (``out_dim > in_dim``), or to the first ``out_dim`` coordinates until
    :meth:`init_skip` sets it to the principal directions of the data (``out_dim < in_dim``);
    ``residual`` is Linear-BatchNorm-ReLU-Linear whose last layer starts at zero. At
    initialisation with ``out_dim >= in_dim`` the output's cosine similarities are exactly those of
    the base embeddings, so the untrained head is the base model.
    """

    def __init__(self, in_dim: int, out_dim: int = 128, hidden: int = 512):
        super().__init__()
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim), ("hidden", hidden)):
            if int(value) != value or value < 1:
                raise ValueError(f"ProjectionHead {name} must be a positive integer, got {value!r}")
        self.in_dim, self.out_dim, self.hidden = int(in_dim), int(out_dim), int(hidden)
        self.skip = nn.Linear(self.in_dim, self.out_dim, bias=False)
        self.residual = nn.Sequential(
            nn.Linear(self.in_dim, self.hidden),
            nn.BatchNorm1d(self.hidden),
            nn.ReLU(),
            nn.Linear(self.hidden, self.out_dim),
        )
        with torch.no_grad():
            self.skip.weight.copy_(torch.eye(self.out_dim, self.in_dim))
            nn.init.zeros_(self.residual[-1].weight)
            nn.init.zeros_(self.residual[-1].bias)

    def architecture(self) -> dict[str, int]:
        """The constructor arguments, stored with the weights."""
        return {"in_dim": self.in_dim, "out_dim": self.out_dim, "hidden": self.hidden}

    @torch.no_grad()
    def init_skip(self, vectors: np.ndarray | torch.Tensor) -> None:
        """When reducing the dimension, start the skip at the top ``out_dim`` right singular
        vectors of the L2-normalised ``vectors`` (uncentred, as cosine similarity is): the linear
        map that best keeps their inner products. A no-op when ``out_dim >= in_dim``."""
        if self.out_dim >= self.in_dim:
            return
        x = F.normalize(torch.as_tensor(np.asarray(vectors), dtype=torch.float64), dim=1)
        if x.shape[1] != self.in_dim:
            raise ValueError(f"init_skip: vectors have dim {x.shape[1]}, the head takes {self.in_dim}")
        _, _, vh = torch.linalg.svd(x, full_matrices=False)
        basis = vh[: self.out_dim]
        # fix each direction's sign (largest coefficient positive) so the result is reproducible
        signs = torch.sign(basis.gather(1, basis.abs().argmax(dim=1, keepdim=True)))
        basis = basis * torch.where(signs == 0, torch.ones_like(signs), signs)
        if basis.shape[0] < self.out_dim:  # fewer vectors than out_dim: pad with zero rows
            basis = torch.cat([basis, basis.new_zeros(self.out_dim - basis.shape[0], self.in_dim)])
        self.skip.weight.copy_(basis.to(self.skip.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"ProjectionHead expects [N, {self.in_dim}] input, got {tuple(x.shape)}")
        x = F.normalize(x, dim=1)
        return F.normalize(self.skip(x) + self.residual(x), dim=1)


def head_bytes(head: ProjectionHead, meta: dict[str, Any]) -> bytes:
    """The safetensors file content: every tensor of the state dict plus ``meta`` as JSON."""
    description = {"format": HEAD_FORMAT, "architecture": head.architecture(), "meta": meta}
    text = json.dumps(description, sort_keys=True, separators=(",", ":"), allow_nan=False)
    tensors = {name: t.detach().cpu().contiguous().clone() for name, t in head.state_dict().items()}
    return save_safetensors(tensors, metadata={_META_KEY: text})


def save_head(path: str, head: ProjectionHead, meta: dict[str, Any]) -> None:
    """Write the head atomically as safetensors; ``meta`` (training config, base model, ...) must
    be JSON-serialisable and is stored beside the architecture."""
    write_bytes(path, head_bytes(head, meta))


def load_head(path: str) -> tuple[ProjectionHead, dict[str, Any]]:
    """Rebuild a head written by :func:`save_head`, in eval mode, with its ``meta``."""
    description = read_checkpoint_metadata(path, HEAD_FORMAT, "projection head file written by save_head",
                                           "re-run the train_head rule")
    head = ProjectionHead(**description["architecture"])
    head.load_state_dict(load_file(str(path)), strict=True)
    head.eval()
    return head, description["meta"]
