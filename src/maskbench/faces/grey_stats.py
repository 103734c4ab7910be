"""``np.percentile`` of grey levels by counting instead of partitioning, bit for bit the same.

The mask renderer takes percentiles of a few thousand luminance values per chip, and those values
are whole grey levels (0..255) held as floats. Counting them (``np.bincount``) finds any order
statistic in one pass; the interpolation between the two neighbouring order statistics repeats
numpy's ``linear`` method step by step, in the same dtype, so the result is the same number as
``np.percentile`` gives (tests/test_mask_shading.py compares them). Values that are not whole
grey levels go to ``np.percentile`` itself.
"""

from __future__ import annotations

import numpy as np


def _levels(values: np.ndarray) -> np.ndarray | None:
    """Counts per grey level 0..255, or None when ``values`` are not all whole levels in range."""
    if values.size == 0 or values.dtype.kind != "f":
        return None
    if not (values.min() >= 0 and values.max() <= 255):  # NaN fails too
        return None
    levels = values.astype(np.uint8)
    if not np.array_equal(levels, values):
        return None
    return np.cumsum(np.bincount(levels, minlength=256))


def grey_percentile(values: np.ndarray, q):
    """``np.percentile(values, q)`` (1-d float ``values``; ``q`` a number or a list of numbers)."""
    values = np.asarray(values)
    cum = _levels(values) if values.ndim == 1 else None
    if cum is None:
        return np.percentile(values, q)
    n = values.size
    weak = type(q) in (int, float)
    dtype = values.dtype.type
    qs = np.true_divide(q, 100)  # as np.percentile: float64
    out = [_linear(cum, n, float(virtual), dtype, weak) for virtual in np.atleast_1d((n - 1) * qs)]
    if weak:
        return out[0]
    return np.array(out, dtype=np.float64)  # a list of quantiles interpolates in float64


def _linear(cum: np.ndarray, n: int, virtual: float, dtype, weak: bool):
    """numpy's ``linear`` quantile at ``virtual`` (a fractional index into the sorted values)."""
    if virtual >= n - 1:
        return dtype(np.searchsorted(cum, n - 1, side="right"))
    prev = int(np.floor(virtual))
    gamma = virtual - prev
    a = dtype(np.searchsorted(cum, prev, side="right"))
    b = dtype(np.searchsorted(cum, prev + 1, side="right"))
    if not weak:  # an array of quantiles computes in float64
        a, b = np.float64(a), np.float64(b)
        ctype = np.float64
    else:  # one quantile: a python float weight, taken in the values' own dtype
        ctype = dtype
    diff = b - a
    if gamma >= 0.5:
        return ctype(b - diff * ctype(1 - gamma))
    return ctype(a + diff * ctype(gamma))


def grey_percentiles(values: np.ndarray, qs) -> list:
    """``[np.percentile(values, q) for q in qs]`` (each ``q`` a number), counting the levels once."""
    values = np.asarray(values)
    cum = _levels(values) if values.ndim == 1 else None
    if cum is None:
        return [np.percentile(values, q) for q in qs]
    n, dtype = values.size, values.dtype.type
    return [_linear(cum, n, float((n - 1) * np.true_divide(q, 100)), dtype, True) for q in qs]
