"""Metric-learning losses that pull a person's masked and unmasked embeddings together.

``make_loss(spec, dim, n_classes)`` builds one from a config ``loss:`` dict; each loss is a
``torch.nn.Module`` whose forward takes ``(embeddings [N, dim], labels [N])`` and returns a
scalar. Labels are integer identities; ArcFace needs them in ``[0, n_classes)`` (it learns one
centre per class), the pair losses only compare them.

- ``supcon``: supervised contrastive loss (Khosla et al. 2020, the "L_out" form) on L2-normalised
  embeddings; with one positive per anchor it is InfoNCE (van den Oord et al. 2018).
- ``arcface``: additive angular margin (Deng et al. 2019), with focal loss (Lin et al. 2017) when
  ``focal_gamma > 0``.
- ``triplet``: triplet loss (Schroff et al. 2015) with online batch-hard (Hermans et al. 2017) or
  semi-hard mining, Euclidean distance between L2-normalised embeddings.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from maskbench.training.specs import LOSS_DEFAULTS, MININGS, loss_options

__all__ = ["ArcFaceLoss", "SupConLoss", "TripletLoss", "LOSS_DEFAULTS", "make_loss",
           "pairwise_distances", "semi_hard_negatives"]



def make_loss(spec: dict, dim: int, n_classes: int) -> nn.Module:
    """The loss a config ``loss:`` dict names, with its defaults filled in.

    ``dim`` is the embedding size; ``n_classes`` the number of training identities (used by
    ArcFace's class centres, ignored by the pair losses).
    """
    kind, args = loss_options(spec)
    if int(dim) < 1:
        raise ValueError(f"embedding dim must be positive, got {dim!r}")
    if kind == "supcon":
        return SupConLoss(temperature=float(args["temperature"]))
    if kind == "arcface":
        return ArcFaceLoss(int(dim), int(n_classes), margin=float(args["margin"]), scale=float(args["scale"]),
                           focal_gamma=float(args["focal_gamma"]))
    return TripletLoss(margin=float(args["margin"]), mining=str(args["mining"]))


# ---------------------------------------------------------------------------------------------
# input checks shared by the losses


def _check_batch(embeddings: torch.Tensor, labels: torch.Tensor, dim: int | None = None) -> None:
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be [N, dim], got shape {tuple(embeddings.shape)}")
    if dim is not None and embeddings.shape[1] != dim:
        raise ValueError(f"embeddings have dim {embeddings.shape[1]}, the loss was built for {dim}")
    if labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(f"labels must be [N] with N = {embeddings.shape[0]}, got shape {tuple(labels.shape)}")
    if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")


def _pair_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive, negative) boolean [N, N] masks; a sample is not its own positive."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def _require_positive(positive: torch.Tensor, what: str) -> None:
    if not bool(positive.any()):
        raise ValueError(f"{what}: the batch has no positive pair (no two samples share a label); "
                         f"draw batches of several samples per identity")


# ---------------------------------------------------------------------------------------------
# supervised contrastive


class SupConLoss(nn.Module):
    """Supervised contrastive loss (Khosla et al. 2020, eq. 2, "L_out").

    For each anchor ``i`` with positives ``P(i)`` (same label, not ``i``)::

        l_i = -1/|P(i)| * sum_{p in P(i)} log( exp(z_i.z_p / t) / sum_{a != i} exp(z_i.z_a / t) )

    on L2-normalised ``z``, averaged over the anchors that have a positive (the others have
    nothing to pull toward and are left out).
    """

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"supcon temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_batch(embeddings, labels)
        positive, _ = _pair_masks(labels)
        _require_positive(positive, "supcon")
        z = F.normalize(embeddings, dim=1)
        logits = z @ z.T / self.temperature
        eye = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
        log_denominator = torch.logsumexp(logits.masked_fill(eye, -math.inf), dim=1, keepdim=True)
        log_prob = logits - log_denominator
        n_pos = positive.sum(dim=1)
        anchors = n_pos > 0
        per_anchor = torch.where(positive, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
        return -(per_anchor[anchors] / n_pos[anchors]).mean()


# ---------------------------------------------------------------------------------------------
# ArcFace


class ArcFaceLoss(nn.Module):
    """Additive angular margin loss (ArcFace, Deng et al. 2019) with learnable class centres.

    The target logit is ``s * cos(theta + m)`` and the others ``s * cos(theta_j)``, on
    L2-normalised embeddings and centres. Where ``theta + m > pi``, ``cos(theta + m)`` would stop
    falling as ``theta`` grows, rewarding a worse angle; there the standard fallback of the
    reference implementation (InsightFace) applies: ``cos(theta) - m * sin(m)``, which continues
    the curve monotonically (not the "easy margin" variant, which drops the margin for
    ``theta > pi/2``). ``focal_gamma = 0`` gives cross-entropy; ``> 0`` the focal loss
    ``-(1 - p_t)^gamma log p_t`` on the margin-adjusted softmax.
    """

    def __init__(self, dim: int, n_classes: int, margin: float = 0.5, scale: float = 30.0,
                 focal_gamma: float = 0.0):
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"arcface needs at least 2 classes (training identities), got {n_classes}")
        if not 0 <= margin < math.pi / 2:
            raise ValueError(f"arcface margin must be in [0, pi/2) radians, got {margin!r}")
        if not scale > 0:
            raise ValueError(f"arcface scale must be > 0, got {scale!r}")
        if not focal_gamma >= 0:
            raise ValueError(f"arcface focal_gamma must be >= 0, got {focal_gamma!r}")
        self.dim, self.n_classes = int(dim), int(n_classes)
        self.margin, self.scale, self.focal_gamma = float(margin), float(scale), float(focal_gamma)
        self.centres = nn.Parameter(torch.empty(self.n_classes, self.dim))
        nn.init.xavier_uniform_(self.centres)
        self._cos_m, self._sin_m = math.cos(margin), math.sin(margin)
        self._threshold = math.cos(math.pi - margin)  # cos(theta) below it means theta + m > pi

    @torch.no_grad()
    def imprint(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """Set each class centre to the mean direction of its samples ("weight imprinting",
        Qi et al. 2018), so training over a pretrained embedding starts from sensible centres
        instead of random ones; classes without samples keep theirs."""
        _check_batch(embeddings, labels, self.dim)
        z = F.normalize(embeddings.to(self.centres.dtype), dim=1)
        sums = torch.zeros_like(self.centres).index_add_(0, labels.long(), z)
        present = sums.norm(dim=1) > 0
        self.centres[present] = F.normalize(sums[present], dim=1)

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Scaled logits [N, n_classes] with the margin applied to each sample's own class."""
        cos = F.normalize(embeddings, dim=1) @ F.normalize(self.centres, dim=1).T
        cos = cos.clamp(-1.0, 1.0)
        target = cos.gather(1, labels[:, None])
        sin = (1.0 - target * target).clamp_min(1e-12).sqrt()
        with_margin = target * self._cos_m - sin * self._sin_m  # cos(theta + m)
        fallback = target - self.margin * self._sin_m
        with_margin = torch.where(target > self._threshold, with_margin, fallback)
        one_hot = F.one_hot(labels, self.n_classes).bool()
        return self.scale * torch.where(one_hot, with_margin, cos)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_batch(embeddings, labels, self.dim)
        labels = labels.long()
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.n_classes):
            raise ValueError(f"arcface labels must be class indices in [0, {self.n_classes}), got "
                             f"[{int(labels.min())}, {int(labels.max())}]")
        logits = self.logits(embeddings, labels)
        if self.focal_gamma == 0:
            return F.cross_entropy(logits, labels)
        log_pt = F.log_softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
        weight = (1.0 - log_pt.exp()).clamp_min(1e-12) ** self.focal_gamma
        return -(weight * log_pt).mean()


