"""torch's deterministic-algorithms switch for a block, without the compiler import it costs.

``torch.use_deterministic_algorithms`` also sets the flag of torch's compiler (Inductor) and so imports
it: ~1.7 CPU s in every process that calls it (each projection and training job), for a compiler this
project never runs. Only the kernels' own switch is set here, unless the compiler is already loaded
(then the public call, which sets both)."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

import torch


def _set(mode: bool, warn_only: bool) -> None:
    kernels_only = getattr(torch._C, "_set_deterministic_algorithms", None)
    if kernels_only is None or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    else:
        kernels_only(mode, warn_only=warn_only)


@contextlib.contextmanager
def deterministic_algorithms(warn_only: bool = False) -> Iterator[None]:
    """Deterministic kernels inside the block (``warn_only``: a kernel without a deterministic
    version warns instead of raising); the caller's setting comes back after."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    _set(True, warn_only)
    try:
        yield
    finally:
        _set(*previous)
