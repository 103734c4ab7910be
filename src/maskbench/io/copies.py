"""The dataset's copies of one picture, found once (the copies stage) and read by its protocols.

Finding them reads every aligned chip; a dataset's splits, generated pairs and identification
protocols each read the one list instead of hashing every chip again (LFW View 2 is taken as listed).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterable

from maskbench.io.duplicates import duplicate_chips

log = logging.getLogger(__name__)


def read_copies(path: str | Path, images: Iterable[str]) -> list[list[str]]:
    """Groups (sorted, of two or more) of copies of one picture among ``images``, from the
    dataset's copies file: a group with one of ``images`` only is no copy within them."""
    wanted = set(images)
    groups = json.loads(Path(path).read_text(encoding="utf-8"))["groups"]
    return sorted(kept for kept in (sorted(i for i in group if i in wanted) for group in groups) if len(kept) > 1)


def find_copies(aligned_paths: Iterable[str], images: Iterable[str], copies_path: str | Path | None) -> list[list[str]]:
    """Copies among ``images``: from the dataset's copies file where given, else from the chips."""
    if copies_path:
        return read_copies(copies_path, images)
    log.info("no copies file given: finding copies of one picture from every aligned chip")
    return duplicate_chips(aligned_paths, images)
