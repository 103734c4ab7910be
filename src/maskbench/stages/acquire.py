"""The acquire stage: fetch and verify a dataset, or generate the demo dataset.

Writes ``resources/raw/<dataset>/acquired.json``, the one file that tells later stages where a
dataset's images (and optional landmarks and protocol files) are, and keeps the dataset's
``checksums.lock.json`` beside it. Only this stage writes under ``resources/raw``.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from maskbench.io.atomic import write_json
from maskbench.errors import explained_os_errors

log = logging.getLogger(__name__)


def generate_demo_dataset(raw_dir: Path, generate: dict[str, Any], seed: int) -> dict[str, Any]:
    """Generate the demo faces into a fresh folder, renamed into place when complete."""
    from maskbench.data.acquire import recorded_path
    from maskbench.data.demo import generate_demo

    final = raw_dir / "images"
    tmp = raw_dir / "images.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        summary = generate_demo(
            tmp,
            n_identities=generate["identities"],
            images_per_identity=generate["images_per_identity"],
            seed=seed,
            size=generate.get("size", 250),
            real_masks=generate.get("real_masks", 0),
        )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a half-generated set must not be left behind
        raise
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    log.info("generated the demo dataset: %s", summary)
    return {
        "images": {"path": recorded_path(final), "sha256": None, "source": "generated"},
        "landmarks": {"path": recorded_path(final / "landmarks.csv"), "sha256": None, "source": "generated"},
    }


def acquire(dataset: str, spec: dict[str, Any], seed: int, out_json: Path) -> dict[str, Any]:
    """Acquire one dataset into ``out_json``'s folder and write the manifest there.

    Files without a published checksum are pinned in ``checksums.lock.json`` beside the manifest:
    recorded the first time, verified every later time (see :class:`maskbench.data.acquire.ChecksumLock`).
    """
    raw_dir = Path(out_json).parent
    with explained_os_errors(raw_dir):
        raw_dir.mkdir(parents=True, exist_ok=True)
    if spec["layout"] == "demo":
        manifest = generate_demo_dataset(raw_dir, spec["generate"], seed)
    else:
        from maskbench.data.acquire import LOCK_FILE, ChecksumLock, acquire_dataset

        lock = ChecksumLock.load(raw_dir / LOCK_FILE)
        try:
            manifest = acquire_dataset(dataset, spec.get("files") or {}, raw_dir, lock=lock)
        finally:
            lock.save()  # what verified stays pinned, even if a later file failed
    write_json(out_json, manifest)
    return manifest