# ---------------------------------------------------------------------------------------------
# triplet


def pairwise_distances(z: torch.Tensor) -> torch.Tensor:
    """Euclidean distances [N, N] between rows; from the Gram matrix, clamped so the square root
    (and its gradient) stays finite at zero distance."""
    squared_norms = (z * z).sum(dim=1)
    squared = squared_norms[:, None] + squared_norms[None, :] - 2.0 * (z @ z.T)
    return squared.clamp_min(1e-12).sqrt()


def semi_hard_negatives(dist: torch.Tensor, labels: torch.Tensor, chunk: int = 1 << 22) -> torch.Tensor:
    """Index [N, N] of the negative chosen for each anchor-positive pair ``(a, p)``, ``-1`` where
    ``(a, p)`` is not a positive pair.

    The chosen negative is the nearest one farther from ``a`` than ``p`` (semi-hard when within
    the margin; beyond it the triplet is easy and costs nothing); when no negative is farther
    than ``p``, the nearest negative of all (the hardest). The [a, p, n] comparison is done a few
    anchors at a time so memory stays near ``chunk`` elements.
    """
    positive, negative = _pair_masks(labels)
    n = dist.shape[0]
    inf = torch.tensor(math.inf, dtype=dist.dtype, device=dist.device)
    hardest = torch.where(negative, dist, inf).argmin(dim=1)  # [a]
    chosen = torch.empty((n, n), dtype=torch.long, device=dist.device)
    step = max(1, chunk // max(1, n * n))
    for start in range(0, n, step):
        rows = slice(start, min(n, start + step))
        d = dist[rows]  # [a, n]
        farther = negative[rows][:, None, :] & (d[:, None, :] > d[:, :, None])  # [a, p, n]
        candidates = torch.where(farther, d[:, None, :].expand_as(farther), inf)
        nearest_farther = candidates.argmin(dim=2)  # [a, p]
        chosen[rows] = torch.where(farther.any(dim=2), nearest_farther, hardest[rows, None])
    return torch.where(positive, chosen, torch.full_like(chosen, -1))


class TripletLoss(nn.Module):
    """Triplet loss ``relu(d(a, p) - d(a, n) + margin)`` with online mining inside the batch.

    ``batch_hard``: for each anchor, its farthest positive against its nearest negative,
    averaged over anchors with a positive. ``semi_hard``: every anchor-positive pair against the
    negative :func:`semi_hard_negatives` picks, averaged over those pairs.
    """

    def __init__(self, margin: float = 0.2, mining: str = "batch_hard"):
        super().__init__()
        if mining not in MININGS:
            raise ValueError(f"unknown triplet mining {mining!r}: use one of {list(MININGS)}")
        if not margin >= 0:
            raise ValueError(f"triplet margin must be >= 0, got {margin!r}")
        self.margin, self.mining = float(margin), mining

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_batch(embeddings, labels)
        positive, negative = _pair_masks(labels)
        _require_positive(positive, f"triplet ({self.mining})")
        if not bool(negative.any()):
            raise ValueError(f"triplet ({self.mining}): the batch has no negative pair (every sample has "
                             f"the same label); draw batches of at least two identities")
        dist = pairwise_distances(F.normalize(embeddings, dim=1))
        if self.mining == "batch_hard":
            anchors = positive.any(dim=1)
            hardest_positive = torch.where(positive, dist, torch.zeros_like(dist)).amax(dim=1)
            hardest_negative = torch.where(negative, dist, torch.full_like(dist, math.inf)).amin(dim=1)
            return F.relu(hardest_positive - hardest_negative + self.margin)[anchors].mean()
        with torch.no_grad():
            chosen = semi_hard_negatives(dist.detach(), labels)
        negative_distance = dist.gather(1, chosen.clamp_min(0))
        losses = F.relu(dist - negative_distance + self.margin)
        return losses[positive].mean()
