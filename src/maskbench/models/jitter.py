"""dlib's test-time jitter for its face ResNet: N slightly moved copies of a chip, descriptors averaged.

dlib's ``compute_face_descriptor(..., num_jitters=N)`` (N > 1; 0 and 1 mean none) runs N crops of
the 150 px chip through the network and returns the mean raw descriptor. Each crop is dlib's
``jitter_image``: a square box the chip shrunk by 3 px per side, moved by up to 2% of its side in
x and y (whole pixels), enlarged by 1/s with s uniform in [0.97, 1) (whole pixels), rotated
by up to 3 degrees about its centre, cut back to 150 px with bilinear interpolation (black where
the box leaves the chip) and mirrored left to right with probability 1/2.

Here the draws come from a generator seeded by the chip's own pixel bytes (not its stored
encoding, so a change of chip codec changes no crop), so a chip gets the same
crops whatever shard, batch or order it arrives in (its vector then differs only by the network's
float rounding across batch compositions, ~1e-7; the same shard gives the same bytes); every crop
of a batch is cut in one vectorised ``grid_sample`` call and run through the network in full
batches. The cut matches dlib's ``extract_image_chip`` to one grey level on <1% of pixels.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch
import torch.nn.functional as F

# dlib's jitter_image constants (dlib/image_transforms/interpolation.h)
MAX_ROTATION_DEGREES = 3.0
MIN_OBJECT_HEIGHT = 0.97
MAX_OBJECT_HEIGHT = 0.99999
TRANSLATE_AMOUNT = 0.02
SHRINK = 3

_SEED_DOMAIN = b"maskbench.models.jitter/1"


def check_jitter(jitter: int) -> int:
    """The number of crops; 0 is none. 1 is refused: dlib silently treats it as 0."""
    if isinstance(jitter, bool) or not isinstance(jitter, (int, np.integer)) or jitter < 0 or jitter == 1:
        raise ValueError(f"jitter must be 0 (none) or an integer >= 2 (crops averaged), got {jitter!r}")
    return int(jitter)


def chip_rng(chip: np.ndarray) -> np.random.Generator:
    """A generator seeded by the chip's shape and bytes: the same chip always draws the same crops."""
    h = hashlib.blake2b(_SEED_DOMAIN, digest_size=16)
    h.update(repr(chip.shape).encode())
    h.update(np.ascontiguousarray(chip, dtype=np.uint8).tobytes())
    return np.random.default_rng(int.from_bytes(h.digest(), "little"))


def draw_params(rng: np.random.Generator, n: int) -> np.ndarray:
    """n x 5 draws (tx, ty, scale, angle in radians, mirror 0/1), in dlib's ranges."""
    tx = rng.uniform(-TRANSLATE_AMOUNT, TRANSLATE_AMOUNT, n)
    ty = rng.uniform(-TRANSLATE_AMOUNT, TRANSLATE_AMOUNT, n)
    scale = rng.uniform(MIN_OBJECT_HEIGHT, MAX_OBJECT_HEIGHT, n)
    angle = np.deg2rad(rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES, n))
    mirror = (rng.random(n) > 0.5).astype(np.float64)
    return np.stack([tx, ty, scale, angle, mirror], axis=1)


def crop_to_source(params: np.ndarray, size: int) -> np.ndarray:
    """Per crop, the 2x3 affine map from crop pixel (x, y) to chip pixel, as dlib's chip_details
    places a rotated box: its corners (rotated about the box centre) on the crop's corners."""
    side = size - 2 * SHRINK  # dlib's rectangle width: right - left + 1
    centre = (SHRINK + (size - 1 - SHRINK) + 1) // 2  # dlib's center() of an integer rectangle
    tx, ty, scale, angle = params[:, 0], params[:, 1], params[:, 2], params[:, 3]
    dx = np.round(tx * side)  # dlib turns the shift into a point: whole pixels
    dy = np.round(ty * side)
    box = np.floor(side / scale)  # long box_size = height / scale
    left = centre + dx - np.floor(box / 2)
    top = centre + dy - np.floor(box / 2)
    right, bottom = left + box - 1, top + box - 1
    cx, cy = (left + right) / 2, (top + bottom) / 2
    # The box spans (box - 1) pixels onto the crop's (size - 1): scale then rotate about the centre.
    k = (box - 1) / (size - 1)
    c, s = np.cos(angle), np.sin(angle)
    m = np.empty((len(params), 2, 3))
    m[:, 0, 0], m[:, 0, 1] = k * c, -k * s
    m[:, 1, 0], m[:, 1, 1] = k * s, k * c
    # crop (0, 0) lands on the rotated top-left corner of the box
    x0, y0 = left - cx, top - cy
    m[:, 0, 2] = c * x0 - s * y0 + cx
    m[:, 1, 2] = s * x0 + c * y0 + cy
    return m


