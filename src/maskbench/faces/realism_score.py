"""One number for how far synthetic masked photos are from real ones, to choose rendering settings.

The score is the sum, over the mask-region statistics that rendering controls (blur, noise and
contrast relative to the upper face, luminance relative to the upper face), of |log| of the ratio
of the synthetic median to the real median, plus the gap between the shares of photos where a
face was found. 0 is a perfect match; a factor of two in one statistic adds 0.69, a 10-point gap
in faces found adds 0.1.
"""

from __future__ import annotations

import math

SCORED = ("blur_ratio", "noise_ratio", "contrast", "rel_luminance")


def realism_distance(real: dict[str, float], synthetic: dict[str, float],
                     real_found: float, synthetic_found: float) -> dict[str, float]:
    """Per-term distances and their sum (``score``); medians from ``mask_region_stats.summarise``.

    A statistic missing or not positive on either side makes its term (and the score) infinite.
    """
    terms: dict[str, float] = {}
    for key in SCORED:
        a, b = real.get(key, math.nan), synthetic.get(key, math.nan)
        ok = all(math.isfinite(v) and v > 0 for v in (a, b))
        terms[key] = abs(math.log(b / a)) if ok else math.inf
    for value, name in ((real_found, "real_found"), (synthetic_found, "synthetic_found")):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must be a share between 0 and 1, not {value!r}")
    terms["found_gap"] = abs(synthetic_found - real_found)
    terms["score"] = sum(terms.values())
    return terms
