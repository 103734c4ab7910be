"""What a split may be (strategies, part names, ratios), checked without pandas or sklearn."""

from __future__ import annotations

import math

SPLIT_NAMES = ("train", "val", "test")
STRATEGIES = ("identity", "uniform", "random", "per_identity")
IMAGE_LEVEL = ("random", "uniform")  # strategies that place images one by one (copies may part)
# strategies that read the dataset's copies of one picture (per_identity parts one person's images
# by design and counts the copies it parts); the identity split needs none, and does not wait for them
WATCHES_COPIES = (*IMAGE_LEVEL, "per_identity")
DEFAULT_RATIOS = {"train": 0.7, "val": 0.1, "test": 0.2}


class SplitError(ValueError):
    """A split that cannot be made from the data, or one that breaks an invariant."""


def check_ratios(ratios: dict[str, float]) -> dict[str, float]:
    """Ratios of train, val and test: non-negative, train and test positive, summing to 1."""
    if set(ratios) != set(SPLIT_NAMES):
        raise SplitError(f"split ratios need exactly {list(SPLIT_NAMES)}; got {sorted(ratios)}")
    out = {k: float(ratios[k]) for k in SPLIT_NAMES}
    if any(v < 0 for v in out.values()) or out["train"] <= 0 or out["test"] <= 0:
        raise SplitError(f"split ratios must be >= 0 with train and test > 0; got {out}")
    if not math.isclose(sum(out.values()), 1.0, abs_tol=1e-6):
        raise SplitError(f"split ratios must sum to 1; got {out} (sum {sum(out.values())})")
    return out