def jitter_crops(chips: np.ndarray, n: int) -> torch.Tensor:
    """N x H x W x 3 uint8 chips -> (N * n) x 3 x H x W float32 crops with uint8 values, n per
    chip in chip order, each as dlib's jitter_image cuts it."""
    chips = _check_chips(chips)
    params = np.concatenate([draw_params(chip_rng(c), n) for c in chips])
    return cut_crops(chips, params)


def _check_chips(chips: np.ndarray) -> np.ndarray:
    chips = np.asarray(chips)
    if chips.ndim != 4 or chips.shape[1] != chips.shape[2] or chips.shape[3] != 3 or chips.dtype != np.uint8:
        raise ValueError(f"expected square uint8 RGB chips (N, S, S, 3), got {chips.dtype} {chips.shape}")
    return chips


def cut_crops(chips: np.ndarray, params: np.ndarray) -> torch.Tensor:
    """The crops of ``draw_params`` rows, len(params) / len(chips) consecutive rows per chip."""
    chips = _check_chips(chips)
    size = chips.shape[1]
    n, rest = divmod(len(params), len(chips))
    if rest or n < 1:
        raise ValueError(f"{len(params)} crop parameter rows for {len(chips)} chips")
    m = crop_to_source(params, size)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    # mirrored crops read column size-1-x where the plain crop reads column x
    xs_read = np.where(params[:, 4, None, None] > 0.5, size - 1 - xs[None], xs[None])
    src_x = m[:, 0, 0, None, None] * xs_read + m[:, 0, 1, None, None] * ys[None] + m[:, 0, 2, None, None]
    src_y = m[:, 1, 0, None, None] * xs_read + m[:, 1, 1, None, None] * ys[None] + m[:, 1, 2, None, None]
    # dlib's bilinear interpolation gives black unless all four neighbours are inside the chip
    inside = (src_x >= 0) & (src_x < size - 1) & (src_y >= 0) & (src_y < size - 1)
    grid = np.stack([src_x, src_y], axis=-1) * (2.0 / (size - 1)) - 1.0  # align_corners=True
    x = torch.from_numpy(np.array(chips, order="C")).permute(0, 3, 1, 2).to(torch.float32)
    x = x.repeat_interleave(n, dim=0)
    out = F.grid_sample(x, torch.from_numpy(grid.astype(np.float32)), mode="bilinear",
                        padding_mode="zeros", align_corners=True)
    out = torch.floor(out + 1e-3).clamp_(0, 255)  # dlib truncates to uint8 (the 1e-3: float error)
    return out * torch.from_numpy(inside[:, None].astype(np.float32))


def jittered_descriptors(model: torch.nn.Module, chips: np.ndarray, n: int, channel_means: torch.Tensor,
                         batch_size: int = 64, device: torch.device | str = "cpu") -> np.ndarray:
    """Mean raw descriptor of n jittered crops per chip (N x D float32); the crops of several chips
    share network batches of ``batch_size``."""
    check_jitter(n)
    if n == 0:
        raise ValueError("jittered_descriptors needs n >= 2; use the plain embedder for jitter 0")
    chips = np.asarray(chips)
    if chips.ndim == 3:
        chips = chips[None]
    per_step = max(1, math.ceil(batch_size * 4 / n))  # chips whose crops are cut at once
    means = torch.as_tensor(channel_means, dtype=torch.float32).view(1, 3, 1, 1)
    out = []
    with torch.inference_mode():
        for start in range(0, len(chips), per_step):
            crops = (jitter_crops(chips[start : start + per_step], n) - means) / 256.0
            vectors = torch.cat([model(crops[i : i + batch_size].to(device)).float().cpu()
                                 for i in range(0, len(crops), batch_size)])
            out.append(vectors.view(-1, n, vectors.shape[1]).double().mean(dim=1).float().numpy())
    if not out:
        return np.zeros((0, model.fc.out_features), dtype=np.float32)
    return np.concatenate(out)
