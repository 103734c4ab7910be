"""The acquire stage: fetch and verify a dataset, or generate the demo dataset.

Writes ``resources/raw/<dataset>/acquired.json``, the one file that tells later stages where a
dataset's images (and optional landmarks and protocol files) are.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from maskbench.atomic import write_json

log = logging.getLogger(__name__)


def generate_demo_dataset(raw_dir: Path, generate: dict[str, Any], seed: int) -> dict[str, Any]:
    """Generate the demo faces into a fresh folder, renamed into place when complete."""
    from maskbench.demo import generate_demo

    final = raw_dir / "images"
    tmp = raw_dir / "images.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    summary = generate_demo(
        tmp,
        n_identities=generate["identities"],
        images_per_identity=generate["images_per_identity"],
        seed=seed,
        size=generate.get("size", 250),
    )
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    log.info("generated the demo dataset: %s", summary)
    return {
        "images": {"path": str(final.resolve()), "sha256": None, "source": "generated"},
        "landmarks": {"path": str((final / "landmarks.csv").resolve()), "sha256": None, "source": "generated"},
    }


def acquire(dataset: str, spec: dict[str, Any], seed: int, out_json: Path) -> dict[str, Any]:
    raw_dir = Path(out_json).parent
    raw_dir.mkdir(parents=True, exist_ok=True)
    if spec["layout"] == "demo":
        manifest = generate_demo_dataset(raw_dir, spec["generate"], seed)
    else:
        from maskbench.acquire import acquire_dataset

        manifest = acquire_dataset(dataset, spec.get("files") or {}, raw_dir)
    write_json(out_json, manifest)
    return manifest
