"""Which epoch of a training run to keep: better on masked faces without giving away bare ones.

A model trained for masks is worth deploying only if it still recognises unmasked faces about as
well as the model it started from. So the kept epoch is the one with the lowest validation
masked-probe EER among the epochs whose validation unmasked EER is at most the starting model's
plus a tolerance. Epoch 0 (the starting model) is a candidate wherever it is the base model, so
the rule can always fall back to it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Sequence

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_UNMASKED_TOLERANCE", "EpochChoice", "choose_epoch", "check_tolerance"]

DEFAULT_UNMASKED_TOLERANCE = 0.002


@dataclass(frozen=True)
class EpochChoice:
    epoch: int
    masked_eer: float | None
    unmasked_eer: float | None
    unmasked_limit: float | None  # base unmasked EER + tolerance (None: no unmasked check possible)
    constraint_met: bool | None  # False: no candidate met the unmasked limit; None: no limit to check


def check_tolerance(value: object) -> float:
    """The tolerance as a float, or a ValueError naming the setting."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"train.unmasked_tolerance must be a number >= 0, got {value!r}")
    return float(value)


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def choose_epoch(epochs: Sequence[int], masked: Sequence[float | None], unmasked: Sequence[float | None],
                 base_unmasked: float | None, tolerance: float,
                 candidates: Sequence[bool] | None = None) -> EpochChoice:
    """The epoch to keep (ties go to the earliest).

    ``masked``/``unmasked`` are the validation EERs per epoch (None or NaN: not measured or the
    model diverged). Among ``candidates`` (default: every epoch), those with a finite masked EER
    and an unmasked EER within ``base_unmasked + tolerance`` compete on masked EER. Where
    ``base_unmasked`` is unknown (val has no unmasked genuine pair) the rule is masked EER alone.
    Where no epoch meets the limit (a head that reduces the dimension starts away from its base),
    the epoch with the lowest unmasked EER is kept and ``constraint_met`` is False; without a
    limit it is None (not checked, rather than passed).
    """
    if not (len(epochs) == len(masked) == len(unmasked)) or not epochs:
        raise ValueError("choose_epoch: give one masked and one unmasked EER per epoch, for at least one epoch")
    tolerance = check_tolerance(tolerance)
    allowed = list(candidates) if candidates is not None else [True] * len(epochs)
    limit = base_unmasked + tolerance if _finite(base_unmasked) else None
    pool = [k for k in range(len(epochs)) if allowed[k] and _finite(masked[k])]
    if limit is not None:
        within = [k for k in pool if _finite(unmasked[k]) and unmasked[k] <= limit + 1e-12]
    else:
        within = pool
    if within:
        k = min(within, key=lambda j: (masked[j], epochs[j]))
        return EpochChoice(int(epochs[k]), masked[k], unmasked[k], limit, True if limit is not None else None)
    fallback = [k for k in range(len(epochs)) if allowed[k] and _finite(unmasked[k])] or \
               [k for k in range(len(epochs)) if allowed[k]] or list(range(len(epochs)))
    k = min(fallback, key=lambda j: (unmasked[j] if _finite(unmasked[j]) else math.inf, epochs[j]))
    if limit is not None:
        log.warning("no epoch keeps the val unmasked EER within %s (base + tolerance); keeping epoch %d, the "
                    "lowest unmasked EER", limit, epochs[k])
    return EpochChoice(int(epochs[k]), masked[k], unmasked[k], limit, False if limit is not None else None)
